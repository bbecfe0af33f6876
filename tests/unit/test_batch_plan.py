"""A shard's batch, planned without any I/O: validate -> known accounts -> plan (actors/batch_plan.py).

Kafka messages are built in memory (``confluent_kafka.Message`` takes keyword arguments), the
ledger is a ``LedgerView`` literal, the clocks and the order ids are fixed: what a batch will
write, submit, publish, dead-letter and commit is asserted on the returned plan alone.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from confluent_kafka import Message

from actors.account_state import AccountState, Outcome
from actors.batch_plan import (
    MAX_EVENT_BYTES,
    BatchPlan,
    Incoming,
    LedgerView,
    Rejected,
    RowPlan,
    commit_offsets,
    content_of,
    dead_letter_message,
    known_only,
    ledger_query,
    plan_batch,
    position_message,
    state_from_ledger,
    validate,
)
from actors.kafka_clients import Headers
from actors.policy import BREACH_BPS_CAP, Decision, DecisionInputs, decide
from schemas.balance_event import BalanceCode, BalanceEvent, BalanceKind
from schemas.errors import MessageRejected
from storage.accounts import Account
from storage.balances import StoredBalance
from storage.orders import OpenOrder
from storage.var_results import VarResult
from treasury.order_status import OrderStatus
from treasury.settings import PolicyConfig

T0 = datetime(2025, 6, 10, 12, tzinfo=UTC)
NOW = datetime(2025, 6, 10, 19, 42, 11, tzinfo=UTC)
CONFIG = PolicyConfig()
ACCOUNT = Account("A1", min_balance_usd=Decimal("1000000"), aml_tags={"risk": "low"})
NO_LEDGER = LedgerView({}, [])


def event(event_id: str, available: str | None = "10000000", at: datetime = T0, account: str = "A1",
          **kw: object) -> BalanceEvent:
    return BalanceEvent(event_id=event_id, account_id=account, as_of_ts=at, kind=BalanceKind.INTRADAY,
                        available_usd=None if available is None else Decimal(available),
                        projected_outflows_24h_usd=Decimal("2000000"), **kw)


def message(body: BalanceEvent | bytes, offset: int = 0, partition: int = 0, key: bytes | None = None,
            headers: Headers | None = None) -> Message:
    value = body if isinstance(body, bytes) else body.model_dump_json(exclude_none=True).encode()
    if key is None and isinstance(body, BalanceEvent):
        key = body.account_id.encode()
    return Message(topic="balance_events", partition=partition, offset=offset, key=key, value=value,
                   headers=headers or [("trace_id", b"trace-1")], timestamp=(1, 1_000))


def incoming(*events: BalanceEvent) -> tuple[list[Incoming], list[Message]]:
    msgs = [message(e, offset=i) for i, e in enumerate(events)]
    valid, rejects = validate(msgs)
    assert rejects == []
    return valid, msgs


def state(var_usd: float | None = 8000.0, account: Account = ACCOUNT, **kw: object) -> AccountState:
    return AccountState(account, var_usd=var_usd, var_days=250 if var_usd is not None else None, **kw)  # type: ignore[arg-type]


def plan(events: list[Incoming], msgs: list[Message], states: dict[str, AccountState],
         ledger: LedgerView = NO_LEDGER, rejected: list[Rejected] | None = None, **kw: object) -> BatchPlan:
    ids = (f"order-{n}" for n in itertools.count(1))
    return plan_batch(events, rejected or [], states, ledger, msgs, CONFIG, clock=lambda: NOW, received=2.0,
                      wall=lambda: 3.0, new_id=lambda: next(ids), **kw)  # type: ignore[arg-type]


# -- validate ---------------------------------------------------------------------------------
def test_a_valid_event_keeps_its_source_and_the_trace_of_its_headers() -> None:
    [item], _ = incoming(event("e1"))
    assert item.event.event_id == "e1" and item.trace_id == "trace-1"
    assert item.source["available_usd"] == "10000000" and item.key == ("A1", "e1")


@pytest.mark.parametrize(("msg", "field", "reason"), [
    (message(b"{not json"), "$", "malformed JSON"),
    (message(event("e1"), key=b"B9"), "account_id", "does not match the message key"),
    (message(event("e1", currency="EUR")), "currency", "only USD accounts"),
    (message(b"x" * (MAX_EVENT_BYTES + 1), key=b"A1"), "$", "a balance event may be at most"),
    (message(event("e1"), headers=[("schema_version", b"balance_event/9.0.0")]), "schema_version", "not a version"),
])
def test_invalid_messages_are_refused_with_the_field_and_reason(msg: Message, field: str, reason: str) -> None:
    valid, [rejected] = validate([msg])
    assert valid == [] and rejected.msg is msg
    assert rejected.error.field == field and reason in rejected.error.reason


def test_unknown_accounts_become_dead_letters() -> None:
    events, _ = incoming(event("e1"), event("b1", account="B9"))
    keep, [unknown] = known_only(events, {"A1"})
    assert [i.key for i in keep] == [("A1", "e1")]
    assert unknown.error.field == "account_id" and "unknown account 'B9'" in unknown.error.reason


def test_the_ledger_query_names_the_events_the_accounts_and_the_oldest_balance() -> None:
    events, _ = incoming(event("e2", at=T0 + timedelta(hours=1)), event("e1"), event("b1", account="B1"))
    query = ledger_query(events, clock=lambda: NOW)
    assert query.keys == [("A1", "e2"), ("A1", "e1"), ("B1", "b1")]
    assert query.accounts == ["A1", "B1"] and query.earliest == T0
    assert ledger_query([], clock=lambda: NOW).earliest == NOW


# -- plan -------------------------------------------------------------------------------------
def test_an_order_is_planned_with_its_row_position_and_offsets() -> None:
    events, msgs = incoming(event("e1"))
    before = state()
    p = plan(events, msgs, {"A1": before})
    # excess 10,000,000 - 1,000,000 = 9,000,000; buffer 0.30 x 2,000,000; 8 bps: T-bills
    [order] = p.orders
    assert (order.order_id, order.decision_key, order.product, order.amount_usd) == \
        ("order-1", "A1:e1", "TBILL_4W", Decimal("8400000.0000"))
    assert order.payload["risk_checks"] == {"var_limit_bps": 10.0, "observed_var_bps": pytest.approx(8.0),
                                            "var_history_days": 250}
    assert order.payload["aml_tags"] == {"risk": "low"} and order.trace_id == "trace-1" and order.created_ts == NOW
    assert order.decision["reason"] == "within_limit" and order.decision["inputs"]["projection_source"] == "event"
    [row] = p.rows
    assert not row.decided and p.deferred == {("A1", "e1")}  # decided once the order is durable
    assert row.applied and row.document == {**events[0].source, "trace_id": "trace-1"}
    assert row.context == "balance:A1:e1" and row.row({"ciphertext": "x"}).raw_event == {"ciphertext": "x"}
    [position] = p.positions
    assert position.pending_sweeps_usd == Decimal("8400000.0000") and position.var_bps == pytest.approx(8.0)
    assert position.excess_usd == Decimal("600000.0000") and position.updated_ts == NOW
    assert p.offsets == {0: 1} and p.dead_letters == [] and p.closes == []
    assert p.stats.orders == 1 and p.stats.outcomes == {Outcome.APPLIED: 1, Outcome.INVALID: 0}
    assert p.stats.swept_usd == {"TBILL_4W": Decimal("8400000.0000")}
    assert p.stats.decision_latency_s == [2.0] and p.stats.consume_latency_s == [1.0]  # produced at 1 s
    # the plan works on copies: the shard's cache changes only when it takes the plan's states
    assert before.available_usd is None and p.states["A1"].available_usd == Decimal("10000000")


def test_no_order_means_rows_decided_at_insert() -> None:
    events, msgs = incoming(event("e1", available="1500000"))  # excess 500,000 - buffer 600,000 = 0
    p = plan(events, msgs, {"A1": state(var_usd=100.0)})
    assert p.orders == [] and p.deferred == set() and [r.decided for r in p.rows] == [True]
    assert p.work[0].decision is not None and p.work[0].decision.reason == "no_excess"
    assert p.positions[0].pending_sweeps_usd == 0


def test_duplicates_in_the_batch_and_in_the_ledger_are_counted_not_stored() -> None:
    events, msgs = incoming(event("e1"), event("e1"), event("old"))
    ledger = LedgerView({("A1", "old"): (41, True)}, [])
    p = plan(events, msgs, {"A1": state()}, ledger)
    assert [w.key for w in p.work] == [("A1", "e1")] and len(p.orders) == 1
    assert p.stats.outcomes[Outcome.DUPLICATE] == 2
    assert p.offsets == {0: 3}  # duplicates are consumed all the same


def test_a_row_stored_but_undecided_is_decided_again_not_stored_again() -> None:
    events, msgs = incoming(event("e1"))
    p = plan(events, msgs, {"A1": state()}, LedgerView({("A1", "e1"): (41, False)}, []))
    assert p.rows == [] and p.redecided_row_ids == [41]
    [order] = p.orders
    assert order.decision_key == "A1:e1"  # the same key as the crashed attempt's: the ledger keeps one
    assert p.rows_before_orders() == p.rows_after_orders() == []  # marked decided, not written again


def test_rows_of_accounts_with_an_order_are_written_decided_after_the_orders() -> None:
    events, msgs = incoming(event("e1"), event("e2", available="10100000", at=T0 + timedelta(minutes=1)),
                            event("b1", available="50000", account="B1"))  # below MIN_SWEEP_USD: no order
    p = plan(events, msgs, {"A1": state(), "B1": state(account=Account("B1"), var_usd=None)},
             LedgerView({("A1", "e2"): (7, False)}, []))
    assert p.deferred == {("A1", "e1"), ("A1", "e2")}
    assert {(r.event.event_id, r.decided) for r in p.rows} == {("e1", False), ("b1", True)}
    assert [(r.event.event_id, r.decided) for r in p.rows_before_orders()] == [("b1", True)]
    assert [(r.event.event_id, r.decided) for r in p.rows_after_orders()] == [("e1", True)]
    assert p.redecided_row_ids == [7]  # e2: held undecided by a crashed attempt, marked once the orders are durable


def test_a_stale_event_is_stored_but_not_applied_nor_decided() -> None:
    events, msgs = incoming(event("new", at=T0 + timedelta(hours=1)), event("late", available="99999999"))
    p = plan(events, msgs, {"A1": state()})
    assert [w.outcome for w in p.work] == [Outcome.APPLIED, Outcome.STALE]
    assert p.work[1].decision is None and len(p.orders) == 1
    assert [r.applied for r in p.rows] == [True, False]
    assert p.states["A1"].available_usd == Decimal("10000000") and p.positions[0].source_event_id == "new"


def test_an_order_of_the_batch_is_pending_for_the_later_events_of_its_account() -> None:
    events, msgs = incoming(event("e1"), event("e2", available="10500000", at=T0 + timedelta(minutes=1)))
    p = plan(events, msgs, {"A1": state()})
    assert [o.amount_usd for o in p.orders] == [Decimal("8400000.0000"), Decimal("500000.0000")]
    assert p.positions[0].pending_sweeps_usd == Decimal("8900000.0000")


def test_open_orders_in_the_ledger_are_pending_sweeps() -> None:
    events, msgs = incoming(event("e1"))
    open_orders = [OpenOrder("A1", Decimal("8000000"), OrderStatus.SENT, None),
                   OpenOrder("A1", Decimal("1"), OrderStatus.SETTLED, T0 - timedelta(hours=1))]  # booked before
    p = plan(events, msgs, {"A1": state()}, LedgerView({}, open_orders))
    assert p.orders[0].amount_usd == Decimal("400000.0000")


def test_a_position_counts_what_the_next_decision_counts_even_without_a_decision() -> None:
    """A booked-only close after an order: the position still shows the open order as pending, as the
    next decision will (before, a position moved by an undecided event said pending 0)."""
    close = event("c1", available=None, booked_usd=Decimal("9000000"), balance_code=BalanceCode.CLBD,
                  at=T0 + timedelta(minutes=5))
    events, msgs = incoming(close)
    open_orders = [OpenOrder("A1", Decimal("8000000"), OrderStatus.SENT, None)]
    held = state(available_usd=Decimal("10000000"), as_of_ts=T0, last_event_id="e0")
    [position] = plan(events, msgs, {"A1": held}, LedgerView({}, open_orders)).positions
    assert position.pending_sweeps_usd == Decimal("8000000")
    assert position.excess_usd == Decimal("10000000") - Decimal("8000000") - ACCOUNT.min_balance_usd
    # the decision on the next available balance counts the same pending sweeps
    later = event("e1", available="10000000", at=T0 + timedelta(minutes=6))
    events, msgs = incoming(later)
    p = plan(events, msgs, {"A1": held}, LedgerView({}, open_orders))
    assert p.work[0].decision is not None
    assert p.work[0].decision.inputs.pending_sweeps_usd == position.pending_sweeps_usd


def test_a_var_breach_and_an_unknown_var_go_overnight() -> None:
    events, msgs = incoming(event("e1"), event("b1", account="B1"))
    p = plan(events, msgs, {"A1": state(var_usd=20000.0), "B1": state(account=Account("B1"), var_usd=None)})
    assert [(o.product, o.amount_usd) for o in p.orders] == [("FED_RRP", Decimal("9000000.0000")),
                                                              ("FED_RRP", Decimal("10000000.0000"))]
    assert p.orders[1].payload["risk_checks"]["observed_var_bps"] is None


def test_an_event_that_cannot_be_decided_is_dead_lettered_and_still_stored() -> None:
    events, msgs = incoming(event("bad", available="666", account="B1"), event("e1"))

    def flaky(inputs: DecisionInputs, config: PolicyConfig) -> Decision:
        if inputs.available_usd == Decimal("666"):
            raise ArithmeticError("simulated defect")
        return decide(inputs, config)

    early = Rejected(msgs[0], MessageRejected("$", "found before planning"))
    p = plan(events, msgs, {"A1": state(), "B1": state(account=Account("B1"))}, rejected=[early], policy=flaky)
    first, failed = p.dead_letters
    assert first is early and failed.msg is msgs[0]
    assert "simulated defect" in failed.error.reason and failed.error.field == "$"
    assert [o.decision_key for o in p.orders] == ["A1:e1"]
    assert [r.event.event_id for r in p.rows] == ["bad", "e1"] and p.work[0].decision is None
    assert p.stats.outcomes[Outcome.INVALID] == 2 and p.stats.outcomes[Outcome.APPLIED] == 2


def test_a_booked_only_close_applies_without_a_decision_and_asks_for_var() -> None:
    close = event("c1", available=None, booked_usd=Decimal("9000000"), balance_code=BalanceCode.CLBD)
    events, msgs = incoming(close)
    p = plan(events, msgs, {"A1": state()})
    assert p.closes == ["A1"] and p.orders == [] and p.work[0].decision is None
    assert p.positions == []  # no available balance yet: nothing to publish
    assert p.states["A1"].booked_usd == Decimal("9000000")


def test_one_position_per_account_the_newest() -> None:
    events, msgs = incoming(event("e1", available="1500000"), event("e2", available="1600000",
                                                                   at=T0 + timedelta(minutes=1)))
    [position] = plan(events, msgs, {"A1": state()}).positions
    assert position.source_event_id == "e2" and position.available_usd == Decimal("1600000")
    out = position_message(position)
    assert out.topic == "cash_positions" and out.key == b"A1" and out.headers == [("trace_id", b"trace-1")]
    assert json.loads(out.value or b"")["available_usd"] == "1600000"


def test_offsets_are_the_last_offset_plus_one_per_partition() -> None:
    msgs = [message(event("a"), offset=3), message(event("b"), offset=7), message(event("c"), offset=5),
            message(event("d"), offset=10, partition=2)]
    assert commit_offsets(msgs) == {0: 8, 2: 11}
    assert commit_offsets([]) == {}


def test_offsets_cover_the_dead_letters_too() -> None:
    good = message(event("e1"), offset=4)
    bad = message(b"{", offset=9, key=b"A1")
    events, rejected = validate([good, bad])
    p = plan(events, [good, bad], {"A1": state()}, rejected=rejected)
    assert p.offsets == {0: 10} and [d.msg for d in p.dead_letters] == [bad]


def test_a_dead_letter_carries_the_reason_and_where_it_came_from() -> None:
    msg = message(b"{", offset=9, partition=3, key=b"A1")
    out = dead_letter_message(Rejected(msg, MessageRejected("$", "malformed JSON")))
    headers = dict(out.headers)
    assert out.topic == "balance_events.dlq" and out.key == b"A1" and out.value == b"{"
    assert headers["error_field"] == b"$" and headers["error_reason"] == b"malformed JSON"
    assert (headers["source_partition"], headers["source_offset"], headers["trace_id"]) == (b"3", b"9", b"trace-1")


def test_a_dead_letter_too_large_keeps_the_evidence_not_the_payload() -> None:
    msg = message(b"x" * (MAX_EVENT_BYTES + 10), key=b"A1")
    out = dead_letter_message(Rejected(msg, MessageRejected("$", "too large")))
    headers = dict(out.headers)
    assert len(out.value or b"") == MAX_EVENT_BYTES and "trace_id" not in headers
    original = headers["original_bytes"]
    assert isinstance(original, bytes) and int(original) > MAX_EVENT_BYTES


def test_state_from_the_ledger() -> None:
    position = {"avail_usd": Decimal("5"), "booked_usd": Decimal("4"), "as_of_ts": T0, "event_id": "e9"}
    risk = _var_row(Decimal("5"))
    s = state_from_ledger(ACCOUNT, position, Decimal("2"), risk)
    assert (s.available_usd, s.booked_usd, s.as_of_ts, s.last_event_id) == (Decimal("5"), Decimal("4"), T0, "e9")
    assert s.last_projection_usd == Decimal("2") and s.var_usd == pytest.approx(300000.1235) and s.var_days == 250
    empty = state_from_ledger(ACCOUNT, None, None, None)
    assert empty.available_usd is None and empty.var_usd is None


# -- one VaR in bps: stored by the VaR job, used by the decision --------------------------------
def _var_row(available: Decimal) -> VarResult:
    from actors.var_job import _row

    return _row("A1", date(2025, 6, 9), 250, 0.99, 250, 300000.123456, 350000.0, {"avail_usd": available})


@pytest.mark.parametrize("available", ["10000000", "123456.78", "0", "-250000"])
def test_the_stored_var_bps_is_the_decided_one_overdrawn_account_included(available: str) -> None:
    stored = _var_row(Decimal(available))
    # the shard loads the stored result as it would after a restart, then decides on that balance
    loaded = state_from_ledger(ACCOUNT, None, None, stored)
    events, msgs = incoming(event("e1", available=available))
    [work] = plan(events, msgs, {"A1": loaded}).work
    assert work.decision is not None
    assert stored.var_bps is not None and stored.var_bps == work.decision.observed_var_bps
    if Decimal(available) <= 0:
        assert stored.var_bps == BREACH_BPS_CAP  # a non-positive balance is a breach, stored as one


def test_no_balance_no_stored_var_bps() -> None:
    from actors.var_job import _row

    assert _row("A1", date(2025, 6, 9), 250, 0.99, 250, 1000.0, 1000.0, None).var_bps is None
    assert _row("A1", date(2025, 6, 9), 250, 0.99, 3, float("nan"), float("nan"), {"avail_usd": Decimal(5)}).var_bps \
        is None


# -- time sanity (issue 16, point 6): future-dated events and event ids re-used ---------------------
Y2099 = datetime(2099, 1, 1, tzinfo=UTC)


def test_one_event_dated_2099_no_longer_freezes_the_account() -> None:
    """The issue's case: before, the 2099 balance was applied, became the account's last-seen time
    and made every later real balance stale. Now it is dead-lettered and the account keeps moving."""
    events, msgs = incoming(event("e1", available="1500000"), event("e2099", available="1", at=Y2099),
                            event("e3", available="1600000", at=T0 + timedelta(hours=1)))
    p = plan(events, msgs, {"A1": state()})
    assert [(w.event.event_id, w.outcome) for w in p.work] == [("e1", Outcome.APPLIED), ("e3", Outcome.APPLIED)]
    [dead] = p.dead_letters
    assert dead.msg is msgs[1] and dead.outcome is Outcome.FUTURE and dead.error.field == "as_of_ts"
    assert "2099-01-01T00:00:00Z is in the future" in dead.error.reason
    assert [r.event.event_id for r in p.rows] == ["e1", "e3"]  # never stored
    after = p.states["A1"]
    assert (after.as_of_ts, after.available_usd, after.last_event_id) == (T0 + timedelta(hours=1),
                                                                          Decimal("1600000"), "e3")
    assert p.stats.outcomes == {Outcome.APPLIED: 2, Outcome.FUTURE: 1, Outcome.INVALID: 0}
    assert p.offsets == {0: 3}  # consumed all the same
    headers = dict(dead_letter_message(dead).headers)
    assert headers["error_field"] == b"as_of_ts" and b"MAX_CLOCK_SKEW_S" in headers["error_reason"]


def test_the_skew_is_a_parameter_and_the_plan_clock_is_now() -> None:
    soon = NOW + timedelta(seconds=90)
    events, msgs = incoming(event("e1", at=soon))
    assert plan(events, msgs, {"A1": state()}).work[0].outcome is Outcome.APPLIED  # within 300 s
    refused = plan(events, msgs, {"A1": state()}, max_clock_skew_s=60)
    assert refused.work == [] and refused.dead_letters[0].outcome is Outcome.FUTURE


def test_a_forward_value_balance_is_stored_not_refused() -> None:
    fwav = event("fw", available=None, booked_usd=Decimal("7000000"), balance_code=BalanceCode.FWAV,
                 at=NOW + timedelta(days=2))
    events, msgs = incoming(fwav, event("e1", available="1500000", at=T0 + timedelta(hours=1)))
    p = plan(events, msgs, {"A1": state()})
    assert p.dead_letters == [] and [w.outcome for w in p.work] == [Outcome.APPLIED, Outcome.APPLIED]
    assert [r.event.event_id for r in p.rows] == ["fw", "e1"] and p.states["A1"].booked_as_of_ts is None


def test_an_event_id_repeated_with_other_content_in_one_batch_is_a_conflict() -> None:
    first, again = event("e1", available="50000"), event("e1", available="90000000")
    events, msgs = incoming(first, again, first)
    p = plan(events, msgs, {"A1": state()})
    assert [w.event.available_usd for w in p.work] == [Decimal("50000")]  # the first stands
    [dead] = p.dead_letters
    assert dead.msg is msgs[1] and dead.outcome is Outcome.CONFLICT and dead.error.field == "event_id"
    assert ("event_id 'e1' already received with available_usd 50000.0000 (earlier in this batch); "
            "this one says available_usd 90000000.0000") in dead.error.reason
    assert p.stats.outcomes == {Outcome.APPLIED: 1, Outcome.CONFLICT: 1, Outcome.DUPLICATE: 1, Outcome.INVALID: 0}
    assert p.orders == []  # 50,000 is below MIN_SWEEP_USD; the 90,000,000 never counted


def stored(e: BalanceEvent, row_id: int = 41, decided: bool = True, fingerprint: str | None = "") -> StoredBalance:
    """The ledger's row of ``e`` as ``storage.balances.stored`` returns it ("": its real fingerprint)."""
    row = RowPlan(e, {}, applied=True, decided=decided).row({})
    return StoredBalance(row_id, decided, row.fingerprint if fingerprint == "" else fingerprint, row.content)


