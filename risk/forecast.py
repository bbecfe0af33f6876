"""Next business day's gross outflow of an account, from its daily outflow history. Pure.

The policy keeps ``LIQ_BUFFER_PCT`` x the next 24 h outflows on the account; a bank feed never sends
that projection, so it is estimated here from what the account paid out before (docs/decisions.md,
"Outflow forecast"). The estimator, for a forecast day F:

1. **Business days.** A day's outflows belong to the business day that books them: flows dated on a
   weekend or a holiday are added to the following business day (``BusinessCalendar.following``),
   so a Monday carries its weekend and the day after a holiday carries the holiday. Inside an
   account's observed span a business day without a row paid nothing (0); a null outflow is a
   missing day and is left out.
2. **Same weekday, last ``WEEKS`` weeks.** The sample is the outflows of F's weekday on the business
   days of the ``WEEKS`` weeks before F, leaving out days that absorbed a holiday (they are not a
   normal Tuesday).
3. **A high quantile for coverage, not a mean for error.** The forecast is the conformal
   ``QUANTILE`` quantile of the sample: its k-th smallest value, ``k = ceil((n + 1) * QUANTILE)``
   (the largest when ``k > n``). For exchangeable days that covers the next day with probability
   at least ``QUANTILE`` without assuming a distribution; outflows are skewed (payroll days,
   supplier runs), where a mean plus k standard deviations under-covers the spikes that matter.
4. **Holidays ahead.** When F absorbs holidays (the Tuesday after Memorial Day), the forecast adds
   each holiday's own weekday quantile: its flows land on F.
5. **Too few days.** Fewer than ``MIN_WEEKDAY_SAMPLES`` of F's weekday: the quantile of all the
   window's normal business days instead (method ``alldays-...``); fewer than ``MIN_DAYS`` of those:
   no forecast (the policy then falls back to the overnight product).

Only data dated before F is used, so the same function makes the backtest's day-before forecasts
with no look-ahead. Known inflows (investments maturing on F) are reported beside the forecast and
never netted into it: a maturity that is late must not leave the account short.
"""

from __future__ import annotations

import functools
import json
import math
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from risk.history import (
    ACCOUNT,
    DATE,
    HistoryError,
    _account_column,
    _as_int_days,
    _date_column,
    _encode_accounts,
    _is_parquet,
)
from treasury.business_calendar import BusinessCalendar

OUTFLOW = "outflow_usd"
COLUMNS = (ACCOUNT, DATE, OUTFLOW)
QUANTILE = 0.90
WEEKS = 13
MIN_WEEKDAY_SAMPLES = 4
MIN_DAYS = 5
EXIT_OK = 0
EXIT_USAGE = 2
_EPOCH = date(1970, 1, 1)

FloatVector = npt.NDArray[np.float64]
IntVector = npt.NDArray[np.int64]


def method_name(pooled: bool = False) -> str:
    """``weekday-q90-13w``: what the decision record shows after ``forecast:``."""
    return f"{'alldays' if pooled else 'weekday'}-q{round(QUANTILE * 100)}-{WEEKS}w"


@dataclass(frozen=True)
class Forecast:
    account_id: str
    for_date: date
    outflow_usd: Decimal  # 4 dp, never net of inflows
    method: str
    samples: int
    expected_inflows_usd: Decimal | None = None  # known (maturities on for_date), kept apart

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {"account_id": self.account_id, "for_date": self.for_date.isoformat(),
                                  "projected_outflows_24h_usd": format(self.outflow_usd, "f"),
                                  "method": self.method, "samples": self.samples}
        if self.expected_inflows_usd is not None:
            out["expected_inflows_usd"] = format(self.expected_inflows_usd, "f")
        return out


def usd(value: float) -> Decimal:
    """A float figure of the estimator as money: Decimal, 4 places."""
    return Decimal(f"{value:.4f}")


def day_number(day: date) -> int:
    return (day - _EPOCH).days


def day_of(number: int) -> date:
    return _EPOCH + timedelta(days=int(number))


def previous_business_day(calendar: BusinessCalendar, day: date) -> date:
    day -= timedelta(days=1)
    while not calendar.is_business_day(day):
        day -= timedelta(days=1)
    return day


