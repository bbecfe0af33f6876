"""Live configuration on the real Consul agent (built by the project), the real Kafka and Ray.

A value changed with a plain KV write reaches the next decision; a bad value is refused with the
key and the reason in a JSON log line and a metric, and nothing else changes. Each test uses a KV
prefix of its own, so the tests do not see each other's keys on the one agent.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
import ray
from prometheus_client.parser import text_string_to_metric_families

from actors.config_watcher import ConfigWatcher, follow_if_live, latest_update
from actors.kafka_clients import CONSUMER_GROUP
from actors.system import start_actors, stop_actors
from devstack import stack as infra_stack
from devstack.stack import StackInfo
from schemas.balance_event import BalanceEvent, BalanceKind
from serve_app.rest.api import Backend, build_app
from serve_app.rest.deployment import RayShards
from tests.conftest import stack_home_for_tests
from tests.integration.conftest import new_accounts, register
from tests.integration.kafka_tools import high_watermarks, produce_events, skip_to_end
from tests.integration.test_ray_system import wait_for
from treasury.actor_names import CONFIG_WATCHER, NAMESPACE
from treasury.logs import JsonFormatter
from treasury.settings import PolicyConfig, RuntimeSettings

pytestmark = pytest.mark.integration
VAR_USD = Decimal("1000")  # 2 bps of 5,000,000: well inside the limit, so the buffer decides the amount
APPLY_DEADLINE_S = 2.0  # the spec's promise: every part applies a new version within 2 s


@pytest.fixture(scope="module")
def consul_stack(stack: StackInfo) -> StackInfo:
    """The session's stack with the Consul agent added (built from source once, then cached)."""
    info = infra_stack.up(stack_home_for_tests(), with_consul=True)
    assert info.consul_http_addr is not None
    assert infra_stack.status(info.home)["consul"]["running"] is True
    return info


def kv_put(info: StackInfo, prefix: str, key: str, value: str) -> None:
    assert info.consul_http_addr is not None
    resp = httpx.put(f"{info.consul_http_addr}/v1/kv/{prefix}{key}", content=value.encode(), timeout=10)
    assert resp.status_code == 200 and resp.json() is True


