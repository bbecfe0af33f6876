"""The TLS front with real TLS clients: Python's ssl and `openssl s_client`, against real nginx.

The upstream is the real FastAPI app (plus one test route that reports the headers it received)
under uvicorn on a free loopback port; the run command's test drives the same front in front of
Serve. Certificates come from scripts/dev_ca.sh, as a developer would make them.

What a refusal looks like, as observed (nginx 1.22, OpenSSL 3.0, TLS 1.3):
- no client certificate: in TLS 1.3 the client finishes its side of the handshake before the
  server has looked at its (empty) certificate, so the refusal arrives as a
  `certificate_required` alert on the first read; no HTTP byte is ever exchanged;
- a certificate from another CA: the handshake completes (nginx verifies per request), every
  request gets 403 with the project's error body and the connection is closed, and the request
  never reaches the upstream;
- a TLS 1.2 client: the handshake fails with a `protocol_version` alert.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import shutil
import socket
import ssl
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import uvicorn
from fastapi import Request

from devstack import tls_front
from devstack.common import InfraError
from serve_app.rest.api import Backend, build_app
from tests.integration.conftest import free_port
from tests.integration.tls_tools import SUBJECT, Certs, client_context, make_certs
from treasury.metrics import ShardMetrics
from treasury.settings import RuntimeSettings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


class NoShards:
    """/healthz and the test route never ask a shard; the Protocol still wants an object."""

    async def position(self, account_id: str) -> dict[str, Any] | None:
        return None

    async def ready(self) -> bool:
        return False

    async def metrics(self) -> list[ShardMetrics]:
        return []


@dataclass
class Upstream:
    port: int
    seen: list[dict[str, str]]


@contextlib.contextmanager
def serving(key_dir: Path) -> Iterator[Upstream]:
    """The real app under uvicorn in a thread, recording the headers (and the method and path,
    as ``:method`` and ``:path``) of every request it gets.

    Only public routes are answered (the rest stop at 401), so it runs on the development signer
    without Vault."""
    app = build_app(Backend(RuntimeSettings(signer="dev", dev_key_file=str(key_dir / "dev-signer.key")), NoShards()))
    seen: list[dict[str, str]] = []

    @app.middleware("http")
    async def _record(request: Request, call_next: Any) -> Any:
        seen.append({k.lower(): v for k, v in request.headers.items()} | {":method": request.method,
                                                                          ":path": request.url.path})
        return await call_next(request)

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="tls-upstream", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)  # polling uvicorn's own started flag under a deadline
    assert server.started, "uvicorn did not start"
    yield Upstream(port, seen)
    server.should_exit = True
    thread.join(timeout=20)


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    with serving(tmp_path_factory.mktemp("dev-key")) as up:
        yield up


@dataclass(frozen=True)
class RunningFront:
    front: tls_front.Front
    home: Path


@pytest.fixture(scope="module")
def front(upstream: Upstream, certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFront]:
    home = tmp_path_factory.mktemp("front-home")
    started = tls_front.start(home, certs.files, upstream_port=upstream.port, port=free_port())
    workers = [child.pid for child in psutil.Process(started.pid).children()]
    yield RunningFront(started, home)
    tls_front.stop(home)
    assert not [pid for pid in [started.pid, *workers] if psutil.pid_exists(pid)
                and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]


def get(front: RunningFront, ctx: ssl.SSLContext, path: str, headers: dict[str, str] | None = None
        ) -> tuple[http.client.HTTPResponse, bytes, str | None]:
    conn = http.client.HTTPSConnection("127.0.0.1", front.front.port, context=ctx, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        body = response.read()
        version = conn.sock.version() if conn.sock is not None else None
        return response, body, version
    finally:
        conn.close()


# ------------------------------------------------------------------------------------------- allowed


def test_client_certificate_from_the_ca_reaches_healthz_over_tls13(front: RunningFront, certs: Certs) -> None:
    response, body, version = get(front, client_context(certs), "/healthz")
    assert response.status == 200 and json.loads(body) == {"status": "ok"}
    assert version == "TLSv1.3"


def test_upstream_gets_the_verified_subject_and_a_request_id(
        front: RunningFront, certs: Certs, upstream: Upstream) -> None:
    # A client cannot choose its own subject: the header it sends is replaced.
    response, _, _ = get(front, client_context(certs), "/healthz", {"X-Client-Subject": "CN=admin"})
    headers = upstream.seen[-1]
    assert response.status == 200
    assert headers["x-client-subject"] == SUBJECT and headers["x-client-verify"] == "SUCCESS"
    assert len(headers["x-request-id"]) == 32 and int(headers["x-request-id"], 16) >= 0
    # no trace id sent: nginx's request id becomes the trace id, and the app answers with it
    assert headers["x-trace-id"] == headers["x-request-id"] == response.getheader("x-trace-id")
    assert headers["x-forwarded-proto"] == "https"

    response, _, _ = get(front, client_context(certs), "/healthz", {"X-Trace-Id": "trace-from-client"})
    assert upstream.seen[-1]["x-trace-id"] == "trace-from-client" == response.getheader("x-trace-id")


# ------------------------------------------------------------------------------------------- refused


def test_no_client_certificate_is_refused_in_the_handshake(front: RunningFront, certs: Certs,
                                                           upstream: Upstream) -> None:
    before = len(upstream.seen)
    ctx = client_context(certs, cert=None)
    # TLS 1.3: wrap_socket returns once the client's side is done; the server's verdict on the
    # (empty) certificate is the next thing the client reads
    with socket.create_connection(("127.0.0.1", front.front.port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls, pytest.raises(ssl.SSLError) as refused:
        tls.recv(1)
    assert refused.value.reason == "TLSV13_ALERT_CERTIFICATE_REQUIRED"
    assert len(upstream.seen) == before


def test_certificate_from_another_ca_is_refused_and_never_forwarded(front: RunningFront, certs: Certs,
                                                                    upstream: Upstream) -> None:
    before = len(upstream.seen)
    response, body, _ = get(front, client_context(certs, "rogue-client"), "/healthz")
    assert response.status == 403
    assert response.getheader("connection") == "close"
    error = json.loads(body)["error"]
    assert error["field"] == "client_certificate"
    assert error["reason"].startswith("not issued by the configured CA: FAILED:")
    assert len(upstream.seen) == before


def test_tls12_client_fails_the_handshake(front: RunningFront, certs: Certs) -> None:
    ctx = client_context(certs, max_version=ssl.TLSVersion.TLSv1_2)
    with socket.create_connection(("127.0.0.1", front.front.port), timeout=10) as raw, \
            pytest.raises(ssl.SSLError) as refused:
        ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    assert refused.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION"


def s_client(front: RunningFront, *args: str) -> subprocess.CompletedProcess[str]:
    openssl = shutil.which("openssl")
    assert openssl is not None
    request = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    return subprocess.run(
        [openssl, "s_client", "-connect", f"127.0.0.1:{front.front.port}", "-servername", "localhost",
         "-ign_eof", *args],
        input=request, capture_output=True, text=True, timeout=30, check=False,
    )


def test_openssl_s_client(front: RunningFront, certs: Certs) -> None:
    ca = ["-CAfile", str(certs.dir / "ca.pem"), "-verify_return_error"]
    client = ["-cert", str(certs.dir / "client.pem"), "-key", str(certs.dir / "client.key")]

    ok = s_client(front, "-tls1_3", *ca, *client)
    assert ok.returncode == 0, ok.stderr
    assert "HTTP/1.1 200 OK" in ok.stdout and '{"status":"ok"}' in ok.stdout
    assert "TLSv1.3" in ok.stdout and "Verify return code: 0 (ok)" in ok.stdout

    tls12 = s_client(front, "-tls1_2", *ca, *client)
    assert tls12.returncode != 0
    assert "alert protocol version" in tls12.stderr and "HTTP/1.1" not in tls12.stdout

    anonymous = s_client(front, "-tls1_3", *ca)
    assert "alert certificate required" in anonymous.stderr and "HTTP/1.1" not in anonymous.stdout


# ------------------------------------------------------------------------------------------ lifecycle


def logged_line(path: Path, needle: str, timeout_s: float = 10.0) -> str:
    """The log's text once it holds ``needle``, or as it is at the deadline."""
    deadline = time.monotonic() + timeout_s
    text = ""
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        if needle in text:
            break
        time.sleep(0.05)  # polling a file nginx appends to; the deadline bounds it
    return text


