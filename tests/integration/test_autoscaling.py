"""The ingress scales out on its replicas' P95 latency and back in after a quiet period, on real Ray Serve.

Load is real: concurrent Bank-Connector pulls (``GET /sweep-intent``, Postgres behind it) on
127.0.0.1. One replica holds up to 100 requests at once but has 8 pooled connections, so under
that concurrency its requests wait for a connection and its P95 climbs past the (deliberately
low) target. Nothing in the app is slowed down for the test.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import ray
from ray import serve

from serve_app.rest.deployment import APP_NAME, DEPLOYMENT_NAME, deploy
from tests.integration.conftest import free_port
from treasury.actor_names import NAMESPACE
from treasury.settings import RuntimeSettings

pytestmark = pytest.mark.integration

P95_TARGET_MS = 20.0
MAX_REPLICAS = 3
CONCURRENCY = 64
MAX_REQUESTS = 200_000


@dataclass
class Load:
    statuses: Counter[int] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)

    def p95(self) -> float:
        values = sorted(self.latencies_ms)
        return values[int(0.95 * (len(values) - 1))] if values else 0.0


@dataclass
class Ingress:
    settings: RuntimeSettings
    session_dir: Path
    headers: dict[str, str]  # a Bank-Connector token: the pull API needs orders:read

    def decisions(self) -> list[str]:
        """The policy's decisions, from the Serve controller's log (where an operator reads them)."""
        lines: list[str] = []
        for path in sorted((self.session_dir / "logs" / "serve").glob("controller_*.log")):
            lines += [line for line in path.read_text(errors="replace").splitlines() if "autoscaling Ingress:" in line]
        return lines


@pytest.fixture(scope="module")
def ingress(stack, auth_headers: dict[str, str]) -> Iterator[Ingress]:  # type: ignore[no-untyped-def]
    settings = stack.settings(
        serve_port=free_port(),
        serve_p95_target_ms=P95_TARGET_MS, serve_min_replicas=1, serve_max_replicas=MAX_REPLICAS,
        serve_scale_in_quiet_s=3, serve_latency_window_s=2,
    )
    env = settings.as_env()
    for key in ("COVERAGE_PROCESS_START", "COVERAGE_FILE"):
        if key in os.environ:
            env[key] = os.environ[key]
    ctx = ray.init(namespace=NAMESPACE, num_cpus=1, include_dashboard=False, runtime_env={"env_vars": env},
                   log_to_driver=False)
    try:
        deploy(settings)
        yield Ingress(settings, Path(ctx.address_info["session_dir"]), auth_headers)
    finally:
        serve.shutdown()
        ray.shutdown()


def replicas() -> tuple[int, int]:
    """(running, all states) replicas of the ingress, as the Serve controller reports them."""
    states = serve.status().applications[APP_NAME].deployments[DEPLOYMENT_NAME].replica_states
    return int(states.get("RUNNING", 0)), int(sum(states.values()))


async def drive(base_url: str, stop: asyncio.Event, load: Load, deadline: float, headers: dict[str, str]) -> None:
    """CONCURRENCY clients pulling orders back to back until told to stop (or a cap is reached)."""
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits, headers=headers) as client:
        async def one_client() -> None:
            while not stop.is_set() and time.monotonic() < deadline and len(load.latencies_ms) < MAX_REQUESTS:
                start = time.perf_counter()
                r = await client.get("/sweep-intent", params={"limit": 200})
                load.latencies_ms.append((time.perf_counter() - start) * 1000)
                load.statuses[r.status_code] += 1

        await asyncio.gather(*[one_client() for _ in range(CONCURRENCY)])


async def poll_replicas(until, timeout: float, seen: list[int]) -> float:  # type: ignore[no-untyped-def]
    """Seconds until ``until(running, total)`` holds; every running count observed goes to ``seen``.

    ``total`` counts replicas in every state (starting, stopping), so it can briefly exceed the
    maximum while one replica replaces another; the bound is on running replicas."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        running, total = await asyncio.to_thread(replicas)
        seen.append(running)
        if until(running, total):
            return time.monotonic() - start
        await asyncio.sleep(0.25)  # polling interval under a deadline
    raise AssertionError(f"replica count did not reach the condition within {timeout:.0f} s (seen {seen[-20:]})")


async def test_scales_out_on_p95_and_back_in_when_quiet(ingress: Ingress) -> None:
    assert replicas() == (1, 1)
    base_url = f"http://127.0.0.1:{ingress.settings.serve_port}"
    async with httpx.AsyncClient(base_url=base_url, timeout=30, headers=ingress.headers) as client:
        assert (await client.get("/sweep-intent", params={"limit": 1})).status_code == 200

    seen: list[int] = []
    stop = asyncio.Event()
    load = Load()
    load_task = asyncio.create_task(drive(base_url, stop, load, time.monotonic() + 90, ingress.headers))
    try:
        out_s = await poll_replicas(lambda running, _: running > 1, 75, seen)
    finally:
        stop.set()
        await load_task
    in_s = await poll_replicas(lambda running, total: running == total == 1, 60, seen)
    peak = max(seen)  # replicas asked for under load may come up only after it stopped

    decisions = ingress.decisions()
    print(f"\nautoscaling: target p95 {P95_TARGET_MS:.0f} ms; client p95 under load {load.p95():.0f} ms "
          f"over {len(load.latencies_ms)} requests; scaled out after {out_s:.1f} s (peak {peak} replicas, "
          f"counts seen {sorted(set(seen))}); back to 1 replica {in_s:.1f} s after the load stopped")
    print("\n".join(decisions))
    assert 1 < peak <= MAX_REPLICAS
    assert set(load.statuses) == {200}, load.statuses
    outs = [m for line in decisions if (m := re.search(r"(\d+) -> (\d+) replicas: p95 ([\d.]+) ms above", line))]
    assert outs and all(int(m[2]) > int(m[1]) and float(m[3]) > P95_TARGET_MS for m in outs), decisions
    assert any(re.search(r"-> 1 replicas: quiet for", line) for line in decisions), decisions
