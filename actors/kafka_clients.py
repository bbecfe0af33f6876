"""Kafka clients configured the one way this service uses them.

Producers are idempotent with ``acks=all`` (a retry never writes a second copy) and hash keys
with murmur2 like Java clients. Consumers never auto-commit: offsets move only after the work
they stand for is durable.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from treasury.tls import kafka_security
from treasury.topics import PARTITIONER

CONSUMER_GROUP = "treasury-orchestrator"
DEFAULT_LINGER_MS = 5  # what a message waits for others to share its request
MAX_POSITION_DELAY_MS = 1000
T = TypeVar("T")
log = logging.getLogger("treasury.kafka")
_COORDINATOR_ERRORS = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError._WAIT_COORD,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
    # a fresh topic's leader is elected moments after the metadata says so
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
}


def producer(bootstrap: str, **overrides: Any) -> Producer:
    config: dict[str, Any] = {
        **kafka_security(),
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "partitioner": PARTITIONER,
        "linger.ms": DEFAULT_LINGER_MS,
        "compression.type": "lz4",
        "message.max.bytes": 1_000_000,
    }
    config.update(overrides)
    return Producer(config)


def consumer(bootstrap: str, group: str = CONSUMER_GROUP, **overrides: Any) -> Consumer:
    config: dict[str, Any] = {
        **kafka_security(),
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "fetch.wait.max.ms": 50,
        "on_commit": _log_failed_commit,
    }
    config.update(overrides)
    return Consumer(config)


def batched_consumer(bootstrap: str, group: str = CONSUMER_GROUP) -> Consumer:
    """A consumer of a busy topic: the broker answers its fetch after 10 ms or 1 MB, whichever
    comes first, rather than for every message. At 1,000 events/s that took a tenth of a core
    off the broker (bench/pipeline), for at most 10 ms more between produce and consume."""
    return consumer(bootstrap, group, **{"fetch.wait.max.ms": 10, "fetch.min.bytes": 1_000_000})


def shard_producer(bootstrap: str, commit_interval_ms: int) -> Producer:
    """A shard's producer of positions and dead letters: it holds them until the shard flushes it
    before an offset commit (``ShardWorker._commit``), so each commit sends one request per
    partition rather than each batch one per partition (librdkafka sends a produce request per
    partition). At 1,000 events/s that was 400 of the broker's 1,070 requests a second. Held at most
    ``MAX_POSITION_DELAY_MS``, however long the commit interval."""
    return producer(bootstrap, **{"linger.ms": position_linger_ms(commit_interval_ms)})


def position_linger_ms(commit_interval_ms: int) -> int:
    """The commit interval, but no less than any producer's linger and no more than a second."""
    return min(max(commit_interval_ms, DEFAULT_LINGER_MS), MAX_POSITION_DELAY_MS)


def produce_waiting(p: Producer, topic: str, key: bytes, value: bytes, wait_s: float = 0.05,
                    headers: Headers | None = None) -> None:
    """Produce, waiting for room when the local queue is full (bulk senders outrun the broker)."""
    while True:
        try:
            p.produce(topic, key=key, value=value, headers=headers)
            return
        except BufferError:
            p.poll(wait_s)


def _log_failed_commit(err: KafkaError | None, partitions: list[TopicPartition]) -> None:
    """A failed asynchronous commit costs a replay after a restart (harmless), so it is logged, not raised."""
    if err is not None:
        log.warning("offset commit failed (%s); a restart would replay from the previous commit", err)


def _retrying(what: str, call: Callable[[], T], timeout: float) -> T:
    """Coordinator and leader lookups fail with retriable errors while a fresh broker is still
    electing them (its offsets topic is created on first use): retry until the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            retriable = isinstance(err, KafkaError) and (err.retriable() or err.code() in _COORDINATOR_ERRORS)
            if not retriable or time.monotonic() > deadline:
                raise
            log.info("%s: %s; retrying", what, err)
            time.sleep(0.2)  # back-off between retries, not synchronisation


def assign_from_committed(c: Consumer, topic: str, partitions: list[int],
                          timeout: float = 30.0) -> list[TopicPartition]:
    """Manual assignment (no group join, which costs seconds) resuming at the committed offsets;
    returns the assignment (offset < 0: nothing committed, ``auto.offset.reset`` applies)."""

    def fetch() -> list[TopicPartition]:
        committed = c.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        for tp in committed:
            if tp.error is not None:
                raise KafkaException(tp.error)
        return committed

    assignment = _retrying("fetch committed offsets", fetch, timeout)
    c.assign(assignment)
    return assignment


def commit_sync(c: Consumer, offsets: list[TopicPartition], timeout: float = 30.0) -> None:
    _retrying("commit offsets", lambda: c.commit(offsets=offsets, asynchronous=False), timeout)


Headers = list[tuple[str, str | bytes | None]]


def headers(**values: str | None) -> Headers:
    return [(k, v.encode()) for k, v in values.items() if v is not None]


def header_map(raw: Headers | dict[str, str | bytes | None] | None) -> dict[str, str]:
    items = raw.items() if isinstance(raw, dict) else (raw or [])
    return {k: v.decode("utf-8", "replace") if isinstance(v, bytes) else (v or "") for k, v in items}


def dumps(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


class AsyncProducer:
    """Awaitable delivery for request handlers: the caller learns where its message landed.

    A daemon thread serves librdkafka's delivery callbacks and hands each result back to the
    event loop that is waiting for it.
    """

    def __init__(self, inner: Producer, delivery_timeout: float = 15.0) -> None:
        self._inner = inner
        self._timeout = delivery_timeout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="kafka-delivery", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            self._inner.poll(0.05)

    async def send(self, topic: str, key: bytes, value: bytes, hdrs: Headers | None = None) -> Message:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Message] = loop.create_future()

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            loop.call_soon_threadsafe(_settle, done, err, msg)

        self._inner.produce(topic, key=key, value=value, headers=hdrs, on_delivery=on_delivery)
        return await asyncio.wait_for(done, self._timeout)

    def close(self) -> None:
        """Deliver what is queued, then release the client at once: its owner may live on (FastAPI's
        route caches keep a Backend), and a live client reconnects to a stopped broker, logging each
        failure. One that could not deliver is left to its last reference: ``close()`` would wait out
        ``message.timeout.ms`` for the broker."""
        self._stop.set()
        self._thread.join(timeout=5)
        if self._inner.flush(5) == 0:
            self._inner.close()


def _settle(done: asyncio.Future[Message], err: KafkaError | None, msg: Message) -> None:
    if done.done():
        return
    if err is None:
        done.set_result(msg)
    else:
        done.set_exception(KafkaException(err))


def high_watermarks(bootstrap: str, topic: str, timeout: float = 30.0) -> dict[int, int]:
    c = Consumer({**kafka_security(), "bootstrap.servers": bootstrap, "group.id": "treasury-watermarks"})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions

        def high(partition: int) -> int:
            low_high = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            assert low_high is not None, "a watermark request either answers or raises"
            return int(low_high[1])

        return {p: _retrying("read watermarks", functools.partial(high, p), timeout) for p in parts}
    finally:
        c.close()


def skip_to_end(bootstrap: str, group: str, topic: str) -> None:
    """Commit the group at the topic's end: it starts with what arrives from now on, skipping the
    backlog (a benchmark or test run that must not replay earlier runs' events)."""
    marks = high_watermarks(bootstrap, topic)
    c = consumer(bootstrap, group=group)
    try:
        commit_sync(c, [TopicPartition(topic, p, o) for p, o in marks.items()])
    finally:
        c.close()
