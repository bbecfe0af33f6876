"""The demo bank's books (serve_app.job.bank.model): what it books, when, and the past it seeds."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

import httpx
import numpy as np
import pytest

from actors.settlement import Terms, maturity_date
from risk.kernels import historical_var
from schemas.balance_event import BalanceCode, BalanceEvent
from schemas.statement_entry import EntryDirection, EntryStatus, StatementEntry
from serve_app.job.bank.connector import BankConnector
from serve_app.job.bank.model import (
    DAY_END,
    MS,
    Investment,
    ModelBank,
    Order,
    encode_report,
    maturity_amount,
    previous_business_day,
    seed_plan,
    unsettled_within_headroom,
)
from serve_app.job.simulator import FeedSimulator, make_accounts

T0 = datetime(2025, 6, 4, 10, 0, tzinfo=UTC)  # a Wednesday


def bank(**balances: str) -> ModelBank:
    return ModelBank.opening({a: Decimal(v) for a, v in balances.items()}, {a: Decimal("1000000") for a in balances})


def order(order_id: str = "0197a0d0-0000-7000-8000-000000000001", account: str = "A1", amount: str = "2500000.0000",
          status: str = "SENT", product: str = "TBILL_4W") -> Order:
    return Order(order_id, account, product, Decimal(amount), status)


def test_a_debit_is_booked_once_naming_the_order_and_every_later_balance_shows_it() -> None:
    b = bank(A1="10000000")
    before = b.intraday("A1", T0, Decimal("100"))
    entry = b.book_debit(order(), T0 + timedelta(minutes=5))
    assert entry is not None
    assert (entry.direction, entry.status) == (EntryDirection.DBIT, EntryStatus.BOOK)
    assert entry.amount_usd == Decimal("2500000")
    assert entry.end_to_end_id == order().order_id and entry.account_id == "A1"
    assert entry.booking_date == date(2025, 6, 4) and entry.booked_ts == T0 + timedelta(minutes=5)
    assert entry.bank_reference and entry.balance_after_usd == Decimal("7500000")
    assert b.book_debit(order(), T0 + timedelta(minutes=6)) is None  # never twice
    assert before.available_usd == Decimal("10000000")
    assert b.intraday("A1", T0 + timedelta(minutes=10), None).available_usd == Decimal("7500000")
    assert b.closing("A1", date(2025, 6, 4)).booked_usd == Decimal("7500000")
    assert b.book_debit(order(account="OTHER"), T0) is None  # not an account of this bank


def test_a_booking_is_never_at_or_before_a_balance_already_reported() -> None:
    b = bank(A1="10000000")
    reported = b.intraday("A1", T0 + timedelta(microseconds=1500), None).as_of_ts
    assert reported == T0 + MS  # kept to the millisecond, as the contracts carry it
    assert b.booking_instant("A1", T0) == T0 + 2 * MS
    assert b.booking_instant("A1", T0 + MS) == T0 + 2 * MS
    assert b.booking_instant("A1", T0 + timedelta(seconds=1, microseconds=999)) == T0 + timedelta(seconds=1)
    assert b.booking_instant("A2", T0) == T0  # nothing reported yet


def test_the_days_end_reports_its_gross_flows_as_booked_entries_before_the_close() -> None:
    b = bank(A1="10000000", A2="5000000")
    day = T0.date()
    b.flow("A1", day, Decimal("120000.37"), Decimal("0"))
    b.flow("A1", day, Decimal("80000.01"), Decimal("150000.55"))
    b.flow("A2", day, Decimal("1000.00"), Decimal("0"))  # no payments: no DBIT
    assert b.gross("A1", day) == (Decimal("200000.38"), Decimal("150000.55"))
    seen = b.intraday("A1", T0, None)
    assert seen.available_usd == Decimal("10049999.83")  # the flows are in the balance at once
    credit, debit, close = b.day_end("A1", day)
    end = datetime.combine(day, DAY_END, tzinfo=UTC)
    assert isinstance(credit, StatementEntry) and isinstance(debit, StatementEntry) and isinstance(close, BalanceEvent)
    assert (credit.entry_id, credit.direction, credit.amount_usd) == ("A1-20250604-TAKINGS", EntryDirection.CRDT,
                                                                      Decimal("200000.38"))
    assert (debit.entry_id, debit.direction, debit.amount_usd) == ("A1-20250604-PAYMENTS", EntryDirection.DBIT,
                                                                   Decimal("150000.55"))
    for entry in (credit, debit):
        assert entry.status is EntryStatus.BOOK and entry.booking_date == entry.value_date == day
        assert entry.booked_ts == end == close.as_of_ts  # the close is the first balance dated with them
        assert entry.end_to_end_id is None and entry.order_references == [] and entry.bank_reference
    assert close.balance_code is BalanceCode.CLBD and close.booked_usd == Decimal("10049999.83")
    assert b.balances["A1"] == Decimal("10049999.83")  # reported, not booked twice
    assert b.gross("A1", day) == (Decimal(0), Decimal(0)) and b.operating_entries("A1", day) == []
    [only, _] = b.day_end("A2", day)
    assert isinstance(only, StatementEntry) and only.direction is EntryDirection.CRDT
    assert encode_report(credit).headers[1][1] != encode_report(close).headers[1][1]  # one encoder per type


def test_takings_that_could_pass_for_an_unpaid_maturity_are_reported_as_credits_that_cannot() -> None:
    """actors.settlement matures an open investment due by the booking date with a credit naming
    nothing that lies within principal .. principal + 10 % a year: the takings must never be one."""
    b = bank(A1="10000000")
    day = date(2025, 7, 2)
    tbill = Investment("o1", "A1", "TBILL_4W", Decimal("300000"), date(2025, 6, 4), day)
    assert b.open(tbill)
    b.flow("A1", day, Decimal("300500.01"), Decimal(0))  # within 300 000 .. 302 301.38
    parts = b.operating_entries("A1", day)
    assert [e.entry_id for e in parts] == ["A1-20250702-TAKINGS-1", "A1-20250702-TAKINGS-2"]
    assert sum(e.amount_usd for e in parts) == Decimal("300500.01")
    assert all(e.amount_usd < tbill.principal_usd for e in parts)
    b.flow("A1", day + timedelta(days=1), Decimal("250000.00"), Decimal(0))  # outside the window: one credit
    assert [e.entry_id for e in b.operating_entries("A1", day + timedelta(days=1))] == ["A1-20250703-TAKINGS"]
    b.book_maturity(tbill, datetime(2025, 7, 4, 7, tzinfo=UTC))
    b.flow("A1", day + timedelta(days=2), Decimal("300500.01"), Decimal(0))  # paid back: no longer a candidate
    assert [e.entry_id for e in b.operating_entries("A1", day + timedelta(days=2))] == ["A1-20250704-TAKINGS"]


def test_a_page_books_published_orders_of_its_accounts_and_holds_the_cursor_on_an_unpublished_one() -> None:
    b = bank(A1="10000000", A2="5000000")
    sent, acked, failed = order("o1"), order("o2", status="ACK"), order("o3", status="FAILED")
    other = order("o4", account="ELSEWHERE", status="NEW")
    page = b.page([sent, acked, failed, other])
    assert page.to_book == [sent, acked] and page.advance
    b.book_debit(sent, T0)
    again = b.page([sent, acked, order("o5", account="A2", status="NEW")])
    assert again.to_book == [acked] and not again.advance


def test_a_maturity_comes_back_with_interest_once_on_or_after_its_date() -> None:
    b = bank(A1="1000000")
    tbill = Investment("o1", "A1", "TBILL_4W", Decimal("3600000"), date(2025, 6, 4), date(2025, 7, 2))
    rrp = Investment("o2", "A1", "FED_RRP", Decimal("1000000"), date(2025, 6, 4), date(2025, 6, 5))
    assert maturity_amount(tbill) == Decimal("3600000") + Decimal("11900.00")  # 3.6 M x 4.25 % x 28 / 360
    assert maturity_amount(rrp) == Decimal("1000119.44")
    assert b.open(tbill) and b.open(rrp) and not b.open(rrp)
    assert b.due(date(2025, 6, 4)) == []
    assert b.due(date(2025, 7, 2)) == [rrp, tbill]
    credit = b.book_maturity(rrp, datetime(2025, 6, 5, 7, tzinfo=UTC))
    assert credit is not None and credit.direction is EntryDirection.CRDT and credit.end_to_end_id == "o2"
    assert credit.amount_usd == Decimal("1000119.44") and credit.booking_date == date(2025, 6, 5)
    assert b.balances["A1"] == Decimal("2000119.44")
    assert b.book_maturity(rrp, datetime(2025, 6, 6, tzinfo=UTC)) is None
    assert b.due(date(2025, 7, 2)) == [tbill]


def test_the_money_invariant_names_what_was_ordered_beyond_the_headroom() -> None:
    b = bank(A1="10000000", A2="3000000")
    fine = [order("o1", amount="6000000"), order("o2", amount="3000000")]
    assert unsettled_within_headroom(b, fine) == {}
    twice = [*fine, order("o3", account="A2", amount="1500000"), order("o4", account="A2", amount="1500000")]
    assert unsettled_within_headroom(b, twice) == {"A2": (Decimal("3000000"), Decimal("2000000"))}


@pytest.mark.parametrize("offset", range(14))
def test_the_seeded_past_has_each_product_maturing_on_the_first_live_day(offset: int) -> None:
    today = date(2025, 6, 2) + timedelta(days=offset)
    plan = seed_plan(today)
    assert plan.live_from <= today and plan.live_from.weekday() < 5
    assert all(d < plan.live_from and d.weekday() < 5 for d in plan.sweep_days)
    assert (plan.sweep_days[0] - plan.start).days >= 30 and plan.days[-1] == today - timedelta(days=1)
    maturities = {p: {maturity_date(p, d, Terms()) for d in plan.sweep_days} for p in ("FED_RRP", "TBILL_4W",
                                                                                     "CARBON_NOTE")}
    assert all(plan.live_from in days for days in maturities.values())
    assert any(m > plan.live_from for m in maturities["TBILL_4W"])  # the ladder stays populated
    assert previous_business_day(plan.live_from) in plan.sweep_days


def test_a_short_history_is_refused() -> None:
    with pytest.raises(ValueError, match="VaR"):
        seed_plan(date(2025, 6, 4), history_days=100)


def test_the_simulator_reports_the_banks_balances_and_closes() -> None:
    profiles = make_accounts(3, prefix="S-")
    sim = FeedSimulator(profiles, start=T0)
    acct = profiles[0].account.account_id
    list(sim.events(3))
    entry = sim.bank.book_debit(order(account=acct, amount="1000000.0000"), sim.now)
    assert entry is not None and entry.booked_ts is not None and entry.balance_after_usd is not None
    assert entry.booked_ts == sim.now + MS  # just after the balance it reported last
    [after] = [e for e in sim.events(3) if e.account_id == acct]
    assert isinstance(after, BalanceEvent) and after.available_usd is not None and after.as_of_ts >= entry.booked_ts
    assert after.available_usd == sim.bank.balances[acct]
    assert abs(after.available_usd - entry.balance_after_usd) < Decimal(100_000)  # the debit, and one hour's flow
    statements = sim.advance(T0 + timedelta(days=2))
    closes = [c for c in statements if isinstance(c, BalanceEvent)]
    assert [c.booked_usd for c in closes if c.account_id == acct] == list(sim.bank.closes(acct).values())
    assert len(statements) == 3 * len(closes)  # a CRDT of the takings and a DBIT of the payments before each
    assert sim.balances is sim.bank.balances


def test_calm_accounts_never_lose_a_day_and_volatile_ones_breach_the_var_limit() -> None:
    """The demo's product mix: calm accounts' VaR is nil (term sweeps), jackpot accounts' is far
    above 10 bps of what they hold (overnight sweeps)."""
    profiles = make_accounts(5, prefix="V-")
    sim = FeedSimulator(profiles, start=datetime(2025, 1, 1, tzinfo=UTC))
    # 260 days, six Fed holidays among them (July 4 a Friday: the Monday after pays two days)
    closes = [c for c in sim.advance(datetime(2025, 9, 18, tzinfo=UTC)) if isinstance(c, BalanceEvent)]
    for p in profiles:
        series = [float(c.booked_usd or 0) for c in closes if c.account_id == p.account.account_id]
        flows = np.array([[b - a for a, b in itertools.pairwise(series)]])
        var = float(historical_var(flows)[0])
        if p.volatile:
            assert var / series[-1] * 10_000 > 10
        else:
            assert var == 0.0 and min(flows[0]) > 0
    assert [p.volatile for p in profiles] == [False, False, True, False, False]
    assert [p.account.esg_pref for p in profiles] == [False, False, False, False, True]


async def test_the_connector_pages_past_others_orders_and_holds_its_cursor_on_its_own_unpublished_one() -> None:
    def doc(order_id: str, account: str, status: str) -> dict[str, Any]:
        return {"order_id": order_id, "source_account": account, "target_product": "TBILL_4W",
                "amount_usd": "150000.0000", "status": status}

    pages = {"": {"orders": [{"order_id": "x1", "source_account": "T9", "status": "SENT"},  # another test's
                             doc("o1", "A1", "SENT")], "next_cursor": "c1.MQ", "count": 2},
             "c1.MQ": {"orders": [doc("o2", "A1", "NEW")], "next_cursor": "c1.Mg", "count": 1}}
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        after = request.url.params.get("after", "")
        seen.append(after)
        return httpx.Response(200, json=pages[after])

    b = bank(A1="10000000")
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer), base_url="http://api") as api:
        connector = BankConnector(b, api, cast(Any, None), page_size=2)
        first = await connector.pull()
        assert [o.order_id for o in first.orders] == ["o1"] and not first.complete
        assert connector.cursor == "c1.MQ"  # past the full page, not past the page with o2 still NEW
        pages["c1.MQ"]["orders"] = [doc("o2", "A1", "SENT")]
        again = await connector.pull()
        assert [o.order_id for o in again.orders] == ["o2"] and again.complete and connector.cursor == "c1.Mg"
    assert seen == ["", "c1.MQ", "c1.MQ"]