def test_restart_keeps_the_port_and_leaves_one_front(upstream: Upstream, certs: Certs, tmp_path: Path) -> None:
    first = tls_front.start(tmp_path, certs.files, upstream_port=upstream.port)
    try:
        assert tls_front.status(tmp_path)["running"] is True
        second = tls_front.start(tmp_path, certs.files, upstream_port=upstream.port)
        assert second.port == first.port and second.pid != first.pid
        tls_front.stop(tmp_path, first)  # whoever started the first one stops only that: nothing here
        assert tls_front.status(tmp_path)["pid"] == second.pid
        assert not psutil.pid_exists(first.pid) or psutil.Process(first.pid).status() == psutil.STATUS_ZOMBIE
        response, _, _ = get(RunningFront(second, tmp_path), client_context(certs), "/healthz")
        assert response.status == 200
        assert tls_front.status(tmp_path) == {
            "running": True, "address": f"https://127.0.0.1:{second.port}", "pid": second.pid,
            "upstream": f"127.0.0.1:{upstream.port}", "log": str(tmp_path / "tls-front" / "error.log"),
            "access_log": str(tmp_path / "tls-front" / "access.log")}
        # nginx writes the access line in its log phase, after the response left: poll for it.
        access = logged_line(tmp_path / "tls-front" / "access.log", '"GET /healthz HTTP/1.1" 200')
        assert '"GET /healthz HTTP/1.1" 200' in access and f'subject="{SUBJECT}"' in access
    finally:
        tls_front.stop(tmp_path)
    assert tls_front.status(tmp_path)["running"] is False
    tls_front.stop(tmp_path)  # a second stop is harmless


