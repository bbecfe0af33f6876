"""Faults injected while the simulator streams; afterwards nothing is missing and nothing is there twice.

One running system (Ray in a process tree of its own, `bench.system`) on the chaos stack
(`.stack/chaos`). Each test streams the same simulated input (20 accounts x 30 hourly balances,
a quarter of the accounts over REST) over fresh account ids and, a third of the way in, kills one
part with SIGKILL: an account shard, the coordinator between writing an order and publishing it,
the Serve replica, the Kafka broker (then restarts it), Postgres (then restarts it), and all of
Ray (then starts the system again). The fault-free run comes first; every faulty run must end
with the same decisions (same keys, products and amounts), each order once in Postgres and once
on `sweep_intent` (read by a plain consumer that de-duplicates nothing). The time from the fault
until orders flow again (new orders published for every shard's accounts; for the Serve replica,
an order for a balance posted after the kill) goes into a table, printed and written to
`bench/out/chaos.md`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from actors.kafka_clients import CONSUMER_GROUP
from bench import loadgen
from bench.system import RaySystem
from devstack import stack as infra_stack
from devstack.stack import StackInfo
from storage.db import create_pool
from tests.conftest import REPO_ROOT
from tests.integration.conftest import free_port
from tests.integration.kafka_tools import high_watermarks, read_from, skip_to_end
from tests.integration.test_ray_system import expected_orders

pytestmark = pytest.mark.integration
ACCOUNTS, PER_ACCOUNT, RATE, REST_SHARE, SHARDS = 20, 30, 60.0, 0.25, 2
FEED_START = datetime(2026, 11, 21, tzinfo=UTC)  # a Saturday: weekend takings make orders all along the input
RESTART_TIMEOUT_S = 240.0
FLOW_TIMEOUT_S = 120.0  # the spec's bound for a retry after a pod kill
TABLE = REPO_ROOT / "bench" / "out" / "chaos.md"


@dataclass
class Recovery:
    fault: str
    back_s: float | None  # how long bringing the killed part back took, when the test does it
    flowing_s: float  # fault -> new orders published for every shard (for balances posted after it, over REST)
    settled_s: float  # fault -> every event decided and every order published
    events: int
    orders: int
    rest_retries: int

    def row(self) -> str:
        back = f"{self.back_s:.1f} s" if self.back_s is not None else "(Ray/Serve restart it)"
        return (f"| {self.fault} | {back} | **{self.flowing_s:.1f} s** | {self.settled_s:.1f} s | {self.events} | "
                f"{self.orders} | {self.rest_retries} |")


RESULTS: list[Recovery] = []


def table(results: list[Recovery]) -> str:
    head = ("| fault (SIGKILL while streaming) | part back after | orders flowing again after | all decided and "
            "published after | events | orders | REST retries |\n|---|---|---|---|---|---|---|")
    return "\n".join([head, *(r.row() for r in results)])


@dataclass
class Chaos:
    stack: StackInfo
    system: RaySystem
    marker: Path
    headers: dict[str, str]
    baseline: dict[str, tuple[str, Decimal]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def chaos(chaos_stack: StackInfo, chaos_headers: dict[str, str],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chaos]:
    tmp = tmp_path_factory.mktemp("chaos")
    marker = tmp / "coordinator-crash.done"
    marker.write_text("disarmed: delete this file to crash the coordinator once, after its next write")
    # One Serve replica throughout: the replica fault kills *the* replica, so that Serve has to
    # replace it (with autoscaling on, a busy machine could add a second one that takes over).
    # Four-eyes approval off: orders above the threshold would wait for approvers; this run counts
    # orders lost or doubled (approval itself: tests/integration/test_approval.py).
    settings = chaos_stack.settings(shards=SHARDS, serve_port=free_port(), serve_min_replicas=1, serve_max_replicas=1,
                                    approval_threshold_usd=Decimal(0))
    assert settings.kafka_security_protocol == "SSL" and "sslcert=" in settings.database_url
    with pytest.MonkeyPatch.context() as env_of_this_module:
        for key, value in chaos_stack.tls_env.items():  # this process's Kafka clients: the load and the checks
            env_of_this_module.setenv(key, value)
        skip_to_end(chaos_stack.kafka_bootstrap, CONSUMER_GROUP, "balance_events")
        env = {**settings.as_env(), "LOG_LEVEL": "WARNING", "TREASURY_CRASH_AT": "coordinator_after_write",
               "TREASURY_CRASH_ONCE_FILE": str(marker)}
        system = RaySystem(env, settings.serve_port, tmp / "system.log")
        system.start()
        try:
            yield Chaos(chaos_stack, system, marker, chaos_headers)
        finally:
            system.stop()
            if RESULTS:
                TABLE.parent.mkdir(parents=True, exist_ok=True)
                TABLE.write_text(f"# Faults and recovery ({datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ})\n\n"
                                 f"{table(RESULTS)}\n")


@pytest.fixture
async def pool(chaos: Chaos) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(chaos.stack.postgres_dsn, max_size=3)
    yield p
    await p.close()


async def poll(check: Callable[[], Awaitable[object]], timeout: float, what: str, every: float = 0.1) -> object:
    """Poll ``check`` until truthy; errors count as "not yet" (the part being polled may be the one killed)."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = await check()
            if result:
                return result
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, infra_stack.InfraError) as exc:
            last = exc
        await asyncio.sleep(every)  # polling interval under a deadline
    raise AssertionError(f"{what} not reached within {timeout:.0f} s (last error: {last!r})")


