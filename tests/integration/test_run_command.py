"""The commands an operator runs, as processes: ``infra``, ``accounts``, ``simulate`` and ``run``.

``treasury-orch run`` is started exactly as the README says (on the test stack, with free REST,
dashboard and Prometheus ports); the test waits until orders can be pulled, looks at what an
operator sees (the Ray dashboard's actors and Serve app, Prometheus's scrape), sends Ctrl-C
(SIGINT), and expects a clean exit with nothing of Ray or Prometheus left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from serve_app.rest.serve_front import haproxy_folder
from tests.integration.camt_samples import camt053
from tests.integration.conftest import free_port, haproxy_backends
from tests.integration.tls_tools import client_context, make_certs
from treasury.metrics import RAY_SERVE_METRICS

pytestmark = pytest.mark.integration
CLI = [sys.executable, "-m", "serve_app.cli"]


def first_simulated_order(base: str, headers: dict[str, str]) -> dict[str, object] | None:
    """Page through the whole pull API (the ledger may hold other tests' orders) for one of ours."""
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 1000, **({"after": cursor} if cursor else {})}
        page = httpx.get(f"{base}/sweep-intent", params=params, headers=headers, timeout=10).json()
        found = next((o for o in page["orders"] if str(o.get("source_account", "")).startswith("970")), None)
        if found or not page["count"]:
            return found
        cursor = page["next_cursor"]


def dashboard_headers() -> dict[str, str]:
    """Ray's token authentication is on by default; its token is in ~/.ray/auth_token."""
    token = os.environ.get("RAY_AUTH_TOKEN") or (
        (Path.home() / ".ray" / "auth_token").read_text().strip() if (Path.home() / ".ray" / "auth_token").exists()
        else "")
    return {"Authorization": f"Bearer {token}"} if token else {}


def poll_json(url: str, check: Callable[[Any], bool], timeout: float = 90.0, **kw: Any) -> Any:
    """GET ``url`` until its JSON satisfies ``check``; the last answer is in the failure message."""
    last: Any = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = httpx.get(url, timeout=10, **kw)
            last = r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text
            if r.status_code == 200 and check(last):
                return last
        except (httpx.HTTPError, ValueError) as exc:
            last = repr(exc)
        time.sleep(1)  # polling interval under the deadline
    raise AssertionError(f"{url}: not as expected within {timeout:.0f} s; last answer: {str(last)[:2000]}")


def treasury_actors(body: dict[str, Any]) -> dict[str, str]:
    """name -> state of the named actors in the treasury namespace, from /api/v0/actors."""
    return {a["name"]: a["state"] for a in body["data"]["result"]["result"]
            if a.get("name") and a.get("ray_namespace") == "treasury"}


