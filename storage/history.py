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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import asyncpg
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from storage.db import Executor

FloatMatrix = npt.NDArray[np.float64]
_T = TypeVar("_T")

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


# The window of each account: the newest $2 calendar days of its closes as migration 008's
# close_series packs them (8 bytes a day, the newest close of each UTC day, the rule of ``_FLOWS``),
# as (position in $1, the first day read as days since 1970-01-01, the packed closes, whether
# older days were left out). One row an account instead of one a close: the 26,000,000 closes of
# 100,000 accounts x 260 days were 26,000,000 rows through the executor, the wire and numpy; the
# series' tail is fetched from TOAST without the days before it (STORAGE EXTERNAL).
_SERIES_TAIL = """
    SELECT i.ord::int4 AS ord,
           (s.first_day - DATE '1970-01-01')::int4
               + greatest(octet_length(s.closes)::int8 / 8 - $2::int8, 0)::int4 AS first,
           substring(s.closes FROM (greatest(octet_length(s.closes)::int8 - 8 * $2::int8, 0) + 1)::int4) AS closes,
           octet_length(s.closes)::int8 / 8 > $2::int8 AS cut
    FROM unnest($1::varchar[]) WITH ORDINALITY AS i(account_id, ord)
    JOIN close_series s ON s.account_id = i.account_id
    ORDER BY i.ord
"""
_NO_CLOSE = -(2**63)  # a day of the series without a close (008_close_series.sql)
_ALL_DAYS = 2**31 - 1  # $2 that reads an account's whole series

# Own transfers inside each account's window (after $2, its oldest close read), one row an entry,
# signed, in units of 0.000001 USD (amount_usd is numeric(24,6): exact). Not summed per day here:
# ``_operating`` adds them up by (account, day) in integers anyway, and a GROUP BY over 2,565,000
# entries spilled its hash table to disk (325 batches, 3.3 s of the server's 4.7 s).
_WINDOW_OWN = """
    SELECT i.ord::int4, (e.booking_date - DATE '1970-01-01')::int4,
           ((CASE WHEN e.direction = 'DBIT' THEN -e.amount_usd ELSE e.amount_usd END) * 1000000)::int8
    FROM unnest($1::varchar[], $2::date[]) WITH ORDINALITY AS i(account_id, after_day, ord)
    JOIN statement_entry e ON e.account_id = i.account_id
    WHERE e.own_transfer IS NOT NULL AND e.booking_date > i.after_day
"""


def _row(value: str) -> np.dtype[Any]:
    """One (int4, int4, ``value``) row in PostgreSQL's binary COPY format: field count, then length + value."""
    return np.dtype([("n", ">i2"), ("l1", ">i4"), ("ord", ">i4"), ("l2", ">i4"), ("day", ">i4"),
                     ("l3", ">i4"), ("value", value)])


_PARSE_BYTES = 4 << 20  # a binary COPY is parsed in pieces of about this many bytes
_COPY_HEADER = 19  # signature (11), flags (4), header extension length (4, zero)
_EPOCH = date(1970, 1, 1)
_EXACT = 2**53  # |micro-dollars| below this: int -> float64 and / 1e6 are each exact or correctly rounded
_MAX_CLOSE_UNITS = 4 * 10**14  # 4e10 USD in 0.0001 units: a change * 100 stays far inside int64


class _BinaryRows:
    """Collects a binary COPY of (int4, int4, int8 or float8) rows into numpy arrays as the chunks
    arrive: no Python object per row, and each chunk's bytes dropped once its rows are in 16 bytes
    of arrays (the wire's 30 bytes a row, kept, were most of a 100,000-account read's memory)."""

    def __init__(self, value: str) -> None:
        self._row = _row(value)
        self._value = np.dtype(value).newbyteorder("=")
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
            if not ((rows["n"] == 3) & (rows["l1"] == 4) & (rows["l2"] == 4) & (rows["l3"] == 8)).all():
                raise ValueError("unexpected row layout in the binary COPY")
            self._parts.append((rows["ord"].astype(np.int32), rows["day"].astype(np.int32),
                                rows["value"].astype(self._value)))
        self._rest = data[whole:]

    def columns(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[Any]]:
        """(ord, day) as native int64, value as its native type; the trailer (int16 -1) is what is left over."""
        self._parse()
        if self._rest not in (b"", b"\xff\xff"):
            raise ValueError("binary COPY ended inside a row")
        parts, self._parts = self._parts, []
        if not parts:
            return (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), np.empty(0, dtype=self._value))
        ords = np.concatenate([p[0] for p in parts]).astype(np.int64)
        days = np.concatenate([p[1] for p in parts]).astype(np.int64)
        return ords, days, np.concatenate([p[2] for p in parts])


