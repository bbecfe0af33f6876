"""What the outflow forecast is made of, and FORECAST_RESULT rows (docs/decisions.md, "Outflow forecast").

An account's daily gross outflow is the sum of its booked debits that are not our own transfers
(``statement_entry``: ``status = 'BOOK' AND direction = 'DBIT' AND own_transfer IS NULL``), by
booking date. An account whose bank sends no entries (none but our own transfers) has its outflows
read off its closes instead: the decline of the operating flow, ``max(0, -(close change - own
transfers))`` (``storage.history``). Each account's history runs to its *through* day, the later of
its last booking date and its last close: a day in between with no debit paid nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

import asyncpg
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from storage.db import Executor
from storage.history import RecentFlows, closing_flows, recent_flows


@dataclass(frozen=True)
class ForecastRow:
    account_id: str
    for_date: date
    outflow_usd: Decimal
    method: str
    expected_inflows_usd: Decimal = Decimal(0)
    computed_ts: datetime | None = None


_EPOCH = date(1970, 1, 1)


# The closes' last day only for the accounts that have entries, each by one probe of the close
# index (migration 007, newest day first): a GROUP BY over every close of the ledger was most of
# this read (26 M closes at 100,000 accounts x 260 days, where no account had an entry).
_ENTRY_DAYS = """
    WITH entries AS (
        SELECT account_id, booking_date AS day, direction, amount_usd FROM statement_entry
        WHERE status = 'BOOK' AND own_transfer IS NULL AND booking_date IS NOT NULL
          AND ($1::varchar[] IS NULL OR account_id = ANY($1::varchar[]))
    ), spans AS (
        SELECT account_id, min(day) AS first_day, max(day) AS last_entry FROM entries GROUP BY account_id
    ), span AS (
        SELECT s.account_id, s.first_day, greatest(s.last_entry, c.day) AS through
        FROM spans s LEFT JOIN LATERAL (
            SELECT (b.as_of_ts AT TIME ZONE 'UTC')::date AS day FROM balance b
            WHERE b.account_id = s.account_id AND b.balance_code = 'CLBD' AND b.booked_usd IS NOT NULL
            ORDER BY (b.as_of_ts AT TIME ZONE 'UTC')::date DESC LIMIT 1
        ) c ON true
    )
    SELECT e.account_id, e.day, s.first_day, s.through,
           COALESCE(sum(e.amount_usd) FILTER (WHERE e.direction = 'DBIT'), 0)::float8 AS outflow
    FROM entries e JOIN span s USING (account_id)
    WHERE e.day > s.through - $2::int
    GROUP BY e.account_id, e.day, s.first_day, s.through
"""


@dataclass(frozen=True)
class OutflowHistory:
    """The forecast's history as columns (``risk.forecast.forecast_columns``): ``codes`` index
    ``account_ids`` (sorted), one row per account and day; and each account's through day."""

    account_ids: list[str]
    codes: npt.NDArray[np.int64]
    days: npt.NDArray[np.int64]
    outflows: npt.NDArray[np.float64]
    through: dict[str, date]

    def table(self) -> pa.Table:
        """Long form (``account_id, date, outflow_usd``), for ``risk.forecast.forecast_table``."""
        names = pa.array(self.account_ids, pa.string())
        return pa.table({
            "account_id": pa.DictionaryArray.from_arrays(pa.array(self.codes.astype(np.int32)), names)
            .cast(pa.string()),
            "date": pa.array(self.days.astype("datetime64[D]"), pa.date32()),
            "outflow_usd": pa.array(self.outflows, pa.float64()),
        })