def alive(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            continue
    return out


def stop(proc: subprocess.Popen[bytes]) -> None:
    """After a failed assertion: Ctrl-C first, so Ray stops its own processes (a killed driver leaves
    them, and haproxy, running into the next test), then kill."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture
def env(stack) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {**os.environ, **stack.env(), "TREASURY_STACK_HOME": str(stack.home)}


def test_infra_status_accounts_and_simulate(env: dict[str, str]) -> None:
    status = cli(env, "infra", "status")
    assert status.returncode == 0 and "kafka" in status.stdout and "postgres" in status.stdout
    added = cli(env, "accounts", "add", "CLI-ACCT-1", "--esg", "--min-balance", "250000", "--aml-tag", "kyc_tier=A")
    assert added.returncode == 0, added.stderr
    listed = [json.loads(line) for line in cli(env, "accounts", "list").stdout.splitlines()]
    assert {"account_id": "CLI-ACCT-1", "esg": True, "min_balance_usd": "250000.0000",
            "aml_tags": {"kyc_tier": "A"}} in listed
    bad_tag = cli(env, "accounts", "add", "CLI-ACCT-2", "--aml-tag", "no-equals-sign")
    assert bad_tag.returncode == 2 and "expected NAME=VALUE" in bad_tag.stderr
    sent = cli(env, "simulate", "--accounts", "3", "--rate", "500", "--count", "40")
    assert sent.returncode == 0 and json.loads(sent.stdout) == {"sent": 40}


def test_ingest_sends_a_checked_file(env: dict[str, str], tmp_path: Path) -> None:
    account = f"CLI-INGEST-{uuid.uuid4().hex[:8]}"  # unknown until this test registers it, on any stack
    statement = tmp_path / "statement.xml"
    statement.write_bytes(camt053(account))
    refused = cli(env, "ingest", str(statement))
    assert refused.returncode == 2 and f"unknown account '{account}'" in refused.stderr
    assert cli(env, "accounts", "add", account).returncode == 0
    sent = cli(env, "ingest", str(statement))
    assert sent.returncode == 0
    assert json.loads(sent.stdout) == {"sent": 2, "undelivered": 0, "entries": 0, "balances": 2}


def test_var_recompute_from_a_file(env: dict[str, str], tmp_path: Path) -> None:
    flows = tmp_path / "flows.csv"
    days = [f"2025-01-{d:02d}" for d in range(1, 31)]
    flows.write_text("account_id,date,net_flow_usd\n" + "".join(
        f"CLI-VAR-1,{day},{(-1) ** i * (i + 1) * 1000}\n" for i, day in enumerate(days)))
    assert cli(env, "accounts", "add", "CLI-VAR-1").returncode == 0
    done = cli(env, "var", "recompute", "--source", str(flows), "--workers", "1", "--accounts", "CLI-VAR-1")
    assert done.returncode == 0, done.stderr[-2000:]
    # no system running: stored, not pushed; 30 days < 250 is a short history
    assert json.loads(done.stdout) == {"accounts": 1, "with_var": 1, "short_history": 1, "pushed": 0}
    assert "VaR recompute [" in done.stderr


def scrapes_this_run(prometheus: str, stack_home: Path) -> str:
    """Waits until Prometheus scrapes this run's ingress and Ray node; returns a PromQL matcher for
    those instances (its targets file, written when it started). Prometheus keeps its data in the
    stack home, and a run started again within five minutes still sees the last run's series."""
    groups = json.loads((stack_home / "prometheus" / "targets.json").read_text())
    scraped = 'instance=~"' + "|".join(t.replace(".", "\\\\.") for g in groups for t in g["targets"]) + '"'
    poll_json(f"{prometheus}/api/v1/query", lambda b: {r["metric"]["component"]: r["value"][1] for r in
                                                       b["data"]["result"]} == {"treasury-api": "1", "ray": "1"},
              params={"query": f"up{{{scraped}}}"})
    return scraped


def operators_view(base: str, dashboard: str, prometheus: str, auth: dict[str, str], stack_home: Path) -> None:
    """The Ray dashboard lists the named actors and the Serve app; Prometheus scrapes the ingress
    and the Ray node. (A one-account VaR job runs in the scheduler itself: no pool workers.)"""
    job = httpx.post(f"{base}/risk/var/recompute", json={"accounts": ["9700000000"]}, headers=auth, timeout=10)
    assert job.status_code == 202, job.text
    poll_json(f"{base}/risk/var/recompute/{job.json()['job_id']}", lambda j: j["status"] == "done", headers=auth)
    headers = dashboard_headers()
    wanted = {"coordinator": "ALIVE", "shard-0": "ALIVE", "shard-1": "ALIVE", "var-scheduler": "ALIVE"}
    body = poll_json(f"{dashboard}/api/v0/actors?limit=10000",
                     lambda b: wanted.items() <= treasury_actors(b).items(), headers=headers)
    assert wanted.items() <= treasury_actors(body).items()
    apps = poll_json(f"{dashboard}/api/serve/applications/",
                     lambda b: b["applications"].get("treasury", {}).get("status") == "RUNNING", headers=headers)
    assert "Ingress" in apps["applications"]["treasury"]["deployments"]
    scraped = scrapes_this_run(prometheus, stack_home)
    orders = poll_json(f"{prometheus}/api/v1/query", lambda b: b["data"]["result"],
                       params={"query": f"treasury_orders{{{scraped}}}"})
    assert {r["metric"]["status"] for r in orders["data"]["result"]} >= {"NEW", "SENT", "ACK", "FAILED"}


def test_run_serves_orders_and_stops_cleanly_on_ctrl_c(env: dict[str, str], tmp_path: Path,
                                                       auth_headers: dict[str, str], stack) -> None:
    port, dash_port, prom_port, tls_port, pull_port = free_port(), free_port(), free_port(), free_port(), free_port()
    certs = make_certs(tmp_path / "certs")
    log = tmp_path / "run.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            # the demo bank (docs/demo.md) seeds history and VaR first: test_demo_loop covers it
            [*CLI, "run", "--accounts", "3", "--rate", "50", "--keep-stack", "--no-bank"],
            env={**env, "SERVE_PORT": str(port), "RAY_DASHBOARD_PORT": str(dash_port),
                 "PROMETHEUS_PORT": str(prom_port), "REST_PULL_WORKERS": "1", "REST_PULL_PORT": str(pull_port),
                 **certs.front_env(tls_port)},
            stdout=out, stderr=subprocess.STDOUT,
        )
    started = datetime.now(UTC)
    base = f"http://127.0.0.1:{port}"
    try:
        order = position = None
        deadline = time.monotonic() + 240  # Ray, its dashboard and Serve start slowly on a busy 2-core box
        while (order is None or position is None) and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                order = order or first_simulated_order(base, auth_headers)
                pos = httpx.get(f"{base}/accounts/9700000000/position", headers=auth_headers, timeout=5)
                if pos.status_code == 200 and datetime.fromisoformat(pos.json()["as_of_ts"]) > started:
                    position = pos.json()
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(1)  # polling interval under the deadline
        assert order is not None and position is not None, log.read_text()[-3000:]
        # no VaR has been computed for the simulated accounts: only the overnight fallback is allowed
        assert order["target_product"] == "FED_RRP" and order["aml_tags"]["purpose"] == "CASH-SWEEP"
        # signed through the stack's Vault Transit, and `treasury-orch verify` says so
        order_file = tmp_path / "order.json"
        order_file.write_text(json.dumps(order))
        verified = cli(env, "verify", str(order_file))
        assert verified.returncode == 0 and json.loads(verified.stdout)["valid"] is True, verified.stderr
        assert f"Ray dashboard http://127.0.0.1:{dash_port}" in log.read_text()
        assert f"Prometheus    http://127.0.0.1:{prom_port}" in log.read_text()
        operators_view(base, f"http://127.0.0.1:{dash_port}", f"http://127.0.0.1:{prom_port}", auth_headers,
                       stack.home)
        # the TLS front the run command started, in front of the real Serve ingress
        assert f"REST API TLS  https://127.0.0.1:{tls_port}/docs" in log.read_text()
        with httpx.Client(verify=client_context(certs), timeout=10) as tls_client:
            health = tls_client.get(f"https://127.0.0.1:{tls_port}/healthz")
            tls_version = health.extensions["network_stream"].get_extra_info("ssl_object").version()
        assert health.status_code == 200 and health.json() == {"status": "ok"} and tls_version == "TLSv1.3"
        pull_front_answers_as_serve(f"http://127.0.0.1:{pull_port}", base, f"https://127.0.0.1:{tls_port}",
                                    client_context(certs), auth_headers, stack.home, log.read_text())
        children = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        ctrl_c(proc, log)
        left = alive(children)
        deadline = time.monotonic() + 60
        while left and time.monotonic() < deadline:
            time.sleep(0.5)  # Ray's processes exit shortly after the driver; poll under a deadline
            left = alive(children)
        assert not left, [" ".join(psutil.Process(p).cmdline()[:3]) for p in left if psutil.pid_exists(p)]
    finally:
        stop(proc)


