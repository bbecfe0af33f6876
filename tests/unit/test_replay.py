"""Replay and what-if (actors/replay.py), pure: the timeline, what was known when, the counterfactual
balance, the figures, and the parsing of --set, --grid and --rates."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from actors import replay
from actors.replay import (
    Decided,
    Known,
    ReplayOrder,
    Transfer,
    Variant,
    adjusted,
    breaches,
    daily_outflows,
    interest,
    invested_days,
    parse_grid,
    parse_rates,
    parse_sets,
    run_variant,
    timeline,
    variants,
)
from storage.accounts import Account
from storage.forecasts import ForecastRow
from storage.replay_source import BalanceRec, EntryRec, LiveOrder, ReplaySource, StartRec, VarRec
from treasury.settings import ConfigError, PolicyConfig

T0 = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)  # a Tuesday, before the 15:30 cut-off
M = Decimal("1000000")
LIVE = Variant("live", PolicyConfig())


def bal(i: int, event_id: str, avail: Decimal | None, at: datetime, received: datetime, account: str = "A",
        projection: Decimal | None = None) -> BalanceRec:
    return BalanceRec(i, account, event_id, at, "INTRADAY", "ITAV" if avail is not None else "CLBD", avail,
                      None if avail is not None else Decimal(1), projection, received)


def ent(i: int, entry_id: str, amount: Decimal, booked: datetime, received: datetime, direction: str = "DBIT",
        own: str | None = None, order_id: str | None = None, account: str = "A") -> EntryRec:
    return EntryRec(i, account, entry_id, direction, "BOOK", amount, booked.date(), booked, booked.date(), own,
                    order_id, received)


# -- the timeline and what was known ------------------------------------------------------------
def test_the_timeline_is_the_shard_order_received_then_entries_first_then_id() -> None:
    t = T0
    b1, b2 = bal(7, "b1", M, t, t + timedelta(seconds=2)), bal(3, "b2", M, t, t + timedelta(seconds=2))
    e1 = ent(9, "e1", M, t, t + timedelta(seconds=2))
    e0 = ent(1, "e0", M, t, t + timedelta(seconds=1))
    b0 = bal(20, "b0", M, t, t)
    assert [x.id for x in timeline([b1, b2, b0], [e1, e0])] == [20, 1, 9, 3, 7]


def test_var_and_forecast_are_those_computed_by_then_never_later() -> None:
    rows = [VarRec("A", Decimal("5000"), 250, T0), VarRec("A", Decimal("90000"), 251, T0 + timedelta(hours=1)),
            VarRec("A", None, 10, T0 + timedelta(hours=2))]
    known = Known(rows, [ForecastRow("A", date(2026, 3, 11), M, "m", computed_ts=T0),
                         ForecastRow("A", date(2026, 3, 10), 2 * M, "m", computed_ts=T0 + timedelta(hours=1))])
    assert known.var("A", T0 - timedelta(seconds=1)) == (None, None)
    assert known.var("A", T0) == (5000.0, 250)
    assert known.var("A", T0 + timedelta(minutes=59)) == (5000.0, 250)  # the next one is not known yet
    assert known.var("A", T0 + timedelta(hours=1)) == (90000.0, 251)
    assert known.var("A", T0 + timedelta(hours=3)) == (None, 10)
    assert known.var("B", T0 + timedelta(hours=3)) == (None, None)
    assert known.forecast("A", T0 - timedelta(seconds=1)) is None
    # a shard keeps the forecast of the latest day it was given: an older day computed later does not replace it
    forecast = known.forecast("A", T0 + timedelta(hours=2))
    assert forecast is not None and forecast.for_date == date(2026, 3, 11)


# -- the counterfactual balance -----------------------------------------------------------------
def test_the_adjustment_swaps_the_live_own_transfers_for_the_variants_booked_by_then() -> None:
    live = [Transfer(T0, -8 * M), Transfer(T0 + timedelta(days=1), 8 * M + 2000)]
    mine = [Transfer(T0, -6 * M), Transfer(T0 + timedelta(hours=2), -M)]
    assert adjusted(3 * M, T0 - timedelta(seconds=1), live, mine) == 3 * M  # nothing booked yet
    assert adjusted(3 * M, T0, live, mine) == 5 * M  # 2 M less swept: 2 M more on the account
    assert adjusted(3 * M, T0 + timedelta(hours=3), live, mine) == 4 * M
    # the live maturity came back (+8 M and interest); the variant's 7 M are still out
    assert adjusted(3 * M, T0 + timedelta(days=2), live, mine) == 3 * M - 2000 - 7 * M
    assert adjusted(3 * M, T0, live, live) == 3 * M  # the live policy: no adjustment


# -- figures ------------------------------------------------------------------------------------
def order(value: date | None, maturity: date | None, amount: Decimal = 10 * M,
          product: str = "TBILL_4W") -> ReplayOrder:
    return ReplayOrder("A:e", "A", product, amount, T0, T0, None, value_date=value, maturity=maturity)


def test_usd_days_count_the_days_invested_within_the_period_and_yield_is_act_360() -> None:
    start, end = date(2026, 3, 1), date(2026, 3, 31)
    assert invested_days(order(date(2026, 3, 10), date(2026, 4, 7)), start, end) == 22  # 10..31 March
    assert invested_days(order(date(2026, 2, 20), date(2026, 3, 3)), start, end) == 2  # 1 and 2 March
    assert invested_days(order(date(2026, 3, 10), date(2026, 3, 11)), start, end) == 1  # overnight
    assert invested_days(order(None, None), start, end) == 0  # never settled
    assert invested_days(order(date(2026, 4, 2), date(2026, 4, 3)), start, end) == 0
    assert interest(10 * M, Decimal("4.2"), 22) == Decimal("25666.6667")  # 10 M x 4.2 % x 22 / 360
    assert interest(10 * M, Decimal("0"), 22) == 0


def test_a_breach_is_a_day_whose_outflows_exceed_what_the_policy_left() -> None:
    day = date(2026, 3, 11)
    start = datetime(2026, 3, 11, tzinfo=UTC)
    decided = [Decided(start - timedelta(hours=8), Decimal("600000")),  # yesterday's last: 600 k left
               Decided(start + timedelta(hours=10), Decimal("300000"))]  # after 400 k went out: 300 k left
    debit = ent(1, "d1", Decimal("400000"), start + timedelta(hours=9), start + timedelta(hours=20))
    outflows = daily_outflows([debit], day, day)
    assert breaches(decided, outflows) == {}  # 600 k covered 400 k; 300 k left after it plus 400 k: 700 k
    late = ent(2, "d2", Decimal("300000"), start + timedelta(hours=16), start + timedelta(hours=20))
    own = ent(3, "s1", Decimal("9000000"), start + timedelta(hours=16), start + timedelta(hours=20), own="SWEEP",
              order_id="o")
    assert breaches(decided, daily_outflows([debit, late, own], day, day)) == {day: Decimal("100000")}
    assert breaches([], outflows) == {}  # no policy in force yet: not counted
    assert daily_outflows([debit], date(2026, 3, 12), date(2026, 3, 31)) == {}  # outside the period


# -- parsing ------------------------------------------------------------------------------------
def test_set_grid_and_rates_are_validated_like_live_configuration_naming_the_key() -> None:
    base = PolicyConfig()
    grid = parse_grid(["LIQ_BUFFER_PCT=0.1,0.2,0.3", "MIN_SWEEP_USD=100000,500000"])
    made = variants(base, parse_sets(["VAR_LIMIT_BPS=12"]), grid)
    assert len(made) == 6 and made[0].name == "VAR_LIMIT_BPS=12 LIQ_BUFFER_PCT=0.1 MIN_SWEEP_USD=100000"
    assert str(made[-1].config.LIQ_BUFFER_PCT) == "0.3" and made[-1].config.VAR_LIMIT_BPS == 12
    assert [v.name for v in variants(base, {}, [])] == ["live"]
    for bad, key in ((lambda: parse_sets(["LIQ_BUFER_PCT=0.2"]), "LIQ_BUFER_PCT"),
                     (lambda: variants(base, parse_sets(["LIQ_BUFFER_PCT=1.5"]), []), "LIQ_BUFFER_PCT"),
                     (lambda: variants(base, {}, parse_grid(["MIN_SWEEP_USD=1e5,abc"])), "MIN_SWEEP_USD"),
                     (lambda: parse_grid(["TARGET_LADDER_DAYS=7,7"]), "TARGET_LADDER_DAYS"),
                     (lambda: parse_grid(["SWEEP_CUTOFFS_UTC=10:00"]), "SWEEP_CUTOFFS_UTC"),
                     (lambda: variants(base, parse_sets(["VAR_LIMIT_BPS=5"]), parse_grid(["VAR_LIMIT_BPS=1,2"])),
                      "VAR_LIMIT_BPS"),
                     (lambda: parse_rates("TBILL_4W=x"), "TBILL_4W"),
                     (lambda: parse_rates("TBILL_4W=120"), "TBILL_4W"),
                     (lambda: parse_rates("BITCOIN=4"), "BITCOIN")):
        with pytest.raises(ConfigError, match=key):
            bad()
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_sets(["LIQ_BUFFER_PCT"])
    rates = parse_rates("FED_RRP=4.3,TBILL_4W=4.2")
    assert rates == {"FED_RRP": Decimal("4.3"), "TBILL_4W": Decimal("4.2"), "CARBON_NOTE": Decimal(0)}


# -- a whole replay -----------------------------------------------------------------------------
def source() -> ReplaySource:
    """Account A (minimum 1 M, VaR 1 k): 10 M with a 2 M projection -> the live run swept 8.4 M to
    TBILL_4W; the debit was booked at 14:30; at 16:00 the account showed 2.1 M (0.5 M came in) and
    the live run swept 0.5 M more; a 1.5 M payment went out the next day."""
    a = Account("A", min_balance_usd=M)
    o1 = LiveOrder("o1", "A:b1", "A", Decimal("8400000"), "TBILL_4W", T0 + timedelta(seconds=1),
                   datetime(2026, 3, 10, 15, 30, tzinfo=UTC), "SETTLED", T0 + timedelta(minutes=30),
                   T0 + timedelta(minutes=40))
    o2 = LiveOrder("o2", "A:b2", "A", Decimal("500000"), "TBILL_4W", T0 + timedelta(hours=2, seconds=1),
                   datetime(2026, 3, 11, 0, 30, tzinfo=UTC), "ACK")
    return ReplaySource(
        date(2026, 3, 10), date(2026, 3, 11), {"A": a}, {"A": StartRec(None)},
        balances=[bal(1, "b1", 10 * M, T0, T0 + timedelta(seconds=2), projection=2 * M),
                  bal(2, "b2", Decimal("2100000"), T0 + timedelta(hours=2), T0 + timedelta(hours=2, seconds=2),
                      projection=2 * M)],
        entries=[ent(1, "s1", Decimal("8400000"), T0 + timedelta(minutes=30), T0 + timedelta(minutes=40),
                     own="SWEEP", order_id="o1"),
                 ent(2, "p1", Decimal("1500000"), T0 + timedelta(days=1, hours=1), T0 + timedelta(days=1, hours=2))],
        orders=[o1, o2],
        var_results=[VarRec("A", Decimal("1000"), 250, T0 - timedelta(days=1))],
    )


def test_the_live_policy_reproduces_the_live_orders_and_a_what_if_differs() -> None:
    src = source()
    live = run_variant(src, LIVE, parse_rates("TBILL_4W=4.2"))
    assert [(o.decision_key, o.product, o.amount_usd) for o in live.orders] == [
        ("A:b1", "TBILL_4W", Decimal("8400000")), ("A:b2", "TBILL_4W", Decimal("500000"))]
    assert live.orders[0].twin is not None and live.orders[0].value_date == date(2026, 3, 10)
    figures = live.as_dict()
    assert figures["orders"] == {"TBILL_4W": {"count": 2, "usd": "8900000.0000"}}
    # 8.4 M settled on the 10th, invested the 10th and 11th; 0.5 M never settled in the ledger
    assert figures["usd_days"] == "16800000.0000" and figures["yield_usd"] == interest(
        Decimal("8400000"), Decimal("4.2"), 2).to_eng_string()
    assert figures["buffer_breaches"] == 1  # 1.5 M out on the 11th; the policy left 0.6 M above the minimum

    [wide] = variants(PolicyConfig(), parse_sets(["LIQ_BUFFER_PCT=0.8"]), [])
    what_if = run_variant(src, wide, {})
    # 9 M - 1.6 M = 7.4 M; at 16:00 the account would have shown 2.1 M + 1 M, excess 2.1 M - 1.6 M = 0.5 M
    assert [(o.decision_key, o.amount_usd) for o in what_if.orders] == [
        ("A:b1", Decimal("7400000")), ("A:b2", Decimal("500000"))]
    assert what_if.as_dict()["buffer_breaches"] == 0  # 1.6 M left covers the 1.5 M


def test_an_order_the_live_run_did_not_make_settles_at_its_cutoff() -> None:
    src = source()
    [low] = variants(PolicyConfig(), parse_sets(["MIN_SWEEP_USD=10000000"]), [])  # nothing is big enough
    assert run_variant(src, low, {}).orders == []
    src.orders = []  # as if the live run had made no order at all (and no debit came)
    src.entries = [e for e in src.entries if e.own_transfer is None]
    src.balances[1] = bal(2, "b2", 10 * M, T0 + timedelta(hours=2), T0 + timedelta(hours=2, seconds=2))
    result = run_variant(src, LIVE, {})
    first = result.orders[0]
    assert first.twin is None and first.booked_ts == first.cutoff_utc == datetime(2026, 3, 10, 15, 30, tzinfo=UTC)
    # still pending at 16:00 for a balance taken before its cut-off? No: 16:00 is after it, and the balance
    # (adjusted by the assumed debit) shows 10 M - 8.4 M: 1.6 M, excess 0.6 M, all of it the buffer
    assert len(result.orders) == 1 and replay.status_at(first, T0 + timedelta(hours=2)).value == "SETTLED"
