"""The VaR recompute's window read (storage.history.window_flows) against the exact-decimal read.

``window_flows`` reads each account's last ``window + 1`` closes by binary COPY and does the
operating-flow arithmetic in integers; these ledgers have the awkward cases (two closes on one
day, gaps with own transfers in them, transfers before the window and after the last close,
one-close accounts, short histories, cents that do not survive float) and the matrix must be
bit-identical to ``build_matrix(closing_flows(...))``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import numpy as np
import pyarrow.compute as pc
import pytest

from actors.var_job import FORECAST_LOOKBACK_DAYS, load
from risk.forecast import forecast_table
from risk.history import build_matrix
from storage import forecasts, history
from storage.history import closing_flows, window_flows
from treasury import business_calendar

DAY0 = date(2026, 1, 5)


async def _ledger(pool: asyncpg.Pool, prefix: str) -> list[str]:
    rng = np.random.default_rng(7)
    ids = [f"{prefix}-{i}" for i in range(6)]
    await pool.executemany("INSERT INTO account (account_id) VALUES ($1)", [(a,) for a in ids])
    closes: list[tuple[str, str, datetime, Decimal]] = []
    entries: list[tuple[str, str, str, Decimal, date, str, str]] = []
    for n, account in enumerate(ids):
        days = [0] if n == 0 else list(range(0, 40 if n != 3 else 6))
        if n == 1:
            days = list(range(160))  # longer than the forecast's lookback
        if n == 5:
            days = list(range(0, 200, 3))  # longer, and sparse
        if n == 2:
            days = [d for d in days if d % 7 not in (5, 6)]  # weekends: gaps
        for d in days:
            at = datetime(2026, 1, 5, 21, tzinfo=UTC) + timedelta(days=d)
            value = Decimal(int(rng.integers(-10**9, 10**9))) / Decimal(10**4)
            closes.append((account, f"c{d}", at, value))
            if n == 4 and d % 5 == 0:  # a corrected close later the same day: the later one counts
                closes.append((account, f"c{d}b", at + timedelta(hours=1), value + Decimal("0.0001")))
            if n == 2 and d % 4 == 0:  # a correction at the very same as_of_ts: the later row (id) counts
                closes.append((account, f"c{d}t", at, value + Decimal("0.0002")))
        for d in (1, 3, 5, 6, 12, 25, 39, 45):  # 45: after the last close, never counted
            amount = Decimal(int(rng.integers(1, 10**12))) / Decimal(10**6)
            entries.append((account, f"s{d}", "DBIT" if d % 2 else "CRDT", amount, DAY0 + timedelta(days=d),
                            "SWEEP" if d % 2 else "MATURITY", f"{account}-o{d}"))
    await pool.executemany(
        "INSERT INTO balance (account_id, event_id, as_of_ts, kind, balance_code, avail_usd, booked_usd, currency,"
        " applied, decided_ts, raw_event) VALUES ($1, $2, $3, 'PRIOR_DAY', 'CLBD', $4, $4, 'USD', true, $3, '{}')",
        closes)
    await pool.executemany(
        "INSERT INTO statement_entry (account_id, entry_id, direction, status, amount_usd, currency, booking_date,"
        " own_transfer, order_id, content_sha256, raw_entry)"
        " VALUES ($1, $2, $3, 'BOOK', $4, 'USD', $5, $6, $7, repeat('0', 64), '{}')",
        entries)
    return ids


@pytest.mark.parametrize("chunk", [10_000, 2])  # 2: chunks on two connections, one snapshot
async def test_window_read_is_bit_identical_to_the_decimal_read(pool: asyncpg.Pool, chunk: int,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(history, "CHUNK_ACCOUNTS", chunk)
    ids = await _ledger(pool, f"W{uuid.uuid4().hex[:8]}")
    for window in (1, 5, 30, 39, 60, 250):
        exact = build_matrix(await closing_flows(pool, ids), window)
        fast = await window_flows(pool, window, ids)
        assert fast is not None
        assert fast.account_ids == exact.account_ids == ids[1:]  # one close: no change, no row
        assert fast.flows.shape == exact.flows.shape
        assert np.array_equal(fast.flows, exact.flows, equal_nan=True)
        assert np.array_equal(fast.days, exact.days)
        assert np.array_equal(fast.last_date, exact.last_date)
        loaded, _ = await load(pool, "postgres", window, ids)
        assert np.array_equal(loaded.flows, exact.flows, equal_nan=True)


async def test_the_packed_closes_follow_the_ledger_however_it_is_written(pool: asyncpg.Pool) -> None:
    """close_series (migration 008) is kept by triggers: closes that arrive out of order, a late
    correction of an old day, a deleted and an updated close, in one statement or many; the window
    read on it stays the exact read of the rows, and a rebuild from the rows gives the same bytes."""
    prefix = f"WS{uuid.uuid4().hex[:8]}"
    ids = [f"{prefix}-{i}" for i in range(3)]
    await pool.executemany("INSERT INTO account (account_id) VALUES ($1)", [(a,) for a in ids])
    insert = ("INSERT INTO balance (account_id, event_id, as_of_ts, kind, balance_code, avail_usd, booked_usd,"
              " currency, applied, decided_ts, raw_event) SELECT a, e, t, 'PRIOR_DAY', 'CLBD', v, v, 'USD', true, t,"
              " '{}' FROM unnest($1::varchar[], $2::varchar[], $3::timestamptz[], $4::numeric[]) AS x(a, e, t, v)")

    async def closes(rows: list[tuple[str, str, int, int, str]]) -> None:  # (account, event, day, hour, usd)
        at = [datetime(2026, 3, 2, 20, tzinfo=UTC) + timedelta(days=d, hours=h) for _, _, d, h, _ in rows]
        await pool.execute(insert, [r[0] for r in rows], [r[1] for r in rows], at, [Decimal(r[4]) for r in rows])

    await closes([(ids[0], f"a{d}", d, 0, f"{1000 + d * 7}.25") for d in (10, 11, 12)])
    await closes([(ids[0], f"a{d}", d, 0, f"{1000 - d}.5") for d in (2, 5, 3)])  # older days, late
    await closes([(ids[0], "a11x", 11, 2, "1.0001"), (ids[1], "b1", 1, 0, "5"), (ids[1], "b4", 4, 0, "9")])
    await closes([(ids[1], "b4y", 4, 1, "8"), (ids[1], "b9", 9, 0, "-3"), (ids[2], "c0", 0, 0, "2")])
    await closes([(ids[2], f"c{d}", d, 0, f"{d}") for d in range(1, 40, 4)])
    await pool.execute("DELETE FROM balance WHERE account_id = $1 AND event_id = 'b4y'", ids[1])  # 9 counts again
    await pool.execute("UPDATE balance SET booked_usd = 77 WHERE account_id = $1 AND event_id = 'a5'", ids[0])
    for window in (1, 3, 8, 250):
        exact = build_matrix(await closing_flows(pool, ids), window)
        fast = await window_flows(pool, window, ids)
        assert fast is not None and fast.account_ids == exact.account_ids == ids
        assert np.array_equal(fast.flows, exact.flows, equal_nan=True)
        assert np.array_equal(fast.last_date, exact.last_date)
    kept = await pool.fetch("SELECT account_id, first_day, closes FROM close_series WHERE account_id = ANY($1)"
                            " ORDER BY account_id", ids)
    await pool.execute("DELETE FROM close_series WHERE account_id = ANY($1)", ids)
    await pool.execute("SELECT close_series_refresh(account_id, min((as_of_ts AT TIME ZONE 'UTC')::date),"
                       " max((as_of_ts AT TIME ZONE 'UTC')::date)) FROM balance WHERE account_id = ANY($1)"
                       " AND balance_code = 'CLBD' GROUP BY account_id", ids)
    rebuilt = await pool.fetch("SELECT account_id, first_day, closes FROM close_series WHERE account_id = ANY($1)"
                               " ORDER BY account_id", ids)
    assert [tuple(r) for r in rebuilt] == [tuple(r) for r in kept]


async def test_a_close_beyond_the_packed_range_takes_the_exact_read(pool: asyncpg.Pool) -> None:
    account = f"WB{uuid.uuid4().hex[:8]}"
    await pool.execute("INSERT INTO account (account_id) VALUES ($1)", account)
    for day, usd in ((1, "10"), (2, "1000000000000000"), (3, "12")):  # 1e15 USD: beyond int8 in 0.0001 units
        at = datetime(2026, 3, 2, 20, tzinfo=UTC) + timedelta(days=day)
        await pool.execute(
            "INSERT INTO balance (account_id, event_id, as_of_ts, kind, balance_code, avail_usd, booked_usd, currency,"
            " applied, decided_ts, raw_event) VALUES ($1, $2, $3, 'PRIOR_DAY', 'CLBD', $4, $4, 'USD', true, $3, '{}')",
            account, f"x{day}", at, Decimal(usd))
    assert await window_flows(pool, 5, [account]) is None
    loaded, recent = await load(pool, "postgres", 5, [account])
    exact = build_matrix(await closing_flows(pool, [account]), 5)
    assert recent is None and np.array_equal(loaded.flows, exact.flows, equal_nan=True)


async def test_accounts_unknown_or_without_closes_are_left_out(pool: asyncpg.Pool) -> None:
    ids = await _ledger(pool, f"W{uuid.uuid4().hex[:8]}")
    fast = await window_flows(pool, 10, [ids[2], "no-such-account", ids[0]])
    assert fast is not None and fast.account_ids == [ids[2]]
    empty = await window_flows(pool, 10, [])
    assert empty is not None and empty.flows.shape == (0, 10)


@pytest.mark.parametrize("chunk", [10_000, 2])  # 2: the chunks' recent flows joined
async def test_forecast_history_cut_to_the_lookback_forecasts_as_the_whole_history(
        pool: asyncpg.Pool, chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(history, "CHUNK_ACCOUNTS", chunk)
    ids = await _ledger(pool, f"W{uuid.uuid4().hex[:8]}")
    calendar = business_calendar.active()
    for lookback in (FORECAST_LOOKBACK_DAYS, 120):  # the forecast's window (91 days) and the closed days after
        fast = await forecasts.outflow_columns(pool, ids, lookback)
        with monkeypatch.context() as patched:
            patched.setattr(forecasts, "recent_flows", _none)
            whole = await forecasts.outflow_columns(pool, ids, lookback)
        through = fast.through
        assert through == whole.through
        for_dates = {a: calendar.next_business_day(d) for a, d in through.items()}
        assert forecast_table(fast.table(), for_dates, calendar) == forecast_table(whole.table(), for_dates, calendar)


# The forecasts' entry read before migration 009 (every entry of the ledger grouped at once): the
# reference for the read by index probes per account.
_WHOLE_HISTORY_ENTRY_DAYS = """
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