Fault = Callable[[Chaos], Awaitable[tuple[float, float | None]]]  # -> (wall time of the fault, seconds to bring back)


async def run_with_fault(chaos: Chaos, pool: asyncpg.Pool, name: str, inflict: Fault | None,
                         rest_only: bool = False) -> Recovery | None:
    """Stream the input, inflict the fault a third of the way in, then check the outcome against the policy."""
    prefix = f"C{uuid.uuid4().hex[:6]}-"
    profiles, events = loadgen.feed(ACCOUNTS, PER_ACCOUNT, prefix, start=FEED_START)
    await loadgen.register(pool, profiles)
    accounts = [p.account for p in profiles]
    ids = [a.account_id for a in accounts]
    expected = expected_orders(accounts, events)
    rest = loadgen.rest_accounts(profiles, REST_SHARE)
    bootstrap = chaos.stack.kafka_bootstrap
    start = high_watermarks(bootstrap, "sweep_intent")
    gen = loadgen.LoadGenerator(bootstrap, chaos.system.base_url, chaos.headers, rest, rate=RATE)
    sender = asyncio.create_task(gen.run(events))

    recovery: Recovery | None = None
    if inflict is not None:
        async def warmed_up() -> bool:
            counts = await loadgen.ledger_counts(pool, ids)
            return gen.sent.total >= len(events) // 3 and counts["orders"] - counts["unsent"] > 0

        await poll(warmed_up, 60, "a third of the events sent and a first order published")
        fault_wall, back_s = await inflict(chaos)
        t0 = time.monotonic() - (time.time() - fault_wall)  # the fault's own moment, on the monotonic clock
        groups = set(range(SHARDS))

        def shard(account: str) -> int | None:
            return gen.partition_of[account] % SHARDS if account in gen.partition_of else None

        async def flowing() -> bool:
            rows = await pool.fetch(
                "SELECT account_id, decision_key FROM sweep_order WHERE account_id = ANY($1::varchar[]) "
                "AND status = 'SENT' AND created_ts > to_timestamp($2)", ids, fault_wall)
            if rest_only:  # an order for a balance the Bank-Connector posted after the replica died
                return any(gen.sent_at.get((r["account_id"], r["decision_key"].split(":", 1)[1]), 0) > fault_wall
                           for r in rows if r["account_id"] in rest)
            return groups <= {shard(r["account_id"]) for r in rows}

        await poll(flowing, FLOW_TIMEOUT_S, f"orders flowing again after: {name}", every=0.05)
        flowing_s = time.monotonic() - t0

    await asyncio.wait_for(sender, 240)

    async def settled() -> bool:
        counts = await loadgen.ledger_counts(pool, ids)
        return counts["decided"] == len(events) and counts["unsent"] == 0

    await poll(settled, 180, "every event decided and every order published", every=0.2)
    rows = await pool.fetch("SELECT decision_key, order_id, product, amount_usd, status FROM sweep_order "
                            "WHERE account_id = ANY($1::varchar[])", ids)
    keys = [r["decision_key"] for r in rows]
    assert len(keys) == len(set(keys)), "a decision key twice in Postgres"
    got = {r["decision_key"]: (r["product"], r["amount_usd"]) for r in rows}
    assert got == expected, "decisions differ from the policy's fault-free run"
    assert {r["status"] for r in rows} == {"SENT"}
    normalised = {k.replace(prefix, "P-"): v for k, v in got.items()}
    if chaos.baseline:
        assert normalised == chaos.baseline, "decisions differ from the fault-free run on the real system"
    else:
        chaos.baseline.update(normalised)
    order_ids = {r["order_id"] for r in rows}
    published = [k for k in ((m.key() or b"").decode() for m in read_from(
        bootstrap, "sweep_intent", start, expect=len(order_ids), timeout=60, settle=2)) if k in order_ids]
    assert sorted(published) == sorted(order_ids), "an order missing or twice on sweep_intent"
    if inflict is not None:
        recovery = Recovery(name, back_s, flowing_s, time.monotonic() - t0, len(events), len(rows),
                            gen.sent.rest_errors)
        RESULTS.append(recovery)
        print(f"\n{table([recovery])}")
    return recovery


