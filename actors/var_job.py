"""VaR recompute: history -> the VaR actor pool -> ``var_result`` -> the live account shards.

History comes from the ledger's closing balances or, for quants, a long-form Parquet/CSV file.
Results are written before they are pushed, so a shard that misses the push (restarting, not
yet running) still reads them from the ledger when it next loads the account. The same job makes
each account's outflow forecast from the ledger (``recompute_forecasts``, docs/decisions.md
"Outflow forecast"): written to ``forecast_result``, pushed to the shards with ``set_forecasts``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import ray

from actors.policy import observed_var_bps
from risk.forecast import WEEKS, forecast_columns
from risk.history import FlowHistory, build_matrix, load_history
from risk.kernels import VarEs, var_and_es
from risk.pool import DEFAULT_CHUNK_ROWS, VarPool
from storage import forecasts, var_results
from storage.db import Executor
from storage.forecasts import ForecastRow
from storage.history import RecentFlows, closing_flows, window_and_recent_flows
from storage.var_results import VarResult
from treasury import business_calendar
from treasury.actor_names import NAMESPACE, shard_name
from treasury.business_calendar import BusinessCalendar

# History the forecast reads: its window of WEEKS weeks before the forecast day, and the closed
# days (a long weekend) between an account's last day and that day.
FORECAST_LOOKBACK_DAYS = 7 * WEEKS + 14


@dataclass(frozen=True)
class RecomputeSummary:
    accounts: int
    with_var: int
    short_history: int
    pushed: int
    forecasts: int | None = None  # accounts given an outflow forecast (ledger history only)

    def as_dict(self) -> dict[str, int]:
        out = {"accounts": self.accounts, "with_var": self.with_var, "short_history": self.short_history,
               "pushed": self.pushed}
        if self.forecasts is not None:
            out["forecasts"] = self.forecasts
        return out


async def load(db: Executor, source: str | Path, window: int,
               accounts: Sequence[str] | None) -> tuple[FlowHistory, RecentFlows | None]:
    """The history to compute on and, from the ledger, the closes' flows of the last
    ``FORECAST_LOOKBACK_DAYS`` that the forecasts reuse: one read of the ledger's closes for both
    (None from a quant's file, or when a balance is beyond the fast read's integer arithmetic)."""
    if str(source) == "postgres":
        both = await window_and_recent_flows(db, window, FORECAST_LOOKBACK_DAYS, accounts)
        if both is not None:
            fast, recent = both
            return FlowHistory(fast.account_ids, fast.flows, fast.days, fast.last_date), recent
        return build_matrix(await closing_flows(db, accounts), window), None  # balances beyond int8 arithmetic
    history = load_history(source, window)
    if accounts is None:
        return history, None
    keep = [i for i, a in enumerate(history.account_ids) if a in set(accounts)]
    return FlowHistory([history.account_ids[i] for i in keep], history.flows[keep], history.days[keep],
                       history.last_date[keep]), None


async def recompute(
    db: asyncpg.Pool,
    *,
    source: str | Path = "postgres",
    window: int = 250,
    confidence: float = 0.99,
    accounts: Sequence[str] | None = None,
    workers: int = 2,
    shards: int = 0,
    progress: Callable[[int, int], None] | None = None,
    inline_max_rows: int = 0,
) -> RecomputeSummary:
    """The whole job; the Python API for notebooks is this function (Ray must be initialised).

    ``inline_max_rows``: histories of at most this many accounts are computed in this process,
    not by the pool. The scheduler's jobs are mostly the few accounts whose statements just
    closed, a millisecond of numpy each; starting the pool's two worker processes for every such
    job cost about a core while a bank's statements streamed in (bench/pipeline: 1,950 events/s
    with the pool per job, see docs/decisions.md). The numbers are the same either way (``VarPool.compute``).

    Once the history is read, the outflow forecasts and the VaR go on at once, each on its own
    connection of ``db``: neither needs the other's results, and one waits on Postgres or the Ray
    pool while the other computes (bench/var_recompute: 2.8 s of forecasts beside 3.5 s of VaR).
    """
    history, recent = await load(db, source, window, accounts)
    # The outflow forecasts come from the ledger's entries and closes; a quant's flow file has neither.
    forecasting = (asyncio.create_task(recompute_forecasts(db, accounts, shards, recent=recent))
                   if str(source) == "postgres" else None)
    try:
        # Both block (the pool on Ray futures): keep the caller's event loop (an actor's, a CLI's) free.
        if history.flows.shape[0] <= inline_max_rows:
            computing = asyncio.to_thread(var_and_es, history.flows, confidence, 1)
        else:
            computing = asyncio.to_thread(VarPool(workers).compute, history.flows, confidence, 1,
                                          DEFAULT_CHUNK_ROWS, progress)
        result, available = await asyncio.gather(computing, var_results.latest_available(db, history.account_ids))
        if progress is not None and history.flows.shape[0] <= inline_max_rows:
            progress(history.flows.shape[0], history.flows.shape[0])
        rows = _rows(history, window, confidence, result, available)
        await var_results.upsert_many(db, rows)
        pushed = await asyncio.to_thread(push_to_shards, rows, shards) if shards else 0
    except BaseException:
        if forecasting is not None:
            forecasting.cancel()
            await asyncio.gather(forecasting, return_exceptions=True)
        raise
    forecasted = await forecasting if forecasting is not None else None
    with_var = sum(r.var_usd is not None for r in rows)
    return RecomputeSummary(len(rows), with_var, sum(r.days < window for r in rows), pushed, forecasted)


async def recompute_forecasts(db: Executor, accounts: Sequence[str] | None, shards: int = 0,
                              calendar: BusinessCalendar | None = None, recent: RecentFlows | None = None) -> int:
    """Each account's outflow forecast of the business day after its history (``risk.forecast``),
    with its investments maturing by then as known inflows beside it: written to ``forecast_result``,
    then pushed to the shards. Returns how many accounts got one.

    ``recent``: the closes' flows of the last ``FORECAST_LOOKBACK_DAYS`` already read with the VaR
    window (``window_and_recent_flows``); read here when None."""
    calendar = calendar or business_calendar.active()
    history = await forecasts.outflow_columns(db, accounts, FORECAST_LOOKBACK_DAYS, recent)
    through = history.through
    next_day: dict[date, date] = {}  # most accounts share a last day: one calendar walk per day
    for_dates = {account: next_day.get(day) or next_day.setdefault(day, calendar.next_business_day(day))
                 for account, day in through.items()}
    made = await asyncio.to_thread(forecast_columns, history.account_ids, history.codes, history.days,
                                   history.outflows, for_dates, calendar)
    inflows = await forecasts.expected_inflows(db, {f.account_id: (through[f.account_id], f.for_date) for f in made})
    rows = [ForecastRow(f.account_id, f.for_date, f.outflow_usd, f.method, inflows.get(f.account_id, Decimal(0)))
            for f in made]
    await forecasts.upsert_many(db, rows)
    if shards and rows:
        await asyncio.to_thread(push_forecasts, rows, shards)
    return len(rows)


def _rows(history: FlowHistory, window: int, confidence: float, result: VarEs,
          available: Mapping[str, Any]) -> list[VarResult]:
    """One result per account of the matrix; ``available``: each account's newest position."""
    return [
        _row(account, history.last_date[i], window, confidence, int(result.days[i]), result.var[i], result.es[i],
             available.get(account))
        for i, account in enumerate(history.account_ids)
    ]