def ledger_of(*rows: tuple[BalanceEvent, StoredBalance]) -> LedgerView:
    """A ledger holding these rows, as ``ShardWorker._read_ledger`` builds it."""
    held = {(e.account_id, e.event_id): s for e, s in rows}
    return LedgerView({key: (s.row_id, s.decided) for key, s in held.items()}, [], held)


def test_an_event_id_the_ledger_holds_with_other_content_is_a_conflict_a_true_repeat_a_duplicate() -> None:
    held = event("e1", available="50000")
    ledger = ledger_of((held, stored(held)))
    # the same content under another trace (a redelivery through another path) is a true repeat
    events, msgs = incoming(event("e1", available="90000000"), event("e1", available="50000.00"),
                            event("e1", available="5E+4", trace_id="other-trace"))
    p = plan(events, msgs, {"A1": state()}, ledger)
    assert p.work == [] and p.rows == [] and p.orders == []
    [dead] = p.dead_letters
    assert dead.outcome is Outcome.CONFLICT and "available_usd 50000.0000 (in the ledger)" in dead.error.reason
    assert "this one says available_usd 90000000.0000" in dead.error.reason
    assert p.stats.outcomes == {Outcome.CONFLICT: 1, Outcome.DUPLICATE: 2, Outcome.INVALID: 0}


