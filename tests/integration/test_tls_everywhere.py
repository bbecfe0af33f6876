"""Mutual TLS 1.3 on every hop (issue 18), against the real services of a stack started with `--tls`.

Each service is asked by four clients: ours (the stack's ``treasury-app`` certificate, which must
work, or the refusals below would prove nothing), a plaintext one, a TLS 1.2 one presenting that same
valid certificate, and a TLS 1.3 one presenting none. Each of the last three must be refused. Then
`treasury-orch run --tls` carries a balance to a signed order pulled over the TLS front, with Ray's
gRPC on TLS as well.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx
import psutil
import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from devstack import certs as stack_certs
from devstack import stack as infra_stack
from devstack.certs import APP, StackCerts
from devstack.stack import StackInfo
from tests.conftest import REPO_ROOT
from tests.integration.conftest import free_port
from tests.integration.test_run_command import CLI, alive
from treasury.auth import Scope, mint_token
from treasury.keyring import keyring_from_settings
from treasury.tls import client_context, kafka_security

pytestmark = pytest.mark.integration
REFUSED_WITHIN_S = 10.0


def tls_home() -> Path:
    """TREASURY_TLS_TEST_STACK_HOME, else the repo's git-ignored `.stack/test-tls`."""
    return Path(os.environ.get("TREASURY_TLS_TEST_STACK_HOME", str(REPO_ROOT / ".stack" / "test-tls")))


@pytest.fixture(scope="module")
def tls_stack() -> Iterator[StackInfo]:
    home = tls_home()
    try:
        yield infra_stack.up(home, with_consul=True, tls=True)
    finally:
        if os.environ.get("KEEP_STACK") != "1":
            infra_stack.down(home)


@pytest.fixture(scope="module")
def certs(tls_stack: StackInfo) -> StackCerts:
    return stack_certs.ensure(tls_stack.home)


def tls12(certs: StackCerts) -> ssl.SSLContext:
    """A client that offers TLS 1.2 at most, with a certificate the services otherwise accept."""
    context = ssl.create_default_context(cafile=str(certs.ca))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(certs.cert(APP)), str(certs.key(APP)))
    return context


def no_cert(certs: StackCerts) -> ssl.SSLContext:
    """A TLS 1.3 client that trusts the stack's CA but presents no certificate."""
    return client_context(certs.ca)


def host_port(address: str) -> tuple[str, int]:
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def handshake(address: tuple[str, int], context: ssl.SSLContext) -> str:
    """A TLS handshake and one read: the TLS version, or an error (TLS 1.3 refuses a missing
    certificate only after the client's side of the handshake completed, hence the read)."""
    with socket.create_connection(address, timeout=REFUSED_WITHIN_S) as raw, \
            context.wrap_socket(raw, server_hostname=address[0]) as tls:
        version = tls.version() or "?"
        tls.settimeout(2.0)
        try:
            if tls.recv(1) == b"":
                raise ConnectionResetError("closed by the server after the handshake")
        except TimeoutError:
            pass  # a server waiting for our request: the handshake was accepted
        return version


def test_status_and_the_recorded_settings_say_tls(tls_stack: StackInfo) -> None:
    parts = infra_stack.status(tls_stack.home)
    assert set(parts) == {"kafka", "postgres", "openbao", "consul"}
    assert {name: part["transport"] for name, part in parts.items()} == dict.fromkeys(parts, "tls")
    assert all(part["running"] for part in parts.values())
    recorded = infra_stack.recorded_env(tls_stack.home)  # what a CLI in another terminal connects with
    assert recorded["KAFKA_SECURITY_PROTOCOL"] == "SSL" and "sslmode=verify-full" in recorded["DATABASE_URL"]
    assert recorded["VAULT_ADDR"].startswith("https://") and recorded["CONSUL_HTTP_ADDR"].startswith("https://")
    assert infra_stack.up(tls_stack.home).tls, "a plain `up` switched a running TLS stack to plaintext"


# ------------------------------------------------------------------------------------------------ kafka


def kafka_lists_topics(bootstrap: str, config: dict[str, str]) -> bool:
    admin = AdminClient({**config, "bootstrap.servers": bootstrap, "socket.connection.setup.timeout.ms": 3000})
    try:
        return "balance_events" in admin.list_topics(timeout=REFUSED_WITHIN_S).topics
    except KafkaException:
        return False