# A recompute is a batch job: a read of every account may take longer than a request's timeout
# (the pool's command_timeout), so each read is given this many seconds, and reads are of at most
# CHUNK_ACCOUNTS accounts each.
READ_TIMEOUT_S = 600.0
CHUNK_ACCOUNTS = 10_000


async def copy_rows(conn: asyncpg.Connection, query: str, *args: object, value: str = ">i8") -> tuple[
        npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[Any]]:
    """``query``'s (int4, int4, ``value``: ">i8" int8 or ">f8" float8) rows by binary COPY, as
    three arrays: what a read of a row per account and day needs, without a Python object per row."""
    sink = _BinaryRows(value)
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


async def _read_newest(db: Executor, closes_per_account: int, account_ids: Sequence[str] | None,
                       make: Callable[[_Read], _T]) -> list[_T] | None:
    """Each chunk of CHUNK_ACCOUNTS accounts' newest closes and the own transfers between them,
    worked into ``make`` of its ``_Read``, chunks in the accounts' order; None when a close is
    beyond the integer arithmetic. All in one repeatable-read snapshot. From a pool of two or
    more connections the chunks are read two at once, the second connection on the first one's
    exported snapshot.

    Why chunk by chunk, not one read then one pass over it: numpy's passes over a chunk's arrays
    (2.6 M closes at 10,000 accounts x 261) run in cache-sized memory, in a thread each, so the
    two connections' chunks are worked on two cores while Postgres sends the next, and the long
    arrays alive at once are two chunks', not 26 M closes' (bench/var_recompute, 100,000 accounts:
    the read 20 s -> 4 s, its memory 2.2 -> 1.1 GiB)."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            if db.get_max_size() < 2:
                return await _read_newest(conn, closes_per_account, account_ids, make)
            async with db.acquire() as other:
                return await _read_in_snapshot(conn, other, closes_per_account, account_ids, make)
    return await _read_in_snapshot(db, None, closes_per_account, account_ids, make)


async def _read_in_snapshot(conn: asyncpg.Connection, other: asyncpg.Connection | None, closes_per_account: int,
                            account_ids: Sequence[str] | None, make: Callable[[_Read], _T]) -> list[_T] | None:
    async with conn.transaction(isolation="repeatable_read", readonly=True):  # closes and entries of one moment
        await conn.execute(_READ_SETTINGS)
        if account_ids is None:
            ids = sorted(r["account_id"] for r in await conn.fetch("SELECT account_id FROM account"))
        else:
            ids = sorted(set(account_ids))
        bounds = [(lo, min(lo + CHUNK_ACCOUNTS, len(ids))) for lo in range(0, len(ids), CHUNK_ACCOUNTS)] or [(0, 0)]
        made: dict[int, _T | None] = {}

        async def read(on: asyncpg.Connection, mine: list[tuple[int, int]]) -> None:
            for lo, hi in mine:
                made[lo] = await _read_chunk(on, ids[lo:hi], closes_per_account, make)

        if other is None or len(bounds) < 2:
            await read(conn, bounds)
        else:
            snapshot = str(await conn.fetchval("SELECT pg_export_snapshot()"))
            if not _SNAPSHOT_ID.match(snapshot):
                raise ValueError(f"unexpected snapshot id {snapshot!r}")
            async with other.transaction(isolation="repeatable_read", readonly=True):
                await other.execute("SET TRANSACTION SNAPSHOT '" + snapshot + "'")
                await other.execute(_READ_SETTINGS)
                await asyncio.gather(read(conn, bounds[0::2]), read(other, bounds[1::2]))
    parts = [made[lo] for lo, _ in bounds]
    return None if any(p is None for p in parts) else [p for p in parts if p is not None]


_SNAPSHOT_ID = re.compile(r"^[0-9A-F]+-[0-9A-F]+-[0-9]+$")


async def _read_chunk(on: asyncpg.Connection, ids: list[str], closes_per_account: int,
                      make: Callable[[_Read], _T]) -> _T | None:
    """One chunk: its closes (close_series' tails), its own transfers, ``make`` of them."""
    # The numpy work in threads: the caller's event loop (an actor's) stays free, and numpy lets go of
    # the GIL for its larger passes, so the other connection's chunk goes on beside it.
    codes, days, closes, short = await asyncio.to_thread(
        _series_closes, await on.fetch(_SERIES_TAIL, ids, _calendar_days(closes_per_account)), closes_per_account)
    if len(short):  # closes sparser than _calendar_days assumed: those accounts' whole series
        more = _series_closes(await on.fetch(_SERIES_TAIL, [ids[int(c)] for c in short], _ALL_DAYS),
                              closes_per_account)
        codes = np.concatenate([codes, short[more[0]]])
        days, closes = np.concatenate([days, more[1]]), np.concatenate([closes, more[2]])
        order = np.lexsort((-days, codes))
        codes, days, closes = codes[order], days[order], closes[order]
    if len(closes) and int(np.abs(closes).max()) >= _MAX_CLOSE_UNITS:  # the series' beyond-int8 mark too
        return None
    counts = np.bincount(codes, minlength=len(ids)).astype(np.int64)
    starts = np.cumsum(counts) - counts
    oldest = days[np.maximum(starts + counts - 1, 0)] if len(days) else np.zeros(len(ids), dtype=np.int64)
    after = [_EPOCH + timedelta(days=int(oldest[i])) if counts[i] else _EPOCH for i in range(len(ids))]
    own_ords, own_days, own_micros = await copy_rows(on, _WINDOW_OWN, ids, after)
    return await asyncio.to_thread(
        lambda: make(_operating(ids, codes, days, closes, counts, starts, own_ords - 1, own_days, own_micros)))


# The read's plan, per chunk of accounts: one index probe an account, into close_series and
# statement_entry_own_idx. Estimated, a chunk's 10,000 probes cost more than a hash join over all of
# statement_entry, so the planner took the hash join: a sequential scan of 2,565,000 entries for
# each chunk (0.9 s a chunk, against 0.17 s probed). JIT compiles each chunk's query (0.1 to 0.2 s
# of LLVM a query here) for a cast and a multiplication a row: interpreted is faster.
_READ_SETTINGS = "SET LOCAL jit = off; SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off"


def _calendar_days(closes: int) -> int:
    """Calendar days that hold ``closes`` closes of a business-day account: five a week, and a
    month for holidays. An account with fewer closes in them is read again whole (``_series_closes``)."""
    return closes * 7 // 5 + 31


def _series_closes(records: Sequence[asyncpg.Record], wanted: int) -> tuple[npt.NDArray[np.int64], ...]:
    """_SERIES_TAIL's rows as the stream the rest of the read takes: (codes, days, closes) of each
    account's newest ``wanted`` closes, accounts in the rows' order (codes: 0-based positions in
    the read's ids), days newest first; and ``short``: the accounts whose tail held fewer than
    ``wanted`` closes while older days were left out, their rows dropped here, to read whole."""
    n = len(records)
    if not n:
        return (*_copy_empty(), np.empty(0, dtype=np.int64))
    blobs = [r["closes"] for r in records]
    lengths = np.fromiter((len(b) // 8 for b in blobs), dtype=np.int64, count=n)
    firsts = np.fromiter((r["first"] for r in records), dtype=np.int64, count=n)
    ords = np.fromiter((r["ord"] for r in records), dtype=np.int64, count=n) - 1
    cut = np.fromiter((r["cut"] for r in records), dtype=np.bool_, count=n)
    packed = np.frombuffer(b"".join(blobs), dtype=">i8").astype(np.int64)
    ends = np.cumsum(lengths)
    back = np.arange(len(packed), dtype=np.int64) - np.repeat(ends - lengths, lengths)  # days back from the newest
    closes = packed[np.repeat(ends - 1, lengths) - back]  # each account's days, newest first
    days = np.repeat(firsts + lengths - 1, lengths) - back
    account = np.repeat(np.arange(n, dtype=np.int64), lengths)
    has = closes != _NO_CLOSE
    account, days, closes = account[has], days[has], closes[has]
    counts = np.bincount(account, minlength=n)
    rank = np.arange(len(account), dtype=np.int64) - (np.cumsum(counts) - counts)[account]
    short = cut & (counts < wanted)
    keep = (rank < wanted) & ~short[account]
    return ords[account[keep]], days[keep], closes[keep], ords[short]


def _copy_empty() -> tuple[npt.NDArray[np.int64], ...]:
    return tuple(np.empty(0, dtype=np.int64) for _ in range(3))


def _operating(ids: list[str], codes: npt.NDArray[np.int64], days: npt.NDArray[np.int64],
               closes: npt.NDArray[np.int64], counts: npt.NDArray[np.int64], starts: npt.NDArray[np.int64],
               own_codes: npt.NDArray[np.int64], own_days: npt.NDArray[np.int64],
               own_micros: npt.NDArray[np.int64]) -> _Read:
    """Row ``j`` of an account (0 = newest) is the change ``close[j] - close[j + 1]`` less the own
    transfers booked after day ``j + 1`` and on or before day ``j``: exact, in micro-dollars."""
    n = len(codes)
    # np.repeat over the grouped stream, not a gather by ``codes``: the same numbers, a third of the time.
    rank = np.arange(n, dtype=np.int64) - np.repeat(starts, counts)
    is_change = rank < np.repeat(counts - 1, counts)
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
    flows = change.astype(np.float64)
    flows /= 1e6  # below _EXACT both steps are exact: one correctly rounded division
    flows[~is_change] = np.nan
    for i in np.flatnonzero(is_change & (np.abs(change) >= _EXACT)):  # a day above 9e9 USD: as float(Decimal) does
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
    parts = await _read_newest(db, window + 1, account_ids, lambda read: _window_of(read, window))
    return None if parts is None else _joined_windows(parts)


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
    parts = await _read_newest(db, lookback_days + 1, account_ids, lambda read: _recent_of(read, lookback_days))
    return None if parts is None else _joined_recent(parts)


async def window_and_recent_flows(db: Executor, window: int, lookback_days: int,
                                  account_ids: Sequence[str] | None = None) -> tuple[WindowFlows, RecentFlows] | None:
    """``window_flows(db, window, ...)`` and ``recent_flows(db, lookback_days, ...)`` from one read
    of each account's last ``max(window, lookback_days) + 1`` closes, in one snapshot.

    Why: the recompute makes both, the VaR matrix and the outflow forecasts' closes, and the
    forecasts' own read of the ledger was a second pass over the same closes (10 M rows at 100,000
    accounts). Each result is what its own read makes: the rows of a longer read that a shorter one
    would not have are left out by rank (``_window_of``, ``_recent_of``)."""
    parts = await _read_newest(db, max(window, lookback_days) + 1, account_ids,
                               lambda read: (_window_of(read, window), _recent_of(read, lookback_days)))
    if parts is None:
        return None
    return _joined_windows([w for w, _ in parts]), _joined_recent([r for _, r in parts])


def _joined_windows(parts: Sequence[WindowFlows]) -> WindowFlows:
    """The chunks' matrices as one, accounts in the chunks' order."""
    return WindowFlows([a for p in parts for a in p.account_ids], np.concatenate([p.flows for p in parts]),
                       np.concatenate([p.days for p in parts]), np.concatenate([p.last_date for p in parts]))


def _joined_recent(parts: Sequence[RecentFlows]) -> RecentFlows:
    """The chunks' recent flows as one: each chunk's codes shifted past the accounts before it."""
    offsets = np.cumsum([0] + [len(p.account_ids) for p in parts[:-1]])
    through: dict[str, date] = {}
    for p in parts:
        through.update(p.through)
    return RecentFlows([a for p in parts for a in p.account_ids],
                       np.concatenate([p.codes + off for p, off in zip(parts, offsets, strict=True)]),
                       np.concatenate([p.days for p in parts]), np.concatenate([p.flows for p in parts]),
                       through, np.concatenate([p.older for p in parts]))


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