async def _whole_history_entry_days(pool: asyncpg.Pool, ids: list[str] | None,
                                    lookback: int) -> tuple[dict[tuple[str, date], float], dict[str, date]]:
    daily: dict[tuple[str, date], float] = {}
    through: dict[str, date] = {}
    for r in await pool.fetch(_WHOLE_HISTORY_ENTRY_DAYS, ids, lookback):
        daily[(r["account_id"], r["day"])] = r["outflow"]
        through[r["account_id"]] = r["through"]
        start = max(r["first_day"], date.fromordinal(r["through"].toordinal() - lookback + 1))
        for edge in (start, r["through"]):
            daily.setdefault((r["account_id"], edge), 0.0)
    return daily, through


async def test_entry_days_read_by_probes_are_the_whole_history_read(pool: asyncpg.Pool) -> None:
    """Booked business entries over 200 days (debits and credits, several a day, days of credits
    only), pending entries and own transfers beside them, an account whose entries all lie before
    its lookback (its closes run on), one with entries and no closes, one with closes only: the
    forecasts' entry rows read per account are the rows of the whole-history read."""
    ids = await _ledger(pool, f"WE{uuid.uuid4().hex[:8]}")  # closes and own transfers, days 0..199
    rng = np.random.default_rng(11)
    entries: list[tuple[str, str, str, str, Decimal, date]] = []
    spans = {ids[1]: range(0, 170), ids[5]: range(0, 12), ids[3]: range(20, 60), ids[4]: range(3, 200, 2)}
    for account, days in spans.items():
        for d in days:
            for k in range(int(rng.integers(0, 4))):
                direction = "CRDT" if (d % 5 == 0 or k == 2) else "DBIT"
                status = "PDNG" if k == 3 else "BOOK"
                amount = Decimal(int(rng.integers(1, 10**10))) / Decimal(100)
                entries.append((account, f"b{d}-{k}", direction, status, amount, DAY0 + timedelta(days=d)))
    await pool.executemany(
        "INSERT INTO statement_entry (account_id, entry_id, direction, status, amount_usd, currency, booking_date,"
        " content_sha256, raw_entry) VALUES ($1, $2, $3, $4, $5, 'USD', $6, repeat('0', 64), '{}')", entries)
    for lookback in (FORECAST_LOOKBACK_DAYS, 10, 400):
        for asked in (ids, None):
            made = await forecasts._entry_days(pool, asked, lookback)
            daily, through = await _whole_history_entry_days(pool, asked, lookback)
            assert made.through == through
            assert {(made.account_ids[c], DAY0 + timedelta(days=int(d) - (DAY0 - date(1970, 1, 1)).days)): f
                    for c, d, f in zip(made.codes.tolist(), made.days.tolist(), made.outflows.tolist(),
                                       strict=True)} == daily
            keys = list(zip(made.codes.tolist(), made.days.tolist(), strict=True))
            assert keys == sorted(keys) and len(set(keys)) == len(keys)
        assert (ids[5] in made.through) == (lookback == 400)  # its entries end long before its last close