def ctrl_c(proc: subprocess.Popen[bytes], log: Path) -> None:
    """Ctrl-C stops `run` with 0, and every part of it stops as it should: no traceback in what it
    prints meanwhile (the pull front's uvicorn once died on Ray's SIGTERM handler with one)."""
    before = len(log.read_text())
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text()[before:], log.read_text()[before:][-3000:]


def pull_front_answers_as_serve(pull: str, serve: str, front: str, tls: ssl.SSLContext,
                                headers: dict[str, str], stack_home: Path, run_log: str) -> None:
    """REST_PULL_WORKERS=1: the pull front serves the same pages as Serve, the TLS front sends the
    pull there (its access log names the upstream), and the rest still goes to Serve."""
    assert f"Pull front    {pull}/sweep-intent (1 uvicorn worker(s)" in run_log
    page = {"limit": 1}  # the run has made at least one order by now
    via_serve = httpx.get(f"{serve}/sweep-intent", params=page, headers=headers, timeout=10).json()
    via_pull = httpx.get(f"{pull}/sweep-intent", params=page, headers=headers, timeout=10).json()
    assert via_pull["count"] == 1 and [o["order_id"] for o in via_pull["orders"]] == \
        [o["order_id"] for o in via_serve["orders"]]
    assert httpx.get(f"{pull}/sweep-intent", params=page, timeout=10).status_code == 401  # the same auth
    with httpx.Client(verify=tls, timeout=10, headers=headers) as client:
        assert client.get(f"{front}/sweep-intent", params=page).json()["orders"] == via_pull["orders"]
        assert client.get(f"{front}/healthz").status_code == 200
    access = (stack_home / "tls-front" / "access.log").read_text().splitlines()
    pull_port, serve_port = pull.rsplit(":", 1)[1], serve.rsplit(":", 1)[1]
    assert any('"GET /sweep-intent?limit=1 HTTP/1.1" 200' in line and line.endswith(f":{pull_port}")
               for line in access)
    assert any('"GET /healthz HTTP/1.1" 200' in line and line.endswith(f":{serve_port}") for line in access)


