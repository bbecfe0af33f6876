"""What booked entries prove about orders and investments (actors/settlement.py), without I/O."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from actors.account_state import entry_future_dated, refuse_future
from actors.settlement import (
    Book,
    Break,
    BreakKind,
    InvestmentCandidate,
    Matched,
    Mature,
    OrderCandidate,
    Settle,
    Terms,
    ledger_forms,
    maturity_date,
    maturity_window,
    plan_entries,
)
from schemas.errors import MessageRejected
from schemas.statement_entry import EntryDirection, EntryStatus, StatementEntry
from treasury.business_calendar import FED, WEEKDAYS
from treasury.metrics import BREAK_KINDS
from treasury.order_status import OrderStatus

ORDER_ID = "0190a3c2-e1f4-7c3a-8b2d-4f5e6a7b8c9d"
OTHER_ID = "0190a3c2-e1f4-7c3a-8b2d-000000000002"
FRIDAY = date(2026, 11, 27)
CREATED = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
TERMS = Terms(carbon_note_tenor_days=91, tbill_days=28, calendar=FED)  # the default BUSINESS_CALENDAR, pinned


def order(order_id: str = ORDER_ID, amount: str = "8500000", status: OrderStatus = OrderStatus.ACK,
          product: str = "TBILL_4W", created: datetime = CREATED, ladder: int | None = 28) -> OrderCandidate:
    return OrderCandidate(order_id, "A1", Decimal(amount), status, created, product, ladder)


def entry(entry_id: str = "E1", amount: str = "8500000", direction: str = "DBIT", day: date = FRIDAY,
          status: str = "BOOK", **refs: Any) -> StatementEntry:
    return StatementEntry.model_validate({
        "entry_id": entry_id, "account_id": "A1", "direction": direction, "status": status, "amount_usd": amount,
        "booking_date": day.isoformat(), "booked_ts": datetime(day.year, day.month, day.day, 15, tzinfo=UTC),
        **refs})


def book(*orders: OrderCandidate, investments: tuple[InvestmentCandidate, ...] = ()) -> Book:
    return Book({o.order_id: o for o in orders}, {i.order_id: i for i in investments})


def test_a_booked_debit_naming_the_order_with_its_amount_settles_it_and_opens_an_investment() -> None:
    [action] = plan_entries([entry(end_to_end_id=ORDER_ID)], held := book(order()), TERMS)
    assert isinstance(action, Settle)
    assert action.matched_by is Matched.END_TO_END_ID and action.order.status is OrderStatus.SETTLED
    assert action.investment.principal_usd == Decimal("8500000")
    assert action.investment.value_date == FRIDAY
    assert action.investment.maturity_date == date(2026, 12, 28)  # the 28-day ladder: Christmas Day -> Monday
    assert ORDER_ID not in held.orders and ORDER_ID in held.investments


def test_the_id_without_hyphens_or_in_upper_case_names_the_same_order() -> None:
    """pain.001's EndToEndId is Max35Text: a UUID travels as its 32 hex digits."""
    short = ORDER_ID.replace("-", "").upper()
    assert len(short) == 32
    [action] = plan_entries([entry(end_to_end_id=short)], book(order()), TERMS)
    assert isinstance(action, Settle) and action.order.order_id == ORDER_ID
    assert ORDER_ID in ledger_forms([short])


@pytest.mark.parametrize(("refs", "matched"), [
    ({"instr_id": ORDER_ID}, Matched.INSTR_ID),
    ({"customer_references": ["INV-77", ORDER_ID]}, Matched.REFERENCE),
])
def test_the_id_is_read_from_instr_id_and_finastra_references(refs: dict[str, Any], matched: Matched) -> None:
    [action] = plan_entries([entry(**refs)], book(order()), TERMS)
    assert isinstance(action, Settle) and action.matched_by is matched


def test_another_amount_is_a_break_with_both_figures_and_settles_nothing() -> None:
    [action] = plan_entries([entry(amount="8400000", end_to_end_id=ORDER_ID)], held := book(order()), TERMS)
    assert isinstance(action, Break) and action.kind is BreakKind.AMOUNT
    assert "8400000" in action.detail and "8500000" in action.detail
    assert action.order_amount_usd == Decimal("8500000")
    assert ORDER_ID in held.orders  # still settleable by the right entry


@pytest.mark.parametrize("status", [OrderStatus.FAILED, OrderStatus.NEW, OrderStatus.SETTLED])
def test_a_debit_naming_an_order_that_cannot_settle_is_a_break(status: OrderStatus) -> None:
    [action] = plan_entries([entry(end_to_end_id=ORDER_ID)], book(order(status=status)), TERMS)
    assert isinstance(action, Break) and action.kind is BreakKind.NOT_SETTLEABLE and status in action.detail