# -- the business-day grid of one forecast day ----------------------------------------------------
@dataclass(frozen=True)
class _Grid:
    """The ``WEEKS`` weeks before ``for_date`` as business days, shared by every account."""

    start: int  # day number of the first calendar day of the window
    bdays: IntVector  # day numbers of the window's business days, ascending
    slot: IntVector  # per calendar day of the window: index of its business day, -1 if on/after for_date
    weekday: IntVector  # per business day
    after_holiday: npt.NDArray[np.bool_]  # per business day: it absorbs a weekday holiday
    holidays_ahead: tuple[int, ...] = field(default=())  # weekdays of the holidays for_date absorbs


def _holidays_before(calendar: BusinessCalendar, day: date) -> list[date]:
    """Weekday holidays between the previous business day and ``day``: what ``day`` absorbs."""
    out, back = [], day - timedelta(days=1)
    while not calendar.is_business_day(back):
        if back.weekday() < 5:
            out.append(back)
        back -= timedelta(days=1)
    return out


@functools.lru_cache(maxsize=512)
def _grid(for_date: date, calendar: BusinessCalendar) -> _Grid:
    first = for_date - timedelta(days=7 * WEEKS)
    days = [first + timedelta(days=i) for i in range(7 * WEEKS)]
    bdays = [d for d in days if calendar.is_business_day(d)]
    slot = np.full(len(days), -1, dtype=np.int64)
    index = 0
    for i, d in enumerate(days):
        while index < len(bdays) and bdays[index] < d:
            index += 1
        if index < len(bdays):
            slot[i] = index
    return _Grid(
        day_number(first),
        np.array([day_number(d) for d in bdays], dtype=np.int64),
        slot,
        np.array([d.weekday() for d in bdays], dtype=np.int64),
        np.array([bool(_holidays_before(calendar, d)) for d in bdays], dtype=np.bool_),
        tuple(h.weekday() for h in _holidays_before(calendar, for_date)),
    )


def conformal_quantile(sample: FloatVector, level: float = QUANTILE) -> float:
    """The ``ceil((n + 1) * level)``-th smallest of ``sample`` (its largest when that rank is past n)."""
    ordered = np.sort(sample)
    rank = min(len(ordered), math.ceil((len(ordered) + 1) * level))
    return float(ordered[rank - 1])


def business_day_outflows(grid: _Grid, days: IntVector, flows: FloatVector) -> FloatVector:
    """Per business day of the window, the account's outflows (NaN: not observed)."""
    offsets = days - grid.start
    inside = (offsets >= 0) & (offsets < len(grid.slot))
    slots = grid.slot[offsets[inside]]
    booked = slots >= 0
    totals = np.bincount(slots[booked], weights=flows[inside][booked], minlength=len(grid.bdays))
    first, last = int(days.min()), int(days.max())
    observed = (grid.bdays >= first) & (grid.bdays <= last)
    return np.where(observed, totals, np.nan)


def forecast_one(account_id: str, days: IntVector, flows: FloatVector, for_date: date,
                 calendar: BusinessCalendar) -> Forecast | None:
    """The forecast of ``for_date`` from the rows dated before it (``days``: day numbers)."""
    before = days < day_number(for_date)
    if not before.any():
        return None
    grid = _grid(for_date, calendar)
    values = business_day_outflows(grid, days[before], flows[before])
    normal = ~np.isnan(values) & ~grid.after_holiday
    if int(normal.sum()) < MIN_DAYS:
        return None

    def level(weekday: int) -> tuple[float, int, bool]:
        same = values[normal & (grid.weekday == weekday)]
        if len(same) >= MIN_WEEKDAY_SAMPLES:
            return conformal_quantile(same), len(same), False
        pooled = values[normal]
        return conformal_quantile(pooled), len(pooled), True

    outflow, samples, pooled = level(for_date.weekday())
    for weekday in grid.holidays_ahead:
        extra, _, pooled_extra = level(weekday)
        outflow, pooled = outflow + extra, pooled or pooled_extra
    method = method_name(pooled) + ("+holiday" if grid.holidays_ahead else "")
    return Forecast(account_id, for_date, usd(max(0.0, outflow)), method, samples)


