"""bench/rest: the REST app under Ray Serve and under plain uvicorn, side by side, on one stack.

    .venv/bin/python -m bench.rest [--orders 1000] [--accounts 200] [--requests 2000] [--seconds 8]
                                   [--clients 1 32] [--client raw|httpx] [--plain-workers N] [--profile]
                                   [--serve-front proxy|haproxy] [--serve-env KEY=VALUE]
                                   [--stack-home DIR] [--down]

One command from nothing: it starts the stack in ``--stack-home`` (default ``.stack/bench-rest``,
its own, never bench/pipeline's ``.stack/bench``) when it is not running, starts the shards and the
coordinator (as ``treasury-orch run``), deploys the ingress on Ray Serve
(``serve_app.rest.deployment.deploy``) and, in a child process, serves the very app a replica
builds with plain uvicorn (``serve_app.rest.plain``: same routes, same backend, same Ray shards).
Both answer on 127.0.0.1. It seeds ``--orders`` pullable orders and ``--accounts`` accounts with a
live position, then for each endpoint and client count drives Serve and plain uvicorn one after the
other with a Bank-Connector token (at most ``--requests`` requests or ``--seconds`` seconds a line)
and prints requests/s, p50/p95/p99, errors and the CPU each process spent per request (this
process, the load generator; Serve's proxy and replica or the uvicorn process; the shards), then
``serve / plain ratio`` and whether each target is met. Last, each endpoint's CPU per request
in-process (ASGI, no HTTP server); ``--profile`` adds cProfile's top functions. ``--down`` stops
the stack at the end.

``--serve-front haproxy`` runs Serve as ``SERVE_FRONT=haproxy`` makes ``treasury-orch run`` do
(``serve_app.rest.serve_front``: Ray's HAProxy mode, haproxy on Serve's port in front of the
replica's own port), and the benchmark drives Serve's port. ``--serve-env KEY=VALUE`` runs this
Ray's Serve with another switch: with ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1`` alone (direct ingress)
the benchmark drives the ingress replica's own port.

The load generator is a raw asyncio HTTP/1.1 keep-alive client (``RawClient``), one connection per
client: on a 2-core machine the generator's own CPU is taken from the servers it measures, and
``--client httpx`` shows what a heavier one costs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import os
import pstats
import subprocess  # nosec B404
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench import spread
from devstack.common import descendants, pick_free_port
from treasury.heap import freeze_startup_heap

# A stack of its own: bench/pipeline runs on .stack/bench, and the two must not share a ledger or load.
BENCH_HOME = Path(__file__).resolve().parents[1] / ".stack" / "bench-rest"
PREFIX = "RB"
# What --profile lists (by time in the function itself): the app, its libraries, the event loop.
PROFILED = (r"serve_app|storage|treasury|schemas|asyncpg|fastapi|starlette|asyncio|json|pydantic|ray|hvac"
            r"|cryptography|httpx|threading|ssl|socket")


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: Callable[[int], str]
    body: Callable[[int], dict[str, Any]] | None = None


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average: {one:.2f}, {five:.2f}, {fifteen:.2f}"


def account_id(i: int) -> str:
    return f"{PREFIX}{i:08d}"


def endpoints(accounts: int) -> list[Endpoint]:
    run = uuid.uuid4().hex[:8]

    def balance(i: int) -> dict[str, Any]:
        return {"event_id": f"rb-{run}-{i}", "account_id": account_id(i % accounts),
                "as_of_ts": datetime.now(UTC).isoformat(), "kind": "INTRADAY",
                "available_usd": "1000000", "projected_outflows_24h_usd": "900000"}

    return [
        Endpoint("GET /sweep-intent?limit=100", "GET", lambda i: "/sweep-intent?limit=100"),
        Endpoint("GET /sweep-intent?limit=1", "GET", lambda i: "/sweep-intent?limit=1"),
        Endpoint("GET /accounts/{id}/position", "GET", lambda i: f"/accounts/{account_id(i % accounts)}/position"),
        Endpoint("POST /balances", "POST", lambda i: "/balances", balance),
    ]


async def seed(settings: Any, orders: int, accounts: int) -> None:
    """Accounts with a VaR, and ``orders`` NEW orders shaped as the coordinator writes them."""
    from schemas.sweep_order import RiskChecks, SweepOrder
    from storage import accounts as account_store
    from storage import var_results
    from storage.accounts import Account
    from storage.db import create_pool
    from storage.orders import NewOrder, insert_new
    from storage.var_results import VarResult
    from treasury.ids import new_order_id

    pool = await create_pool(settings.database_url, max_size=2)
    try:
        ids = [account_id(i) for i in range(accounts)]
        await account_store.upsert(pool, [Account(a, min_balance_usd=Decimal(1_000_000)) for a in ids])
        today = datetime.now(UTC).date()
        await var_results.upsert_many(pool, [VarResult(a, today, 250, Decimal("0.99"), 250, Decimal(8000), None, None)
                                             for a in ids])
        now = datetime.now(UTC)
        batch = []
        for n in range(orders):
            order_id = new_order_id()
            account = ids[n % accounts]
            key = f"{account}:rb-{uuid.uuid4().hex}"
            payload = SweepOrder(
                order_id=order_id, source_account=account, target_product="TBILL_4W",
                amount_usd=Decimal("1234567.8900"), cutoff_utc=now + timedelta(hours=4),
                risk_checks=RiskChecks(var_limit_bps=Decimal(50), observed_var_bps=Decimal("12.5"),
                                       var_history_days=250),
                created_ts=now, decision_key=key, trace_id=uuid.uuid4().hex, aml_tags={"segment": "corporate"},
                signature="treasury-orders:v1:" + "A" * 86 + "==", signing_key_version=1,
            ).model_dump(mode="json")
            batch.append(NewOrder(order_id, key, account, Decimal("1234567.8900"), "TBILL_4W", now + timedelta(hours=4),
                                  now, payload, {"action": "SWEEP", "bench": True}, payload["trace_id"]))
        async with pool.acquire() as conn:
            for start in range(0, len(batch), 500):
                await insert_new(conn, batch[start:start + 500])
    finally:
        await pool.close()


class RawClient:
    """One keep-alive HTTP/1.1 connection spoken directly over asyncio streams.

    The load generator shares two cores with the servers it measures; httpx costs about a
    millisecond of CPU a request in this process (its connection pool, h11, its models), which
    at 32 clients is CPU taken from the servers. This writes prebuilt request bytes and reads the
    status line, the headers and ``Content-Length`` bytes (or the chunks) of the answer, nothing
    more. A server that closes the connection gets a new one on the next request; a failed
    exchange drops its connection too, so one error does not poison the slot.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def send(self, request: bytes) -> int:
        """The answer's status; the body is read and dropped.

        A kept-alive connection the server closed while it sat idle (a proxy reloading, an idle
        timeout) fails before any byte of an answer; the request is then sent once more on a new
        connection, as HTTP clients do for the idempotent requests they send. Any other failure,
        and a failure on a new connection, is raised."""
        reused = self._writer is not None
        try:
            return await self._exchange(request)
        except Exception as failure:
            await self.close()
            unanswered = isinstance(failure, OSError) or (
                isinstance(failure, asyncio.IncompleteReadError) and not failure.partial)
            if not (reused and unanswered):
                raise
        try:
            return await self._exchange(request)
        except Exception:
            await self.close()
            raise

    async def _exchange(self, request: bytes) -> int:
        if self._writer is None or self._reader is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        reader = self._reader
        self._writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status, length, chunked, close = int(head[9:12]), 0, False, False
        for header in head.split(b"\r\n")[1:]:
            name, _, value = header.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value
            elif name == b"connection":
                close = value == b"close"
        if chunked:
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                await reader.readexactly(size + 2)
            await reader.readuntil(b"\r\n")  # the empty line after the last chunk (no trailers sent)
        elif length:
            await reader.readexactly(length)
        if close:
            await self.close()
        return status

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        self._reader = self._writer = None


