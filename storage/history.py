"""Daily operating cash flows from the ledger: what VaR is of (spec: the business's net cash flows).

The close of a day is its latest CLBD (camt.053 closing booked) balance. The change of day d is
``close(d) - close(previous day with a close)``, so a gap's change lands on the later day (the
same rule as ``schemas.statements.daily_net_flows`` for files). That change includes our own
transfers: the sweeps that left (booked debits that settled an order) and the investments that
came back (the maturity credits). They are the orchestrator's doing, not the business's, and left
in they would make every large sweep a loss day of the VaR history. So the flow of day d is

    operating_flow(d) = close_change(d) - own_transfers(d)

where ``own_transfers(d)`` is the signed sum of the booked entries marked ``own_transfer``
(``storage.entries``) whose booking date falls after the previous close's day and on or before d.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from storage.db import Executor

FloatMatrix = npt.NDArray[np.float64]

_FLOWS = """
    WITH closes AS (
        SELECT DISTINCT ON (account_id, (as_of_ts AT TIME ZONE 'UTC')::date)
               account_id, (as_of_ts AT TIME ZONE 'UTC')::date AS day, booked_usd
        FROM balance
        WHERE balance_code = 'CLBD' AND booked_usd IS NOT NULL
          AND ($1::varchar[] IS NULL OR account_id = ANY($1::varchar[]))
        ORDER BY account_id, (as_of_ts AT TIME ZONE 'UTC')::date, as_of_ts DESC, id DESC
    ), changes AS (
        SELECT account_id, day, lag(day) OVER w AS previous_day, booked_usd - lag(booked_usd) OVER w AS change
        FROM closes WINDOW w AS (PARTITION BY account_id ORDER BY day)
    )
    SELECT c.account_id, c.day, c.change, COALESCE(own.usd, 0) AS own, c.change - COALESCE(own.usd, 0) AS operating
    FROM changes c
    LEFT JOIN LATERAL (
        SELECT sum(CASE WHEN e.direction = 'DBIT' THEN -e.amount_usd ELSE e.amount_usd END) AS usd
        FROM statement_entry e
        WHERE e.own_transfer IS NOT NULL AND e.account_id = c.account_id
          AND e.booking_date > c.previous_day AND e.booking_date <= c.day
    ) own ON true
    WHERE c.change IS NOT NULL
    ORDER BY c.account_id, c.day
"""


async def closing_flows(db: Executor, account_ids: Sequence[str] | None = None) -> pa.Table:
    """Long form (``account_id``, ``date``, ``net_flow_usd``: the operating flow) for the VaR engine."""
    rows = await db.fetch(_FLOWS, None if account_ids is None else list(account_ids))
    return pa.table({
        "account_id": pa.array([r["account_id"] for r in rows], pa.string()),
        "date": pa.array([r["day"] for r in rows], pa.date32()),
        "net_flow_usd": pa.array([float(r["operating"]) for r in rows], pa.float64()),
    })


async def account_flows(db: Executor, account_id: str, days: int) -> list[asyncpg.Record]:
    """The last ``days`` days of one account with a close: ``day``, ``change``, ``own``, ``operating``
    (exact decimals), oldest first: what ``treasury-orch var flows`` prints."""
    rows = await db.fetch(_FLOWS, [account_id])
    return list(rows[-days:])


# The window of each account, read in one pass that stops at ``window + 1`` closes per account:
# the newest close of each day (``DISTINCT ON``, the rule of ``_FLOWS``), newest first, as
# (account's position in $1, day as days since 1970-01-01, close in units of 0.0001 USD). The close
# column is numeric(20,4), so ``* 10000`` is an exact integer; a balance beyond int8 raises, and the
# caller falls back to ``_FLOWS``. Fixed-width columns let the binary COPY be read by numpy
# without a Python object per row. The index balance_close_window_idx (migration 007) has these
# closes in this order with the close itself: an index-only scan that stops after $2 days.
_WINDOW_CLOSES = """
    SELECT i.ord::int4, (c.day - DATE '1970-01-01')::int4, (c.booked_usd * 10000)::int8
    FROM unnest($1::varchar[]) WITH ORDINALITY AS i(account_id, ord)
    CROSS JOIN LATERAL (
        SELECT DISTINCT ON ((b.as_of_ts AT TIME ZONE 'UTC')::date)
               (b.as_of_ts AT TIME ZONE 'UTC')::date AS day, b.booked_usd
        FROM balance b
        WHERE b.account_id = i.account_id AND b.balance_code = 'CLBD' AND b.booked_usd IS NOT NULL
        ORDER BY (b.as_of_ts AT TIME ZONE 'UTC')::date DESC, b.as_of_ts DESC, b.id DESC
        LIMIT $2::int
    ) c
