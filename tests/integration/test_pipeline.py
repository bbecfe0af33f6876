"""The sweep pipeline on the real Kafka and Postgres: events in, exactly the right orders out."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from schemas.balance_event import BalanceEvent, BalanceKind
from schemas.sweep_order import SweepOrder
from tests.integration.conftest import Pipeline, new_accounts, register
from tests.integration.kafka_tools import payloads, produce_events, read_from

pytestmark = pytest.mark.integration
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def ev(account: str, n: int, available: str | None, at: datetime = T0, projection: str | None = "2000000",
       **kw: object) -> BalanceEvent:
    return BalanceEvent(
        event_id=f"ev-{n}", account_id=account, as_of_ts=at, kind=BalanceKind.INTRADAY,
        available_usd=None if available is None else Decimal(available),
        projected_outflows_24h_usd=None if projection is None else Decimal(projection), **kw,  # type: ignore[arg-type]
    )


class CountingPool:
    """A pool that counts the connections taken from it."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool, self.taken = pool, 0

    def acquire(self) -> Any:
        self.taken += 1
        return self.pool.acquire()


async def test_a_batch_takes_one_pooled_connection_for_its_reads_and_writes(pipeline: Pipeline) -> None:
    """Each release of a pooled connection is a round trip (asyncpg's reset query). A batch that
    loads a new account, reads the ledger and writes its rows after the order takes one."""
    [a] = new_accounts()
    await register(pipeline.pool, [a], var_usd=Decimal("1000"))
    counting = CountingPool(pipeline.pool)
    pipeline.worker._pool = counting
    before = pipeline.worker.totals["batches"]
    produce_events(pipeline.bootstrap, [ev(a.account_id, 1, "10000000")])
    await pipeline.drain([a.account_id], events=1)

    assert len(await pipeline.orders_for([a.account_id])) == 1
    batches = pipeline.worker.totals["batches"] - before
    assert batches >= 1 and counting.taken == batches


async def test_exact_amount_and_product(pipeline: Pipeline) -> None:
    [a] = new_accounts(min_balance_usd=Decimal("1000000"))
    await register(pipeline.pool, [a], var_usd=Decimal("8000"))  # 8 bps of 10,000,000
    produce_events(pipeline.bootstrap, [ev(a.account_id, 1, "10000000")])
    await pipeline.drain([a.account_id], events=1)

    [order] = await pipeline.orders_for([a.account_id])
    # excess 9,000,000 - buffer 0.30 x 2,000,000 = 8,400,000 to T-bills
    assert order["product"] == "TBILL_4W" and order["amount_usd"] == Decimal("8400000.0000")
    assert order["status"] == "SENT" and order["decision_key"] == f"{a.account_id}:ev-1"
    assert order["decision"]["reason"] == "within_limit" and order["decision"]["observed_var_bps"] == pytest.approx(8.0)
    published = read_from(pipeline.bootstrap, "sweep_intent", pipeline.intent_start, expect=1)
    mine = [m for m in published if m.key() == order["order_id"].encode()]
    assert len(mine) == 1
    wire = SweepOrder.model_validate_json(mine[0].value() or b"")
    assert wire.amount_usd == Decimal("8400000.0000") and wire.risk_checks.var_limit_bps == 10
    headers = dict(mine[0].headers() or [])
    assert headers["schema_version"] == b"sweep_order/1.2.0" and headers["trace_id"] == order["trace_id"].encode()


async def test_var_breach_sweeps_the_whole_excess_to_fed_rrp(pipeline: Pipeline) -> None:
    [a] = new_accounts(min_balance_usd=Decimal("1000000"))
    await register(pipeline.pool, [a], var_usd=Decimal("20000"))  # 20 bps > 10
    produce_events(pipeline.bootstrap, [ev(a.account_id, 1, "10000000")])
    await pipeline.drain([a.account_id], events=1)
    [order] = await pipeline.orders_for([a.account_id])
    assert order["product"] == "FED_RRP" and order["amount_usd"] == Decimal("9000000.0000")


async def test_esg_account_gets_carbon_notes(pipeline: Pipeline) -> None:
    [a] = new_accounts(esg_pref=True)
    await register(pipeline.pool, [a], var_usd=Decimal("1000"))
    produce_events(pipeline.bootstrap, [ev(a.account_id, 1, "5000000", projection="1000000")])
    await pipeline.drain([a.account_id], events=1)
    [order] = await pipeline.orders_for([a.account_id])
    assert order["product"] == "CARBON_NOTE" and order["amount_usd"] == Decimal("4700000.0000")