# -- many accounts ------------------------------------------------------------------------------
def account_rows(table: pa.Table) -> Iterator[tuple[str, IntVector, FloatVector]]:
    """Each account's (id, day numbers, outflows), accounts sorted, rows by date."""
    if table.num_rows == 0:
        return
    ids, codes = _encode_accounts(table.column(ACCOUNT))
    days = _as_int_days(table.column(DATE))
    flows = _floats(table.column(OUTFLOW))
    order = np.lexsort((days, codes))
    codes, days, flows = codes[order], days[order], flows[order]
    same = (codes[1:] == codes[:-1]) & (days[1:] == days[:-1])
    if same.any():
        at = int(np.argmax(same))
        raise HistoryError(DATE, f"duplicate row for account {ids[int(codes[at])]!r} on {day_of(int(days[at]))}")
    bounds = np.searchsorted(codes, np.arange(len(ids) + 1))
    for i, account in enumerate(ids):
        yield account, days[bounds[i]:bounds[i + 1]], flows[bounds[i]:bounds[i + 1]]


def forecast_table(table: pa.Table, for_date: date | Mapping[str, date], calendar: BusinessCalendar,
                   inflows: Mapping[str, Decimal] | None = None) -> list[Forecast]:
    """Forecasts of every account of a long-form table (``account_id, date, outflow_usd``).

    ``for_date``: one day for all, or per account (an account missing from the mapping is skipped).
    ``inflows``: known inflows per account, reported beside the forecast (0 when absent)."""
    if table.num_rows == 0:
        return []
    ids, codes = _encode_accounts(table.column(ACCOUNT))
    made = forecast_columns(ids, codes, _as_int_days(table.column(DATE)), _floats(table.column(OUTFLOW)),
                            for_date, calendar)
    if inflows is None:
        return made
    return [Forecast(f.account_id, f.for_date, f.outflow_usd, f.method, f.samples,
                     inflows.get(f.account_id, Decimal(0)).quantize(Decimal("0.0001"))) for f in made]


# Accounts estimated together: a block's business-day matrix is accounts x ~65 float64, and a few
# of them live at once, so memory stays bounded however many accounts a recompute has.
BLOCK_ACCOUNTS = 16_384


def forecast_columns(ids: Sequence[str], codes: IntVector, days: IntVector, flows: FloatVector,
                     for_date: date | Mapping[str, date], calendar: BusinessCalendar) -> list[Forecast]:
    """``forecast_one`` of every account at once, from columns (``codes``: each row's index into
    ``ids``; rows in any order, one per account and day): the same forecasts, in the order of ``ids``.

    Why: the recompute forecasts 100,000 accounts, and ``forecast_one`` per account is a few dozen
    small numpy calls each (75 s of the whole recompute). Here the accounts sharing a forecast day
    are one matrix of business-day outflows. Each figure is the one ``forecast_one`` makes: the
    per-cell sums are ``np.bincount``'s, over the same rows in the same (date) order, and a
    conformal quantile is an element of the sample, picked at the same rank."""
    if len(codes) == 0:
        return []
    # By (account, date) as one int64 key: a stable sort of it is the order of np.lexsort((days,
    # codes)) and, on the recompute's rows (runs of days newest first), several times faster.
    first_day = int(days.min())
    key = codes * (int(days.max()) - first_day + 1) + (days - first_day)
    if not (key[1:] > key[:-1]).all():
        order = np.argsort(key, kind="stable")
        codes, days, flows, key = codes[order], days[order], flows[order], key[order]
    same = key[1:] == key[:-1]
    if same.any():
        at = int(np.argmax(same))
        raise HistoryError(DATE, f"duplicate row for account {ids[int(codes[at])]!r} on {day_of(int(days[at]))}")
    bounds = np.searchsorted(codes, np.arange(len(ids) + 1))
    present = np.flatnonzero(bounds[1:] > bounds[:-1])  # no rows: no forecast (account_rows never yields it)
    groups: dict[date, list[int]] = {}
    if not isinstance(for_date, Mapping):
        groups[for_date] = present.tolist()
    else:
        for i in present.tolist():
            day = for_date.get(ids[i])
            if day is not None:
                groups.setdefault(day, []).append(i)
    made: dict[int, Forecast] = {}
    for day, members in groups.items():
        for lo in range(0, len(members), BLOCK_ACCOUNTS):
            block = np.array(members[lo:lo + BLOCK_ACCOUNTS], dtype=np.int64)
            made.update(_forecast_block(ids, block, bounds, codes, days, flows, day, calendar))
    return [made[i] for i in sorted(made)]