"""

# The same closes as _WINDOW_CLOSES, without DISTINCT ON: the index's first $2 rows of each
# account (its closes, newest day first, a day's newest first), as (position in $1, as_of_ts, close
# in 0.0001 USD). The binary timestamptz is the int8 of microseconds since 2000-01-01 UTC, so the
# UTC day is integer arithmetic in numpy (``_days_of``), and the newest close of each day is the
# first row of its day (``_newest_per_day``). Why: DISTINCT ON evaluates ``AT TIME ZONE 'UTC'`` on
# every row for its Unique node and its output, and that was about half the server's time of the
# read (EXPLAIN / COPY timings in the commit). A day closed twice (a corrected close) makes the
# account's $2 rows fewer than $2 days: such accounts are read again by _WINDOW_CLOSES.
_WINDOW_ROWS = """
    SELECT i.ord::int4, c.as_of_ts, (c.booked_usd * 10000)::int8
    FROM unnest($1::varchar[]) WITH ORDINALITY AS i(account_id, ord)
    CROSS JOIN LATERAL (
        SELECT b.as_of_ts, b.booked_usd
        FROM balance b
        WHERE b.account_id = i.account_id AND b.balance_code = 'CLBD' AND b.booked_usd IS NOT NULL
        ORDER BY (b.as_of_ts AT TIME ZONE 'UTC')::date DESC, b.as_of_ts DESC, b.id DESC
        LIMIT $2::int
    ) c
"""

# Own transfers inside each account's window (after $2, its oldest close read), summed per booking
# day, in units of 0.000001 USD (amount_usd is numeric(24,6): exact).
_WINDOW_OWN = """
    SELECT i.ord::int4, (e.booking_date - DATE '1970-01-01')::int4,
           (sum(CASE WHEN e.direction = 'DBIT' THEN -e.amount_usd ELSE e.amount_usd END) * 1000000)::int8
    FROM unnest($1::varchar[], $2::date[]) WITH ORDINALITY AS i(account_id, after_day, ord)
    JOIN statement_entry e ON e.account_id = i.account_id
    WHERE e.own_transfer IS NOT NULL AND e.booking_date > i.after_day
    GROUP BY i.ord, e.booking_date
