from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from actors.account_state import (
    AccountState,
    Outcome,
    decision_inputs,
    future_dated,
    pending_sweeps,
    refuse_future,
    value_dated,
)
from actors.policy import BREACH_BPS_CAP
from schemas.balance_event import BalanceCode, BalanceEvent, BalanceKind
from schemas.errors import MessageRejected
from storage.accounts import Account
from storage.orders import OpenOrder

T0 = datetime(2025, 6, 10, 12, tzinfo=UTC)


def event(event_id: str, at: datetime, available: str | None = "100", **kw: object) -> BalanceEvent:
    return BalanceEvent(event_id=event_id, account_id="A1", as_of_ts=at, kind=BalanceKind.INTRADAY,
                        available_usd=None if available is None else Decimal(available), **kw)  # type: ignore[arg-type]


def test_newer_events_move_the_position_older_ones_do_not() -> None:
    s = AccountState(Account("A1"))
    assert s.apply(event("e1", T0, "100")) is Outcome.APPLIED
    assert s.apply(event("e2", T0 + timedelta(minutes=1), "150")) is Outcome.APPLIED
    assert s.apply(event("e0", T0 - timedelta(minutes=1), "999")) is Outcome.STALE
    assert s.available_usd == Decimal("150") and s.last_event_id == "e2"


def test_booked_only_event_keeps_available() -> None:
    s = AccountState(Account("A1"))
    s.apply(event("e1", T0, "100"))
    s.apply(event("e2", T0 + timedelta(hours=1), None, booked_usd=Decimal("90")))
    assert s.available_usd == Decimal("100") and s.booked_usd == Decimal("90")
    # a forward-dated booked figure does not make the next current available balance stale
    s.apply(event("fw", T0 + timedelta(days=3), None, booked_usd=Decimal("70")))
    assert s.apply(event("e3", T0 + timedelta(hours=2), "120")) is Outcome.APPLIED
    assert s.apply(event("old", T0, None, booked_usd=Decimal("1"))) is Outcome.STALE
    assert s.available_usd == Decimal("120") and s.booked_usd == Decimal("70")


def test_projection_falls_back_to_the_last_one_seen() -> None:
    s = AccountState(Account("A1"))
    first = event("e1", T0, projected_outflows_24h_usd=Decimal("5"))
    assert s.projection(event("e0", T0)) == (None, "none")
    s.apply(first)
    assert s.projection(event("e2", T0)) == (Decimal("5"), "last_seen")
    assert s.projection(first) == (Decimal("5"), "event")


def test_pending_sweeps_counts_unsettled_orders_only() -> None:
    orders = [
        OpenOrder("A1", Decimal("10"), "NEW", None),
        OpenOrder("A1", Decimal("20"), "SENT", None),
        OpenOrder("A1", Decimal("40"), "ACK", None),  # an ACK is not proof the money left: pending
        OpenOrder("A1", Decimal("80"), "SETTLED", T0 + timedelta(minutes=5)),  # booked after the balance: pending
        OpenOrder("A1", Decimal("320"), "SETTLED", T0 - timedelta(minutes=5)),  # booked before: in the balance
        OpenOrder("A1", Decimal("160"), "FAILED", None),
    ]
    assert pending_sweeps(orders, T0) == Decimal("150")


def test_decision_inputs_come_from_the_state_as_the_event_left_it() -> None:
    s = AccountState(Account("A1", esg_pref=True, min_balance_usd=Decimal("7")), var_usd=800.0, var_days=42)
    e = event("e1", T0, "1000000", projected_outflows_24h_usd=Decimal("5"))
    s.apply(e)
    i = decision_inputs(s, e, pending_sweeps_usd=Decimal("3"), now=T0)
    assert (i.available_usd, i.eod_projection_usd, i.projection_source) == (Decimal("1000000"), Decimal("5"), "event")
    assert i.var_bps == pytest.approx(8.0) and i.var_history_days == 42 and i.now == T0
    assert (i.pending_sweeps_usd, i.min_balance_usd, i.esg) == (Decimal("3"), Decimal("7"), True)
    later = event("e2", T0 + timedelta(minutes=1), "-1")
    s.apply(later)
    overdrawn = decision_inputs(s, later, pending_sweeps_usd=Decimal(0), now=T0)
    assert overdrawn.var_bps == BREACH_BPS_CAP and overdrawn.projection_source == "last_seen"


def test_decision_inputs_of_a_what_if_take_the_var_in_bps_as_given() -> None:
    s = AccountState(Account("A1"), available_usd=Decimal("100"), last_projection_usd=Decimal("1"), var_usd=1e9)
    assert decision_inputs(s, None, pending_sweeps_usd=Decimal(0), now=T0, var_bps=10.0).var_bps == 10.0
    assert decision_inputs(s, None, pending_sweeps_usd=Decimal(0), now=T0, var_bps=None).var_bps is None
    with pytest.raises(ValueError, match="no available balance"):
        decision_inputs(AccountState(Account("A1")), None, pending_sweeps_usd=Decimal(0), now=T0)


