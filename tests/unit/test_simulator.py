from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from schemas.balance_event import BalanceCode, BalanceEvent, BalanceKind
from schemas.balance_record import ENTRY_SCHEMA_VERSION, SCHEMA_VERSION
from schemas.statement_entry import StatementEntry
from serve_app.job.bank.model import BankReport, Order
from serve_app.job.simulator import (
    PAYMENT_SHARE,
    FeedSimulator,
    SimProfile,
    hourly_net_flow,
    make_accounts,
    payment_weight,
    produce_all,
    stream,
)

FED = "fed"


def by_day(reports: Sequence[BankReport], account_id: str) -> dict[date, dict[str, Decimal]]:
    """An account's statements by day: CRDT and DBIT totals, and its close."""
    days: dict[date, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for r in reports:
        if r.account_id != account_id:
            continue
        if isinstance(r, StatementEntry):
            assert r.booking_date is not None
            days[r.booking_date][r.direction.value] += r.amount_usd
        elif r.balance_code is BalanceCode.CLBD:
            assert r.booked_usd is not None
            days[r.as_of_ts.date()]["close"] = r.booked_usd
    return days


def calm(profiles: Sequence[SimProfile]) -> list[SimProfile]:
    return [p for p in profiles if not p.volatile]


def test_accounts_are_reproducible_and_realistic() -> None:
    a, b = make_accounts(10, seed=3), make_accounts(10, seed=3)
    assert a == b and len({p.account.account_id for p in a}) == 10
    assert [p.account.esg_pref for p in a].count(True) == 2
    assert all(Decimal(5_000_000) <= p.opening_usd < Decimal(50_000_000) for p in a)
    assert make_accounts(1, prefix="X-")[0].account.account_id == "X-00000000"


def test_feed_is_deterministic_with_daily_statements() -> None:
    profiles = make_accounts(3)
    first = list(FeedSimulator(profiles, seed=1).events(3 * 30))
    again = list(FeedSimulator(profiles, seed=1).events(3 * 30))
    assert first == again
    assert len({(e.account_id, e.event_id if isinstance(e, BalanceEvent) else e.entry_id) for e in first}) == len(first)
    balances = [e for e in first if isinstance(e, BalanceEvent)]
    closes = [e for e in balances if e.kind is BalanceKind.PRIOR_DAY]
    assert len(closes) == 3 and all(e.balance_code is BalanceCode.CLBD and e.booked_usd is not None for e in closes)
    entries = [e for e in first if isinstance(e, StatementEntry)]
    assert len(entries) == 6  # Monday's takings and payments of each account, just before its close
    intraday = [e for e in balances if e.kind is BalanceKind.INTRADAY]
    assert all(e.available_usd is not None and e.projected_outflows_24h_usd for e in intraday)
    per_account = [e.as_of_ts for e in intraday if e.account_id == profiles[0].account.account_id]
    assert per_account == sorted(per_account)


def test_casino_cycle_peaks_at_night_and_weekends() -> None:
    [p] = make_accounts(1)
    quiet = random.Random(0)
    monday_morning = sum(hourly_net_flow(p, datetime(2025, 6, 2, 9, tzinfo=UTC), quiet) for _ in range(50))
    saturday_night = sum(hourly_net_flow(p, datetime(2025, 6, 7, 23, tzinfo=UTC), quiet) for _ in range(50))
    assert saturday_night > 0 > monday_morning


def test_live_feed_follows_the_real_clock() -> None:
    from datetime import timedelta

    from serve_app.job.simulator import live

    profiles = make_accounts(4)
    before = datetime.now(UTC)
    events = [e for e in live(profiles, rate=8).events(8) if isinstance(e, BalanceEvent)]
    # 4 accounts at 8 events/s: one tick every half second of simulated (and real) time
    stamps = sorted({e.as_of_ts for e in events})
    assert stamps[1] - stamps[0] == timedelta(seconds=0.5)
    assert all(abs(e.as_of_ts - before) < timedelta(seconds=5) for e in events)


def test_payments_follow_the_weekday_profile_on_business_days_only() -> None:
    """Three weeks of August 2025 (no Fed holiday): Monday's suppliers and Friday's payroll are the
    heavy days, Tuesday to Thursday lighter, weekends pay nothing; takings come in every day."""
    profiles = make_accounts(2, prefix="W-")
    reports = FeedSimulator(profiles, start=datetime(2025, 8, 4, tzinfo=UTC)).advance(datetime(2025, 8, 25,
                                                                                              tzinfo=UTC))
    for p in profiles:
        days = by_day(reports, p.account.account_id)
        assert len(days) == 21 and all(d["CRDT"] > 0 for d in days.values())
        paid: dict[int, list[Decimal]] = defaultdict(list)
        for day, d in days.items():
            paid[day.weekday()].append(d["DBIT"])
        assert paid[5] == paid[6] == [Decimal(0)] * 3  # no DBIT entry at all at weekends
        level = p.daily_takings_usd * PAYMENT_SHARE
        for weekday, weight in enumerate(("1.2", "0.9", "0.9", "0.9", "1.3")):
            assert all(abs(x / (level * Decimal(weight)) - 1) < Decimal("0.13") for x in paid[weekday]), (weekday,
                                                                                                         paid)
        assert min(paid[0] + paid[4]) > max(paid[1] + paid[2] + paid[3])
        weekend = min(days[date(2025, 8, 9)]["CRDT"], days[date(2025, 8, 10)]["CRDT"])
        assert weekend > max(days[date(2025, 8, n)]["CRDT"] for n in (11, 12, 13, 14))  # more from Friday on


def test_a_holidays_payments_move_to_the_next_business_day() -> None:
    assert payment_weight(date(2025, 7, 4), FED) == 0  # Independence Day, a Friday
    assert payment_weight(date(2025, 7, 7), FED) == Decimal("2.5")  # Monday: its own and Friday's
    assert payment_weight(date(2025, 11, 27), FED) == 0  # Thanksgiving
    assert payment_weight(date(2025, 11, 28), FED) == Decimal("2.2")
    assert payment_weight(date(2025, 9, 2), FED) == Decimal("2.1")  # the Tuesday after Labor Day
    assert payment_weight(date(2025, 7, 8), FED) == Decimal("0.9")
    assert payment_weight(date(2025, 7, 5), FED) == payment_weight(date(2025, 7, 6), FED) == 0
    assert payment_weight(date(2025, 7, 4), "weekdays") == Decimal("1.3")  # another calendar, another year
    profiles = make_accounts(3, prefix="H-")
    reports = FeedSimulator(profiles, start=datetime(2025, 6, 23, tzinfo=UTC)).advance(datetime(2025, 7, 15,
                                                                                               tzinfo=UTC))
    for p in calm(profiles):
        days = by_day(reports, p.account.account_id)
        assert days[date(2025, 7, 4)]["DBIT"] == 0 and days[date(2025, 7, 4)]["CRDT"] > 0
        monday, before, after = (days[day]["DBIT"] for day in (date(2025, 7, 7), date(2025, 6, 30), date(2025, 7, 14)))
        assert monday / before > Decimal("1.8") and monday / after > Decimal("1.8")  # 2.5 / 1.2, give or take
        assert monday < days[date(2025, 7, 7)]["CRDT"]  # and still less than the day's takings


def test_calm_accounts_gain_every_day_of_a_year_and_volatile_ones_do_not() -> None:
    """A year from June 2025: eleven Fed holidays, three of them on a Friday or a Thursday."""
    profiles = make_accounts(5, seed=11, prefix="Y-")
    reports = FeedSimulator(profiles, seed=11, start=datetime(2025, 6, 2, tzinfo=UTC)).advance(
        datetime(2026, 6, 2, tzinfo=UTC))
    for p in profiles:
        days = by_day(reports, p.account.account_id)
        assert len(days) == 365
        nets = [d["CRDT"] - d["DBIT"] for d in days.values()]
        worst = max(d["DBIT"] for d in days.values()) / p.daily_takings_usd
        if p.volatile:
            assert min(nets) < -p.daily_takings_usd  # jackpots: days lost by more than a day's takings
        else:
            assert min(nets) > 0 and worst <= Decimal("0.806")  # the docstring's bound


def test_entries_are_the_days_gross_flows_and_the_close_moves_by_them_and_our_own_bookings() -> None:
    [p] = make_accounts(1, prefix="G-")
    acct = p.account.account_id
    sim = FeedSimulator([p], start=datetime(2025, 6, 2, tzinfo=UTC))
    hourly: dict[date, list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
    flow = sim.bank.flow

    def spy(account_id: str, day: date, takings: Decimal, payments: Decimal) -> None:
        hourly[day][0] += takings
        hourly[day][1] += payments
        flow(account_id, day, takings, payments)

    sim.bank.flow = spy  # type: ignore[method-assign]
    reports = sim.advance(datetime(2025, 6, 4, 10, tzinfo=UTC))
    sweep = Order("0197a0d0-0000-7000-8000-00000000000a", acct, "TBILL_4W", Decimal("1234567.8900"), "ACK")
    debit = sim.bank.book_debit(sweep, sim.now)
    assert debit is not None
    reports += sim.advance(datetime(2025, 6, 6, tzinfo=UTC))
    days = by_day(reports, acct)
    closes = [days[date(2025, 6, n)]["close"] for n in (2, 3, 4, 5)]
    for n in (3, 4, 5):
        d = days[date(2025, 6, n)]
        assert (d["CRDT"], d["DBIT"]) == tuple(hourly[date(2025, 6, n)])
    assert closes[1] - closes[0] == days[date(2025, 6, 3)]["CRDT"] - days[date(2025, 6, 3)]["DBIT"]
    assert closes[2] - closes[1] == days[date(2025, 6, 4)]["CRDT"] - days[date(2025, 6, 4)]["DBIT"] - debit.amount_usd
    assert closes[3] - closes[2] == days[date(2025, 6, 5)]["CRDT"] - days[date(2025, 6, 5)]["DBIT"]
    operating = [r for r in reports if isinstance(r, StatementEntry)]
    assert all(e.end_to_end_id is None and e.amount_usd.as_tuple().exponent == -2 for e in operating)  # cents
    assert all(e.booked_ts is not None and e.booked_ts > debit.booked_ts for e in operating  # type: ignore[operator]
               if e.booking_date == date(2025, 6, 4))


def test_entry_ids_are_stable_across_runs_and_amounts_follow_the_seed() -> None:
    profiles = make_accounts(3, prefix="S-")
    start, until = datetime(2025, 11, 24, tzinfo=UTC), datetime(2025, 12, 2, tzinfo=UTC)

    def entries(seed: int) -> list[tuple[str, str, Decimal]]:
        reports = FeedSimulator(profiles, seed=seed, start=start).advance(until)
        return [(e.entry_id, e.bank_reference or "", e.amount_usd) for e in reports if isinstance(e, StatementEntry)]

    first, again, other = entries(5), entries(5), entries(6)
    assert first == again
    assert len({i for i, _, _ in first}) == len(first)
    assert [i for i, _, _ in first] == [i for i, _, _ in other] and first != other
    assert "S-00000000-20251127-PAYMENTS" not in {i for i, _, _ in first}  # Thanksgiving pays nothing
    assert "S-00000000-20251128-PAYMENTS" in {i for i, _, _ in first}


class Captured:
    """A producer that keeps what it is given."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, list[tuple[str, Any]]]] = []

    def produce(self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, Any]], **_: Any) -> None:
        self.sent.append((value, headers))

    def poll(self, _: float) -> int:
        return 0

    def flush(self, _: float = 0) -> int:
        return 0


@pytest.mark.parametrize("how", ["produce_all", "stream"])
def test_every_producer_path_sends_entries_and_balances_with_their_own_encoder(how: str) -> None:
    profiles = make_accounts(2, prefix="E-")
    sim = FeedSimulator(profiles, start=datetime(2025, 6, 2, 20, tzinfo=UTC))
    reports = list(sim.events(40))
    assert {type(r) for r in reports} == {BalanceEvent, StatementEntry}
    producer = Captured()
    if how == "produce_all":
        assert produce_all(producer, reports) == 0  # type: ignore[arg-type]
    else:
        sent = asyncio.run(stream(producer, iter(reports), 1e6, asyncio.Event()))  # type: ignore[arg-type]
        assert sent == len(reports)
    versions = [dict(h)["schema_version"] for _, h in producer.sent]
    expected = [(ENTRY_SCHEMA_VERSION if isinstance(r, StatementEntry) else SCHEMA_VERSION).encode() for r in reports]
    assert versions == expected
    parsed = [(StatementEntry if isinstance(r, StatementEntry) else BalanceEvent).model_validate_json(v)
              for (v, _), r in zip(producer.sent, reports, strict=True)]
    assert [x.model_dump(exclude={"trace_id"}) for x in parsed] == [r.model_dump(exclude={"trace_id"}) for r in reports]


def test_the_banks_projection_is_the_payments_scheduled_in_the_next_24_hours() -> None:
    [p] = make_accounts(1)
    level = p.daily_takings_usd * PAYMENT_SHARE
    assert p.projection(datetime(2025, 6, 2, 7, 30, tzinfo=UTC)) == (level * Decimal("1.2")).quantize(Decimal("0.01"))
    assert p.projection(datetime(2025, 6, 6, 12, tzinfo=UTC)) == 0  # Friday afternoon: nothing before Monday
    # Sunday noon: Monday's, and the Friday holiday's moved to it
    assert p.projection(datetime(2025, 7, 6, 12, tzinfo=UTC)) == (level * Decimal("2.5")).quantize(Decimal("0.01"))
    # Monday 10:00: the last hour of Monday's run (1.2 / 4) and three of Tuesday's (3 x 0.9 / 4)
    assert p.projection(datetime(2025, 6, 2, 10, tzinfo=UTC)) == (level * Decimal("0.975")).quantize(Decimal("0.01"))
