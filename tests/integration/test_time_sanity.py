"""Time sanity (issue 16, point 6) on the real Kafka and Postgres: future-dated balances and re-used event ids.

A balance dated far ahead used to be applied and freeze its account (every later real balance
`stale`); an event id sent again with another figure used to vanish as a "duplicate". Both are now
dead-lettered with the reason, counted, and the account keeps moving; a true repeat stays a duplicate.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from confluent_kafka import Message

from schemas.balance_event import BalanceEvent, BalanceKind
from tests.integration.conftest import Pipeline, new_accounts, register
from tests.integration.kafka_tools import poll_until, produce_events, read_from
from tests.integration.test_api import balance

pytestmark = pytest.mark.integration
Y2099 = datetime(2099, 1, 1, tzinfo=UTC)


def ev(account: str, event_id: str, available: str, at: datetime) -> BalanceEvent:
    return BalanceEvent(event_id=event_id, account_id=account, as_of_ts=at, kind=BalanceKind.INTRADAY,
                        available_usd=Decimal(available), projected_outflows_24h_usd=Decimal("2000000"))


async def outcome_reached(pipeline: Pipeline, outcome: str, n: int) -> None:
    """Run the shard until it has counted ``n`` events with ``outcome`` (refused events store no row)."""
    async def done() -> bool:
        return pipeline.worker.totals[outcome] >= n

    await poll_until(pipeline.step, done)


def dead_letters_of(pipeline: Pipeline, account: str, expect: int) -> list[Message]:
    """One dead letter per refused message of ``account``. Dead letters are at-least-once (a batch
    replayed after a restart dead-letters its refused messages again): the source partition and
    offset tell the copies apart."""
    dead = read_from(pipeline.bootstrap, "balance_events.dlq", pipeline.dlq_start, expect=expect)
    first: dict[tuple[bytes, bytes], Message] = {}
    for m in dead:
        if m.key() == account.encode():
            headers = dict(m.headers() or [])
            first.setdefault((headers["source_partition"], headers["source_offset"]), m)
    return list(first.values())


async def test_a_balance_dated_2099_is_dead_lettered_and_the_account_keeps_moving(pipeline: Pipeline) -> None:
    [a] = new_accounts()
    await register(pipeline.pool, [a], var_usd=Decimal("1000"))
    now = datetime.now(UTC).replace(microsecond=0)
    produce_events(pipeline.bootstrap, [ev(a.account_id, "ev-1", "1500000", now - timedelta(hours=2)),
                                        ev(a.account_id, "ev-2099", "1", Y2099),
                                        ev(a.account_id, "ev-3", "1600000", now - timedelta(hours=1))])
    await pipeline.drain([a.account_id], events=2)  # ev-3 decided: ev-2099, before it on the partition, too
    # a restarted shard rebuilds the account from the ledger: the refused balance is not there either
    await pipeline.worker.start()
    produce_events(pipeline.bootstrap, [ev(a.account_id, "ev-4", "1700000", now - timedelta(minutes=30))])
    await pipeline.drain([a.account_id], events=3)

    rows = await pipeline.balances_for([a.account_id])
    assert [(r["event_id"], r["applied"]) for r in rows] == [("ev-1", True), ("ev-3", True), ("ev-4", True)]
    position = await pipeline.worker.position(a.account_id)
    assert position is not None and position.available_usd == Decimal("1700000")
    assert position.as_of_ts == now - timedelta(minutes=30) and position.source_event_id == "ev-4"
    assert pipeline.worker.totals["stale"] == 0 and pipeline.worker.metrics().outcomes["future"] == 1

    [dead] = dead_letters_of(pipeline, a.account_id, expect=1)
    headers = dict(dead.headers() or [])
    assert headers["error_field"] == b"as_of_ts"
    assert b"2099-01-01T00:00:00Z is in the future: more than 300 s (MAX_CLOCK_SKEW_S)" in headers["error_reason"]
    assert json.loads(dead.value() or b"{}")["event_id"] == "ev-2099"  # the original, to resend corrected


async def test_an_event_id_resent_with_another_figure_is_a_conflict_an_exact_repeat_a_duplicate(
    pipeline: Pipeline,
) -> None:
    [a] = new_accounts()
    await register(pipeline.pool, [a], var_usd=Decimal("1000"))
    now = datetime.now(UTC).replace(microsecond=0)
    at1, at2 = now - timedelta(hours=2), now - timedelta(hours=1)
    produce_events(pipeline.bootstrap, [ev(a.account_id, "ev-1", "50000", at1)])
    await pipeline.drain([a.account_id], events=1)
    await pipeline.worker.start()  # the ledger, not the shard's memory, knows what ev-1 said
    produce_events(pipeline.bootstrap, [
        ev(a.account_id, "ev-1", "90000000", at1),  # against the ledger: a conflict
        ev(a.account_id, "ev-1", "50000.00", at1),  # the same content written otherwise: a duplicate
        ev(a.account_id, "ev-2", "60000", at2),
        ev(a.account_id, "ev-2", "70000000", at2),  # against the first ev-2 (same batch or the ledger)
    ])
    await outcome_reached(pipeline, "conflict", 2)
    await pipeline.drain([a.account_id], events=2)

    assert await pipeline.orders_for([a.account_id]) == []  # 90,000,000 would have made one
    rows = await pipeline.balances_for([a.account_id])
    assert [(r["event_id"], r["avail_usd"]) for r in rows] == [("ev-1", Decimal("50000")), ("ev-2", Decimal("60000"))]
    assert all(r["content_sha256"] is not None and len(r["content_sha256"]) == 64 for r in rows)
    assert pipeline.worker.totals["duplicate"] >= 1 and pipeline.worker.metrics().outcomes["conflict"] == 2

    dead = dead_letters_of(pipeline, a.account_id, expect=2)
    reasons = sorted(dict(m.headers() or [])["error_reason"].decode() for m in dead)
    assert [dict(m.headers() or [])["error_field"] for m in dead] == [b"event_id", b"event_id"]
    assert "event_id 'ev-1' already received with available_usd 50000.0000 (in the ledger); " \
           "this one says available_usd 90000000.0000" in reasons[0]
    assert "event_id 'ev-2' already received with available_usd 60000.0000" in reasons[1]
    assert "this one says available_usd 70000000.0000" in reasons[1]
    position = await pipeline.worker.position(a.account_id)
    assert position is not None and position.available_usd == Decimal("60000")


async def test_post_balances_refuses_a_future_as_of_ts_with_422(api: httpx.AsyncClient, pipeline: Pipeline) -> None:
    [a] = new_accounts()
    await register(pipeline.pool, [a])
    r = await api.post("/balances", json=balance(a.account_id, "f1", as_of_ts="2099-01-01T00:00:00Z"))
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["field"] == "as_of_ts" and "is in the future" in error["reason"]
    # within the skew, and a forward-value balance dated days ahead, are accepted
    soon = (datetime.now(UTC) + timedelta(seconds=60)).isoformat()
    assert (await api.post("/balances", json=balance(a.account_id, "f2", as_of_ts=soon))).status_code == 202
    forward = balance(a.account_id, "f3", as_of_ts=(datetime.now(UTC) + timedelta(days=3)).isoformat(),
                      balance_code="FWAV", available_usd=None, booked_usd="7000000")
    assert (await api.post("/balances", json=forward)).status_code == 202