"""

# One row of a read in PostgreSQL's binary COPY format: field count, then length + value. _ROW:
# (int4, int4, int8), of _WINDOW_CLOSES and _WINDOW_OWN; _ROW_TS: (int4, int8, int8), of _WINDOW_ROWS.
_ROW = np.dtype([("n", ">i2"), ("l1", ">i4"), ("ord", ">i4"), ("l2", ">i4"), ("day", ">i4"),
                 ("l3", ">i4"), ("value", ">i8")])
_ROW_TS = np.dtype([("n", ">i2"), ("l1", ">i4"), ("ord", ">i4"), ("l2", ">i4"), ("day", ">i8"),
                    ("l3", ">i4"), ("value", ">i8")])
_PG_EPOCH_US = (date(2000, 1, 1) - date(1970, 1, 1)).days * 86_400_000_000  # timestamptz's zero, in Unix µs
_DAY_US = 86_400_000_000
_PARSE_BYTES = 4 << 20  # a binary COPY is parsed in pieces of about this many bytes
_COPY_HEADER = 19  # signature (11), flags (4), header extension length (4, zero)
_EPOCH = date(1970, 1, 1)
_EXACT = 2**53  # |micro-dollars| below this: int -> float64 and / 1e6 are each exact or correctly rounded
_MAX_CLOSE_UNITS = 4 * 10**14  # 4e10 USD in 0.0001 units: a change * 100 stays far inside int64


class _BinaryRows:
    """Collects a binary COPY of (int4, int4, int8) rows into numpy arrays as the chunks arrive:
    no Python object per row, and each chunk's bytes dropped once its rows are in 16 bytes of
    arrays (the wire's 30 bytes a row, kept, were most of a 100,000-account read's memory)."""

    def __init__(self, row: np.dtype[Any] = _ROW) -> None:
        self._row = row
        self._second_width = row["day"].itemsize
        self._rest = b""
        self._header = True
        self._parts: list[tuple[npt.NDArray[np.int32], npt.NDArray[Any], npt.NDArray[np.int64]]] = []
        self._pending: list[bytes] = []
        self._pending_bytes = 0

    async def __call__(self, chunk: bytes) -> None:
        # asyncpg hands over what one socket read brought (~30 KB, a thousand rows): parsed one by
        # one, the numpy calls of a chunk cost more than its rows (a second of 20,000 accounts'
        # read). So chunks are kept until there are _PARSE_BYTES of them, then parsed at once.
        self._pending.append(bytes(chunk))
        self._pending_bytes += len(chunk)
        if self._pending_bytes >= _PARSE_BYTES:
            self._parse()

    def _parse(self) -> None:
        data = b"".join([self._rest, *self._pending])
        self._pending, self._pending_bytes = [], 0
        if self._header:
            if len(data) < _COPY_HEADER:
                self._rest = data
                return
            data, self._header = data[_COPY_HEADER:], False
        size = self._row.itemsize
        whole = len(data) // size * size
        if whole:
            rows = np.frombuffer(data, dtype=self._row, count=whole // size)
            if not ((rows["n"] == 3) & (rows["l1"] == 4) & (rows["l2"] == self._second_width)
                    & (rows["l3"] == 8)).all():
                raise ValueError("unexpected row layout in the binary COPY")
            second = rows["day"].astype(np.int32 if self._second_width == 4 else np.int64)
            self._parts.append((rows["ord"].astype(np.int32), second, rows["value"].astype(np.int64)))
        self._rest = data[whole:]

    def columns(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """(ord, day, value) as native int64; the trailer (int16 -1) is what is left over."""
        self._parse()
        if self._rest not in (b"", b"\xff\xff"):
            raise ValueError("binary COPY ended inside a row")
        parts, self._parts = self._parts, []
        if not parts:
            return (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64))
        ords = np.concatenate([p[0] for p in parts]).astype(np.int64)
        days = np.concatenate([p[1] for p in parts]).astype(np.int64)
        return ords, days, np.concatenate([p[2] for p in parts])


# A recompute is a batch job: a read of every account may take longer than a request's timeout
# (the pool's command_timeout), so each read is given this many seconds, and reads are of at most
# CHUNK_ACCOUNTS accounts each.
READ_TIMEOUT_S = 600.0
CHUNK_ACCOUNTS = 10_000


async def _copy_rows(conn: asyncpg.Connection, query: str, *args: object, row: np.dtype[Any] = _ROW) -> tuple[
        npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    sink = _BinaryRows(row)
    await conn.copy_from_query(query, *args, output=sink, format="binary", timeout=READ_TIMEOUT_S)
    return sink.columns()


@dataclass(frozen=True)
class WindowFlows:
    """What ``risk.history.FlowHistory`` holds (sorted accounts, right-aligned NaN-padded matrix,
    observed days, last date), made here because storage does not import risk."""

    account_ids: list[str]
    flows: FloatMatrix
    days: npt.NDArray[np.int64]
    last_date: npt.NDArray[np.datetime64]


@dataclass(frozen=True)
class _Read:
    """Each account's newest closes as read, newest first: the stream's rows, and per row its
    account (``codes``), day number, rank in its account (0 = newest) and, where the row is a
    change (``is_change``: not the account's oldest close read), its operating flow in float64."""

    ids: list[str]
    codes: npt.NDArray[np.int64]
    days: npt.NDArray[np.int64]
    rank: npt.NDArray[np.int64]
    counts: npt.NDArray[np.int64]
    starts: npt.NDArray[np.int64]
    is_change: npt.NDArray[np.bool_]
    flows: npt.NDArray[np.float64]


async def _read_newest(db: Executor, closes_per_account: int, account_ids: Sequence[str] | None) -> _Read | None:
    """Both reads in one repeatable-read snapshot. From a pool of two or more connections the
    closes are read in two halves at once, the second connection on the first one's exported
    snapshot: Postgres's share of the read is most of the recompute, and there are two cores."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            if db.get_max_size() < 2:
                return await _read_newest(conn, closes_per_account, account_ids)
            async with db.acquire() as other:
                return await _read_in_snapshot(conn, other, closes_per_account, account_ids)
    return await _read_in_snapshot(db, None, closes_per_account, account_ids)


async def _read_in_snapshot(conn: asyncpg.Connection, other: asyncpg.Connection | None, closes_per_account: int,
                            account_ids: Sequence[str] | None) -> _Read | None:
    async with conn.transaction(isolation="repeatable_read", readonly=True):  # closes and entries of one moment
        await conn.execute(_NO_JIT)
        if account_ids is None:
            ids = sorted(r["account_id"] for r in await conn.fetch("SELECT account_id FROM account"))
        else:
            ids = sorted(set(account_ids))
        try:
            ords, days, closes = await _two_halves(conn, other, ids, closes_per_account)
        except asyncpg.NumericValueOutOfRangeError:
            return None
        if len(closes) and int(np.abs(closes).max()) >= _MAX_CLOSE_UNITS:
            return None
        codes = ords - 1  # 1-based ordinality -> index into ids
        if len(codes) and not _grouped_newest_first(codes, days):  # the plan's order is not promised
            order = np.lexsort((-days, codes))
            codes, days, closes = codes[order], days[order], closes[order]
        counts = np.bincount(codes, minlength=len(ids)).astype(np.int64)
        starts = np.cumsum(counts) - counts
        oldest = days[np.maximum(starts + counts - 1, 0)] if len(days) else np.zeros(len(ids), dtype=np.int64)
        after = [_EPOCH + timedelta(days=int(oldest[i])) if counts[i] else _EPOCH for i in range(len(ids))]
        own_ords, own_days, own_micros = await _copy_rows(conn, _WINDOW_OWN, ids, after)
    return _operating(ids, codes, days, closes, counts, starts, own_ords - 1, own_days, own_micros)


_SNAPSHOT_ID = re.compile(r"^[0-9A-F]+-[0-9A-F]+-[0-9]+$")


async def _two_halves(conn: asyncpg.Connection, other: asyncpg.Connection | None, ids: list[str],
                      closes_per_account: int) -> tuple[npt.NDArray[np.int64], ...]:
    """The closes of ``ids`` in chunks of CHUNK_ACCOUNTS, read by ``conn`` and ``other`` (on
    ``conn``'s snapshot) at once, each taking every other chunk; positions shifted to ``ids``."""
    bounds = [(lo, min(lo + CHUNK_ACCOUNTS, len(ids))) for lo in range(0, len(ids), CHUNK_ACCOUNTS)]
    parts: dict[int, tuple[npt.NDArray[np.int64], ...]] = {}

    async def read(on: asyncpg.Connection, mine: list[tuple[int, int]]) -> None:
        for lo, hi in mine:
            ords, stamps, closes = await _copy_rows(on, _WINDOW_ROWS, ids[lo:hi], closes_per_account, row=_ROW_TS)
            codes, days, closes, again = _newest_per_day(ords - 1, stamps, closes, closes_per_account)
            if len(again):  # a corrected close among an account's rows: that account by DISTINCT ON
                more = await _copy_rows(on, _WINDOW_CLOSES, [ids[lo + int(c)] for c in again], closes_per_account)
                codes = np.concatenate([codes, again[more[0] - 1]])
                days, closes = np.concatenate([days, more[1]]), np.concatenate([closes, more[2]])
                order = np.lexsort((-days, codes))
                codes, days, closes = codes[order], days[order], closes[order]
            parts[lo] = (codes + lo + 1, days, closes)  # 1-based, as the ordinality

    if other is None or len(bounds) < 2:
        await read(conn, bounds)
    else:
        snapshot = str(await conn.fetchval("SELECT pg_export_snapshot()"))
        if not _SNAPSHOT_ID.match(snapshot):
            raise ValueError(f"unexpected snapshot id {snapshot!r}")
        async with other.transaction(isolation="repeatable_read", readonly=True):
            await other.execute("SET TRANSACTION SNAPSHOT '" + snapshot + "'")
            await other.execute(_NO_JIT)
            await asyncio.gather(read(conn, bounds[0::2]), read(other, bounds[1::2]))
    if not parts:
        return _copy_empty()
    ordered = [parts[lo] for lo, _ in bounds]
    return tuple(np.concatenate([p[i] for p in ordered]) for i in range(3))


# JIT compiles each chunk's query (0.1 to 0.2 s of LLVM a query here) for expressions that are a
# cast and a multiplication a row: the read is faster interpreted.
_NO_JIT = "SET LOCAL jit = off"


def _newest_per_day(codes: npt.NDArray[np.int64], stamps: npt.NDArray[np.int64], closes: npt.NDArray[np.int64],
                    limit: int) -> tuple[npt.NDArray[np.int64], ...]:
    """_WINDOW_ROWS' rows (``codes``: 0-based positions, ``stamps``: as_of_ts in µs since 2000) as
    _WINDOW_CLOSES makes them: the newest close of each UTC day, accounts ascending, days newest first.

    Returns (codes, days, closes, again): ``again``, the accounts to read by _WINDOW_CLOSES instead
    (their rows here dropped): those with two closes of one day at the very same as_of_ts (the id
    decides, and it is not read), and those whose ``limit`` rows held a day twice (fewer days than
    ``limit``: the next days were not read)."""
    if len(codes) and not ((codes[1:] > codes[:-1]) | ((codes[1:] == codes[:-1]) & (stamps[1:] <= stamps[:-1]))).all():
        order = np.lexsort((-stamps, codes))  # the plan's order is not promised
        codes, stamps, closes = codes[order], stamps[order], closes[order]
    days = _days_of(stamps)
    repeat = np.zeros(len(codes), dtype=np.bool_)
    repeat[1:] = (codes[1:] == codes[:-1]) & (days[1:] == days[:-1])  # an older close of the day above
    if not repeat.any():
        return codes, days, closes, np.empty(0, dtype=np.int64)
    tied = np.zeros(len(codes), dtype=np.bool_)
    tied[1:] = repeat[1:] & (stamps[1:] == stamps[:-1])
    full = np.bincount(codes, minlength=int(codes.max()) + 1) >= limit
    again = np.unique(np.concatenate([codes[tied], codes[repeat & full[codes]]]))
    keep = ~repeat & ~np.isin(codes, again)
    return codes[keep], days[keep], closes[keep], again


def _days_of(stamps: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """UTC day numbers since 1970-01-01 of binary timestamptz values: ``(as_of_ts AT TIME ZONE 'UTC')::date``."""
    return (stamps + _PG_EPOCH_US) // _DAY_US


def _copy_empty() -> tuple[npt.NDArray[np.int64], ...]:
    return tuple(np.empty(0, dtype=np.int64) for _ in range(3))


def _grouped_newest_first(codes: npt.NDArray[np.int64], days: npt.NDArray[np.int64]) -> bool:
    key = codes * (int(days.max()) - int(days.min()) + 1) + (int(days.max()) - days)
    return bool((key[1:] > key[:-1]).all())


def _operating(ids: list[str], codes: npt.NDArray[np.int64], days: npt.NDArray[np.int64],
               closes: npt.NDArray[np.int64], counts: npt.NDArray[np.int64], starts: npt.NDArray[np.int64],
               own_codes: npt.NDArray[np.int64], own_days: npt.NDArray[np.int64],
               own_micros: npt.NDArray[np.int64]) -> _Read:
    """Row ``j`` of an account (0 = newest) is the change ``close[j] - close[j + 1]`` less the own
    transfers booked after day ``j + 1`` and on or before day ``j``: exact, in micro-dollars."""
    n = len(codes)
    if n and not (np.diff(codes) >= 0).all():
        raise ValueError("closes not grouped by account")
    rank = np.arange(n, dtype=np.int64) - starts[codes]
    is_change = rank < counts[codes] - 1
    change = np.zeros(n, dtype=np.int64)
    change[:-1] = (closes[:-1] - closes[1:]) * 100  # micro-dollars; only rows with is_change are kept
    # Each own-transfer day belongs to the first close on or after it (the later day of its gap).
    if len(own_codes) and n:
        first, last = int(min(days.min(), own_days.min())), int(max(days.max(), own_days.max()))
        span = last - first + 2
        key = codes * span + (last - days)  # ascending along the stream: accounts up, days down
        wanted = own_codes * span + (last - own_days)
        by_key = np.argsort(wanted)  # sorted needles: each search starts where the last one ended
        own_codes, wanted, own_micros = own_codes[by_key], wanted[by_key], own_micros[by_key]
        at = np.searchsorted(key, wanted, side="right") - 1  # integer sums: their order does not matter
        safe = np.maximum(at, 0)
        ok = (at >= 0) & (codes[safe] == own_codes) & is_change[safe]
        np.subtract.at(change, at[ok], own_micros[ok])
    flows = np.full(n, np.nan)
    small = is_change & (np.abs(change) < _EXACT)
    flows[small] = change[small].astype(np.float64) / 1e6  # both exact: one correctly rounded division
    for i in np.flatnonzero(is_change & ~small):  # a day above 9e9 USD: as float(Decimal) does
        flows[i] = float(Decimal(int(change[i])).scaleb(-6))
    return _Read(ids, codes, days, rank, counts, starts, is_change, flows)


async def window_flows(db: Executor, window: int, account_ids: Sequence[str] | None = None) -> WindowFlows | None:
    """The VaR engine's matrix straight from the ledger: the same numbers as
    ``risk.history.build_matrix(closing_flows(db, account_ids), window)``, reading only each
    account's last ``window + 1`` closes and the own transfers between them.

    The operating flow ``change - own`` is computed exactly, in integer micro-dollars, and turned
    into float64 once, as ``float(Decimal)`` of the SQL ``numeric`` would: so memory and time grow
    with accounts x window, not with the length of the ledger (the old read built a Python record
    per row of the whole history: 26 M of them at 100,000 accounts x 260 days). None when a
    balance is too large for that integer arithmetic (above 4e10 USD): the caller then takes
    ``closing_flows``, exact decimals all the way.
    """
    read = await _read_newest(db, window + 1, account_ids)
    return None if read is None else _window_of(read, window)


@dataclass(frozen=True)
class RecentFlows:
    """Each account's operating flows of its last ``lookback_days`` calendar days (long form,
    newest first per account), its last day, and whether it has flows from before them."""

    account_ids: list[str]
    codes: npt.NDArray[np.int64]  # index into account_ids, per row
    days: npt.NDArray[np.int64]  # day numbers since 1970-01-01
    flows: npt.NDArray[np.float64]
    through: dict[str, date]
    older: npt.NDArray[np.bool_]  # per account of account_ids


async def recent_flows(db: Executor, lookback_days: int,
                       account_ids: Sequence[str] | None = None) -> RecentFlows | None:
    """``closing_flows`` cut to the days after ``last - lookback_days`` of each account, read as
    ``window_flows`` reads (at most ``lookback_days + 1`` closes an account: one a day at most).
    None where ``window_flows`` is None."""
    read = await _read_newest(db, lookback_days + 1, account_ids)
    return None if read is None else _recent_of(read, lookback_days)


async def window_and_recent_flows(db: Executor, window: int, lookback_days: int,
                                  account_ids: Sequence[str] | None = None) -> tuple[WindowFlows, RecentFlows] | None:
    """``window_flows(db, window, ...)`` and ``recent_flows(db, lookback_days, ...)`` from one read
    of each account's last ``max(window, lookback_days) + 1`` closes, in one snapshot.

    Why: the recompute makes both, the VaR matrix and the outflow forecasts' closes, and the
    forecasts' own read of the ledger was a second pass over the same closes (10 M rows at 100,000
    accounts). Each result is what its own read makes: the rows of a longer read that a shorter one
    would not have are left out by rank (``_window_of``, ``_recent_of``)."""
    read = await _read_newest(db, max(window, lookback_days) + 1, account_ids)
    if read is None:
        return None
    return _window_of(read, window), _recent_of(read, lookback_days)


def _window_of(read: _Read, window: int) -> WindowFlows:
    """The matrix of what a read of ``window + 1`` closes an account holds: its ranks below ``window``."""
    counts = np.minimum(read.counts, window + 1)
    keep = counts >= 2  # an account needs two closes for one change, as in _FLOWS
    index = np.cumsum(keep) - 1
    matrix = np.full((int(keep.sum()), window), np.nan)
    rows = read.is_change & (read.rank < window)
    matrix[index[read.codes[rows]], window - 1 - read.rank[rows]] = read.flows[rows]
    last_date = read.days[read.starts[keep]].astype("datetime64[D]")
    matrix_days = (~np.isnan(matrix)).sum(axis=1, dtype=np.int64)
    return WindowFlows([a for a, k in zip(read.ids, keep, strict=True) if k], matrix, matrix_days, last_date)


def _recent_of(read: _Read, lookback_days: int) -> RecentFlows:
    """``recent_flows`` of what a read of ``lookback_days + 1`` closes an account holds: ranks below
    ``lookback_days + 1``, and a change only where its older close is among them."""
    closes = lookback_days + 1
    counts = np.minimum(read.counts, closes)
    has = counts >= 2
    last = read.days[np.minimum(read.starts, max(len(read.days) - 1, 0))] if len(read.days) else read.counts
    cutoff = last - lookback_days
    change = read.is_change & (read.rank < closes - 1)
    recent = change & (read.days > cutoff[read.codes])
    older = np.zeros(len(read.ids), dtype=np.bool_)
    older[read.codes[change & ~recent]] = True
    older |= counts == closes  # maybe more before what was read
    through = {read.ids[i]: _EPOCH + timedelta(days=int(last[i])) for i in np.flatnonzero(has)}
    return RecentFlows(read.ids, read.codes[recent], read.days[recent], read.flows[recent], through, older & has)
