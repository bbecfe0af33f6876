"""``risk.forecast.forecast_columns``, all accounts at once, against ``forecast_one`` account by account.

The recompute forecasts every account through the vectorised path; the per-account estimator is
the definition. These histories have the awkward cases: holidays inside the window and ahead of
the forecast day (Memorial Day, Independence Day, Thanksgiving), weekend-dated flows, null
outflows, histories too short for a weekday sample or for any forecast, rows on and after the
forecast day, accounts with no rows, and more accounts than one block.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pytest

from risk import forecast
from risk.forecast import Forecast, account_rows, day_number, forecast_columns, forecast_one, forecast_table
from risk.history import HistoryError
from treasury.business_calendar import FED, WEEKDAYS, BusinessCalendar

FOR_DATES = [date(2025, 5, 27), date(2025, 7, 7), date(2025, 11, 28), date(2025, 12, 1), date(2026, 3, 10)]


def _ledger(accounts: int, seed: int) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = [f"A{i:04d}" for i in range(accounts)]
    codes, days, flows = [], [], []
    for i in range(accounts):
        end = day_number(FOR_DATES[i % len(FOR_DATES)]) + int(rng.integers(-3, 3))
        length = int(rng.choice([0, 1, 4, 9, 30, 95, 140]))
        present = np.flatnonzero(rng.random(length) < rng.uniform(0.3, 1.0)) + end - length
        values = np.round(rng.lognormal(11, 1.5, len(present)), 2) * (rng.random(len(present)) < 0.85)
        values[rng.random(len(present)) < 0.03] = np.nan  # a missing day
        codes += [i] * len(present)
        days += list(present)
        flows += list(values)
    return ids, np.array(codes, dtype=np.int64), np.array(days, dtype=np.int64), np.array(flows, dtype=np.float64)


def _one_by_one(ids: list[str], codes: np.ndarray, days: np.ndarray, flows: np.ndarray,
                for_dates: dict[str, date], calendar: BusinessCalendar) -> list[Forecast]:
    table = pa.table({"account_id": pa.array([ids[c] for c in codes], pa.string()),
                      "date": pa.array(days.astype("datetime64[D]"), pa.date32()),
                      "outflow_usd": pa.array(flows, pa.float64())})
    out = []
    for account, d, f in account_rows(table):
        if account in for_dates and (made := forecast_one(account, d, f, for_dates[account], calendar)) is not None:
            out.append(made)
    return out


@pytest.mark.parametrize("calendar", [FED, WEEKDAYS])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_all_accounts_at_once_forecast_as_one_by_one(calendar: BusinessCalendar, seed: int,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(forecast, "BLOCK_ACCOUNTS", 7)  # several blocks per forecast day
    ids, codes, days, flows = _ledger(160, seed)
    rng = np.random.default_rng(seed)
    # Mostly the day after each account's history; some another account's day, some none.
    for_dates = {a: FOR_DATES[(i + int(rng.random() < 0.15)) % len(FOR_DATES)]
                 for i, a in enumerate(ids) if rng.random() < 0.9}
    order = rng.permutation(len(codes))  # rows in any order
    expected = _one_by_one(ids, codes, days, flows, for_dates, calendar)
    made = forecast_columns(ids, codes[order], days[order], flows[order], for_dates, calendar)
    assert len(expected) > 30 and {f.method for f in expected} >= {"weekday-q90-13w", "alldays-q90-13w"}
    assert made == expected
    assert all(f.outflow_usd.as_tuple().exponent == -4 for f in made)
    one_day = FOR_DATES[2]
    assert forecast_columns(ids, codes, days, flows, one_day, calendar) == _one_by_one(
        ids, codes, days, flows, dict.fromkeys(ids, one_day), calendar)


def test_holidays_ahead_are_added_as_one_by_one() -> None:
    ids, codes, days, flows = _ledger(60, 9)
    after_memorial_day = dict.fromkeys(ids, date(2025, 5, 27))
    made = forecast_columns(ids, codes, days, flows, after_memorial_day, FED)
    assert made and all(f.method.endswith("+holiday") for f in made)
    assert made == _one_by_one(ids, codes, days, flows, after_memorial_day, FED)


def test_the_table_path_is_the_columns_path_and_rejects_duplicates() -> None:
    ids, codes, days, flows = _ledger(40, 5)
    table = pa.table({"account_id": pa.array([ids[c] for c in codes], pa.string()),
                      "date": pa.array(days.astype("datetime64[D]"), pa.date32()),
                      "outflow_usd": pa.array(flows, pa.float64())})
    for_dates = dict.fromkeys(ids, FOR_DATES[1])
    assert forecast_table(table, for_dates, FED) == _one_by_one(ids, codes, days, flows, for_dates, FED)
    assert forecast_columns([], np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), FOR_DATES[0], FED) == []
    with pytest.raises(HistoryError, match="duplicate row for account 'A0000'"):
        forecast_columns(["A0000"], np.array([0, 0]), np.array([20000, 20000]), np.array([1.0, 2.0]),
                         FOR_DATES[0], FED)


def test_an_account_with_only_later_rows_gets_none() -> None:
    start = day_number(date(2025, 6, 2))
    days = np.arange(start, start + 40, dtype=np.int64)
    made = forecast_columns(["X"], np.zeros(40, np.int64), days, np.ones(40), date(2025, 6, 1), FED)
    assert made == [] and forecast_one("X", days, np.ones(40), date(2025, 6, 1), FED) is None
    assert forecast_columns(["X"], np.zeros(40, np.int64), days, np.ones(40),
                            date(2025, 6, 1) + timedelta(days=60), FED) != []
