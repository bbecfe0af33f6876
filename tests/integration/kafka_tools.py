"""Plain Kafka reads and writes for tests: nothing deduplicated, nothing hidden."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from confluent_kafka import Consumer, Message, Producer, TopicPartition

from actors import kafka_clients
from actors.kafka_clients import high_watermarks, skip_to_end
from schemas.balance_event import BalanceEvent
from schemas.balance_record import encode_entry
from schemas.statement_entry import StatementEntry
from treasury.tls import kafka_security

__all__ = ["close_producer", "high_watermarks", "payloads", "poll_until", "produce_events", "read_from",
           "skip_to_end"]


def read_from(bootstrap: str, topic: str, start: dict[int, int], expect: int, timeout: float = 30.0,
              settle: float = 1.0) -> list[Message]:
    """Every message after ``start`` until ``expect`` arrived and ``settle`` s passed without more."""
    c = Consumer({**kafka_security(), "bootstrap.servers": bootstrap, "group.id": "test-reader",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, o) for p, o in start.items()])
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    quiet_since = time.monotonic()
    try:
        while time.monotonic() < deadline:
            batch = [m for m in c.consume(500, timeout=0.2) if m.error() is None]
            if batch:
                out.extend(batch)
                quiet_since = time.monotonic()
            elif len(out) >= expect and time.monotonic() - quiet_since >= settle:
                break
        return out
    finally:
        c.close()


def produce_events(bootstrap: str, events: Iterable[BalanceEvent], raw: Iterable[tuple[bytes, bytes]] = ()) -> None:
    p = kafka_clients.producer(bootstrap)
    for ev in events:
        p.produce("balance_events", key=ev.account_id.encode(), value=ev.model_dump_json(exclude_none=True).encode())
    for key, value in raw:
        p.produce("balance_events", key=key, value=value)
    assert p.flush(30) == 0


def produce_entries(bootstrap: str, entries: Iterable[StatementEntry]) -> None:
    """Statement entries as every producer sends them (``schemas.balance_record.encode_entry``)."""
    p = kafka_clients.producer(bootstrap)
    for entry in entries:
        record = encode_entry(entry)
        p.produce("balance_events", key=record.key, value=record.value, headers=record.headers)
    assert p.flush(30) == 0


def close_producer(p: Producer, timeout: float = 10.0) -> None:
    """Deliver what is queued, then release the client now rather than when its last reference goes.

    A producer still referenced when the session stops the broker (FastAPI caches the route
    closures that hold a Backend, fixtures hold shards) reconnects every second and prints
    librdkafka's `Connect to ... failed: Connection refused` to stderr until the process exits.
    What the broker did not take within ``timeout`` is purged first: ``close()`` would otherwise
    wait ``message.timeout.ms`` (five minutes) for it.
    """
    if p.flush(timeout) != 0:
        p.purge()
    p.close()


def payloads(msgs: Iterable[Message]) -> list[dict[str, Any]]:
    return [json.loads(m.value() or b"{}") for m in msgs]


async def poll_until(step: Callable[[], Awaitable[Any]], done: Callable[[], Awaitable[bool]],
                     timeout: float = 30.0) -> None:
    """Drive ``step`` until ``done`` holds; fails with the deadline rather than hanging."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await step()
        if await done():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"condition not reached within {timeout:.0f} s")