def test_without_the_id_a_single_order_of_that_amount_settles_by_amount_and_date() -> None:
    [action] = plan_entries([entry()], book(order(), order(OTHER_ID, amount="100")), TERMS)
    assert isinstance(action, Settle) and action.matched_by is Matched.AMOUNT_AND_DATE
    assert action.order.order_id == ORDER_ID


def test_without_the_id_two_orders_of_that_amount_are_ambiguous() -> None:
    [action] = plan_entries([entry()], held := book(order(), order(OTHER_ID)), TERMS)
    assert isinstance(action, Break) and action.kind is BreakKind.AMBIGUOUS
    assert set(held.orders) == {ORDER_ID, OTHER_ID}


def test_without_the_id_an_order_created_after_the_booking_date_does_not_match() -> None:
    assert plan_entries([entry()], book(order(created=CREATED + timedelta(days=3))), TERMS) == []


def test_a_debit_settles_one_order_and_an_order_is_settled_once() -> None:
    first, second = entry("E1", end_to_end_id=ORDER_ID), entry("E2", end_to_end_id=ORDER_ID)
    actions = plan_entries([first, second], book(order()), TERMS)
    assert isinstance(actions[0], Settle)
    assert len(actions) == 1 or not isinstance(actions[1], Settle)
    # and an unnamed debit of the same amount does not settle a second, already settled order
    assert plan_entries([entry("E3")], book(), TERMS) == []


@pytest.mark.parametrize("status", ["PDNG", "INFO", "FUTR"])
def test_entries_not_booked_settle_nothing(status: str) -> None:
    pending = StatementEntry(entry_id="P1", account_id="A1", direction=EntryDirection.DBIT,
                             status=EntryStatus(status), amount_usd=Decimal("8500000"), end_to_end_id=ORDER_ID)
    assert plan_entries([pending], book(order()), TERMS) == []


def test_an_operating_debit_is_nobodys() -> None:
    assert plan_entries([entry(amount="1234.56")], book(order()), TERMS) == []


def investment(principal: str = "8500000", value: date = FRIDAY, maturity: date = date(2026, 11, 30),
               order_id: str = ORDER_ID) -> InvestmentCandidate:
    return InvestmentCandidate(order_id, "A1", Decimal(principal), value, maturity)


def test_a_credit_naming_the_investment_matures_it() -> None:
    credit = entry("C1", amount="8501000", direction="CRDT", day=date(2026, 11, 30), end_to_end_id=ORDER_ID)
    [action] = plan_entries([credit], held := book(investments=(investment(),)), TERMS)
    assert isinstance(action, Mature) and action.matched_by is Matched.END_TO_END_ID
    assert held.investments == {}


def test_a_credit_naming_the_investment_for_less_than_its_principal_is_a_break() -> None:
    credit = entry("C1", amount="8000000", direction="CRDT", day=date(2026, 11, 30), end_to_end_id=ORDER_ID)
    [action] = plan_entries([credit], held := book(investments=(investment(),)), TERMS)
    assert isinstance(action, Break) and action.kind is BreakKind.MATURITY_SHORT
    assert ORDER_ID in held.investments


def test_an_unnamed_credit_matures_the_one_due_investment_it_fits() -> None:
    due = investment()
    low, high = maturity_window(due)
    assert low == Decimal("8500000") and Decimal("8500000") < high < Decimal("8510000")
    credit = entry("C1", amount="8500700", direction="CRDT", day=date(2026, 11, 30))
    [action] = plan_entries([credit], book(investments=(due,)), TERMS)
    assert isinstance(action, Mature) and action.matched_by is Matched.AMOUNT_AND_DATE
    # not yet due, or far more than principal and interest: an operating credit
    early = entry("C2", amount="8500700", direction="CRDT", day=date(2026, 11, 27))
    assert plan_entries([early], book(investments=(due,)), TERMS) == []
    large = entry("C3", amount="9500000", direction="CRDT", day=date(2026, 11, 30))
    assert plan_entries([large], book(investments=(due,)), TERMS) == []


def test_two_due_investments_an_unnamed_credit_fits_are_ambiguous() -> None:
    both = (investment(), investment(order_id=OTHER_ID))
    credit = entry("C1", amount="8500100", direction="CRDT", day=date(2026, 11, 30))
    [action] = plan_entries([credit], book(investments=both), TERMS)
    assert isinstance(action, Break) and action.kind is BreakKind.AMBIGUOUS