def request_bytes(url: str, token: str, endpoint: Endpoint, i: int) -> bytes:
    host = url.removeprefix("http://")
    body = b"" if endpoint.body is None else json.dumps(endpoint.body(i)).encode()
    head = (f"{endpoint.method} {endpoint.path(i)} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


@dataclass
class Outcome:
    rate: float
    latencies: list[float]
    errors: int
    client_cpu_s: float  # CPU this process (the load generator) spent on the line


async def drive(send: Callable[[int, int], Awaitable[int]], clients: int, requests: int, seconds: float) -> Outcome:
    """``clients`` loops sharing ``requests`` requests (or ``seconds``), each waiting for its answer
    before the next (a closed loop, as Bank-Connector workers pull). ``send(slot, i)``: client
    ``slot`` (its own connection) sends request ``i``; the answer's status."""
    latencies: list[float] = []
    errors = 0
    counter = iter(range(requests))
    deadline = time.perf_counter() + seconds

    async def one_client(slot: int) -> None:
        nonlocal errors
        for i in counter:
            if time.perf_counter() > deadline:
                return
            t0 = time.perf_counter()
            try:
                ok = await send(slot, i) < 300
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, httpx.HTTPError):
                ok = False
            latencies.append(time.perf_counter() - t0)
            errors += not ok

    cpu0, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*[one_client(n) for n in range(clients)])
    elapsed = time.perf_counter() - started
    return Outcome(len(latencies) / elapsed, latencies, errors, time.process_time() - cpu0)