# -- time sanity (issue 16, point 6) --------------------------------------------------------------
NOW = datetime(2025, 6, 10, 12, 30, tzinfo=UTC)


@pytest.mark.parametrize(("ahead", "skew", "refused"), [
    (timedelta(0), 300, False),
    (timedelta(seconds=300), 300, False),  # exactly at the limit: a clock drifting by the skew is fine
    (timedelta(seconds=301), 300, True),
    (timedelta(seconds=1), 0, True),
    (-timedelta(days=400), 300, False),  # old is stale, not refused
    (timedelta(days=365 * 74), 300, True),  # the 2099 balance of the issue
])
def test_an_as_of_time_beyond_the_skew_is_future(ahead: timedelta, skew: int, refused: bool) -> None:
    got = future_dated(event("e1", NOW + ahead), NOW, skew)
    assert (got is not None) is refused
    if got is not None:
        assert got.field == "as_of_ts" and "in the future" in got.reason and f"more than {skew} s" in got.reason
        assert "MAX_CLOCK_SKEW_S" in got.reason


def test_a_date_only_stamp_counts_from_the_start_of_its_day() -> None:
    # camt/Finastra read a date alone as 23:59:59.999999Z of that day: today's report is not future
    today = datetime(2025, 6, 10, 23, 59, 59, 999999, tzinfo=UTC)
    assert future_dated(event("d0", today), NOW, 300) is None
    tomorrow = today + timedelta(days=1)
    refused = future_dated(event("d1", tomorrow), NOW, 300)
    assert refused is not None and "2025-06-11T23:59:59.999999Z" in refused.reason
    # a day that starts within the skew is not future: 23:58 with a 5-minute skew
    assert future_dated(event("d1", tomorrow), datetime(2025, 6, 10, 23, 58, tzinfo=UTC), 300) is None


def test_a_date_only_stamp_is_still_one_after_kafka_cut_it_to_milliseconds() -> None:
    """The contracts' JSON carries milliseconds: today's camt.052 read back from Kafka says 23:59:59.999,
    and must not become "future" on the shard when the REST tier accepted it."""
    sent = BalanceEvent.model_validate_json(event("d0", datetime(2025, 6, 10, 23, 59, 59, 999999, tzinfo=UTC))
                                            .model_dump_json())
    assert sent.as_of_ts.microsecond == 999000
    assert future_dated(sent, NOW, 300) is None
    assert future_dated(event("d1", datetime(2025, 6, 10, 23, 59, 59, 998000, tzinfo=UTC)), NOW, 300) is not None


def test_forward_value_balances_are_not_future_but_an_available_one_dated_ahead_is() -> None:
    ahead = NOW + timedelta(days=3)
    fwav = event("fw", ahead, None, booked_usd=Decimal("70"), balance_code=BalanceCode.FWAV)
    assert value_dated(fwav) and future_dated(fwav, NOW, 300) is None
    # an FWAV claiming an available figure would move the live position: refused like any other
    claims_cash = event("fw2", ahead, "70", balance_code=BalanceCode.FWAV)
    assert not value_dated(claims_cash) and future_dated(claims_cash, NOW, 300) is not None
    booked_ahead = event("bk", ahead, None, booked_usd=Decimal("70"), balance_code=BalanceCode.ITBD)
    assert future_dated(booked_ahead, NOW, 300) is not None


def test_a_value_dated_balance_is_applied_but_moves_no_clock() -> None:
    s = AccountState(Account("A1"))
    s.apply(event("e1", T0, "100"))
    s.apply(event("b1", T0, None, booked_usd=Decimal("90"), balance_code=BalanceCode.ITBD))
    fwav = event("fw", T0 + timedelta(days=3), None, booked_usd=Decimal("70"), balance_code=BalanceCode.FWAV)
    assert s.apply(fwav) is Outcome.APPLIED
    assert (s.booked_usd, s.booked_as_of_ts, s.as_of_ts) == (Decimal("90"), T0, T0)
    # so the next booked figure of today is not stale
    later = event("b2", T0 + timedelta(hours=1), None, booked_usd=Decimal("95"), balance_code=BalanceCode.ITBD)
    assert s.apply(later) is Outcome.APPLIED and s.booked_usd == Decimal("95")


def test_refuse_future_raises_for_the_first_future_event() -> None:
    refuse_future([event("e1", NOW), event("e2", NOW - timedelta(hours=1))], NOW, 300)
    with pytest.raises(MessageRejected) as raised:
        refuse_future([event("e1", NOW), event("e2099", datetime(2099, 1, 1, tzinfo=UTC))], NOW, 300)
    assert raised.value.field == "as_of_ts" and "2099-01-01T00:00:00Z" in raised.value.reason
