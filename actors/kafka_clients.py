"""Kafka clients configured the one way this service uses them.

Producers are idempotent with ``acks=all`` (a retry never writes a second copy) and hash keys
with murmur2 like Java clients. Consumers never auto-commit: offsets move only after the work
they stand for is durable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from treasury.topics import PARTITIONER

CONSUMER_GROUP = "treasury-orchestrator"


def producer(bootstrap: str, **overrides: Any) -> Producer:
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "partitioner": PARTITIONER,
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.max.bytes": 1_000_000,
    }
    config.update(overrides)
    return Producer(config)


def consumer(bootstrap: str, group: str = CONSUMER_GROUP, **overrides: Any) -> Consumer:
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "fetch.wait.max.ms": 50,
    }
    config.update(overrides)
    return Consumer(config)


def assign_from_committed(c: Consumer, topic: str, partitions: list[int], timeout: float = 10.0) -> None:
    """Manual assignment (no group join, which costs seconds) resuming at the committed offsets."""
    committed = c.committed([TopicPartition(topic, p) for p in partitions], timeout=timeout)
    for tp in committed:
        if tp.error is not None:
            raise KafkaException(tp.error)
    c.assign(committed)


Headers = list[tuple[str, str | bytes | None]]


def headers(**values: str | None) -> Headers:
    return [(k, v.encode()) for k, v in values.items() if v is not None]


def header_map(raw: Headers | dict[str, str | bytes | None] | None) -> dict[str, str]:
    items = raw.items() if isinstance(raw, dict) else (raw or [])
    return {k: v.decode("utf-8", "replace") if isinstance(v, bytes) else (v or "") for k, v in items}


def dumps(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
