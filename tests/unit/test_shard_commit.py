"""A shard commits an offset only after the positions and dead letters produced before it are delivered.

Its producer holds them until that commit (``kafka_clients.shard_producer``), so the flush before
the commit is what delivers them: a commit without it would let a crash lose a dead letter whose
event is never replayed.
"""

from __future__ import annotations

from typing import Any

import pytest

from actors.kafka_clients import DEFAULT_LINGER_MS, MAX_POSITION_DELAY_MS, position_linger_ms
from actors.offset_commits import OffsetCommits
from actors.shard import ShardWorker


class Producer:
    """Records flushes; ``undelivered`` messages stay queued whatever the timeout."""

    def __init__(self, undelivered: int) -> None:
        self.undelivered = undelivered
        self.calls: list[str] = []

    def flush(self, _: float = 0) -> int:
        self.calls.append("flush")
        return self.undelivered


class Consumer:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls
        self.committed: list[Any] = []

    def commit(self, offsets: Any, asynchronous: bool) -> None:
        self.calls.append("commit")
        self.committed.append(offsets)

    def close(self) -> None:
        self.calls.append("close")


def _worker(undelivered: int, pending: dict[int, int]) -> tuple[ShardWorker, Producer, Consumer]:
    worker = ShardWorker.__new__(ShardWorker)  # only the commit is under test
    worker.index = 0
    producer = Producer(undelivered)
    consumer = Consumer(producer.calls)
    worker._producer, worker._consumer = producer, consumer  # type: ignore[assignment]
    worker._commits = OffsetCommits(0.0)
    worker._commits.add(pending)
    return worker, producer, consumer


async def test_the_idle_commit_flushes_first() -> None:
    worker, producer, consumer = _worker(undelivered=0, pending={3: 42})
    await worker.process([])
    assert producer.calls == ["flush", "commit"]
    [[tp]] = consumer.committed
    assert (tp.partition, tp.offset) == (3, 42)


async def test_nothing_pending_flushes_nothing() -> None:
    worker, producer, _ = _worker(undelivered=5, pending={})
    await worker.process([])
    assert producer.calls == []


async def test_undelivered_messages_keep_the_offsets_uncommitted() -> None:
    worker, producer, consumer = _worker(undelivered=2, pending={3: 42})
    with pytest.raises(RuntimeError, match="2 position/dead-letter messages not delivered"):
        await worker.process([])
    assert consumer.committed == [] and producer.calls == ["flush"]


async def test_close_commits_nothing_it_could_not_deliver() -> None:
    worker, producer, consumer = _worker(undelivered=1, pending={3: 42})
    await worker.close()
    assert consumer.committed == [] and producer.calls == ["flush", "close"]


@pytest.mark.parametrize(("interval_ms", "linger_ms"), [
    (0, DEFAULT_LINGER_MS),  # commits after every batch: the flush sends each batch's messages anyway
    (200, 200),  # the default: one request per partition and commit
    (60_000, MAX_POSITION_DELAY_MS),  # a long interval does not hold a position for a minute
])
def test_the_positions_linger_follows_the_commit_interval_within_bounds(interval_ms: int, linger_ms: int) -> None:
    assert position_linger_ms(interval_ms) == linger_ms