def kill9(pid: int) -> float:
    os.kill(pid, signal.SIGKILL)
    return time.time()


async def test_fault_free_run_is_the_policy(chaos: Chaos, pool: asyncpg.Pool) -> None:
    assert await run_with_fault(chaos, pool, "none", None) is None
    assert chaos.baseline, "the simulated input makes orders"


async def test_account_shard_killed(chaos: Chaos, pool: asyncpg.Pool) -> None:
    before = set(chaos.system.pids_of("AccountShardActor"))
    assert len(before) == SHARDS

    async def inflict(c: Chaos) -> tuple[float, float | None]:
        return kill9(min(before)), None

    await run_with_fault(chaos, pool, "account shard (Ray restarts it)", inflict)
    after = set(chaos.system.pids_of("AccountShardActor"))
    assert len(after) == SHARDS and min(before) not in after


async def test_coordinator_killed_between_write_and_publish(chaos: Chaos, pool: asyncpg.Pool) -> None:
    async def inflict(c: Chaos) -> tuple[float, float | None]:
        c.marker.unlink()  # armed: the coordinator dies right after its next write
        await poll(lambda: asyncio.to_thread(c.marker.exists), 60, "the coordinator's crash point", every=0.02)
        return c.marker.stat().st_mtime, None

    await run_with_fault(chaos, pool, "coordinator, between writing and publishing", inflict)
    assert chaos.marker.read_text() == "coordinator_after_write"


async def test_serve_replica_killed(chaos: Chaos, pool: asyncpg.Pool) -> None:
    replicas = chaos.system.pids_of("ServeReplica")
    assert len(replicas) == 1, f"SERVE_MAX_REPLICAS=1, yet replicas {replicas}"
    [replica] = replicas

    async def inflict(c: Chaos) -> tuple[float, float | None]:
        return kill9(replica), None

    result = await run_with_fault(chaos, pool, "Serve replica (Serve replaces it)", inflict, rest_only=True)
    assert result is not None and chaos.system.pids_of("ServeReplica") != [replica]


def kill_then_restart(kill: Callable[[Path], None], restart: Callable[[Path], object]) -> Fault:
    """SIGKILL a stack service, then start it again on the same port; returns how long the start took."""
    async def inflict(c: Chaos) -> tuple[float, float | None]:
        at = time.time()
        await asyncio.to_thread(kill, c.stack.home)
        began = time.monotonic()
        try:
            await asyncio.to_thread(restart, c.stack.home)
        except infra_stack.InfraError:
            # Started but slow to answer (a JVM on a busy machine): keep waiting, under a deadline.
            await poll(lambda: asyncio.to_thread(infra_stack.up, c.stack.home), RESTART_TIMEOUT_S,
                       "the service answering after its restart", every=1.0)
        return at, time.monotonic() - began

    return inflict


async def test_kafka_broker_killed_and_restarted(chaos: Chaos, pool: asyncpg.Pool) -> None:
    await run_with_fault(chaos, pool, "Kafka broker, then restarted",
                         kill_then_restart(infra_stack.kill_kafka, infra_stack.restart_kafka))


async def test_postgres_killed_and_restarted(chaos: Chaos, pool: asyncpg.Pool) -> None:
    await run_with_fault(chaos, pool, "Postgres, then restarted",
                         kill_then_restart(infra_stack.kill_postgres, infra_stack.restart_postgres))


async def test_whole_ray_runtime_killed_and_started_again(chaos: Chaos, pool: asyncpg.Pool) -> None:
    old = chaos.system.pid

    async def inflict(c: Chaos) -> tuple[float, float | None]:
        at = time.time()
        await asyncio.to_thread(c.system.kill)
        return at, await asyncio.to_thread(c.system.start)

    await run_with_fault(chaos, pool, "the whole Ray runtime, then the system started again", inflict)
    assert chaos.system.pid != old
    print(f"\n{table(RESULTS)}")
