"""The ingress scales out on its replicas' P95 latency and back in after a quiet period, on real Ray Serve,
behind each of Serve's fronts (``SERVE_FRONT``): its proxy, and Ray's HAProxy mode, where haproxy
must follow the controller's replicas out and in without a refused or failed request.

Load is real: concurrent Bank-Connector pulls (``GET /sweep-intent``, Postgres behind it) on
127.0.0.1. One replica holds up to 100 requests at once but has 8 pooled connections, so under
that concurrency its requests wait for a connection and its P95 climbs past the target (hundreds
of milliseconds to seconds). Nothing in the app is slowed down for the test. The target sits far
from both loads: a single polling client must stay under half of it (the quiet line) even with
every process traced by coverage on a slow machine, where one pull takes tens of milliseconds.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
import time
from collections import Counter
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import ray
from ray import serve

from bench.rest import Endpoint, RawClient, request_bytes
from serve_app.rest import serve_front
from serve_app.rest.deployment import APP_NAME, DEPLOYMENT_NAME, deploy
from tests.integration.conftest import free_port, haproxy_backends
from treasury.actor_names import NAMESPACE
from treasury.settings import RuntimeSettings

pytestmark = pytest.mark.integration

P95_TARGET_MS = 100.0
MAX_REPLICAS = 3
CONCURRENCY = 64
MAX_REQUESTS = 200_000
LIGHT_PACE_S = 0.02  # the quiet phase's one client: up to 50 pulls/s


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
    node_id: str
    haproxy_stats_port: int | None  # in HAProxy mode

    def decisions(self) -> list[str]:
        """The policy's decisions, from the Serve controller's log (where an operator reads them)."""
        lines: list[str] = []
        for path in sorted((self.session_dir / "logs" / "serve").glob("controller_*.log")):
            lines += [line for line in path.read_text(errors="replace").splitlines() if "autoscaling Ingress:" in line]
        return lines

    def replicas_answering(self) -> int:
        """How many ingress replicas have answered pulls, by the front's own count: more than one
        means the front sends requests to the replicas autoscaling added, not only to the first.
        haproxy counts sessions per backend (its stats page); behind Serve's proxy each replica
        logs every request it answers (HAProxy mode buffers those logs)."""
        if self.haproxy_stats_port is not None:
            stats = httpx.get(f"http://127.0.0.1:{self.haproxy_stats_port}/stats;csv", timeout=5).text
            rows = csv.DictReader(io.StringIO(stats.removeprefix("# ")))
            return sum(1 for row in rows if row["svname"].startswith("SERVE_REPLICA") and int(row["stot"] or 0) > 0)
        logs = (self.session_dir / "logs" / "serve").glob(f"replica_{APP_NAME}_{DEPLOYMENT_NAME}_*.log")
        return sum("GET /sweep-intent 200" in path.read_text(errors="replace") for path in logs)

    def haproxy_backends(self) -> int:
        """The replicas haproxy forwards to."""
        return len(haproxy_backends(serve_front.haproxy_folder() / self.node_id / "haproxy.cfg"))


@pytest.fixture(scope="module", params=["proxy", "haproxy"])
def ingress(request: pytest.FixtureRequest, stack, auth_headers: dict[str, str]) -> Iterator[Ingress]:  # type: ignore[no-untyped-def]
    settings = stack.settings(
        serve_port=free_port(), serve_front=request.param,
        serve_p95_target_ms=P95_TARGET_MS, serve_min_replicas=1, serve_max_replicas=MAX_REPLICAS,
        serve_scale_in_quiet_s=3, serve_latency_window_s=2,
    )
    switches = serve_front.ray_switches(settings)
    stats_port = free_port() if switches else None
    if switches:  # haproxy's own ports, free ones: Ray's HAProxy manager reads them from its environment
        switches |= {"RAY_SERVE_HAPROXY_STATS_PORT": str(stats_port),
                     "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port())}
    env = settings.as_env() | switches
    for key in ("COVERAGE_PROCESS_START", "COVERAGE_FILE"):
        if key in os.environ:
            env[key] = os.environ[key]
    with pytest.MonkeyPatch.context() as patch:
        for key, value in switches.items():  # as `run` sets them: Ray's own processes inherit them
            patch.setenv(key, value)
        ctx = ray.init(namespace=NAMESPACE, num_cpus=1, include_dashboard=False,
                       runtime_env=serve_front.runtime_env(settings, env), log_to_driver=False)
    node_id = ray.get_runtime_context().get_node_id()
    try:
        deploy(settings)
        yield Ingress(settings, Path(ctx.address_info["session_dir"]), auth_headers, node_id, stats_port)
    finally:
        serve.shutdown()
        ray.shutdown()
        serve_front.remove_haproxy_files(settings, node_id)


def replicas() -> tuple[int, int]:
    """(running, all states) replicas of the ingress, as the Serve controller reports them."""
    states = serve.status().applications[APP_NAME].deployments[DEPLOYMENT_NAME].replica_states
    return int(states.get("RUNNING", 0)), int(sum(states.values()))


async def drive(base_url: str, stop: asyncio.Event, load: Load, deadline: float, headers: dict[str, str],
                clients: int = CONCURRENCY, limit: int = 200, pace_s: float = 0.0) -> None:
    """``clients`` pulling ``limit`` orders until told to stop (or a cap is reached): back to back, or
    each ``pace_s`` after its last answer, as a Bank-Connector polls.

    Each client is bench/rest's raw keep-alive connection, not httpx: the load must cost this
    process little, or under coverage it takes the cores from the replicas it means to load (Ray's
    workers run niced) and their P95 never shows the load. A pull with no answer (refused, reset,
    60 s without one) counts as status 0."""
    token = headers["Authorization"].removeprefix("Bearer ")
    pull = request_bytes(base_url, token, Endpoint("pull", "GET", lambda _: f"/sweep-intent?limit={limit}"), 0)
    host, port = base_url.removeprefix("http://").split(":")

    async def one_client() -> None:
        client = RawClient(host, int(port))
        try:
            while not stop.is_set() and time.monotonic() < deadline and len(load.latencies_ms) < MAX_REQUESTS:
                start = time.perf_counter()
                try:
                    status = await asyncio.wait_for(client.send(pull), 60)
                except (OSError, asyncio.IncompleteReadError, TimeoutError):
                    status = 0
                    await client.close()
                load.latencies_ms.append((time.perf_counter() - start) * 1000)
                load.statuses[status] += 1
                if pace_s:
                    await asyncio.sleep(pace_s)  # the client's polling pace: load shape, not synchronisation
        finally:
            await client.close()

    await asyncio.gather(*[one_client() for _ in range(clients)])


async def poll_replicas(until, timeout: float, seen: list[int]) -> float:  # type: ignore[no-untyped-def]
    """Seconds until ``until(running, total)`` holds; every running count observed goes to ``seen``.

    ``total`` counts replicas in every state (starting, stopping), so it can briefly exceed the
    maximum while one replica replaces another; the bound is on running replicas. Both the count
    and ``until`` (which may ask haproxy) run off the event loop the load runs on."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        running, total = await asyncio.to_thread(replicas)
        seen.append(running)
        if await asyncio.to_thread(until, running, total):
            return time.monotonic() - start
        await asyncio.sleep(0.25)  # polling interval under a deadline
    raise AssertionError(f"replica count did not reach the condition within {timeout:.0f} s (seen {seen[-20:]})")