def test_every_differing_field_is_named_with_both_figures() -> None:
    held = event("e1", available="50000")
    moved = event("e1", available="50000", at=T0 + timedelta(minutes=5), booked_usd=Decimal("1.23456"))
    events, msgs = incoming(moved)
    [dead] = plan(events, msgs, {"A1": state()}, ledger_of((held, stored(held)))).dead_letters
    assert "with booked_usd none, as_of_ts 2025-06-10T12:00:00Z (in the ledger)" in dead.error.reason
    assert "this one says booked_usd 1.23456, as_of_ts 2025-06-10T12:05:00Z" in dead.error.reason


def test_a_row_stored_before_fingerprints_existed_is_taken_for_a_repeat() -> None:
    held = event("e1", available="50000")
    events, msgs = incoming(event("e1", available="90000000"))
    p = plan(events, msgs, {"A1": state()}, ledger_of((held, stored(held, fingerprint=None))))
    assert p.dead_letters == [] and p.stats.outcomes[Outcome.DUPLICATE] == 1
    # and a ledger view without contents (the shape before issue 16) behaves as it did
    p = plan(events, msgs, {"A1": state()}, LedgerView({("A1", "e1"): (41, True)}, []))
    assert p.dead_letters == [] and p.stats.outcomes[Outcome.DUPLICATE] == 1


