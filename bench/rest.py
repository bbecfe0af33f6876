"""bench/rest: the REST app under Ray Serve and under plain uvicorn, side by side, on one stack.

    .venv/bin/python -m bench.rest [--orders 1000] [--accounts 200] [--requests 400] [--seconds 8]
                                   [--clients 1 32] [--profile]

One run starts the shards and the coordinator (as ``treasury-orch run``), deploys the ingress on
Ray Serve (``serve_app.rest.deployment.deploy``) and, in a child process, serves the very app a
replica builds (``build_ingress_app``: same routes, same backend, same Ray shards) with plain
uvicorn. Both answer on 127.0.0.1. It seeds ``--orders`` pullable orders and ``--accounts``
accounts with a live position, then for each endpoint and client count drives Serve and plain
uvicorn one after the other with a Bank-Connector token (at most ``--requests`` requests or
``--seconds`` seconds a line) and prints requests/s, p50/p95/p99 and errors per line, and
``serve / plain ratio``. ``--profile``: cProfile of each endpoint served in this process (no
HTTP server), the functions with the most cumulative time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import socket
import subprocess  # nosec B404
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import numpy as np

BENCH_HOME = Path(__file__).resolve().parents[1] / ".stack" / "bench"
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


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


async def drive(client: httpx.AsyncClient, endpoint: Endpoint, clients: int, requests: int,
                seconds: float) -> tuple[float, list[float], int]:
    """``clients`` loops sharing ``requests`` requests (or ``seconds``): requests/s, latencies, errors."""
    latencies: list[float] = []
    errors = 0
    counter = iter(range(requests))
    deadline = time.perf_counter() + seconds

    async def one_client() -> None:
        nonlocal errors
        for i in counter:
            if time.perf_counter() > deadline:
                return
            t0 = time.perf_counter()
            try:
                if endpoint.body is None:
                    r = await client.request(endpoint.method, endpoint.path(i))
                else:
                    r = await client.request(endpoint.method, endpoint.path(i), json=endpoint.body(i))
                ok = r.status_code < 300
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - t0)
            errors += not ok

    started = time.perf_counter()
    await asyncio.gather(*[one_client() for _ in range(clients)])
    return len(latencies) / (time.perf_counter() - started), latencies, errors


def line(server: str, endpoint: Endpoint, clients: int, rate: float, lat: list[float], errors: int) -> str:
    p50, p95, p99 = np.percentile(np.asarray(lat) * 1000, [50, 95, 99]) if lat else (np.nan,) * 3
    return (f"  {server:<6} {endpoint.name:<31} {clients:>3} clients  {rate:8.1f} req/s   p50 {p50:7.1f} ms   "
            f"p95 {p95:7.1f} ms   p99 {p99:7.1f} ms   errors {errors}/{len(lat)}")


async def compare(urls: dict[str, str], token: str, accounts: int, clients_list: list[int], requests: int,
                  seconds: float) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    rates: dict[str, list[float]] = {name: [] for name in urls}
    async with (httpx.AsyncClient(base_url=urls["serve"], headers=headers, timeout=30, limits=limits) as serve_client,
                httpx.AsyncClient(base_url=urls["plain"], headers=headers, timeout=30, limits=limits) as plain_client):
        clients = {"serve": serve_client, "plain": plain_client}
        for endpoint in endpoints(accounts):
            for n in clients_list:
                for name, client in clients.items():
                    await drive(client, endpoint, min(n, 4), min(20, requests), seconds)  # warm connections
                    rate, lat, errors = await drive(client, endpoint, n, requests, seconds)
                    rates[name].append(rate)
                    print(line(name, endpoint, n, rate, lat, errors), flush=True)
                print(f"    serve / plain ratio: {rates['serve'][-1] / max(rates['plain'][-1], 1e-9):.2f}   ({load()})")
    ratio = float(np.exp(np.mean(np.log(np.asarray(rates["serve"]) / np.asarray(rates["plain"])))))
    print(f"\nserve / plain ratio: {ratio:.2f} (geometric mean over the {len(rates['serve'])} lines)")


async def profile(settings: Any, token: str, accounts: int, calls: int) -> None:
    """Each endpoint's own cost in this process: the replica's app over ASGI, no HTTP server."""
    from serve_app.rest.deployment import build_ingress_app

    app = build_ingress_app()
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench", headers=headers,
                                 timeout=30) as client:
        for endpoint in endpoints(accounts):
            await drive(client, endpoint, 1, 20, 30)  # pools, caches, Vault keys
            profiler = cProfile.Profile()
            t0 = time.perf_counter()
            profiler.enable()
            await drive(client, endpoint, 1, calls, 60)
            profiler.disable()
            per = (time.perf_counter() - t0) / calls * 1000
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats("tottime").print_stats(PROFILED, 14)
            print(f"\nprofile {endpoint.name}: {per:.2f} ms a request in-process (ASGI, profiler on), "
                  f"{calls} calls")
            print("\n".join(line for line in out.getvalue().splitlines()[6:] if line.strip()))


def serve_plain(port: int) -> None:
    """The child process: the replica's app (``build_ingress_app``) under uvicorn, one worker."""
    import ray
    import uvicorn

    from serve_app.rest.deployment import build_ingress_app
    from treasury.actor_names import NAMESPACE

    ray.init(address=os.environ["RAY_ADDRESS"], namespace=NAMESPACE, log_to_driver=False)
    uvicorn.run(build_ingress_app(), host="127.0.0.1", port=port, log_level="warning", access_log=False)


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
    parser.add_argument("--requests", type=int, default=400, help="requests a line at most (0: no comparison)")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds a line at most")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--serve-plain", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_plain is not None:
        serve_plain(args.serve_plain)
        return

    import ray
    from ray import serve

    from actors import kafka_clients
    from actors.kafka_clients import CONSUMER_GROUP
    from actors.system import start_actors, stop_actors
    from devstack import stack
    from serve_app.rest.deployment import deploy
    from treasury.actor_names import NAMESPACE
    from treasury.auth import Scope, mint_token
    from treasury.keyring import keyring_from_settings
    from treasury.settings import PolicyConfig
    from treasury.topics import BALANCE_EVENTS

    info = stack.up(BENCH_HOME)
    settings = info.settings(shards=2, serve_port=free_port())
    env = {**settings.as_env(), "LOG_LEVEL": "WARNING"}
    for key, value in env.items():
        os.environ[key] = value  # the in-process app of --profile reads them as a replica does
    t0 = time.perf_counter()
    asyncio.run(seed(settings, args.orders, args.accounts))
    print(f"seed: {args.orders} orders, {args.accounts} accounts in {time.perf_counter() - t0:.1f} s")
    token = mint_token(keyring_from_settings(settings), settings.token_signing_key, "bench-rest",
                       [s.value for s in Scope], ttl_s=3600)
    kafka_clients.skip_to_end(settings.kafka_bootstrap, CONSUMER_GROUP, BALANCE_EVENTS.name)
    ray.init(namespace=NAMESPACE, num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": env})
    plain: subprocess.Popen[bytes] | None = None
    try:
        start_actors(settings, PolicyConfig())
        deploy(settings)
        plain_port = free_port()
        child_env = {**os.environ, **env, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
        argv = [sys.executable, "-m", "bench.rest", "--serve-plain", str(plain_port)]
        plain = subprocess.Popen(argv, env=child_env)  # noqa: S603  # nosec B603
        urls = {"serve": f"http://127.0.0.1:{settings.serve_port}", "plain": f"http://127.0.0.1:{plain_port}"}
        for url in urls.values():
            wait_http(url, 120)
        asyncio.run(warm_positions(urls["serve"], token, args.accounts))
        print(f"servers: Ray Serve {urls['serve']} (1 replica, its proxy in front), plain uvicorn {urls['plain']} "
              f"(1 process); {load()}")
        if args.requests:
            asyncio.run(compare(urls, token, args.accounts, args.clients, args.requests, args.seconds))
        if args.profile:
            asyncio.run(profile(settings, token, args.accounts, 200))
        print(json.dumps({"finished": datetime.now(UTC).isoformat(timespec="seconds"), "load": load()}))
    finally:
        if plain is not None:
            plain.terminate()
            plain.wait(30)
        serve.shutdown()
        stop_actors(settings)
        ray.shutdown()


if __name__ == "__main__":
    main()