def _row(account: str, last: Any, window: int, confidence: float, days: int, var: float, es: float,
         position: Any) -> VarResult:
    var_usd = None if math.isnan(var) else Decimal(repr(round(float(var), 4)))
    es_usd = None if math.isnan(es) else Decimal(repr(round(float(es), 4)))
    avail = position["avail_usd"] if position is not None else None
    # The very figure a decision on this balance uses (the shard holds var_usd as stored, to 4 dp),
    # by the one rule: a non-positive balance is a breach. No balance yet: nothing to compare, None.
    bps = None if var_usd is None or avail is None else observed_var_bps(float(var_usd), avail)
    as_of = last.astype(date) if isinstance(last, np.datetime64) else (last or datetime.now(UTC).date())
    return VarResult(account, as_of, window, Decimal(str(confidence)), days, var_usd, bps, es_usd)


def push_to_shards(rows: Sequence[VarResult], shards: int) -> int:
    """Every shard gets every result; a shard keeps those of the accounts it holds."""
    items = [(r.account_id, None if r.var_usd is None else float(r.var_usd), r.days) for r in rows]
    handles = [ray.get_actor(shard_name(i), namespace=NAMESPACE) for i in range(shards)]
    return sum(ray.get([h.set_vars.remote(items) for h in handles], timeout=60))


def push_forecasts(rows: Sequence[ForecastRow], shards: int) -> int:
    """Every shard gets every forecast; a shard keeps those of the accounts it holds."""
    handles = [ray.get_actor(shard_name(i), namespace=NAMESPACE) for i in range(shards)]
    return sum(ray.get([h.set_forecasts.remote(list(rows)) for h in handles], timeout=60))