def line(server: str, endpoint: Endpoint, clients: int, out: Outcome, cpu: dict[str, float]) -> str:
    lat = out.latencies
    p50, p95, p99 = np.percentile(np.asarray(lat) * 1000, [50, 95, 99]) if lat else (np.nan,) * 3
    per = max(len(lat), 1)
    spent = "  ".join(f"{name} {seconds / per * 1000:.2f}" for name, seconds in cpu.items())
    return (f"  {server:<6} {endpoint.name:<31} {clients:>3} clients {out.rate:8.1f} req/s  p50 {p50:7.1f}  "
            f"p95 {p95:7.1f}  p99 {p99:7.1f} ms  errors {out.errors}/{len(lat)}  "
            f"CPU ms/req: client {out.client_cpu_s / per * 1000:.2f}  {spent}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (``/proc/<pid>/stat``), 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def direct_ingress_url(replica_pids: list[int]) -> str | None:
    """With Serve's direct ingress (``RAY_SERVE_ENABLE_DIRECT_INGRESS=1``, part of
    ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1``) no proxy runs: each ingress replica serves HTTP itself on
    a port from ``RAY_SERVE_DIRECT_INGRESS_MIN/MAX_HTTP_PORT``; the URL of the first one found."""
    import psutil

    low = int(os.environ.get("RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT", "30000"))
    high = int(os.environ.get("RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT", "31000"))
    for pid in replica_pids:
        for conn in psutil.Process(pid).net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and low <= conn.laddr.port <= high:
                return f"http://127.0.0.1:{conn.laddr.port}"
    return None


def postgres_pids(stack_home: Path) -> list[int]:
    """The stack's Postgres: the postmaster and its backends now (the pools' connections are open)."""
    import psutil

    data = str(stack_home.resolve() / "postgres" / "data")  # the postmaster's -D is absolute
    for proc in psutil.process_iter(["cmdline"]):
        if data in (proc.info["cmdline"] or []):
            return [proc.pid, *(child.pid for child in proc.children())]
    return []


def serve_pids() -> dict[str, list[int]]:
    """The processes behind each side's answers: Serve's proxy and replica(s), the shards (both use
    them), and in HAProxy mode the actor that runs haproxy (``haproxy_manager``)."""
    from ray._private.state import actors  # the GCS's actor table: the state API would need the dashboard

    found: dict[str, list[int]] = {"proxy": [], "replica": [], "shards": [], "haproxy_manager": []}
    for actor in actors(actor_state_name="ALIVE").values():
        name = str(actor["ActorClassName"])
        kind = ("proxy" if name == "ProxyActor" else "replica" if name.startswith("ServeReplica")
                else "shards" if name == "AccountShardActor" else "haproxy_manager" if name == "HAProxyManager"
                else None)
        if kind is not None and actor["Pid"]:
            found[kind].append(int(actor["Pid"]))
    return found


async def compare(urls: dict[str, str], token: str, accounts: int, clients_list: list[int], requests: int,
                  seconds: float, processes: dict[str, dict[str, list[int]]], client_kind: str,
                  stack_home: Path) -> None:
    """Each endpoint and client count, Serve then plain uvicorn, with the CPU each side's processes
    spent per request (from /proc): where the time goes when the machine is the limit."""
    headers = {"Authorization": f"Bearer {token}"}
    rates: dict[str, list[float]] = {name: [] for name in urls}
    p99_page: dict[str, tuple[float, int]] = {}
    for endpoint in endpoints(accounts):
        for n in clients_list:
            for name, url in urls.items():
                host, _, port = url.removeprefix("http://").partition(":")
                raws = [RawClient(host, int(port)) for _ in range(n)]
                client = httpx.AsyncClient(base_url=url, headers=headers, timeout=30,
                                           limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))

                async def send(slot: int, i: int, _e: Endpoint = endpoint, _u: str = url,
                               _c: httpx.AsyncClient = client, _r: list[RawClient] = raws) -> int:
                    if client_kind == "httpx":
                        body = None if _e.body is None else _e.body(i)
                        return (await _c.request(_e.method, _e.path(i), json=body)).status_code
                    return await _r[slot].send(request_bytes(_u, token, _e, i))

                try:
                    await drive(send, n, max(2 * n, 20), seconds)  # open and warm the connections
                    pids = {**processes[name], "postgres": postgres_pids(stack_home)}
                    before = {kind: sum(map(cpu_seconds, p)) for kind, p in pids.items()}
                    out = await drive(send, n, requests, seconds)
                    spent = {kind: sum(map(cpu_seconds, p)) - before[kind] for kind, p in pids.items()}
                finally:
                    await client.aclose()
                    for raw in raws:
                        await raw.close()
                rates[name].append(out.rate)
                print(line(name, endpoint, n, out, spent), flush=True)
                if endpoint.name.endswith("limit=100") and n == max(clients_list):
                    p99_page[name] = (float(np.percentile(np.asarray(out.latencies) * 1000, 99)), out.errors)
            print(f"    serve / plain ratio: {rates['serve'][-1] / max(rates['plain'][-1], 1e-9):.2f}   ({load()})",
                  flush=True)
    ratio = float(np.exp(np.mean(np.log(np.asarray(rates["serve"]) / np.asarray(rates["plain"])))))
    print(f"\nserve / plain ratio: {ratio:.2f} (geometric mean over the {len(rates['serve'])} lines; "
          f"target >= 0.5: {'met' if ratio >= 0.5 else 'NOT met'})")
    for name, (p99, errors) in p99_page.items():
        verdict = "met" if p99 <= 50 and errors == 0 else "NOT met"
        print(f"{name}: GET /sweep-intent?limit=100 at {max(clients_list)} clients: p99 {p99:.1f} ms, "
              f"{errors} errors (target p99 <= 50 ms, no errors: {verdict})")