async def outflow_columns(db: Executor, account_ids: Sequence[str] | None, lookback_days: int,
                          recent: RecentFlows | None = None) -> OutflowHistory:
    """The last ``lookback_days`` days of each account's history, as columns. Entries where the
    account has them, else closes. A zero row marks both ends of an entry history's span, so the
    days between with no debit read as days that paid nothing.

    ``recent``: the closes' flows already read (``storage.history.window_and_recent_flows``, the
    VaR recompute's one read of the ledger), of these accounts (all when ``account_ids`` is None)
    and this lookback; read here when None."""
    ids = None if account_ids is None else list(account_ids)
    daily: dict[tuple[str, date], float] = {}
    through: dict[str, date] = {}
    for r in await db.fetch(_ENTRY_DAYS, ids, lookback_days):
        daily[(r["account_id"], r["day"])] = r["outflow"]
        through[r["account_id"]] = r["through"]
        start = max(r["first_day"], date.fromordinal(r["through"].toordinal() - lookback_days + 1))
        for edge in (start, r["through"]):
            daily.setdefault((r["account_id"], edge), 0.0)
    if recent is None:
        with_entries = set(through)
        without = [a for a in ids if a not in with_entries] if ids is not None else None
        recent = await recent_flows(db, lookback_days, without)
    if recent is not None:
        return _with_recent_closes(daily, through, recent, lookback_days)
    closes = await closing_flows(db, None if ids is None else [a for a in ids if a not in through])
    keep = pc.invert(pc.is_in(closes.column("account_id"), pa.array(sorted(through), pa.string())))
    closes = closes.filter(keep)  # balances beyond recent_flows' integer arithmetic: the exact read
    for account, day, flow in zip(closes.column("account_id").to_pylist(), closes.column("date").to_pylist(),
                                  closes.column("net_flow_usd").to_pylist(), strict=True):
        daily[(account, day)] = max(0.0, -flow)
        through[account] = max(day, through.get(account, day))
    return _columns(daily, through, sorted({a for a, _ in daily}), [], [], [])


def _columns(daily: Mapping[tuple[str, date], float], through: dict[str, date], ids: list[str],
             codes: Sequence[npt.NDArray[np.int64]], days: Sequence[npt.NDArray[np.int64]],
             outflows: Sequence[npt.NDArray[np.float64]]) -> OutflowHistory:
    """``daily``'s rows (accounts of ``ids``) and the given column parts, as one ``OutflowHistory``."""
    index = {a: i for i, a in enumerate(ids)}
    keys = sorted(daily)
    parts_codes = [np.array([index[k[0]] for k in keys], dtype=np.int64), *codes]
    parts_days = [np.array([(k[1] - _EPOCH).days for k in keys], dtype=np.int64), *days]
    parts_flows = [np.array([daily[k] for k in keys], dtype=np.float64), *outflows]
    return OutflowHistory(ids, np.concatenate(parts_codes), np.concatenate(parts_days), np.concatenate(parts_flows),
                          through)


def _with_recent_closes(daily: Mapping[tuple[str, date], float], through: dict[str, date], recent: RecentFlows,
                        lookback_days: int) -> OutflowHistory:
    """The entry accounts' rows plus the close accounts' last ``lookback_days`` days of outflows,
    built as columns (100,000 accounts x 105 days: no Python object per row). An account with
    flows before that keeps a zero row on the cut-off day, so its history still reads as starting
    before the forecast's window (``risk.forecast.business_day_outflows``: observed from the
    first row), exactly as the whole history did."""
    mine = np.array([a not in through for a in recent.account_ids], dtype=np.bool_)
    rows = mine[recent.codes] if len(recent.codes) else np.zeros(0, dtype=np.bool_)
    codes, days, flows = recent.codes[rows], recent.days[rows], recent.flows[rows]
    edge = np.flatnonzero(recent.older & mine)
    last = np.array([(recent.through[recent.account_ids[i]] - _EPOCH).days for i in edge], dtype=np.int64)
    codes = np.concatenate([codes, edge.astype(np.int64)])
    days = np.concatenate([days, last - lookback_days])
    outflow = np.concatenate([np.where(-flows > 0.0, -flows, 0.0), np.zeros(len(edge))])  # max(0.0, -flow)
    entry_accounts = {a for a, _ in daily}
    ids = recent.account_ids
    if not entry_accounts <= set(ids):  # an entry account the read did not have: one sorted list of both
        ids = sorted(set(ids) | entry_accounts)
        at = {a: i for i, a in enumerate(ids)}
        remap = np.array([at[a] for a in recent.account_ids], dtype=np.int64)
        codes = remap[codes] if len(codes) else codes
    for account, day in recent.through.items():
        if account not in through:
            through[account] = day
    return _columns(daily, through, ids, [codes], [days], [outflow])


