from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal

from schemas.balance_event import BalanceCode, BalanceKind
from serve_app.job.simulator import FeedSimulator, hourly_net_flow, make_accounts


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
    assert len({(e.account_id, e.event_id) for e in first}) == len(first)
    closes = [e for e in first if e.kind is BalanceKind.PRIOR_DAY]
    assert len(closes) == 3 and all(e.balance_code is BalanceCode.CLBD and e.booked_usd is not None for e in closes)
    intraday = [e for e in first if e.kind is BalanceKind.INTRADAY]
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
    events = list(live(profiles, rate=8).events(8))
    # 4 accounts at 8 events/s: one tick every half second of simulated (and real) time
    stamps = sorted({e.as_of_ts for e in events})
    assert stamps[1] - stamps[0] == timedelta(seconds=0.5)
    assert all(abs(e.as_of_ts - before) < timedelta(seconds=5) for e in events)