async def under_load(base_url: str, headers: dict[str, str], load: Load, clients: int, limit: int,
                     until: Awaitable[float], pace_s: float = 0.0) -> float:
    """``until``'s result, awaited while ``clients`` pull ``limit`` orders (paced as ``drive`` says);
    the load stops when it returns."""
    stop = asyncio.Event()
    load_task = asyncio.create_task(
        drive(base_url, stop, load, time.monotonic() + 150, headers, clients, limit, pace_s))
    try:
        return await until
    finally:
        stop.set()
        await load_task


async def test_scales_out_on_p95_and_back_in_when_quiet(ingress: Ingress) -> None:
    assert replicas() == (1, 1)
    base_url = f"http://127.0.0.1:{ingress.settings.serve_port}"
    async with httpx.AsyncClient(base_url=base_url, timeout=30, headers=ingress.headers) as client:
        assert (await client.get("/sweep-intent", params={"limit": 1})).status_code == 200

    seen: list[int] = []
    heavy, light = Load(), Load()
    haproxy = ingress.settings.serve_front == "haproxy"

    async def scaled_out() -> float:
        out_s = await poll_replicas(lambda running, _: running > 1, 75, seen)
        # the load goes on until the front has sent pulls to a replica autoscaling added
        await poll_replicas(lambda *_: ingress.replicas_answering() > 1, 30, seen)
        return out_s

    def one_left(running: int, total: int) -> bool:
        return running == total == 1 and (not haproxy or ingress.haproxy_backends() == 1)

    out_s = await under_load(base_url, ingress.headers, heavy, CONCURRENCY, 200, scaled_out())
    # one client polls one order every LIGHT_PACE_S meanwhile: every pull must be answered while
    # replicas stop (in HAProxy mode, while haproxy drops their backends). Back-to-back pulls would
    # keep two cores busy (client, front and replica all measured by coverage in CI), so the
    # replicas' P95 could hover over the quiet line (half the target) and never scale in.
    try:
        in_s = await under_load(base_url, ingress.headers, light, 1, 1, poll_replicas(one_left, 60, seen),
                                LIGHT_PACE_S)
    except AssertionError as stuck:  # what the policy saw: the quiet client's latency and its decisions
        raise AssertionError(f"{stuck}; quiet client p95 {light.p95():.1f} ms over {len(light.latencies_ms)} pulls; "
                             f"decisions: {ingress.decisions()}") from stuck
    peak = max(seen)

    decisions = ingress.decisions()
    print(f"\nautoscaling behind {ingress.settings.serve_front}: target p95 {P95_TARGET_MS:.0f} ms; client p95 "
          f"under load {heavy.p95():.0f} ms over {len(heavy.latencies_ms)} requests; scaled out after {out_s:.1f} s "
          f"(peak {peak} replicas, counts seen {sorted(set(seen))}); back to 1 replica {in_s:.1f} s after the load "
          f"eased, {len(light.latencies_ms)} pulls meanwhile (client p95 {light.p95():.1f} ms)")
    print("\n".join(decisions))
    assert 1 < peak <= MAX_REPLICAS
    assert set(heavy.statuses) == {200}, heavy.statuses
    assert light.latencies_ms and set(light.statuses) == {200}, light.statuses
    outs = [m for line in decisions if (m := re.search(r"(\d+) -> (\d+) replicas: p95 ([\d.]+) ms above", line))]
    assert outs and all(int(m[2]) > int(m[1]) and float(m[3]) > P95_TARGET_MS for m in outs), decisions
    assert any(re.search(r"-> 1 replicas: quiet for", line) for line in decisions), decisions