async def test_unknown_var_falls_back_to_overnight_with_null_observed_bps(pipeline: Pipeline) -> None:
    [a] = new_accounts()
    await register(pipeline.pool, [a])  # no VaR computed for this account yet
    produce_events(pipeline.bootstrap, [ev(a.account_id, 1, "5000000")])
    await pipeline.drain([a.account_id], events=1)
    [order] = await pipeline.orders_for([a.account_id])
    assert order["product"] == "FED_RRP" and order["amount_usd"] == Decimal("5000000.0000")
    assert order["payload"]["risk_checks"] == {"var_limit_bps": 10.0, "observed_var_bps": None,
                                               "var_history_days": None}
    SweepOrder.model_validate(order["payload"])
    assert order["decision"]["reason"] == "var_unknown"


async def test_below_min_sweep_makes_no_order(pipeline: Pipeline) -> None:
    [a] = new_accounts()
    await register(pipeline.pool, [a], var_usd=Decimal("10"))
    produce_events(pipeline.bootstrap, [ev(a.account_id, 1, "699999.99", projection="2000000")])
    await pipeline.drain([a.account_id], events=1)
    assert await pipeline.orders_for([a.account_id]) == []


async def test_quick_succession_does_not_sweep_twice(pipeline: Pipeline) -> None:
    [a] = new_accounts()
    await register(pipeline.pool, [a], var_usd=Decimal("1000"))
    second = T0 + timedelta(seconds=1)
    produce_events(pipeline.bootstrap, [ev(a.account_id, 1, "10000000"), ev(a.account_id, 2, "10050000", at=second)])
    await pipeline.drain([a.account_id], events=2)
    orders = await pipeline.orders_for([a.account_id])
    # first: 10,000,000 - 600,000 buffer = 9,400,000; second sees it pending: 50,000 left < MIN_SWEEP
    assert [o["amount_usd"] for o in orders] == [Decimal("9400000.0000")]


async def test_duplicate_event_gives_one_order_and_stale_events_move_nothing(pipeline: Pipeline) -> None:
    [a] = new_accounts()
    await register(pipeline.pool, [a], var_usd=Decimal("1000"))
    first = ev(a.account_id, 1, "10000000")
    stale = ev(a.account_id, 0, "99999999", at=T0 - timedelta(hours=2))
    produce_events(pipeline.bootstrap, [first, first, stale])
    await pipeline.drain([a.account_id], events=2)
    produce_events(pipeline.bootstrap, [first])  # a late redelivery, after the batch was committed
    await pipeline.drain([a.account_id], events=2)
    assert len(await pipeline.orders_for([a.account_id])) == 1
    rows = await pipeline.balances_for([a.account_id])
    assert [(r["event_id"], r["applied"]) for r in rows] == [("ev-1", True), ("ev-0", False)]
    position = await pipeline.worker.position(a.account_id)
    assert position is not None and position.available_usd == Decimal("10000000")
    assert pipeline.worker.totals["duplicate"] >= 2 and pipeline.worker.totals["stale"] >= 1


async def test_invalid_messages_go_to_the_dead_letter_topic_and_the_stream_goes_on(pipeline: Pipeline) -> None:
    [a] = new_accounts()
    await register(pipeline.pool, [a], var_usd=Decimal("1000"))
    eur = ev(a.account_id, 3, "1", currency="EUR")
    raw = [
        (a.account_id.encode(), b"not json"),
        (a.account_id.encode(), json.dumps({"event_id": "x", "account_id": a.account_id}).encode()),
        (b"NOPE", ev("NOPE", 1, "1").model_dump_json().encode()),
        (a.account_id.encode(), eur.model_dump_json().encode()),
        (b"other", ev(a.account_id, 4, "1").model_dump_json().encode()),
    ]
    produce_events(pipeline.bootstrap, [], raw=raw)
    produce_events(pipeline.bootstrap, [ev(a.account_id, 1, "10000000")])
    await pipeline.drain([a.account_id], events=1)
    assert len(await pipeline.orders_for([a.account_id])) == 1
    dead = read_from(pipeline.bootstrap, "balance_events.dlq", pipeline.dlq_start, expect=5)
    fields = sorted(dict(m.headers() or [])["error_field"].decode() for m in dead[-5:])
    assert fields == ["$", "account_id", "account_id", "as_of_ts", "currency"]
    by_value = {m.value(): dict(m.headers() or []) for m in dead}
    assert b"malformed JSON" in by_value[b"not json"]["error_reason"]