async def expected_inflows(db: Executor, spans: Mapping[str, tuple[date, date]]) -> dict[str, Decimal]:
    """Per account, the principal of its OPEN investments maturing after ``spans[a][0]`` and on or
    before ``spans[a][1]`` (the forecast day, and the closed days just before it)."""
    if not spans:
        return {}
    accounts = sorted(spans)
    rows = await db.fetch(
        """
        SELECT i.account_id, sum(i.principal_usd) AS usd
        FROM investment i
        JOIN unnest($1::varchar[], $2::date[], $3::date[]) AS s(account_id, after_day, upto) USING (account_id)
        WHERE i.status = 'OPEN' AND i.maturity_date > s.after_day AND i.maturity_date <= s.upto
        GROUP BY i.account_id
        """,
        accounts, [spans[a][0] for a in accounts], [spans[a][1] for a in accounts],
    )
    return {r["account_id"]: r["usd"] for r in rows}


# As storage.var_results: a recompute of every account writes by COPY into a temporary table and
# one INSERT .. SELECT (executemany is a round trip's work per row), a small job row by row.
COPY_MIN_ROWS = 1000
WRITE_TIMEOUT_S = 600.0

_UPSERT_FROM_COPY = """
    INSERT INTO forecast_result (account_id, for_date, outflow_usd, method, expected_inflows_usd)
    SELECT account_id, for_date, outflow_usd, method, expected_inflows_usd FROM forecast_result_in
    ON CONFLICT (account_id, for_date) DO UPDATE SET
        outflow_usd = EXCLUDED.outflow_usd, method = EXCLUDED.method,
        expected_inflows_usd = EXCLUDED.expected_inflows_usd, computed_ts = now()
"""


async def _upsert_by_copy(db: Executor, rows: Sequence[ForecastRow]) -> None:
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            await _upsert_by_copy(conn, rows)
            return
    async with db.transaction():
        await db.execute(
            "CREATE TEMPORARY TABLE forecast_result_in (account_id varchar(64), for_date date,"
            " outflow_usd numeric(20,4), method varchar(64), expected_inflows_usd numeric(20,4)) ON COMMIT DROP"
        )
        await db.copy_records_to_table("forecast_result_in", timeout=WRITE_TIMEOUT_S, records=[
            (r.account_id, r.for_date, r.outflow_usd, r.method, r.expected_inflows_usd) for r in rows])
        await db.execute(_UPSERT_FROM_COPY, timeout=WRITE_TIMEOUT_S)


async def upsert_many(db: Executor, rows: Sequence[ForecastRow]) -> None:
    """Insert or replace each (account, day)'s forecast; by COPY for a large recompute."""
    if len(rows) >= COPY_MIN_ROWS:
        await _upsert_by_copy(db, rows)
        return
    await db.executemany(
        """
        INSERT INTO forecast_result (account_id, for_date, outflow_usd, method, expected_inflows_usd)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (account_id, for_date) DO UPDATE SET
            outflow_usd = EXCLUDED.outflow_usd, method = EXCLUDED.method,
            expected_inflows_usd = EXCLUDED.expected_inflows_usd, computed_ts = now()
        """,
        [(r.account_id, r.for_date, r.outflow_usd, r.method, r.expected_inflows_usd) for r in rows],
    )


async def latest(db: Executor, account_ids: Sequence[str]) -> dict[str, ForecastRow]:
    """Each account's forecast of its latest day: what a shard loads with the account."""
    rows = await db.fetch(
        """
        SELECT DISTINCT ON (account_id) * FROM forecast_result
        WHERE account_id = ANY($1::varchar[])
        ORDER BY account_id, for_date DESC, computed_ts DESC
        """,
        list(account_ids),
    )
    return {r["account_id"]: ForecastRow(r["account_id"], r["for_date"], r["outflow_usd"], r["method"],
                                         r["expected_inflows_usd"], r["computed_ts"]) for r in rows}


async def last_projections(db: Executor, account_ids: Sequence[str]) -> dict[str, tuple[Decimal, datetime]]:
    """Each account's latest projection its feed sent, with the as-of time of the balance that carried
    it: a projection older than 24 h is no longer used (``AccountState.projection``)."""
    rows = await db.fetch(
        """
        SELECT DISTINCT ON (account_id) account_id, projected_outflows_usd, as_of_ts
        FROM balance
        WHERE account_id = ANY($1::varchar[]) AND projected_outflows_usd IS NOT NULL AND decided_ts IS NOT NULL
        ORDER BY account_id, as_of_ts DESC, id DESC
        """,
        list(account_ids),
    )
    return {r["account_id"]: (r["projected_outflows_usd"], r["as_of_ts"]) for r in rows}