async def profile(token: str, accounts: int, calls: int, with_profiler: bool) -> None:
    """Each endpoint's own cost in this process: the replica's app over ASGI, no HTTP server.

    First the CPU a request takes with nothing watching (``time.process_time`` over ``calls``
    requests, one at a time: the app's share, Postgres's and the shards' are not in it), then with
    ``with_profiler`` the functions that took the most time under cProfile.
    """
    from serve_app.rest.deployment import build_ingress_app

    app = build_ingress_app()
    headers = {"Authorization": f"Bearer {token}"}
    # The app's lifespan, as a server runs it: its backend closes at the end, before the stack stops.
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench", headers=headers, timeout=30) as client:

        async def send(slot: int, i: int, _e: Endpoint) -> int:
            body = None if _e.body is None else _e.body(i)
            return (await client.request(_e.method, _e.path(i), json=body)).status_code

        for endpoint in endpoints(accounts):
            def one(slot: int, i: int, _e: Endpoint = endpoint) -> Awaitable[int]:
                return send(slot, i, _e)

            await drive(one, 1, 20, 30)  # pools, caches, Vault keys
            bare = await drive(one, 1, calls, 60)
            print(f"in-process {endpoint.name:<31} CPU {bare.client_cpu_s / calls * 1000:6.2f} ms a request "
                  f"(ASGI, httpx's share included), {calls} calls, errors {bare.errors}   ({load()})")
            if not with_profiler:
                continue
            profiler = cProfile.Profile()
            profiler.enable()
            await drive(one, 1, calls, 60)
            profiler.disable()
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats("tottime").print_stats(PROFILED, 14)
            print("\n".join(line for line in out.getvalue().splitlines()[6:] if line.strip()))


def wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)  # polling a server that is starting
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


async def warm_positions(url: str, token: str, accounts: int) -> None:
    """One balance per account through the API, so each has a live position in its shard."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        run = uuid.uuid4().hex[:8]
        for i in range(accounts):
            r = await client.post("/balances", json={
                "event_id": f"rb-warm-{run}-{i}", "account_id": account_id(i),
                "as_of_ts": datetime.now(UTC).isoformat(), "kind": "INTRADAY", "available_usd": "1000000",
                "projected_outflows_24h_usd": "900000"})
            r.raise_for_status()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            missing = [i for i in range(0, accounts, max(1, accounts // 10))
                       if (await client.get(f"/accounts/{account_id(i)}/position")).status_code != 200]
            if not missing:
                return
            await asyncio.sleep(0.5)  # the shards apply the events
        raise RuntimeError("positions did not appear in the shards within 60 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--requests", type=int, default=2000, help="requests a line at most (0: no comparison)")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds a line at most")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--profile", action="store_true", help="also cProfile each endpoint in-process")
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw",
                        help="the load generator: raw asyncio HTTP/1.1 (default, cheapest) or httpx")
    parser.add_argument("--serve-front", choices=("proxy", "haproxy"), default="proxy",
                        help="Serve's front, as SERVE_FRONT sets it for `treasury-orch run` (default: its proxy)")
    parser.add_argument("--serve-env", action="append", default=[], metavar="KEY=VALUE",
                        help="a Ray Serve switch for this run's Ray (proxy, controller, replica), e.g. "
                             "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD=0; repeatable")
    parser.add_argument("--plain-workers", type=int, default=1,
                        help="uvicorn worker processes sharing the plain server's port (default 1)")
    parser.add_argument("--down", action="store_true", help="stop the stack at the end (one command, fresh to gone)")
    parser.add_argument("--stack-home", type=Path, default=BENCH_HOME,
                        help=f"where the stack lives (default {BENCH_HOME}); started when it is not running")
    args = parser.parse_args()

    import ray
    from ray import serve

    from actors import kafka_clients
    from actors.kafka_clients import CONSUMER_GROUP
    from actors.system import start_actors, stop_actors
    from devstack import stack
    from serve_app.rest import serve_front
    from serve_app.rest.deployment import deploy
    from treasury.actor_names import NAMESPACE
    from treasury.auth import Scope, mint_token
    from treasury.keyring import keyring_from_settings
    from treasury.settings import PolicyConfig
    from treasury.topics import BALANCE_EVENTS

    info = stack.up(args.stack_home)
    settings = info.settings(shards=2, serve_port=pick_free_port(), serve_front=args.serve_front)
    env = {**settings.as_env(), "LOG_LEVEL": "WARNING"}
    for key, value in env.items():
        os.environ[key] = value  # the in-process app of --profile reads them as a replica does
    t0 = time.perf_counter()
    asyncio.run(seed(settings, args.orders, args.accounts))
    print(f"seed: {args.orders} orders, {args.accounts} accounts in {time.perf_counter() - t0:.1f} s")
    token = mint_token(keyring_from_settings(settings), settings.token_signing_key, "bench-rest",
                       [s.value for s in Scope], ttl_s=3600)
    kafka_clients.skip_to_end(settings.kafka_bootstrap, CONSUMER_GROUP, BALANCE_EVENTS.name)
    extra = dict(item.split("=", 1) for item in args.serve_env)
    if "RAY_SERVE_ENABLE_HA_PROXY" in extra:  # without the product's hook haproxy would bind every interface
        parser.error("HAProxy mode is --serve-front haproxy, as SERVE_FRONT=haproxy runs it")
    switches = serve_front.ray_switches(settings) | extra
    os.environ.update(switches)  # before Ray starts: its proxy and controller inherit the raylet's environment
    env.update(switches)
    print(f"Serve switches: {switches or 'none (Ray defaults)'}")
    haproxy_mode = settings.serve_front == "haproxy"
    ray.init(namespace=NAMESPACE, num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env=serve_front.runtime_env(settings, env))
    plain: subprocess.Popen[bytes] | None = None
    try:
        start_actors(settings, PolicyConfig())
        deploy(settings)
        plain_port = pick_free_port()
        child_env = {**os.environ, **env, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
        argv = [sys.executable, "-m", "serve_app.rest.plain", "--port", str(plain_port),
                "--workers", str(args.plain_workers)]
        plain = subprocess.Popen(argv, env=child_env)  # noqa: S603  # nosec B603
        urls = {"serve": f"http://127.0.0.1:{settings.serve_port}", "plain": f"http://127.0.0.1:{plain_port}"}
        ray_pids = serve_pids()
        front = "its proxy in front"
        if haproxy_mode:
            # Serve's port is HAProxy's now, forwarding to the replica's own port: measure through it.
            front = "Ray's HAProxy mode: haproxy on Serve's port, in front of the replica's own port"
        elif (direct := direct_ingress_url(ray_pids["replica"])) is not None:
            urls["serve"], front = direct, "direct ingress: no proxy, the replica serves HTTP itself"
        for url in urls.values():
            wait_http(url, 120)
        asyncio.run(warm_positions(urls["serve"], token, args.accounts))
        print(f"servers: Ray Serve {urls['serve']} (1 replica, {front}), plain uvicorn {urls['plain']} "
              f"({args.plain_workers} worker process(es)); {load()}")
        # haproxy is read now, after the warm-up: its manager starts a new one when the replica comes up.
        serve_side = ({"haproxy": [p for m in ray_pids["haproxy_manager"] for p in descendants(m)]}
                      if haproxy_mode else {})
        serve_side |= {"proxy": ray_pids["proxy"], "replica": ray_pids["replica"], "shards": ray_pids["shards"]}
        processes = {"serve": serve_side,
                     "plain": {"uvicorn": spread.tree(plain.pid), "shards": ray_pids["shards"]}}
        print(f"load generator: {args.client} client in this process (pid {os.getpid()}); CPU ms/req per line: "
              f"this process, Serve's proxy and replica or the uvicorn process, the shards, Postgres")
        # The generator imports Ray too: its own full collections (about 90 ms) would count as the
        # servers' latency for every request in flight.
        freeze_startup_heap()
        if args.requests:
            asyncio.run(compare(urls, token, args.accounts, args.clients, args.requests, args.seconds, processes,
                                args.client, args.stack_home))
        asyncio.run(profile(token, args.accounts, 200, args.profile))
        print(json.dumps({"finished": datetime.now(UTC).isoformat(timespec="seconds"), "load": load()}))
    finally:
        if plain is not None:
            plain.terminate()
            plain.wait(30)
        node_id = ray.get_runtime_context().get_node_id()
        serve.shutdown()
        stop_actors(settings)
        ray.shutdown()
        serve_front.remove_haproxy_files(settings, node_id)
        if args.down:
            stack.down(args.stack_home)


if __name__ == "__main__":
    main()