async def test_cash_positions_are_published(pipeline: Pipeline) -> None:
    [a] = new_accounts()
    await register(pipeline.pool, [a], var_usd=Decimal("1000"))
    produce_events(pipeline.bootstrap, [ev(a.account_id, 1, "10000000")])
    await pipeline.drain([a.account_id], events=1)
    msgs = read_from(pipeline.bootstrap, "cash_positions", pipeline.positions_start, expect=1)
    mine = [p for p in payloads(msgs) if p["account_id"] == a.account_id]
    assert mine[-1]["available_usd"] == "10000000" and mine[-1]["pending_sweeps_usd"] == "9400000.0000"
    assert mine[-1]["excess_usd"] == "600000.0000"


async def test_replay_of_an_undecided_batch_makes_no_second_order(pipeline: Pipeline) -> None:
    """A crash after the balance rows but before the decision was recorded: the replay decides again."""
    [a] = new_accounts()
    await register(pipeline.pool, [a], var_usd=Decimal("1000"))
    produce_events(pipeline.bootstrap, [ev(a.account_id, 1, "10000000")])
    await pipeline.drain([a.account_id], events=1)
    # make the ledger look as if the crash came after the order but before `decided_ts` and the commit
    await pipeline.pool.execute("UPDATE balance SET decided_ts = NULL WHERE account_id = $1", a.account_id)
    produce_events(pipeline.bootstrap, [ev(a.account_id, 1, "10000000")])
    await pipeline.drain([a.account_id], events=1)
    assert len(await pipeline.orders_for([a.account_id])) == 1


async def test_an_event_that_cannot_be_decided_is_quarantined_not_stalling_others(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    import actors.shard as shard_module

    [bad, good] = new_accounts(2)
    await register(pipeline.pool, [bad, good], var_usd=Decimal("1000"))
    real_decide = shard_module.decide

    def flaky(inputs, config):  # type: ignore[no-untyped-def]
        if inputs.available_usd == Decimal("666"):
            raise ArithmeticError("simulated defect")
        return real_decide(inputs, config)

    monkeypatch.setattr(shard_module, "decide", flaky)
    produce_events(pipeline.bootstrap, [ev(bad.account_id, 1, "666"), ev(good.account_id, 1, "10000000")])
    await pipeline.drain([bad.account_id, good.account_id], events=2)
    assert len(await pipeline.orders_for([good.account_id])) == 1
    dead = read_from(pipeline.bootstrap, "balance_events.dlq", pipeline.dlq_start, expect=1)
    reasons = [dict(m.headers() or [])["error_reason"] for m in dead if m.key() == bad.account_id.encode()]
    assert reasons and b"simulated defect" in reasons[0]


async def test_the_position_counts_the_pending_sweeps_the_next_decision_counts(pipeline: Pipeline) -> None:
    """The treasurer's position (REST, cash_positions) and the decision use one computation of pending
    sweeps: after an order, the position shows it pending, and the next decision sees the same figure."""
    [a] = new_accounts(min_balance_usd=Decimal("1000000"))
    await register(pipeline.pool, [a], var_usd=Decimal("8000"))
    produce_events(pipeline.bootstrap, [ev(a.account_id, 1, "10000000")])
    await pipeline.drain([a.account_id], events=1)
    [order] = await pipeline.orders_for([a.account_id])
    position = await pipeline.worker.position(a.account_id)
    assert position is not None and position.pending_sweeps_usd == order["amount_usd"] == Decimal("8400000.0000")
    assert position.excess_usd == Decimal("10000000") - order["amount_usd"] - Decimal("1000000")

    produce_events(pipeline.bootstrap, [ev(a.account_id, 2, "10000000", at=T0 + timedelta(seconds=1))])
    await pipeline.drain([a.account_id], events=2)
    # the next decision counted the same 8,400,000: 600,000 left less the 600,000 buffer, no order
    assert await pipeline.orders_for([a.account_id]) == [order]
    published = payloads(read_from(pipeline.bootstrap, "cash_positions", pipeline.positions_start, expect=2))
    mine = [p for p in published if p["account_id"] == a.account_id]
    assert [Decimal(p["pending_sweeps_usd"]) for p in mine] == [order["amount_usd"]] * 2