def _forecast_block(ids: Sequence[str], block: IntVector, bounds: IntVector, codes: IntVector, days: IntVector,
                    flows: FloatVector, for_date: date, calendar: BusinessCalendar) -> dict[int, Forecast]:
    """``forecast_one`` of the accounts ``block`` (ascending indexes into ``ids``; rows
    ``bounds[i]:bounds[i+1]``, by date) for one ``for_date``: row k of each matrix is account ``block[k]``."""
    grid = _grid(for_date, calendar)
    width = len(grid.bdays)
    if int(block[-1]) - int(block[0]) + 1 == len(block):  # consecutive accounts (the usual): one slice of rows
        rows: IntVector | slice = slice(int(bounds[block[0]]), int(bounds[block[-1] + 1]))
        local = codes[rows] - block[0]
    else:
        lengths = bounds[block + 1] - bounds[block]
        rows = np.repeat(bounds[block] - np.cumsum(lengths) + lengths, lengths) + np.arange(int(lengths.sum()))
        local = np.repeat(np.arange(len(block), dtype=np.int64), lengths)
    mine_days, mine_flows = days[rows], flows[rows]
    before = mine_days < day_number(for_date)  # forecast_one: only the rows dated before the day
    if not before.all():
        mine_days, mine_flows, local = mine_days[before], mine_flows[before], local[before]
    if len(mine_days) == 0:
        return {}
    seen = np.bincount(local, minlength=len(block))
    has = seen > 0  # forecast_one: no row before the day, no forecast
    ends = np.cumsum(seen)
    first = mine_days[np.minimum(ends - seen, len(mine_days) - 1)]  # rows are by date: first and last
    last = mine_days[np.maximum(ends - 1, 0)]
    offsets = mine_days - grid.start
    inside = (offsets >= 0) & (offsets < len(grid.slot))
    slots = np.where(inside, grid.slot[np.clip(offsets, 0, len(grid.slot) - 1)], -1)
    booked = slots >= 0  # inside the window and before the day, in date order as forecast_one sums them
    cells = local[booked] * width + slots[booked]
    totals = np.bincount(cells, weights=mine_flows[booked], minlength=len(block) * width)
    totals = totals.reshape(len(block), width)
    observed = (grid.bdays[None, :] >= first[:, None]) & (grid.bdays[None, :] <= last[:, None])
    values = np.where(observed, totals, np.nan)
    normal = ~np.isnan(values) & ~grid.after_holiday[None, :]
    usable = has & (normal.sum(axis=1) >= MIN_DAYS)
    values, normal = values[usable], normal[usable]
    pooled_q: FloatVector | None = None

    def level(weekday: int) -> tuple[FloatVector, IntVector, npt.NDArray[np.bool_]]:
        nonlocal pooled_q
        same = normal & (grid.weekday == weekday)[None, :]
        n_same = same.sum(axis=1)
        use_pooled = n_same < MIN_WEEKDAY_SAMPLES
        if pooled_q is None:
            pooled_q = _row_quantiles(values, normal)
        quantile = np.where(use_pooled, pooled_q, _row_quantiles(values, same))
        return quantile, np.where(use_pooled, normal.sum(axis=1), n_same), use_pooled

    outflow, samples, pooled = level(for_date.weekday())
    for weekday in grid.holidays_ahead:
        extra, _, pooled_extra = level(weekday)
        outflow, pooled = outflow + extra, pooled | pooled_extra
    suffix = "+holiday" if grid.holidays_ahead else ""
    methods = (method_name(False) + suffix, method_name(True) + suffix)
    return {i: Forecast(ids[i], for_date, usd(max(0.0, value)), methods[p], n)
            for i, value, n, p in zip(block[usable].tolist(), outflow.tolist(), samples.tolist(), pooled.tolist(),
                                      strict=True)}