@pytest.mark.parametrize(("product", "value", "ladder", "expected"), [
    ("FED_RRP", date(2026, 11, 26), None, date(2026, 11, 27)),  # Thanksgiving -> Friday (the Fed is open)
    ("FED_RRP", date(2026, 11, 27), None, date(2026, 11, 30)),  # Friday -> Monday
    ("TBILL_4W", date(2026, 11, 27), 28, date(2026, 12, 28)),  # Christmas Day, a Friday -> Monday
    ("TBILL_4W", date(2026, 11, 26), 30, date(2026, 12, 28)),  # Saturday Dec 26 rolls to Monday
    ("TBILL_4W", date(2026, 11, 26), None, date(2026, 12, 24)),  # the terms' default ladder, 28
    ("CARBON_NOTE", date(2026, 11, 27), None, date(2027, 2, 26)),  # + 91 days
])
def test_maturity_dates_fall_on_business_days(product: str, value: date, ladder: int | None, expected: date) -> None:
    got = maturity_date(product, value, TERMS, ladder)
    assert got == expected and FED.is_business_day(got)


@pytest.mark.parametrize(("product", "value", "ladder", "fed", "weekdays"), [
    ("TBILL_4W", date(2026, 11, 27), 28, date(2026, 12, 28), date(2026, 12, 25)),  # Christmas Day, a Friday
    ("FED_RRP", date(2026, 12, 31), None, date(2027, 1, 4), date(2027, 1, 1)),  # Thursday; New Year on Friday
    ("FED_RRP", date(2025, 1, 17), None, date(2025, 1, 21), date(2025, 1, 20)),  # Friday, MLK Day Monday
    ("FED_RRP", date(2025, 11, 26), None, date(2025, 11, 28), date(2025, 11, 27)),  # Thanksgiving
    ("TBILL_4W", date(2025, 5, 29), 28, date(2025, 6, 26), date(2025, 6, 26)),  # no holiday: both alike
    ("TBILL_4W", date(2025, 6, 7), 28, date(2025, 7, 7), date(2025, 7, 7)),  # Saturday July 5 -> Monday
    ("TBILL_4W", date(2025, 6, 6), 28, date(2025, 7, 7), date(2025, 7, 4)),  # Independence Day, a Friday
    ("CARBON_NOTE", date(2026, 8, 12), None, date(2026, 11, 12), date(2026, 11, 11)),  # Veterans Day, Wed
    ("TBILL_4W", date(2021, 12, 3), 28, date(2021, 12, 31), date(2021, 12, 31)),  # Jan 1 2022 a Saturday
])
def test_maturities_roll_over_the_calendars_holidays(product: str, value: date, ladder: int | None, fed: date,
                                                     weekdays: date) -> None:
    assert maturity_date(product, value, TERMS, ladder) == fed
    assert maturity_date(product, value, Terms(91, 28, WEEKDAYS), ladder) == weekdays


def test_maturities_follow_business_calendar_when_the_terms_name_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUSINESS_CALENDAR", "weekdays")
    assert maturity_date("TBILL_4W", date(2026, 11, 27), Terms(), 28) == date(2026, 12, 25)
    monkeypatch.setenv("BUSINESS_CALENDAR", "fed")
    assert maturity_date("TBILL_4W", date(2026, 11, 27), Terms(), 28) == date(2026, 12, 28)
    monkeypatch.delenv("BUSINESS_CALENDAR")  # the default: the Fed's
    assert maturity_date("FED_RRP", date(2026, 12, 24), Terms()) == date(2026, 12, 28)


def test_every_break_kind_is_a_metric_label() -> None:
    assert set(BREAK_KINDS) == {k.value for k in BreakKind}


def test_an_entry_booked_in_the_future_is_refused_but_a_value_date_ahead_is_not() -> None:
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    ahead = entry(day=date(2026, 12, 5))
    refusal = entry_future_dated(ahead, now, 300)
    assert refusal is not None and refusal.field in {"booking_date", "booked_ts"} and "future" in refusal.reason
    with pytest.raises(MessageRejected):
        refuse_future([ahead], now, 300)
    today_eod = StatementEntry(entry_id="T1", account_id="A1", direction=EntryDirection.DBIT, amount_usd=Decimal(1),
                               booking_date=date(2026, 11, 30), value_date=date(2026, 12, 5),
                               booked_ts=datetime(2026, 11, 30, 23, 59, 59, 999999, tzinfo=UTC))
    assert entry_future_dated(today_eod, now, 300) is None


def test_a_booked_entry_needs_its_booking_date_and_time() -> None:
    with pytest.raises(ValueError, match="booking_date and booked_ts"):
        StatementEntry(entry_id="X", account_id="A1", direction=EntryDirection.DBIT, amount_usd=Decimal(1))
