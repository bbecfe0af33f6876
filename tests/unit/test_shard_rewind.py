"""A shard whose batch failed keeps trying to rewind while the broker is away, instead of giving up."""

from __future__ import annotations

import asyncio

from confluent_kafka import KafkaError, KafkaException

from actors.shard import ShardWorker


def _worker(failures: int) -> tuple[ShardWorker, list[int]]:
    worker = ShardWorker.__new__(ShardWorker)  # only the rewind loop is under test
    worker.index = 0
    calls: list[int] = []

    async def start() -> None:
        calls.append(1)
        if len(calls) <= failures:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT))

    worker.start = start  # type: ignore[method-assign]
    return worker, calls


async def test_rewind_retries_until_the_broker_answers() -> None:
    worker, calls = _worker(failures=3)
    await worker._rewind(asyncio.Event(), pause_s=0)
    assert len(calls) == 4


async def test_rewind_gives_up_only_when_stopping() -> None:
    worker, calls = _worker(failures=10**6)
    stop = asyncio.Event()
    stop.set()
    await worker._rewind(stop, pause_s=0)
    assert calls == []
