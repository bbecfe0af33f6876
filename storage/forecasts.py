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

from storage.db import Executor, execute_many
from storage.history import READ_TIMEOUT_S, RecentFlows, closing_flows, copy_rows, recent_flows


@dataclass(frozen=True)
class ForecastRow:
    account_id: str
    for_date: date
    outflow_usd: Decimal
    method: str
    expected_inflows_usd: Decimal = Decimal(0)
    computed_ts: datetime | None = None


_EPOCH = date(1970, 1, 1)


# The accounts with booked business entries, each with its first and last booking dates (probes
# of statement_entry_book_idx, migration 009) and its through day: the later of its last booking
# date and its last close (a probe of the close index, migration 007).
_ENTRY_SPANS = """
    SELECT i.ord::int4 AS ord, f.day AS first_day, greatest(l.day, c.day) AS through
    FROM unnest($1::varchar[]) WITH ORDINALITY AS i(account_id, ord)
    CROSS JOIN LATERAL (
        SELECT e.booking_date AS day FROM statement_entry e
        WHERE e.account_id = i.account_id AND e.status = 'BOOK' AND e.own_transfer IS NULL
          AND e.booking_date IS NOT NULL
        ORDER BY e.booking_date DESC LIMIT 1
    ) l
    CROSS JOIN LATERAL (
        SELECT e.booking_date AS day FROM statement_entry e
        WHERE e.account_id = i.account_id AND e.status = 'BOOK' AND e.own_transfer IS NULL
          AND e.booking_date IS NOT NULL
        ORDER BY e.booking_date LIMIT 1
    ) f
    LEFT JOIN LATERAL (
        SELECT (b.as_of_ts AT TIME ZONE 'UTC')::date AS day FROM balance b
        WHERE b.account_id = i.account_id AND b.balance_code = 'CLBD' AND b.booked_usd IS NOT NULL
        ORDER BY (b.as_of_ts AT TIME ZONE 'UTC')::date DESC LIMIT 1
    ) c ON true
    ORDER BY i.ord
"""

# Each account's booking days after its through day less $3: the day's booked debits, 0 on a day
# of credits only, as float8 of the exact sum (one row per account and day, by binary COPY).
_ENTRY_OUTFLOWS = """
    SELECT i.ord::int4, (d.day - DATE '1970-01-01')::int4, d.outflow
    FROM unnest($1::varchar[], $2::date[]) WITH ORDINALITY AS i(account_id, through, ord)
    CROSS JOIN LATERAL (
        SELECT e.booking_date AS day,
               coalesce(sum(e.amount_usd) FILTER (WHERE e.direction = 'DBIT'), 0)::float8 AS outflow
        FROM statement_entry e
        WHERE e.account_id = i.account_id AND e.status = 'BOOK' AND e.own_transfer IS NULL
          AND e.booking_date > i.through - $3::int
        GROUP BY e.booking_date
    ) d
"""


@dataclass(frozen=True)
class _EntryDays:
    """The entry accounts' part of an ``OutflowHistory``: ``account_ids`` sorted, one row per
    account and day (``codes`` index ``account_ids``; rows by account, then day)."""

    account_ids: list[str]
    codes: npt.NDArray[np.int64]
    days: npt.NDArray[np.int64]
    outflows: npt.NDArray[np.float64]
    through: dict[str, date]