def test_kafka_takes_our_certificate_and_refuses_the_rest(tls_stack: StackInfo, certs: StackCerts) -> None:
    security = kafka_security(tls_stack.tls_env)
    assert security["security.protocol"] == "SSL"
    assert kafka_lists_topics(tls_stack.kafka_bootstrap, security)
    assert not kafka_lists_topics(tls_stack.kafka_bootstrap, {}), "plaintext client served"
    without = {k: v for k, v in security.items() if k not in ("ssl.certificate.location", "ssl.key.location")}
    assert not kafka_lists_topics(tls_stack.kafka_bootstrap, without), "client without a certificate served"
    address = host_port(tls_stack.kafka_bootstrap)
    assert handshake(address, client_context(certs.ca, certs.cert(APP), certs.key(APP))) == "TLSv1.3"
    with pytest.raises((ssl.SSLError, ConnectionError)):
        handshake(address, tls12(certs))
    with pytest.raises((ssl.SSLError, ConnectionError)):
        handshake(address, no_cert(certs))
    controller = int(infra_stack.load_state(tls_stack.home).kafka.controller_port or 0)
    with pytest.raises((ssl.SSLError, ConnectionError)):  # the controller's listener is no softer
        handshake(("127.0.0.1", controller), no_cert(certs))


# --------------------------------------------------------------------------------------------- postgres


async def pg_user(dsn: str, **options: object) -> str:
    conn = await asyncio.wait_for(asyncpg.connect(dsn, timeout=REFUSED_WITHIN_S, **options), REFUSED_WITHIN_S)
    try:
        return str(await conn.fetchval("SELECT current_user || ' ' || version FROM pg_stat_ssl "
                                       "WHERE pid = pg_backend_pid()"))
    finally:
        await conn.close()


async def test_postgres_takes_our_certificate_and_refuses_the_rest(tls_stack: StackInfo, certs: StackCerts) -> None:
    assert await pg_user(tls_stack.postgres_dsn) == "treasury TLSv1.3"
    plain = tls_stack.postgres_dsn.split("?", 1)[0]
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match="no encryption"):
        await pg_user(plain, ssl=False)
    with pytest.raises((ssl.SSLError, ConnectionError, asyncpg.PostgresError)):
        await pg_user(plain, ssl=tls12(certs))
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match="certificate"):
        await pg_user(plain, ssl=no_cert(certs))


# ---------------------------------------------------------------------------------------------- openbao


def https_refused(url: str, context: ssl.SSLContext) -> bool:
    try:
        with httpx.Client(verify=context, timeout=REFUSED_WITHIN_S) as client:
            client.get(url)
    except httpx.HTTPError:
        return True
    return False


def test_openbao_takes_our_certificate_and_refuses_the_rest(tls_stack: StackInfo, certs: StackCerts) -> None:
    settings = tls_stack.settings()
    keyring = keyring_from_settings(settings)  # hvac with VAULT_CACERT / VAULT_CLIENT_CERT / VAULT_CLIENT_KEY
    assert keyring.sign(settings.order_signing_key, [b"order"])[0].key_version >= 1
    health = f"{tls_stack.vault_addr}/v1/sys/health"
    assert tls_stack.vault_addr.startswith("https://")
    plain = httpx.get(health.replace("https://", "http://"), timeout=REFUSED_WITHIN_S)
    assert plain.status_code == 400 and "sealed" not in plain.text, "plaintext client served"
    assert https_refused(health, tls12(certs)), "TLS 1.2 client served"
    assert https_refused(health, no_cert(certs)), "client without a certificate served"


# ----------------------------------------------------------------------------------------------- consul


def test_consul_takes_our_certificate_and_refuses_the_rest(tls_stack: StackInfo, certs: StackCerts) -> None:
    assert tls_stack.consul_http_addr is not None and tls_stack.consul_http_addr.startswith("https://")
    leader = f"{tls_stack.consul_http_addr}/v1/status/leader"
    with httpx.Client(verify=client_context(certs.ca, certs.cert(APP), certs.key(APP))) as ours:
        assert ours.get(leader).json()
    plain = httpx.get(leader.replace("https://", "http://"), timeout=REFUSED_WITHIN_S)
    assert plain.status_code == 400 and not plain.text.startswith('"'), "plaintext client served"
    assert https_refused(leader, tls12(certs)), "TLS 1.2 client served"
    assert https_refused(leader, no_cert(certs)), "client without a certificate served"


# ------------------------------------------------------------------------------------ the whole pipeline