def named(processes: list[psutil.Process], prefix: str) -> list[int]:
    """The pids of those whose name starts with ``prefix`` (one that has exited meanwhile is not)."""
    found = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            if process.name().startswith(prefix):
                found.append(process.pid)
    return found


def listeners(pid: int, ports: range = range(1, 65536)) -> set[tuple[str, int]]:
    """The TCP addresses a process listens on, in ``ports``."""
    return {(c.laddr.ip, c.laddr.port) for c in psutil.Process(pid).net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr.port in ports}


def serve_series_reach_prometheus(prometheus: str, stack_home: Path) -> None:
    """In HAProxy mode Ray counts and times the requests at haproxy: the dashboard's Serve panels
    (requests, latency, replicas) still have the app's series, and Prometheus still scrapes the
    app's own /metrics through Serve's port."""
    scraped = scrapes_this_run(prometheus, stack_home)
    for name in RAY_SERVE_METRICS:
        poll_json(f"{prometheus}/api/v1/query", lambda b: b["data"]["result"],
                  params={"query": f'{name}{{application="treasury",{scraped}}}'})


def haproxy_comes_back(run_pid: int, serve: str, front: str, tls: ssl.SSLContext, headers: dict[str, str]) -> None:
    """haproxy killed: the TLS front still serves the pull (from the pull front), and Serve's
    controller starts haproxy again on Serve's port, which then answers the pull as before."""
    killed = named(psutil.Process(run_pid).children(recursive=True), "haproxy")
    assert killed
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    started = time.monotonic()
    with httpx.Client(verify=tls, timeout=10, headers=headers) as client:
        assert client.get(f"{front}/sweep-intent", params={"limit": 1}).status_code == 200
    # three failed health checks 2 s apart, then a new HAProxy manager starts haproxy
    poll_json(f"{serve}/sweep-intent", lambda page: page["count"] == 1, params={"limit": 1}, headers=headers)
    print(f"\nhaproxy killed: Serve's port answered again after {time.monotonic() - started:.1f} s")
    assert not set(killed) & set(named(psutil.Process(run_pid).children(recursive=True), "haproxy"))