def _row_quantiles(values: npt.NDArray[np.float64], mask: npt.NDArray[np.bool_]) -> FloatVector:
    """``conformal_quantile`` of each row's masked values (NaN for a row with none): the masked
    values sorted to the front, NaN behind them, and the element at the same rank picked."""
    n = mask.sum(axis=1)
    ordered = np.sort(np.where(mask, values, np.nan), axis=1)
    rank = np.minimum(n, np.ceil((n + 1) * QUANTILE).astype(np.int64))
    picked = ordered[np.arange(len(n)), np.maximum(rank - 1, 0)]
    return np.where(n > 0, picked, np.nan)


# -- the backtest -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ForecastBacktest:
    account_id: str
    days: list[date]
    forecast: FloatVector
    actual: FloatVector
    buffer_pct: float

    @property
    def covered(self) -> npt.NDArray[np.bool_]:
        return self.forecast >= self.actual

    def summary(self, worst: int = 5) -> dict[str, object]:
        n = len(self.days)
        short = self.actual - self.forecast
        order = [i for i in np.argsort(-short, kind="stable")[:worst] if short[i] > 0]
        return {
            "account_id": self.account_id,
            "method": method_name(),
            "days": n,
            "coverage": round(float(self.covered.mean()), 4) if n else None,
            "buffer_pct": self.buffer_pct,
            "buffer_coverage": round(float((self.buffer_pct * self.forecast >= self.actual).mean()), 4) if n else None,
            "mae_usd": format(usd(float(np.abs(short).mean())), "f") if n else None,
            "mean_outflow_usd": format(usd(float(self.actual.mean())), "f") if n else None,
            "worst_shortfalls": [{"date": self.days[i].isoformat(), "forecast_usd": format(usd(self.forecast[i]), "f"),
                                  "actual_usd": format(usd(self.actual[i]), "f")} for i in order],
        }


def actual_outflow(days: IntVector, flows: FloatVector, day: date, calendar: BusinessCalendar) -> float:
    """What business day ``day`` paid: its own rows and those of the closed days before it."""
    after = day_number(previous_business_day(calendar, day))
    mine = (days > after) & (days <= day_number(day))
    return float(flows[mine].sum())


def backtest_account(account_id: str, days: IntVector, flows: FloatVector, calendar: BusinessCalendar,
                     buffer_pct: float) -> ForecastBacktest:
    """For every business day of the history, the forecast made the day before (``forecast_one``
    sees only rows dated before the day) against what the day paid."""
    if len(days) == 0:
        return ForecastBacktest(account_id, [], np.array([]), np.array([]), buffer_pct)
    day = calendar.following(day_of(int(days.min())))
    last = day_of(int(days.max()))
    out_days, predicted, actual = [], [], []
    while day <= last:
        made = forecast_one(account_id, days, flows, day, calendar)
        paid = actual_outflow(days, flows, day, calendar)
        if made is not None and not math.isnan(paid):
            out_days.append(day)
            predicted.append(float(made.outflow_usd))
            actual.append(paid)
        day = calendar.next_business_day(day)
    return ForecastBacktest(account_id, out_days, np.array(predicted), np.array(actual), buffer_pct)


