"""Kafka topics: names, partitioning and retention in one place for the broker set-up and the code."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


BALANCE_EVENTS = Topic("balance_events", 12)
BALANCE_EVENTS_DLQ = Topic("balance_events.dlq", 1)
SWEEP_INTENT = Topic("sweep_intent", 3)
# Compacted: QuantEngine reads the latest position of every account without replaying history.
CASH_POSITIONS = Topic("cash_positions", 12, {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"})
ORCH_CONFIG_UPDATES = Topic("orch_config_updates", 1)

ALL_TOPICS: tuple[Topic, ...] = (BALANCE_EVENTS, BALANCE_EVENTS_DLQ, SWEEP_INTENT, CASH_POSITIONS, ORCH_CONFIG_UPDATES)

# Java clients hash keys with murmur2; librdkafka's default differs, so every producer of ours
# uses murmur2 and an account lands on the same partition whoever produced it.
PARTITIONER = "murmur2_random"