@pytest.fixture
def config_log() -> Iterator[io.StringIO]:
    """The watcher's log lines, formatted exactly as an operator reads them (JSON)."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("treasury.config")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def refusals(log: io.StringIO) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in log.getvalue().splitlines() if line.strip()]
    return [line for line in lines if line.get("level") == "WARNING" and "config_key" in line]


# ------------------------------------------------------------------------ watcher and followers


async def test_watcher_publishes_each_valid_change_and_refuses_bad_values(
    consul_stack: StackInfo, config_log: io.StringIO
) -> None:
    prefix = f"test/{uuid.uuid4().hex[:8]}/"
    assert consul_stack.consul_http_addr is not None
    watcher = ConfigWatcher(consul_stack.consul_http_addr, prefix, consul_stack.kafka_bootstrap, PolicyConfig(),
                            wait_s=5)
    await watcher.start()
    first = await watcher.poll_once()  # the seeded defaults: a new version unless they are in force already
    assert first is not None and first.kind in ("accepted", "unchanged") and first.config == PolicyConfig()
    published = latest_update(consul_stack.kafka_bootstrap)
    assert published is not None and published.version == first.version and published.source == "consul"

    applied: list[PolicyConfig] = []
    settings = RuntimeSettings(kafka_bootstrap=consul_stack.kafka_bootstrap,
                               consul_http_addr=consul_stack.consul_http_addr, consul_kv_prefix=prefix)
    follower = follow_if_live(settings, applied.append, "test-part")
    assert follower is not None
    stop = asyncio.Event()
    loop = asyncio.create_task(watcher.run(stop))
    try:
        await wait_for(lambda: _true(follower.version == first.version), what="the follower reads the version in force")

        kv_put(consul_stack, prefix, "LIQ_BUFFER_PCT", "0.45")
        await wait_for(lambda: _true(follower.version == first.version + 1), timeout=APPLY_DEADLINE_S,
                       what="the follower applies the change")
        assert Decimal("0.45") == applied[-1].LIQ_BUFFER_PCT and Decimal("10") == applied[-1].VAR_LIMIT_BPS

        topic_end = high_watermarks(consul_stack.kafka_bootstrap, "orch_config_updates")
        for bad in ("1.7", "abc"):
            kv_put(consul_stack, prefix, "LIQ_BUFFER_PCT", bad)
            await wait_for(lambda b=bad: _true(any(r["reason"].endswith(f"(got {b!r})")
                                                   for r in refusals(config_log))), what=f"refusal of {bad}")
        kv_put(consul_stack, prefix, "SWEEP_CUTOFFS_UTC", "24:61")  # a second bad key, while LIQ is bad too
        await wait_for(lambda: _true(watcher.live.rejected == 3), what="third refusal")

        lines = refusals(config_log)
        assert [line["config_key"] for line in lines] == ["LIQ_BUFFER_PCT", "LIQ_BUFFER_PCT", "LIQ_BUFFER_PCT"]
        assert "less than or equal to 1" in lines[0]["reason"] and "decimal" in lines[1]["reason"]
        assert all(line["config_version"] == first.version + 1 for line in lines)
        assert follower.version == first.version + 1 and Decimal("0.45") == applied[-1].LIQ_BUFFER_PCT
        assert Decimal("0.45") == watcher.live.active.LIQ_BUFFER_PCT
        assert high_watermarks(consul_stack.kafka_bootstrap, "orch_config_updates") == topic_end  # nothing sent
        assert watcher.metrics().config_rejected == 3

        kv_put(consul_stack, prefix, "SWEEP_CUTOFFS_UTC", "15:30,00:30")
        kv_put(consul_stack, prefix, "LIQ_BUFFER_PCT", "0.2")
        await wait_for(lambda: _true(follower.version == first.version + 2), what="the repaired value is applied")
        assert Decimal("0.2") == applied[-1].LIQ_BUFFER_PCT
    finally:
        stop.set()
        await asyncio.wait_for(loop, 15)
        follower.stop()
        await watcher.close()


async def test_a_restarted_watcher_resumes_at_the_version_in_force(consul_stack: StackInfo) -> None:
    prefix = f"test/{uuid.uuid4().hex[:8]}/"
    assert consul_stack.consul_http_addr is not None
    kv_put(consul_stack, prefix, "VAR_LIMIT_BPS", "15")
    one = ConfigWatcher(consul_stack.consul_http_addr, prefix, consul_stack.kafka_bootstrap, PolicyConfig())
    await one.start(seed=False)
    accepted = await one.poll_once()
    await one.close()
    assert accepted is not None and accepted.kind == "accepted"

    two = ConfigWatcher(consul_stack.consul_http_addr, prefix, consul_stack.kafka_bootstrap, PolicyConfig())
    await two.start(seed=False)
    again = await two.poll_once()
    await two.close()

    assert again is not None and again.kind == "unchanged" and again.version == accepted.version
    assert (await _kv_keys(consul_stack, prefix)) == ["VAR_LIMIT_BPS"]  # seed=False wrote nothing


async def _kv_keys(info: StackInfo, prefix: str) -> list[str]:
    async with httpx.AsyncClient() as client:
        resp = await client.get(f"{info.consul_http_addr}/v1/kv/{prefix}", params={"keys": "true"})
    return sorted(k[len(prefix):] for k in resp.json())


async def _true(value: bool) -> bool:
    return value


# ---------------------------------------------------------------------------------- on Ray, end to end


@dataclass
class LiveSystem:
    settings: RuntimeSettings
    info: StackInfo
    prefix: str


@pytest.fixture(scope="module")
def live_system(consul_stack: StackInfo) -> Iterator[LiveSystem]:
    """One shard, the coordinator and the watcher on Ray (no Serve: the replica's app runs in-process)."""
    prefix = f"test/{uuid.uuid4().hex[:8]}/"
    settings = consul_stack.settings(shards=1, consul_kv_prefix=prefix)  # Kafka, Postgres, Vault and Consul
    skip_to_end(settings.kafka_bootstrap, CONSUMER_GROUP, "balance_events")
    env = dict(settings.as_env())
    for key in ("COVERAGE_PROCESS_START", "COVERAGE_FILE"):
        if key in os.environ:
            env[key] = os.environ[key]
    ray.init(namespace=NAMESPACE, num_cpus=2, include_dashboard=False, runtime_env={"env_vars": env},
             log_to_driver=False)
    try:
        start_actors(settings, PolicyConfig())
        yield LiveSystem(settings, consul_stack, prefix)
    finally:
        stop_actors(settings)
        ray.shutdown()


@pytest.fixture
async def replica(live_system: LiveSystem) -> AsyncIterator[tuple[Backend, httpx.AsyncClient]]:
    """The Serve replica's app and its config follower, in this process (Serve itself adds nothing here)."""
    backend = Backend(live_system.settings, RayShards(live_system.settings.shards))
    backend.follower = follow_if_live(live_system.settings, backend.apply_policy, "test-replica")
    transport = httpx.ASGITransport(app=build_app(backend))
    async with httpx.AsyncClient(transport=transport, base_url="http://replica") as client:
        yield backend, client
    await backend.close()


async def test_a_consul_change_reaches_the_next_decision_and_a_bad_value_changes_nothing(
    live_system: LiveSystem, replica: tuple[Backend, httpx.AsyncClient], pool: asyncpg.Pool
) -> None:
    backend, client = replica
    shard = ray.get_actor("shard-0", namespace=NAMESPACE)
    coordinator = ray.get_actor("coordinator", namespace=NAMESPACE)
    watcher = ray.get_actor(CONFIG_WATCHER, namespace=NAMESPACE)
    start = (await watcher.stats.remote())["version"]
    assert start >= 1  # the watcher announced Consul's (seeded) configuration on start

    async def everyone_at(version: int) -> bool:
        shard_version = (await shard.metrics.remote()).config_version
        coordinator_version = (await coordinator.stats.remote())["config_version"]
        return shard_version == coordinator_version == backend.config_version == version

    await wait_for(lambda: everyone_at(start), what="every part on the version in force")
    assert await _order_amount(live_system, pool) == Decimal("4700000.0000")  # 5M - 0.30 x 1M

    kv_put(live_system.info, live_system.prefix, "LIQ_BUFFER_PCT", "0.5")
    await wait_for(lambda: everyone_at(start + 1), timeout=APPLY_DEADLINE_S, what="every part applies the change")
    assert Decimal("0.5") == backend.policy.LIQ_BUFFER_PCT
    assert await _order_amount(live_system, pool) == Decimal("4500000.0000")  # 5M - 0.5 x 1M

    kv_put(live_system.info, live_system.prefix, "LIQ_BUFFER_PCT", "1.7")
    await wait_for(lambda: _rejected(watcher, 1), what="the refusal")
    assert await _order_amount(live_system, pool) == Decimal("4500000.0000")  # still 0.5
    assert await everyone_at(start + 1)

    metrics = _samples((await client.get("/metrics")).text)
    assert metrics["treasury_config_version"] == start + 1
    assert metrics["treasury_config_rejected_total"] == 1
    kv_put(live_system.info, live_system.prefix, "LIQ_BUFFER_PCT", "0.30")  # leave the defaults in force


async def _rejected(watcher: Any, n: int) -> bool:
    return bool((await watcher.stats.remote())["rejected"] >= n)


async def _order_amount(system: LiveSystem, pool: asyncpg.Pool) -> Decimal:
    """A fresh account's first balance (5M available, 1M outflows, VaR 2 bps) and the order it makes."""
    [account] = new_accounts()
    await register(pool, [account], var_usd=VAR_USD)
    event = BalanceEvent(event_id="live-1", account_id=account.account_id, as_of_ts=datetime.now(UTC),
                         kind=BalanceKind.INTRADAY, available_usd=Decimal(5_000_000),
                         projected_outflows_24h_usd=Decimal(1_000_000))
    produce_events(system.settings.kafka_bootstrap, [event])

    async def amount() -> Decimal | None:
        value = await pool.fetchval("SELECT amount_usd FROM sweep_order WHERE account_id = $1", account.account_id)
        return Decimal(value) if value is not None else None

    result: Decimal = await wait_for(amount, what="the order")
    return result.quantize(Decimal("0.0001"))


def _samples(text: str) -> dict[str, float]:
    return {s.name: s.value for fam in text_string_to_metric_families(text) for s in fam.samples if not s.labels}