def test_run_names_a_port_haproxy_needs_that_is_taken(env: dict[str, str]) -> None:
    """haproxy exits on a taken port and Serve's start then fails inside Ray: `run` checks first,
    before it starts anything."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        done = cli({**env, "SERVE_FRONT": "haproxy", "RAY_SERVE_HAPROXY_STATS_PORT": str(taken)}, "run", "--keep-stack")
    assert done.returncode == 2, done.stderr[-2000:]
    assert (f"configuration error: RAY_SERVE_HAPROXY_STATS_PORT: port {taken} on 127.0.0.1, which haproxy needs "
            "(SERVE_FRONT=haproxy), is taken by another process") in done.stderr


def test_run_with_serve_in_haproxy_mode(env: dict[str, str], tmp_path: Path, auth_headers: dict[str, str],
                                        stack) -> None:
    """SERVE_FRONT=haproxy: Ray's HAProxy mode on Serve's port, a backend for each of two replicas,
    every port it and they open on loopback, the same pull and console behind it, the pull front
    and the TLS front beside it as without haproxy, and Ctrl-C leaves no haproxy and none of its
    files."""
    port, dash_port, prom_port, stats_port, metrics_port, tls_port, pull_port = (free_port() for _ in range(7))
    certs = make_certs(tmp_path / "certs")
    haproxy_home = haproxy_folder()
    before = set(haproxy_home.iterdir()) if haproxy_home.is_dir() else set()
    log = tmp_path / "run.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*CLI, "run", "--accounts", "3", "--rate", "50", "--keep-stack", "--no-bank"],
            env={**env, "SERVE_FRONT": "haproxy", "SERVE_PORT": str(port), "RAY_DASHBOARD_PORT": str(dash_port),
                 "PROMETHEUS_PORT": str(prom_port), "RAY_SERVE_HAPROXY_STATS_PORT": str(stats_port),
                 "RAY_SERVE_HAPROXY_METRICS_PORT": str(metrics_port), "SERVE_MIN_REPLICAS": "2",
                 "REST_PULL_WORKERS": "1", "REST_PULL_PORT": str(pull_port), **certs.front_env(tls_port)},
            stdout=out, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        order = None
        deadline = time.monotonic() + 240  # Ray, its dashboard and Serve start slowly on a busy 2-core box
        while order is None and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            with contextlib.suppress(httpx.HTTPError, ValueError):
                order = first_simulated_order(base, auth_headers)
            time.sleep(1)  # polling interval under the deadline
        assert order is not None, log.read_text()[-3000:]
        assert httpx.get(f"{base}/sweep-intent", params={"limit": 1}, timeout=10).status_code == 401  # same auth
        assert httpx.get(f"{base}/console", timeout=10).status_code == 200
        deadline = time.monotonic() + 120  # Serve answers before the pull and TLS fronts are up and announced
        while "Ray dashboard" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.5)  # polling interval under the deadline
        stats = f"http://127.0.0.1:{stats_port}/stats"
        assert "Serve front   haproxy in Ray's HAProxy mode (SERVE_FRONT=haproxy)" in log.read_text()
        assert f"its stats on {stats}" in log.read_text()
        assert "SERVE_REPLICA" in httpx.get(f"{stats};csv", timeout=10).text  # haproxy's own view of its backends
        assert "haproxy_process_" in httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        children = psutil.Process(proc.pid).children(recursive=True)
        haproxies = named(children, "haproxy")
        assert haproxies, named(children, "")
        opened = {address for pid in haproxies for address in listeners(pid)}
        assert {("127.0.0.1", port), ("127.0.0.1", stats_port), ("127.0.0.1", metrics_port)} <= opened
        node_files = set(haproxy_home.iterdir()) - before
        assert len(node_files) == 1
        # direct ingress: each ingress replica serves HTTP on a port of its own (Ray's range: 30000 up),
        # and haproxy has a backend for each
        own_ports: set[tuple[str, int]] = set()
        backends: set[tuple[str, int]] = set()
        config = next(iter(node_files)) / "haproxy.cfg"
        deadline = time.monotonic() + 60  # the controller tells haproxy of a replica once it is up
        while (len(own_ports) != 2 or backends != own_ports) and time.monotonic() < deadline:
            time.sleep(0.5)  # polling interval under the deadline
            replicas = named(psutil.Process(proc.pid).children(recursive=True), "ray::ServeRepli")
            own_ports = {address for pid in replicas for address in listeners(pid, range(30000, 31001))}
            backends = haproxy_backends(config)
        assert len(own_ports) == 2 and backends == own_ports, (own_ports, config.read_text())
        assert {ip for ip, _ in opened | own_ports} == {"127.0.0.1"}, opened | own_ports
        pull_front_answers_as_serve(f"http://127.0.0.1:{pull_port}", base, f"https://127.0.0.1:{tls_port}",
                                    client_context(certs), auth_headers, stack.home, log.read_text())
        serve_series_reach_prometheus(f"http://127.0.0.1:{prom_port}", stack.home)
        haproxy_comes_back(proc.pid, base, f"https://127.0.0.1:{tls_port}", client_context(certs), auth_headers)
        children = psutil.Process(proc.pid).children(recursive=True)  # with the haproxy started again
        ctrl_c(proc, log)
        deadline = time.monotonic() + 60
        while alive([p.pid for p in children]) and time.monotonic() < deadline:
            time.sleep(0.5)  # Ray's processes exit shortly after the driver; poll under a deadline
        assert not alive([p.pid for p in children])
        assert not node_files & set(haproxy_home.iterdir())
    finally:
        stop(proc)
