"""OFFSET_COMMIT_INTERVAL_MS on the real Kafka and Postgres: offsets are committed late, never early.

A shard commits at most every interval (an hour here, so that only the other rules commit), at once
when its partitions go quiet, and on close. What it has not committed is durable already: a crash
replays it as duplicates, and no second order is made. Its positions and dead letters are delivered
before the offsets that stand for them are committed, even by a producer that would hold them.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest
from confluent_kafka import Producer, TopicPartition

from actors import kafka_clients
from actors.batch_plan import BatchStats
from actors.coordinator import Coordinator
from actors.shard import ShardWorker, partition_of
from schemas.balance_event import BalanceEvent, BalanceKind
from storage.accounts import Account
from tests.integration.conftest import new_accounts, register
from tests.integration.kafka_tools import close_producer, high_watermarks, poll_until, produce_events, skip_to_end
from treasury.envelope import EnvelopeCipher
from treasury.keyring import Keyring
from treasury.settings import PolicyConfig
from treasury.topics import BALANCE_EVENTS, BALANCE_EVENTS_DLQ, CASH_POSITIONS

pytestmark = pytest.mark.integration
HOUR_S = 3600.0
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


@dataclass
class Group:
    """A consumer group of this test's own, the clients its shards share, and how to read its commits."""

    stack: object
    pool: asyncpg.Pool
    keyring: Keyring
    name: str
    coordinator: Coordinator
    producer: Producer

    def shard(self, producer: Producer | None = None) -> ShardWorker:
        settings = self.stack.settings()  # type: ignore[attr-defined]
        return ShardWorker(0, 1, self.pool, kafka_clients.consumer(self.bootstrap, group=self.name),
                           producer or self.producer,
                           self.coordinator, PolicyConfig(), cipher=EnvelopeCipher(self.keyring, settings.data_key),
                           commit_interval_s=HOUR_S)

    @property
    def bootstrap(self) -> str:
        return str(self.stack.kafka_bootstrap)  # type: ignore[attr-defined]

    def committed(self, partition: int) -> int:
        c = kafka_clients.consumer(self.bootstrap, group=self.name)
        try:
            [tp] = c.committed([TopicPartition(BALANCE_EVENTS.name, partition)], timeout=10)
            return int(tp.offset)
        finally:
            c.close()

    def end(self, partition: int) -> int:
        return kafka_clients.high_watermarks(self.bootstrap, BALANCE_EVENTS.name)[partition]

    async def committed_reaches(self, partition: int, offset: int) -> None:
        async def wait() -> None:
            return None

        async def done() -> bool:
            return self.committed(partition) == offset

        await poll_until(wait, done, timeout=15)


@pytest.fixture
async def group(stack, pool: asyncpg.Pool, keyring: Keyring) -> AsyncIterator[Group]:
    name = f"test-commit-{uuid.uuid4().hex[:8]}"
    skip_to_end(stack.kafka_bootstrap, name, BALANCE_EVENTS.name)
    producer = kafka_clients.producer(stack.kafka_bootstrap)
    coordinator = Coordinator(pool, producer, stack.kafka_bootstrap, keyring=keyring,
                              signing_key=stack.settings().order_signing_key)
    await coordinator.start()
    yield Group(stack, pool, keyring, name, coordinator, producer)
    producer.flush(10)
    close_producer(producer)


def ev(account: str, n: int, available: str) -> BalanceEvent:
    return BalanceEvent(event_id=f"ev-{n}", account_id=account, as_of_ts=T0 + timedelta(seconds=n),
                        kind=BalanceKind.INTRADAY, available_usd=Decimal(available),
                        projected_outflows_24h_usd=Decimal("2000000"))


def counts(stats: BatchStats) -> dict[str, int]:
    return {str(k): v for k, v in stats.outcomes.items() if v}


async def one_batch(worker: ShardWorker) -> BatchStats:
    """Poll until a batch with events is processed. The polls before it find nothing; they commit
    nothing either, as long as nothing is pending when this is called."""
    got: list[BatchStats] = []

    async def step() -> None:
        got.append(await worker.poll_once(timeout=0.1))

    async def done() -> bool:
        return bool(got and counts(got[-1]))

    await poll_until(step, done)
    return got[-1]