def test_an_undecided_row_with_the_same_content_is_decided_again_with_other_content_refused() -> None:
    held = event("e1")
    ledger = ledger_of((held, stored(held, decided=False)))
    events, msgs = incoming(event("e1"))
    p = plan(events, msgs, {"A1": state()}, ledger)
    assert p.redecided_row_ids == [41] and len(p.orders) == 1 and p.dead_letters == []
    events, msgs = incoming(event("e1", available="20000000"))
    p = plan(events, msgs, {"A1": state()}, ledger)
    assert p.redecided_row_ids == [] and p.orders == [] and p.dead_letters[0].outcome is Outcome.CONFLICT


def test_a_refused_event_does_not_take_its_id_and_a_conflict_is_checked_after_the_clock() -> None:
    events, msgs = incoming(event("e1", at=Y2099), event("e1", available="1500000"))
    p = plan(events, msgs, {"A1": state()})
    assert [d.outcome for d in p.dead_letters] == [Outcome.FUTURE]
    assert [w.event.available_usd for w in p.work] == [Decimal("1500000")]


def test_the_stored_fingerprint_is_the_incoming_events_fingerprint() -> None:
    e = event("e1", available="1.234560", booked_usd=Decimal("-0"), balance_code=BalanceCode.ITAV)
    row = RowPlan(e, {}, applied=True, decided=True).row({})
    assert row.fingerprint == content_of(e).fingerprint() == content_of(event("e1", available="1.23456",
        booked_usd=Decimal("0.00"), balance_code=BalanceCode.ITAV)).fingerprint()
    assert len(row.fingerprint) == 64
    for other in (event("e1", available="1.23457", booked_usd=Decimal(0), balance_code=BalanceCode.ITAV),
                  event("e1", available="1.23456", booked_usd=Decimal(0), balance_code=BalanceCode.ITBD),
                  event("e1", available="1.23456", booked_usd=None, balance_code=BalanceCode.ITAV),
                  event("e1", available="1.23456", booked_usd=Decimal(0), balance_code=BalanceCode.ITAV,
                        at=T0 + timedelta(microseconds=1))):
        assert content_of(other).fingerprint() != row.fingerprint
