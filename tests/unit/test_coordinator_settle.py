"""Delivery reports are kept when the ledger cannot be told: the orders become SENT on the next round."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import Producer

from actors.coordinator import Coordinator


class FlakyLedger:
    """Refuses the first ``failures`` writes the way a restarting Postgres does, then records them."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[str] = []

    async def execute(self, _sql: str, ids: list[str], *_statuses: str) -> str:
        if self.failures:
            self.failures -= 1
            raise ConnectionRefusedError(111, "Connection refused")
        self.sent.extend(ids)
        return f"UPDATE {len(ids)}"


async def test_delivered_orders_are_marked_sent_once_postgres_is_back() -> None:
    ledger = FlakyLedger(failures=2)
    # never contacted (nothing is produced), and silent should it try: no broker answers there
    producer = Producer({"bootstrap.servers": "127.0.0.1:9", "log_level": 0})
    coordinator = Coordinator(ledger, producer, "127.0.0.1:9", keyring=Any, signing_key="k")  # type: ignore[arg-type]
    coordinator._delivered.extend(["o1", "o2"])
    coordinator._in_flight.update({"o1": {}, "o2": {}})  # type: ignore[dict-item]
    for _ in range(2):
        with pytest.raises(ConnectionRefusedError):
            await coordinator.settle(0)
    assert list(coordinator._delivered) == ["o1", "o2"]  # nothing forgotten while Postgres was away
    assert await coordinator.settle(0) == 2
    assert ledger.sent == ["o1", "o2"] and coordinator.in_flight() == 0 and coordinator.published == 2