def test_a_statement_over_two_megabytes_reaches_the_api(front: RunningFront, certs: Certs) -> None:
    """nginx's own limit sits above REST_MAX_BODY_BYTES: a 3 MB body gets the API's JSON answer, not nginx's 413."""
    conn = http.client.HTTPSConnection("127.0.0.1", front.front.port, context=client_context(certs), timeout=30)
    try:
        conn.request("POST", "/balances", body=b" " * 3_000_000, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    assert response.status != 413 and response.getheader("content-type") == "application/json"
    assert "error" in json.loads(body)
    response, body, _ = get(front, client_context(certs), "/openapi.json")  # larger than one proxy buffer
    assert response.status == 200 and len(body) > 16 * 1024 and json.loads(body)["paths"]


def test_upstream_down_is_the_projects_503(certs: Certs, tmp_path: Path) -> None:
    down = tls_front.start(tmp_path, certs.files, upstream_port=free_port())  # nothing listens there
    try:
        response, body, _ = get(RunningFront(down, tmp_path), client_context(certs), "/healthz")
    finally:
        tls_front.stop(tmp_path, down)
    assert response.status == 503 and response.getheader("content-type") == "application/json"
    assert json.loads(body)["error"]["reason"].startswith("temporarily unavailable, retry")


def test_taken_port_and_missing_files_are_named(upstream: Upstream, certs: Certs, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(InfraError, match=f"port {port} needed by the tls front"):
            tls_front.start(tmp_path, certs.files, upstream_port=upstream.port, port=port)
    missing = tls_front.TlsFiles(certs.dir / "server.pem", tmp_path / "nope.key", certs.dir / "ca.pem")
    with pytest.raises(InfraError, match=r"TLS_KEY_FILE: .*nope\.key is not a file"):
        tls_front.start(tmp_path, missing, upstream_port=upstream.port)
    # a key that does not match the certificate: nginx -t refuses, nothing is left running
    wrong = tls_front.TlsFiles(certs.dir / "server.pem", certs.dir / "client.key", certs.dir / "ca.pem")
    with pytest.raises(InfraError, match=r"nginx -t .*key values mismatch"):
        tls_front.start(tmp_path, wrong, upstream_port=upstream.port)
    assert tls_front.status(tmp_path)["running"] is False
    # nginx cannot listen there (TEST-NET-1 is not on this machine): the error says why
    with pytest.raises(InfraError, match=r"nginx -t .*bind\(\) to 192\.0\.2\.1:\d+ failed .*Cannot assign requested"):
        tls_front.start(tmp_path, certs.files, upstream_port=upstream.port, host="192.0.2.1")
    assert tls_front.status(tmp_path)["running"] is False


# ------------------------------------------------------------------------------- the pull front's routes


@dataclass(frozen=True)
class SplitFront:
    front: RunningFront
    serve: Upstream
    pull: Upstream


@pytest.fixture(scope="module")
def split(certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SplitFront]:
    """A front with a pull front behind it (REST_PULL_WORKERS), each upstream the real app."""
    keys = tmp_path_factory.mktemp("split-keys")
    with serving(keys) as serve, serving(keys) as pull:
        home = tmp_path_factory.mktemp("split-front-home")
        started = tls_front.start(home, certs.files, upstream_port=serve.port, port=free_port(), pull_port=pull.port)
        yield SplitFront(RunningFront(started, home), serve, pull)
        tls_front.stop(home)


def request(front: RunningFront, ctx: ssl.SSLContext, method: str, path: str) -> int:
    conn = http.client.HTTPSConnection("127.0.0.1", front.front.port, context=ctx, timeout=10)
    try:
        conn.request(method, path, body=b"{}" if method == "POST" else None,
                     headers={"Content-Type": "application/json"} if method == "POST" else {})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


@pytest.mark.parametrize(("method", "path", "upstream_name"), [
    ("GET", "/sweep-intent?limit=100", "pull"),
    ("GET", "/sweep-intent/0190b8a4-1f2a-7c3d-8e4f-5a6b7c8d9e0f", "pull"),
    ("POST", "/sweep-intent/0190b8a4-1f2a-7c3d-8e4f-5a6b7c8d9e0f/ack", "pull"),
    ("POST", "/balances", "pull"),
    ("GET", "/balances", "serve"),
    ("GET", "/healthz", "serve"),
    ("GET", "/sweep-intents", "serve"),  # a prefix of the path is not the path
    ("GET", "/accounts/A1/position", "serve"),
])
def test_the_bank_connectors_hot_paths_go_to_the_pull_front_and_the_rest_to_serve(
        split: SplitFront, certs: Certs, method: str, path: str, upstream_name: str) -> None:
    counts = {"serve": len(split.serve.seen), "pull": len(split.pull.seen)}
    status = request(split.front, client_context(certs), method, path)
    assert status != 502 and status != 503  # answered by the app (401 without a token, 404 ...)
    got = {name: up.seen[counts[name]:] for name, up in (("serve", split.serve), ("pull", split.pull))}
    other = "serve" if upstream_name == "pull" else "pull"
    assert [(r[":method"], r[":path"]) for r in got[upstream_name]] == [(method, path.split("?")[0])]
    assert got[other] == []
    assert got[upstream_name][0]["x-client-subject"] == SUBJECT  # the same headers on either route
    port = (split.pull if upstream_name == "pull" else split.serve).port
    assert logged(split.front, f'"{method} {path} HTTP/1.1"').endswith(f"up=127.0.0.1:{port}")


def logged(front: RunningFront, request_line: str, timeout_s: float = 10.0) -> str:
    """The access log's line of a request: nginx writes it once the answer has gone, so poll."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lines = [line for line in tls_front.paths(front.home).access_log.read_text().splitlines()
                 if request_line in line]
        if lines:
            return lines[-1]
        time.sleep(0.05)  # polling the log file under a deadline
    raise AssertionError(f"{request_line} not in the access log within {timeout_s:.0f} s")


def test_dev_ca_keeps_only_its_own_folder_private(tmp_path: Path) -> None:
    """`run --tls` makes a new stack home's certificates first: the home itself must stay
    traversable, or Postgres (its own user when run as root) cannot reach its data folder."""
    home = tmp_path / "new-stack-home"
    make_certs(home / "certs")
    assert stat.S_IMODE((home / "certs").stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "certs" / "ca.key").stat().st_mode) & 0o077 == 0
    assert stat.S_IMODE(home.stat().st_mode) & 0o001, oct(home.stat().st_mode)