async def first_event_committed(group: Group) -> tuple[Account, int, ShardWorker]:
    """A new account, its partition, and a started shard that applied its first event and, as the
    first batch of a shard always is, committed it at once."""
    [a] = new_accounts()
    await register(group.pool, [a], var_usd=Decimal("1000"))
    p = partition_of(a.account_id)
    shard = group.shard()
    await shard.start()
    produce_events(group.bootstrap, [ev(a.account_id, 1, "1000")])
    assert counts(await one_batch(shard)) == {"applied": 1}
    await group.committed_reaches(p, group.end(p))
    return a, p, shard


async def test_a_busy_shard_commits_late_an_idle_one_at_once_and_close_commits_the_rest(group: Group) -> None:
    a, p, shard = await first_event_committed(group)
    first_end = group.end(p)

    produce_events(group.bootstrap, [ev(a.account_id, 2, "1100")])
    await one_batch(shard)
    assert group.end(p) == first_end + 1
    assert group.committed(p) == first_end  # within the interval: durable, not yet committed

    assert counts(await shard.poll_once(timeout=0.1)) == {}  # quiet: what is pending goes now
    await group.committed_reaches(p, first_end + 1)

    produce_events(group.bootstrap, [ev(a.account_id, 3, "1200")])
    await one_batch(shard)
    assert group.committed(p) == first_end + 1
    await shard.close()
    assert group.committed(p) == first_end + 2  # close commits what is pending, synchronously


async def test_a_crash_before_the_commit_replays_durable_batches_as_duplicates_and_makes_no_second_order(
        group: Group) -> None:
    a, p, first = await first_event_committed(group)
    committed = group.end(p)
    produce_events(group.bootstrap, [ev(a.account_id, 2, "10000000")])  # makes an order
    assert (await one_batch(first)).orders == 1
    [order] = await group.pool.fetch("SELECT order_id FROM sweep_order WHERE account_id = $1", a.account_id)
    assert group.committed(p) == committed
    # The first shard dies here, its last batch durable but not committed.

    second = group.shard()  # the next owner of the partitions starts from the committed offset
    await second.start()
    replayed = await one_batch(second)
    assert counts(replayed) == {"duplicate": 1} and replayed.orders == 0
    orders = await group.pool.fetch("SELECT order_id FROM sweep_order WHERE account_id = $1", a.account_id)
    assert [o["order_id"] for o in orders] == [order["order_id"]]
    await second.close()
    assert group.committed(p) == committed + 1
    await first.close()  # only now: the dead shard's clients are released (its pending offset is the same)


async def test_positions_and_dead_letters_are_delivered_before_the_offsets_that_stand_for_them(
        group: Group) -> None:
    """A producer lingering a minute (the service's shards linger up to the commit interval): each
    batch's position and dead letter wait in it until the commit, which delivers them first."""
    [a] = new_accounts()
    await register(group.pool, [a], var_usd=Decimal("1000"))
    p = partition_of(a.account_id)
    holding = kafka_clients.producer(group.bootstrap, **{"linger.ms": 60_000})
    shard = group.shard(holding)
    await shard.start()
    positions, dead = high_watermarks(group.bootstrap, CASH_POSITIONS.name), \
        high_watermarks(group.bootstrap, BALANCE_EVENTS_DLQ.name)
    try:
        produce_events(group.bootstrap, [ev(a.account_id, 1, "1000")], raw=[(a.account_id.encode(), b"{not json")])
        seen: Counter[str] = Counter()
        while seen != {"applied": 1, "invalid": 1}:  # one batch or two
            seen.update(counts(await one_batch(shard)))
        assert counts(await shard.poll_once(timeout=0.1)) == {}  # quiet: what is pending is committed
        await group.committed_reaches(p, group.end(p))
        assert high_watermarks(group.bootstrap, CASH_POSITIONS.name) != positions
        assert high_watermarks(group.bootstrap, BALANCE_EVENTS_DLQ.name) != dead

        positions = high_watermarks(group.bootstrap, CASH_POSITIONS.name)
        produce_events(group.bootstrap, [ev(a.account_id, 2, "1100")])
        await one_batch(shard)
        assert group.committed(p) == group.end(p) - 1  # within the interval: held, not committed
        assert high_watermarks(group.bootstrap, CASH_POSITIONS.name) == positions  # and its position held too

        assert counts(await shard.poll_once(timeout=0.1)) == {}  # quiet: the commit delivers it first
        await group.committed_reaches(p, group.end(p))
        assert high_watermarks(group.bootstrap, CASH_POSITIONS.name) != positions
    finally:
        await shard.close()
        close_producer(holding)