async def order_ids(dsn: str) -> set[str]:
    """The orders a kept stack already holds; none on a fresh one, whose ledger `run` creates."""
    conn = await asyncpg.connect(dsn)
    try:
        return {str(r["order_id"]) for r in await conn.fetch("SELECT order_id FROM sweep_order")}
    except asyncpg.UndefinedTableError:
        return set()
    finally:
        await conn.close()


def gcs_port(run_pid: int) -> int | None:
    """The port Ray's GCS server (a child of the run command) listens on, once it does."""
    for child in psutil.Process(run_pid).children(recursive=True):
        try:
            if "gcs_server" in " ".join(child.cmdline()[:1]):
                listening = [c.laddr.port for c in child.net_connections(kind="tcp") if c.status == "LISTEN"]
                return min(listening) if listening else None
        except psutil.Error:
            continue
    return None


def test_run_tls_carries_a_balance_to_a_signed_order_over_tls(tls_stack: StackInfo, certs: StackCerts,
                                                              tmp_path: Path) -> None:
    port, dash_port, front_port = free_port(), free_port(), free_port()
    settings = tls_stack.settings()
    token = mint_token(keyring_from_settings(settings), settings.token_signing_key, "tls-test",
                       [s.value for s in Scope])
    headers = {"Authorization": f"Bearer {token}"}
    # A clean slate: none of this session's Ray variables (it ran Ray in-process) nor stack addresses.
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    env |= {"TREASURY_STACK_HOME": str(tls_stack.home), "SERVE_PORT": str(port),
            "RAY_DASHBOARD_PORT": str(dash_port), "TLS_PORT": str(front_port)}
    for key in ("KAFKA_BOOTSTRAP", "DATABASE_URL", "VAULT_ADDR", "VAULT_TOKEN_FILE", "TLS_CERT_FILE"):
        env.pop(key, None)
    earlier = asyncio.run(order_ids(tls_stack.postgres_dsn))  # a kept stack's orders, signed by a gone OpenBao
    log = tmp_path / "run.log"
    with log.open("w") as out:
        proc = subprocess.Popen([*CLI, "run", "--tls", "--accounts", "3", "--rate", "50", "--keep-stack",
                                 "--no-bank", "--no-prometheus"], env=env, stdout=out, stderr=subprocess.STDOUT)
    front = f"https://127.0.0.1:{front_port}"
    bank_connector = client_context(certs.ca, certs.cert("client"), certs.key("client"))
    try:
        order = None
        deadline = time.monotonic() + 240  # Ray, its dashboard and Serve start slowly on a busy 2-core box
        with httpx.Client(verify=bank_connector, timeout=10) as pull:
            while order is None and time.monotonic() < deadline:
                assert proc.poll() is None, log.read_text()[-3000:]
                try:
                    page = pull.get(f"{front}/sweep-intent", params={"limit": 1000}, headers=headers)
                    if page.status_code == 200:
                        order = next((o for o in page.json()["orders"] if o["order_id"] not in earlier
                                      and str(o.get("source_account", "")).startswith("970")), None)
                except httpx.HTTPError:
                    pass
                time.sleep(1)  # polling interval under the deadline
        assert order is not None, log.read_text()[-3000:]
        text = log.read_text()
        assert "Transport     mutual TLS 1.3" in text and f"REST API TLS  {front}/docs" in text
        # every client of the run reached the TLS-only services: the order is signed through OpenBao
        order_file = tmp_path / "order.json"
        order_file.write_text(json.dumps(order))
        verified = subprocess.run([*CLI, "verify", str(order_file)], env={**env, **tls_stack.env()},
                                  capture_output=True, text=True, timeout=120, check=False)
        assert verified.returncode == 0 and json.loads(verified.stdout)["valid"] is True, verified.stderr
        # Ray's GCS speaks mutual TLS: our node certificate is taken, no certificate is refused
        gcs = gcs_port(proc.pid)
        assert gcs is not None, "no gcs_server among the run command's processes"
        ray_ctx, anonymous = client_context(certs.ca, certs.cert("ray"), certs.key("ray")), no_cert(certs)
        for context in (ray_ctx, anonymous):
            context.set_alpn_protocols(["h2"])  # gRPC closes a TLS connection that does not offer HTTP/2
        assert handshake(("127.0.0.1", gcs), ray_ctx) == "TLSv1.3"
        with pytest.raises((ssl.SSLError, ConnectionError)):
            handshake(("127.0.0.1", gcs), anonymous)
        children = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]
        deadline = time.monotonic() + 60
        while alive(children) and time.monotonic() < deadline:
            time.sleep(0.5)  # Ray's processes exit shortly after the driver; poll under a deadline
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