def plot_forecast_backtest(result: ForecastBacktest, path: str | Path) -> Path:
    """PNG of each day's outflow against the forecast and the buffer, shortfalls marked. The Agg
    canvas without pyplot, as ``risk.backtest.plot_backtest`` (no display, no global backend state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x_axis = np.array(result.days, dtype="datetime64[D]")
    short = ~result.covered
    figure = Figure(figsize=(11, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.bar(x_axis, result.actual, color="tab:blue", width=0.8, label="outflow (actual)")
    axes.step(x_axis, result.forecast, where="mid", color="tab:red", linewidth=1.2, label="forecast (day before)")
    axes.step(x_axis, result.buffer_pct * result.forecast, where="mid", color="tab:orange", linewidth=0.8,
              label=f"buffer ({result.buffer_pct:g} x forecast)")
    axes.scatter(x_axis[short], result.actual[short], color="black", marker="x", zorder=3, label="shortfall")
    axes.set_title(f"Outflow forecast backtest: {result.account_id}")
    axes.set_ylabel("USD")
    axes.legend(loc="best")
    figure.tight_layout()
    target = Path(path)
    figure.savefig(target, format="png")
    return target


# -- files --------------------------------------------------------------------------------------
def read_outflows(path: str | Path) -> pa.Table:
    """A long-form file (``account_id, date, outflow_usd``), CSV or Parquet (sniffed), checked:
    ``HistoryError`` names the column of a missing column, a bad date, a non-numeric, negative or
    infinite outflow, or an empty id/date; a null outflow is a missing day."""
    if _is_parquet(path):
        names = pq.read_schema(path).names
        table = pq.read_table(path, columns=[n for n in COLUMNS if n in names])
    else:
        options = pa_csv.ConvertOptions(column_types={ACCOUNT: pa.string(), OUTFLOW: pa.string()},
                                        strings_can_be_null=True)
        table = pa_csv.read_csv(path, convert_options=options)
    for name in COLUMNS:
        if name not in table.column_names:
            raise HistoryError(name, f"missing column (file has {', '.join(table.column_names)})")
    return pa.table({ACCOUNT: _account_column(table.column(ACCOUNT)), DATE: _date_column(table.column(DATE)),
                     OUTFLOW: _outflow_column(table.column(OUTFLOW))})


def _outflow_column(column: pa.ChunkedArray) -> pa.Array:
    array = column.combine_chunks()
    kind = array.type
    if pa.types.is_null(kind):
        return pa.nulls(len(array), pa.float64())
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_floating(kind)
            or pa.types.is_integer(kind) or pa.types.is_decimal(kind)):
        raise HistoryError(OUTFLOW, f"non-numeric outflows of type {kind}")
    try:
        floats = pc.cast(array, pa.float64(), safe=not pa.types.is_decimal(kind))
    except pa.ArrowInvalid as exc:
        raise HistoryError(OUTFLOW, f"non-numeric outflow: {exc}") from exc
    for test, what in ((pc.is_inf, "infinite"), (lambda a: pc.less(a, 0.0), "negative (a gross outflow is >= 0)")):
        bad = pc.fill_null(test(floats), False)
        if pc.any(bad).as_py():
            raise HistoryError(OUTFLOW, f"{what} outflow in data row {int(pc.index(bad, True).as_py()) + 1}")
    return floats


def _floats(column: pa.ChunkedArray | pa.Array) -> FloatVector:
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    filled = pc.fill_null(array.cast(pa.float64()), np.nan)
    return np.asarray(filled.to_numpy(zero_copy_only=False), dtype=np.float64)


def run_compute_cli(path: str, for_date: date, calendar: BusinessCalendar) -> int:
    """``treasury-orch forecast compute``: one JSON object per account; errors to stderr, exit 2."""
    try:
        forecasts = forecast_table(read_outflows(path), for_date, calendar)
    except (ValueError, OSError) as exc:
        print(f"treasury-orch forecast compute: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for f in forecasts:
        sys.stdout.write(json.dumps(f.as_json()) + "\n")
    sys.stdout.flush()
    return EXIT_OK


def run_backtest_cli(path: str, account: str | None, png: str | None, calendar: BusinessCalendar,
                     buffer_pct: float) -> int:
    """``treasury-orch forecast backtest``: the summary as JSON (and the PNG); errors to stderr, exit 2."""
    try:
        rows = {a: (d, f) for a, d, f in account_rows(read_outflows(path))}
        if account is None:
            if len(rows) != 1:
                raise HistoryError(ACCOUNT, f"file holds {len(rows)} accounts: choose one with --account")
            account = next(iter(rows))
        if account not in rows:
            raise HistoryError(ACCOUNT, f"account {account!r} not found in the file")
        result = backtest_account(account, *rows[account], calendar, buffer_pct)
        if png:
            plot_forecast_backtest(result, png)
    except (ValueError, OSError) as exc:
        print(f"treasury-orch forecast backtest: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(json.dumps(result.summary()))
    if png:
        print(f"plot written to {png}", file=sys.stderr)
    return EXIT_OK
