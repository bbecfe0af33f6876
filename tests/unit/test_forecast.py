"""The outflow forecast (risk/forecast.py) and where decisions take their projection from (issue 17 point 2)."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actors.account_state import AccountState, decision_inputs, forecast_day
from actors.batch_plan import state_from_ledger
from actors.policy import Reason, decide
from actors.shard import ShardWorker
from risk.forecast import (
    Forecast,
    ForecastBacktest,
    account_rows,
    backtest_account,
    conformal_quantile,
    day_number,
    forecast_one,
    forecast_table,
    method_name,
    read_outflows,
    run_backtest_cli,
    run_compute_cli,
)
from risk.history import HistoryError
from schemas.balance_event import BalanceEvent, BalanceKind
from schemas.sweep_order import Product
from storage.accounts import Account
from storage.forecasts import ForecastRow
from treasury.business_calendar import FED, WEEKDAYS, BusinessCalendar
from treasury.settings import PolicyConfig

# Mon..Fri: supplier runs on Monday, payroll on Friday.
PROFILE = {0: 300_000.0, 1: 150_000.0, 2: 120_000.0, 3: 200_000.0, 4: 500_000.0}


def history(start: date, end: date, noise: float = 0.0, seed: int = 3,
            calendar: BusinessCalendar = FED) -> tuple[list[date], list[float]]:
    """Each weekday pays its profile (times lognormal noise), booked on the business day that follows."""
    rng = np.random.default_rng(seed)
    booked: dict[date, float] = {}
    day = start
    while day < end:
        if day.weekday() < 5:
            amount = PROFILE[day.weekday()] * (float(rng.lognormal(0.0, noise)) if noise else 1.0)
            on = calendar.following(day)
            booked[on] = booked.get(on, 0.0) + amount
        day += timedelta(days=1)
    days = sorted(booked)
    return days, [booked[d] for d in days]


def arrays(days: list[date], flows: list[float]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([day_number(d) for d in days], dtype=np.int64), np.array(flows, dtype=np.float64)


def table(rows: dict[str, tuple[list[date], list[float]]]) -> pa.Table:
    ids = [a for a, (d, _) in rows.items() for _ in d]
    return pa.table({"account_id": pa.array(ids, pa.string()),
                     "date": pa.array([x for d, _ in rows.values() for x in d], pa.date32()),
                     "outflow_usd": pa.array([x for _, f in rows.values() for x in f], pa.float64())})


# -- the estimator --------------------------------------------------------------------------------
def test_the_conformal_rank_covers_the_level() -> None:
    assert conformal_quantile(np.arange(1.0, 14.0)) == 13.0  # n = 13: ceil(14 * 0.9) = 13, the largest
    assert conformal_quantile(np.arange(1.0, 20.0)) == 18.0  # n = 19: ceil(20 * 0.9) = 18
    assert conformal_quantile(np.arange(1.0, 100.0)) == 90.0  # n = 99: ceil(100 * 0.9) = 90
    assert conformal_quantile(np.array([5.0, 1.0, 3.0])) == 5.0  # too few for the rank: the largest


def test_weekday_seasonality_is_recovered() -> None:
    days, flows = arrays(*history(date(2024, 6, 3), date(2024, 10, 5), noise=0.05, calendar=WEEKDAYS))
    by_weekday = {}
    for for_date in (date(2024, 10, 7), date(2024, 10, 8), date(2024, 10, 9), date(2024, 10, 10), date(2024, 10, 11)):
        f = forecast_one("A", days, flows, for_date, WEEKDAYS)
        assert f is not None and f.method == method_name() == "weekday-q90-13w" and f.samples == 13
        by_weekday[for_date.weekday()] = float(f.outflow_usd)
    # the order of the profile, each within the noise of its own level (and at or above it: a high quantile)
    assert sorted(by_weekday, key=by_weekday.__getitem__) == sorted(PROFILE, key=PROFILE.__getitem__)
    for weekday, level in PROFILE.items():
        assert level <= by_weekday[weekday] <= level * 1.25


def test_the_day_after_a_holiday_absorbs_it() -> None:
    # Memorial Day 2024 is Monday 27 May: Monday's payments are booked on Tuesday 28.
    days, flows = arrays(*history(date(2024, 2, 5), date(2024, 6, 1)))
    assert flows[list(days).index(day_number(date(2024, 5, 28)))] == PROFILE[0] + PROFILE[1]
    after = forecast_one("A", days[days < day_number(date(2024, 5, 28))], flows[days < day_number(date(2024, 5, 28))],
                         date(2024, 5, 28), FED)
    assert after is not None and after.method == "weekday-q90-13w+holiday"
    assert float(after.outflow_usd) == PROFILE[1] + PROFILE[0]  # Tuesday's level and the holiday's (a Monday's)
    # A later ordinary Tuesday: the post-holiday Tuesday is left out of its sample, not taken for a normal one.
    days, flows = arrays(*history(date(2024, 3, 4), date(2024, 6, 15)))
    tuesday = forecast_one("A", days, flows, date(2024, 6, 18), FED)
    assert tuesday is not None and float(tuesday.outflow_usd) == PROFILE[1] and tuesday.samples == 12


def test_weekend_and_holiday_rows_fold_into_the_following_business_day() -> None:
    # The rows dated on a closed day (a bank that books on Saturdays) count for the next business day.
    days, flows = arrays(*history(date(2024, 6, 3), date(2024, 10, 5), calendar=WEEKDAYS))
    saturday = day_number(date(2024, 9, 28))
    with_saturday = forecast_one("A", np.append(days, saturday), np.append(flows, 10_000_000.0), date(2024, 10, 4),
                                 WEEKDAYS)
    plain = forecast_one("A", days, flows, date(2024, 10, 4), WEEKDAYS)
    assert with_saturday == plain  # a Friday forecast: Saturday's spike is Monday's, not Friday's
    monday = forecast_one("A", np.append(days, saturday), np.append(flows, 10_000_000.0), date(2024, 10, 7), WEEKDAYS)
    assert monday is not None and float(monday.outflow_usd) == PROFILE[0] + 10_000_000.0  # the sample's largest


def test_short_histories_pool_then_give_up() -> None:
    days, flows = arrays(*history(date(2024, 9, 2), date(2024, 9, 21), calendar=WEEKDAYS))  # 3 weeks
    pooled = forecast_one("A", days, flows, date(2024, 9, 23), WEEKDAYS)
    assert pooled is not None and pooled.method == "alldays-q90-13w" and pooled.samples == 15
    assert float(pooled.outflow_usd) == PROFILE[4]  # the largest of 15 days
    days, flows = arrays(*history(date(2024, 9, 2), date(2024, 9, 6), calendar=WEEKDAYS))  # 4 days
    assert forecast_one("A", days, flows, date(2024, 9, 9), WEEKDAYS) is None


def test_days_without_a_row_inside_the_history_paid_nothing_and_null_days_are_missing() -> None:
    days = np.array([day_number(date(2024, 9, 2)), day_number(date(2024, 9, 27))], dtype=np.int64)
    forecast = forecast_one("A", days, np.array([0.0, 0.0]), date(2024, 9, 30), WEEKDAYS)
    assert forecast is not None and forecast.outflow_usd == Decimal("0.0000") and forecast.samples == 4
    gaps, flows = arrays(*history(date(2024, 6, 3), date(2024, 10, 5), calendar=WEEKDAYS))
    flows[-1] = math.nan  # Friday 4 October unknown: not a zero
    f = forecast_one("A", gaps, flows, date(2024, 10, 11), WEEKDAYS)
    assert f is not None and f.samples == 12


def test_known_inflows_are_reported_beside_never_netted() -> None:
    rows = {"A": history(date(2024, 6, 3), date(2024, 10, 5)), "B": history(date(2024, 6, 3), date(2024, 10, 5))}
    plain = forecast_table(table(rows), date(2024, 10, 11), FED)
    known = forecast_table(table(rows), date(2024, 10, 11), FED, inflows={"A": Decimal("9000000")})
    assert [f.outflow_usd for f in known] == [f.outflow_usd for f in plain] == [Decimal("500000.0000")] * 2
    assert [f.expected_inflows_usd for f in known] == [Decimal("9000000.0000"), Decimal("0.0000")]
    assert plain[0].expected_inflows_usd is None and "expected_inflows_usd" not in plain[0].as_json()
    per_account = forecast_table(table(rows), {"B": date(2024, 10, 7)}, FED)
    assert [(f.account_id, f.for_date) for f in per_account] == [("B", date(2024, 10, 7))]


# -- the backtest ---------------------------------------------------------------------------------
def test_the_backtest_never_looks_ahead() -> None:
    days, flows = arrays(*history(date(2024, 1, 2), date(2024, 12, 31), noise=0.3))
    cut = day_number(date(2024, 7, 1))
    changed = flows.copy()
    changed[days >= cut] *= 50.0  # everything from 1 July on, wildly different
    before = backtest_account("A", days, flows, FED, 0.3)
    after = backtest_account("A", days, changed, FED, 0.3)
    n = sum(d <= date(2024, 7, 1) for d in before.days)  # forecasts up to and including 1 July's
    assert before.days[:n] == after.days[:n] and n > 100
    assert np.array_equal(before.forecast[:n], after.forecast[:n])
    assert not np.array_equal(before.forecast[n:], after.forecast[n:])
    assert before.actual[n - 1] != after.actual[n - 1]  # 1 July's actual is the changed one; its forecast is not


def test_coverage_error_and_shortfalls_are_computed_right() -> None:
    days = [date(2024, 9, 2) + timedelta(days=i) for i in range(5)]
    result = ForecastBacktest("A", days, np.array([100.0, 100.0, 100.0, 100.0, 100.0]),
                              np.array([50.0, 100.0, 130.0, 20.0, 160.0]), 0.5)
    s = result.summary(worst=5)
    assert s["coverage"] == 0.6 and s["buffer_coverage"] == 0.4  # 100 >= 50, 100, 20; 50 >= 50, 20
    assert s["mae_usd"] == "44.0000" and s["days"] == 5  # (50 + 0 + 30 + 80 + 60) / 5
    assert s["worst_shortfalls"] == [
        {"date": "2024-09-06", "forecast_usd": "100.0000", "actual_usd": "160.0000"},
        {"date": "2024-09-04", "forecast_usd": "100.0000", "actual_usd": "130.0000"},
    ]
    steady = backtest_account("A", *arrays(*history(date(2024, 1, 2), date(2024, 6, 29))), FED, 0.3)
    assert steady.summary()["coverage"] == 1.0


def test_a_synthetic_year_is_covered_on_most_days(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    days, flows = history(date(2024, 1, 2), date(2024, 12, 31), noise=0.3, seed=7)
    path = tmp_path / "out.csv"
    path.write_text("account_id,date,outflow_usd\n" + "".join(f"ACC-1,{d},{v:.2f}\n" for d, v in zip(days, flows,
                                                                                                     strict=True)))
    png = tmp_path / "backtest.png"
    assert run_backtest_cli(str(path), None, str(png), FED, 0.3) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["account_id"] == "ACC-1" and summary["days"] > 240 and summary["coverage"] >= 0.88
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- files and the commands -----------------------------------------------------------------------
@pytest.mark.parametrize(("content", "column", "words"), [
    ("account_id,date\nA,2024-09-02\n", "outflow_usd", "missing column"),
    ("account_id,date,outflow_usd\nA,2024-09-02,lots\n", "outflow_usd", "non-numeric"),
    ("account_id,date,outflow_usd\nA,2024-09-02,-5\n", "outflow_usd", "negative"),
    ("account_id,date,outflow_usd\nA,2024-09-02,inf\n", "outflow_usd", "infinite"),
    ("account_id,date,outflow_usd\nA,2 Sept,5\n", "date", "not an ISO date"),
    ("account_id,date,outflow_usd\n,2024-09-02,5\n", "account_id", "missing value"),
    ("date,outflow_usd\n2024-09-02,5\n", "account_id", "missing column"),
])
def test_bad_files_are_refused_naming_the_column(tmp_path: Path, content: str, column: str, words: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(HistoryError) as caught:
        read_outflows(path)
    assert caught.value.column == column and words in str(caught.value)


def test_duplicate_days_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "dup.csv"
    path.write_text("account_id,date,outflow_usd\nA,2024-09-02,5\nA,2024-09-02,6\n")
    assert run_compute_cli(str(path), date(2024, 9, 10), FED) == 2
    assert "date: duplicate row for account 'A' on 2024-09-02" in capsys.readouterr().err


def test_compute_prints_one_object_per_account_from_parquet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "flows.parquet"
    rows = {"B": history(date(2024, 6, 3), date(2024, 10, 5)), "A": history(date(2024, 6, 3), date(2024, 10, 5))}
    pq.write_table(table(rows), path)
    assert run_compute_cli(str(path), date(2024, 10, 7), FED) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["account_id"] for line in lines] == ["A", "B"]
    assert lines[0] == {"account_id": "A", "for_date": "2024-10-07", "projected_outflows_24h_usd": "300000.0000",
                        "method": "weekday-q90-13w", "samples": 12}  # Labor Day: one Monday fewer
    assert [a for a, _, _ in account_rows(read_outflows(path))] == ["A", "B"]


def test_backtest_wants_an_account_of_a_shared_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "two.csv"
    path.write_text("account_id,date,outflow_usd\nA,2024-09-02,5\nB,2024-09-02,6\n")
    assert run_backtest_cli(str(path), None, None, FED, 0.3) == 2
    assert "account_id: file holds 2 accounts: choose one with --account" in capsys.readouterr().err
    assert run_backtest_cli(str(path), "C", None, FED, 0.3) == 2
    assert "account 'C' not found" in capsys.readouterr().err


# -- where a decision's projection comes from -----------------------------------------------------
T0 = datetime(2024, 10, 8, 12, tzinfo=UTC)  # a Tuesday


def event(event_id: str, at: datetime, projection: str | None = None) -> BalanceEvent:
    return BalanceEvent(event_id=event_id, account_id="A1", as_of_ts=at, kind=BalanceKind.INTRADAY,
                        available_usd=Decimal("10000000"),
                        projected_outflows_24h_usd=None if projection is None else Decimal(projection))


def row(for_date: date, usd: str = "400000") -> ForecastRow:
    return ForecastRow("A1", for_date, Decimal(usd), "weekday-q90-13w")


@pytest.fixture(autouse=True)
def _fed_calendar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUSINESS_CALENDAR", "fed")


def test_the_projection_rule_event_then_recent_feed_then_forecast_then_none() -> None:
    s = AccountState(Account("A1"), forecast=row(T0.date()))
    assert s.projection(event("e0", T0)) == (Decimal("400000"), "forecast:weekday-q90-13w")
    s.apply(event("e1", T0, projection="5"))
    assert s.projection(event("e1", T0, projection="5")) == (Decimal("5"), "event")
    assert s.projection(event("e2", T0 + timedelta(hours=24))) == (Decimal("5"), "last_seen")  # 24 h: still
    # older than 24 h: the feed's figure is stale; the forecast is of Tuesday, the event on Wednesday
    assert s.projection(event("e3", T0 + timedelta(hours=24, seconds=1))) == (None, "none")
    s.forecast = row(date(2024, 10, 9), "700000")
    assert s.projection(event("e4", T0 + timedelta(hours=25))) == (Decimal("700000"), "forecast:weekday-q90-13w")
    # a what-if has no event: its projection is as given, whatever its age
    what_if = AccountState(Account("A1"), last_projection_usd=Decimal("9"))
    assert what_if.projection(None, T0) == (Decimal("9"), "last_seen")


def test_a_forecast_serves_its_business_day_only() -> None:
    assert forecast_day(datetime(2024, 10, 12, 9, tzinfo=UTC)) == date(2024, 10, 15)  # Saturday: Columbus Monday
    assert forecast_day(datetime(2024, 10, 11, 9, tzinfo=UTC)) == date(2024, 10, 11)  # Friday: itself
    assert forecast_day(datetime(2024, 10, 11, 23, 59, 59, 999000, tzinfo=UTC)) == date(2024, 10, 15)  # its close
    s = AccountState(Account("A1"), forecast=row(date(2024, 10, 15)))
    assert s.projection(event("sat", datetime(2024, 10, 12, 9, tzinfo=UTC)))[1] == "forecast:weekday-q90-13w"
    assert s.projection(event("fri", datetime(2024, 10, 11, 9, tzinfo=UTC))) == (None, "none")
    assert s.projection(event("wed", datetime(2024, 10, 16, 9, tzinfo=UTC))) == (None, "none")  # stale


def test_a_forecast_sizes_the_buffer_of_a_term_sweep() -> None:
    s = AccountState(Account("A1"), var_usd=1000.0, var_days=250, forecast=row(T0.date(), "2000000"))
    e = event("e1", T0)
    s.apply(e)
    inputs = decision_inputs(s, e, pending_sweeps_usd=Decimal(0), now=T0)
    d = decide(inputs, PolicyConfig())
    assert (d.reason, d.product, d.buffer_usd) == (Reason.WITHIN_LIMIT, Product.TBILL_4W, Decimal("600000.00"))
    assert d.as_record()["inputs"]["projection_source"] == "forecast:weekday-q90-13w"


def test_the_ledger_state_and_the_push_carry_the_forecast_and_the_projection_time() -> None:
    loaded = state_from_ledger(Account("A1"), None, Decimal("5"), None, projection_ts=T0 - timedelta(days=2),
                               forecast=row(T0.date()))
    assert loaded.projection(event("e1", T0)) == (Decimal("400000"), "forecast:weekday-q90-13w")
    worker = ShardWorker.__new__(ShardWorker)
    worker._states = {"A1": loaded}
    assert worker.set_forecast(row(T0.date() + timedelta(days=1), "1")) is True
    assert worker.set_forecast(row(T0.date(), "2")) is True and loaded.forecast is not None
    assert loaded.forecast.for_date == T0.date() + timedelta(days=1)  # an older day's never replaces a newer one
    assert worker.set_forecast(ForecastRow("B9", T0.date(), Decimal(1), "m")) is False


def test_forecast_json_has_money_as_four_place_strings() -> None:
    f = Forecast("A", date(2024, 10, 7), Decimal("1.5000"), "weekday-q90-13w", 13, Decimal("0.0000"))
    assert f.as_json()["projected_outflows_24h_usd"] == "1.5000" and f.as_json()["expected_inflows_usd"] == "0.0000"