@pytest.mark.parametrize("chunk", [10_000, 2])
async def test_one_read_for_window_and_forecast_is_the_two_reads(pool: asyncpg.Pool, chunk: int,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """``window_and_recent_flows`` reads max(window, lookback) + 1 closes once; each half is what
    its own read makes, and the forecasts made from the shared closes are the forecasts."""
    monkeypatch.setattr(history, "CHUNK_ACCOUNTS", chunk)
    ids = await _ledger(pool, f"W{uuid.uuid4().hex[:8]}")
    calendar = business_calendar.active()
    for window, lookback in ((250, FORECAST_LOOKBACK_DAYS), (30, FORECAST_LOOKBACK_DAYS), (5, 3), (120, 120),
                             (1, 39), (39, 1)):
        both = await history.window_and_recent_flows(pool, window, lookback, ids)
        alone, recent = await window_flows(pool, window, ids), await history.recent_flows(pool, lookback, ids)
        assert both is not None and alone is not None and recent is not None
        shared_window, shared_recent = both
        assert shared_window.account_ids == alone.account_ids
        assert np.array_equal(shared_window.flows, alone.flows, equal_nan=True)
        assert np.array_equal(shared_window.days, alone.days)
        assert np.array_equal(shared_window.last_date, alone.last_date)
        assert shared_recent.account_ids == recent.account_ids and shared_recent.through == recent.through
        for name in ("codes", "days", "flows", "older"):
            assert np.array_equal(getattr(shared_recent, name), getattr(recent, name)), name
        shared = await forecasts.outflow_columns(pool, ids, lookback, shared_recent)
        own = await forecasts.outflow_columns(pool, ids, lookback)
        assert shared.through == own.through
        for_dates = {a: calendar.next_business_day(d) for a, d in own.through.items()}
        assert forecast_table(shared.table(), for_dates, calendar) == forecast_table(own.table(), for_dates, calendar)


async def test_recompute_forecasts_as_the_forecasts_of_the_whole_history(pool: asyncpg.Pool) -> None:
    """The job's forecasts (one shared read, all accounts at once) against ``forecast_table`` of
    the history read the old way (every close, exact decimals)."""
    from actors.var_job import recompute_forecasts

    ids = await _ledger(pool, f"W{uuid.uuid4().hex[:8]}")
    calendar = business_calendar.active()
    both = await history.window_and_recent_flows(pool, 250, FORECAST_LOOKBACK_DAYS, ids)
    assert both is not None
    made = await recompute_forecasts(pool, ids, recent=both[1], calendar=calendar)
    closes = await closing_flows(pool, ids)
    whole = forecast_table(closes.set_column(2, "outflow_usd", pc.max_element_wise(
        pc.negate(closes.column("net_flow_usd")), 0.0)), _next_days(closes, calendar), calendar)
    stored = await forecasts.latest(pool, ids)
    assert made == len(whole) == len(stored) > 0
    assert [(f.account_id, f.for_date, f.outflow_usd, f.method) for f in whole] == [
        (r.account_id, r.for_date, r.outflow_usd, r.method) for r in (stored[f.account_id] for f in whole)]


def _next_days(closes: Any, calendar: Any) -> dict[str, date]:
    last: dict[str, date] = {}
    for account, day in zip(closes.column("account_id").to_pylist(), closes.column("date").to_pylist(), strict=True):
        last[account] = max(day, last.get(account, day))
    return {a: calendar.next_business_day(d) for a, d in last.items()}


async def _none(*args: object) -> None:
    return None


async def test_bench_var_recompute_runs_small(stack: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """bench/var_recompute seeded (business entries too) and timed at 30 accounts x 40 days, so the
    benchmark does not rot."""
    from bench import var_recompute as bench

    dsn = stack.settings().database_url
    prefix = f"VT{uuid.uuid4().hex[:6]}"
    await bench.seed(dsn, 30, 40, 7, reseed=True, prefix=prefix, entries_per_day=2)
    with bench.RssSampler() as sampler:
        phases = bench.Phases(sampler)
        summary = await bench.run_recompute(dsn, 30, 1, phases, accounts=[f"{prefix}{i:06d}" for i in range(1, 31)],
                                            inline_max_rows=100)
        phases.print(1.0)
    assert summary.accounts == 30 and summary.with_var == 30 and summary.forecasts == 30
    printed = capsys.readouterr().out
    assert "SQL read + matrix (packed closes)" in printed and "write var_result" in printed


async def test_large_writes_go_by_copy_and_replace_as_row_by_row_does(pool: asyncpg.Pool) -> None:
    from storage import var_results
    from storage.forecasts import ForecastRow
    from storage.var_results import VarResult

    prefix = f"WC{uuid.uuid4().hex[:6]}"
    ids = [f"{prefix}-{i}" for i in range(1200)]  # above both COPY_MIN_ROWS
    await pool.executemany("INSERT INTO account (account_id) VALUES ($1)", [(a,) for a in ids])
    for scale in (1, 2):  # the second write replaces the first (ON CONFLICT)
        results = [VarResult(a, DAY0, 250, Decimal("0.99"), 250, Decimal(i * scale) / 4, 1.5 * i, None)
                   for i, a in enumerate(ids)]
        await var_results.upsert_many(pool, results)
        made = [ForecastRow(a, DAY0, Decimal(i * scale) / 8, "weekday-q90-13w", Decimal(scale))
                for i, a in enumerate(ids)]
        await forecasts.upsert_many(pool, made)
    stored = await var_results.latest(pool, ids)
    assert [stored[a] for a in ids] == results
    rows = await pool.fetch("SELECT account_id, for_date, outflow_usd, method, expected_inflows_usd"
                            " FROM forecast_result WHERE account_id = ANY($1::varchar[])", ids)
    assert sorted((r["account_id"], r["for_date"], r["outflow_usd"], r["method"], r["expected_inflows_usd"])
                  for r in rows) == sorted((f.account_id, f.for_date, f.outflow_usd, f.method, f.expected_inflows_usd)
                                           for f in made)