async def _entry_days(db: Executor, account_ids: list[str] | None, lookback_days: int) -> _EntryDays:
    """The last ``lookback_days`` days of each account's booked business entries, with a zero row
    at both ends of its span (its first day in the lookback, its through day) where no entry fell,
    so the days between with no debit read as days that paid nothing. An account whose entries all
    fall before the lookback has none here (its closes speak for it).

    By index probes per account, in one snapshot: the read costs the lookback's entries, not the
    ledger's whole history of them (which a GROUP BY over every entry did)."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            return await _entry_days(conn, account_ids, lookback_days)
    async with db.transaction(isolation="repeatable_read", readonly=True):
        names = sorted(set(account_ids if account_ids is not None else [
            r["account_id"] for r in await db.fetch("SELECT account_id FROM account")]))
        spans = await db.fetch(_ENTRY_SPANS, names, timeout=READ_TIMEOUT_S)
        entry_ids = [names[r["ord"] - 1] for r in spans]  # sorted, as names (ORDER BY i.ord)
        throughs = [r["through"] for r in spans]
        ords, days, outflows = await copy_rows(db, _ENTRY_OUTFLOWS, entry_ids, throughs, lookback_days, value=">f8")
    n = len(spans)
    codes = ords - 1
    has = np.bincount(codes, minlength=n) > 0
    first = np.array([(r["first_day"] - _EPOCH).days for r in spans], dtype=np.int64)
    last = np.array([(t - _EPOCH).days for t in throughs], dtype=np.int64)
    edge = np.flatnonzero(has)
    start = np.maximum(first[edge], last[edge] - lookback_days + 1)
    # The entry rows first, then the edges: the stable sort keeps an entry row ahead of an edge's
    # zero row of the same day, and only the first of each (account, day) is kept.
    codes = np.concatenate([codes, edge, edge])
    days = np.concatenate([days, start, last[edge]])
    outflows = np.concatenate([outflows, np.zeros(2 * len(edge))])
    order = np.lexsort((days, codes))
    codes, days, outflows = codes[order], days[order], outflows[order]
    first_of_day = np.ones(len(codes), dtype=np.bool_)
    first_of_day[1:] = (codes[1:] != codes[:-1]) | (days[1:] != days[:-1])
    codes, days, outflows = codes[first_of_day], days[first_of_day], outflows[first_of_day]
    kept = np.cumsum(has) - 1  # accounts with rows only
    return _EntryDays([entry_ids[i] for i in edge], kept[codes] if len(codes) else codes, days, outflows,
                      {entry_ids[i]: throughs[i] for i in edge})


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
    account has them, else closes (``_entry_days``).

    ``recent``: the closes' flows already read (``storage.history.window_and_recent_flows``, the
    VaR recompute's one read of the ledger), of these accounts (all when ``account_ids`` is None)
    and this lookback; read here when None."""
    ids = None if account_ids is None else list(account_ids)
    entries = await _entry_days(db, ids, lookback_days)
    if recent is None:
        with_entries = set(entries.through)
        without = [a for a in ids if a not in with_entries] if ids is not None else None
        recent = await recent_flows(db, lookback_days, without)
    if recent is not None:
        return _with_recent_closes(entries, recent, lookback_days)
    # Balances beyond recent_flows' integer arithmetic: the exact read of the other accounts' closes.
    closes = await closing_flows(db, None if ids is None else [a for a in ids if a not in entries.through])
    keep = pc.invert(pc.is_in(closes.column("account_id"), pa.array(sorted(entries.through), pa.string())))
    closes = closes.filter(keep)
    daily: dict[tuple[str, date], float] = {}
    through = dict(entries.through)
    for account, day, flow in zip(closes.column("account_id").to_pylist(), closes.column("date").to_pylist(),
                                  closes.column("net_flow_usd").to_pylist(), strict=True):
        daily[(account, day)] = max(0.0, -flow)
        through[account] = max(day, through.get(account, day))
    keys = sorted(daily)
    closed = sorted({a for a, _ in keys})
    at = {a: i for i, a in enumerate(closed)}
    return _joined(through, (entries.account_ids, entries.codes, entries.days, entries.outflows),
                   (closed, np.array([at[a] for a, _ in keys], dtype=np.int64),
                    np.array([(d - _EPOCH).days for _, d in keys], dtype=np.int64),
                    np.array([daily[k] for k in keys], dtype=np.float64)))


def _with_recent_closes(entries: _EntryDays, recent: RecentFlows, lookback_days: int) -> OutflowHistory:
    """The entry accounts' rows plus the close accounts' last ``lookback_days`` days of outflows,
    built as columns (100,000 accounts x 105 days: no Python object per row). An account with
    flows before that keeps a zero row on the cut-off day, so its history still reads as starting
    before the forecast's window (``risk.forecast.business_day_outflows``: observed from the
    first row), exactly as the whole history did."""
    through = dict(entries.through)
    mine = np.array([a not in through for a in recent.account_ids], dtype=np.bool_)
    rows = mine[recent.codes] if len(recent.codes) else np.zeros(0, dtype=np.bool_)
    codes, days, flows = recent.codes[rows], recent.days[rows], recent.flows[rows]
    edge = np.flatnonzero(recent.older & mine)
    last = np.array([(recent.through[recent.account_ids[i]] - _EPOCH).days for i in edge], dtype=np.int64)
    codes = np.concatenate([codes, edge.astype(np.int64)])
    days = np.concatenate([days, last - lookback_days])
    outflow = np.concatenate([np.where(-flows > 0.0, -flows, 0.0), np.zeros(len(edge))])  # max(0.0, -flow)
    for account, day in recent.through.items():
        if account not in through:
            through[account] = day
    return _joined(through, (entries.account_ids, entries.codes, entries.days, entries.outflows),
                   (recent.account_ids, codes, days, outflow))


_Part = tuple[list[str], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]


def _joined(through: dict[str, date], *parts: _Part) -> OutflowHistory:
    """Parts of a history (each: its sorted account ids, and its rows' codes into them, days and
    outflows) as one ``OutflowHistory`` over the sorted union of their accounts, rows in order."""
    ids = sorted(set().union(*(p[0] for p in parts)))
    at = {a: i for i, a in enumerate(ids)}
    codes = []
    for names, part_codes, _, _ in parts:
        if names == ids or not len(part_codes):
            codes.append(part_codes)
        else:
            codes.append(np.array([at[a] for a in names], dtype=np.int64)[part_codes])
    return OutflowHistory(ids, np.concatenate(codes), np.concatenate([p[2] for p in parts]),
                          np.concatenate([p[3] for p in parts]), through)


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
    await execute_many(
        db,
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
