"""bench/var_recompute: the whole ``var recompute`` from the ledger, phase by phase, with peak memory.

    .venv/bin/python -m bench.var_recompute [--accounts 100000] [--days 260] [--window 250]
                                            [--sweep-every 20] [--entries-per-day 0] [--reseed]
                                            [--workers 2] [--prefix VR]

Seeds (once per size; ``--reseed`` to redo) ``--accounts`` accounts with ``--days`` closing
(CLBD) balances each, written day after day as a bank delivers them, plus our own transfers: a
sweep debit every ``--sweep-every`` days per account and its maturity credit a week later
(``statement_entry.own_transfer``, which the operating flow subtracts); with
``--entries-per-day K``, K booked business entries per account and day as a bank's statements
bring them (the outflow forecasts' input). Seeding is SQL (``generate_series``), so 26 M rows
take minutes, not hours.

Then it runs ``actors.var_job.recompute`` as ``treasury-orch var recompute`` does (Ray pool of
``--workers``, no shards running: results go to ``var_result`` and the shards read them when they
load an account) and prints the seconds and the peak RSS of each phase: each phase is the module
function ``recompute`` calls, wrapped here, so the figures are of the code as it is.
The stack is the one ``DATABASE_URL`` names, else ``.stack/bench`` (started if needed).

Memory is meant to be flat in the days beyond the window (the read takes each account's last
``window + 1`` closes, whatever the ledger holds before them): ``--days 520`` against ``--days 260``
shows it, for the forecasts' entries too with ``--entries-per-day``. ``--prefix`` seeds a second
set of accounts beside the first (``VM`` for such a comparison at fewer accounts) and recomputes
only those, not every account of the ledger.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib
import inspect
import os
import resource
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg

BENCH_HOME = Path(__file__).resolve().parents[1] / ".stack" / "bench"
PREFIX = "VR"
_PAGE = os.sysconf("SC_PAGE_SIZE")


class RssSampler:
    """Samples this process's RSS every few ms: the peak of a phase, not of the process's life."""

    def __init__(self, every_s: float = 0.01) -> None:
        self.every_s = every_s
        self.peak = 0
        self.active: list[list[int]] = []  # the peak of each phase running now (phases nest)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * _PAGE

    def reset(self) -> int:
        self.peak = self.rss()
        return self.peak

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            rss = self.rss()
            self.peak = max(self.peak, rss)
            for entry in list(self.active):
                entry[0] = max(entry[0], rss)

    def __enter__(self) -> RssSampler:
        self.reset()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Phases:
    """Seconds and peak RSS per named phase, in the order first seen."""

    def __init__(self, sampler: RssSampler) -> None:
        self.sampler = sampler
        self.rows: dict[str, list[float]] = {}
        self._wrapped: list[tuple[Any, str, Any]] = []

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start_rss = self.sampler.rss()
        entry = [start_rss]
        self.sampler.active.append(entry)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            row = self.rows.setdefault(name, [0.0, 0.0, 0.0])
            row[0] += time.perf_counter() - t0
            self.sampler.active[:] = [e for e in self.sampler.active if e is not entry]  # by identity
            peak = max(entry[0], self.sampler.rss())
            row[1] = max(row[1], peak / 2**20)
            row[2] = max(row[2], (peak - start_rss) / 2**20)

    def wrap(self, module: Any, attr: str, name: str) -> None:
        """Time every call of ``module.attr`` (sync or async) as phase ``name``."""
        original = getattr(module, attr)
        self._wrapped.append((module, attr, original))
        if inspect.iscoroutinefunction(original):
            @functools.wraps(original)
            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                with self.phase(name):
                    return await original(*args, **kwargs)
            setattr(module, attr, timed_async)
        else:
            @functools.wraps(original)
            def timed(*args: Any, **kwargs: Any) -> Any:
                with self.phase(name):
                    return original(*args, **kwargs)
            setattr(module, attr, timed)

    def restore(self) -> None:
        """Put back what ``wrap`` replaced."""
        for module, attr, original in reversed(self._wrapped):
            setattr(module, attr, original)
        self._wrapped.clear()

    def print(self, total_s: float) -> None:
        print(f"  {'phase':<34} {'seconds':>8} {'peak RSS MiB':>13} {'+MiB in phase':>14}")
        for name, (seconds, peak, grew) in self.rows.items():
            print(f"  {name:<34} {seconds:8.2f} {peak:13.0f} {grew:14.0f}")
        print(f"  {'total (recompute end to end)':<34} {total_s:8.2f} "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:13.0f}   (process max RSS)")


def uptime() -> str:
    """What ``uptime`` prints of the load: figures on a shared 2-core machine mean little without it."""
    one, five, fifteen = os.getloadavg()
    return f"{time.strftime('%H:%M:%S', time.gmtime())} UTC, load average: {one:.2f}, {five:.2f}, {fifteen:.2f}"


async def seed(dsn: str, accounts: int, days: int, sweep_every: int, reseed: bool, prefix: str = PREFIX,
               entries_per_day: int = 0) -> None:
    """Accounts ``VR000001``..., their closes day after day, their own transfers and, with
    ``entries_per_day``, as many booked business entries per account and day (the statements'
    debits and credits that the outflow forecasts read), by SQL alone."""
    from storage.db import migrate

    conn = await asyncpg.connect(dsn, command_timeout=None)
    try:
        await migrate(conn)
        marker = f"{prefix}:{accounts}x{days}/{sweep_every}" + (f"+{entries_per_day}e" if entries_per_day else "")
        await conn.execute("CREATE TABLE IF NOT EXISTS bench_seed (name text PRIMARY KEY)")
        if not reseed and await conn.fetchval("SELECT 1 FROM bench_seed WHERE name = $1", marker):
            print(f"seed: {marker} already in the ledger")
            return
        t0 = time.perf_counter()
        await conn.execute("SET synchronous_commit = off")
        like = prefix + "%"
        # By the accounts' ids (the account_id indexes), not LIKE on each table: no scan of 26 M balances.
        ids = [r["account_id"] for r in await conn.fetch("SELECT account_id FROM account WHERE account_id LIKE $1",
                                                         like)]
        await conn.execute("DELETE FROM var_result WHERE account_id = ANY($1::varchar[])", ids)
        await conn.execute("DELETE FROM forecast_result WHERE account_id = ANY($1::varchar[])", ids)
        await conn.execute("DELETE FROM statement_entry WHERE account_id = ANY($1::varchar[])", ids)
        await conn.execute("DELETE FROM balance WHERE account_id = ANY($1::varchar[])", ids)
        await conn.execute("DELETE FROM account WHERE account_id LIKE $1", like)
        await conn.execute("DELETE FROM bench_seed WHERE name LIKE $1", prefix + ":%")
        await conn.execute(
            "INSERT INTO account (account_id) SELECT $1 || lpad(a::text, 6, '0') FROM generate_series(1, $2) a",
            prefix, accounts)
        first = await conn.fetchval("SELECT current_date - $1::int", days)
        # Day after day (the ledger's physical order is the order statements arrive in), 20 days a statement.
        for start in range(0, days, 20):
            await conn.execute(
                """
                INSERT INTO balance (account_id, event_id, as_of_ts, kind, balance_code, avail_usd, booked_usd,
                                     currency, applied, decided_ts, raw_event)
                SELECT $1 || lpad(a::text, 6, '0'), 'close-' || d,
                       (($2::date + d)::timestamp + interval '21 hours') AT TIME ZONE 'UTC', 'PRIOR_DAY', 'CLBD',
                       v, v, 'USD', true, (($2::date + d)::timestamp + interval '21 hours') AT TIME ZONE 'UTC',
                       '{}'::jsonb
                FROM generate_series($3::int, $4::int) d, generate_series(1, $5::int) a,
                     LATERAL (SELECT round((1000000 + 500 * a + 250000 * random())::numeric, 4) AS v) x
                """,
                prefix, first, start, min(days, start + 20) - 1, accounts)
            print(f"  seed: closes of days {start}..{min(days, start + 20) - 1} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
        # Own transfers: a sweep out every sweep_every days (an account's own phase), its maturity a week later.
        await conn.execute(
            """
            INSERT INTO statement_entry (account_id, entry_id, direction, status, amount_usd, currency, booking_date,
                                         own_transfer, order_id, content_sha256, raw_entry)
            SELECT $1 || lpad(a::text, 6, '0'), k || '-' || a || '-' || d, dir, 'BOOK',
                   round((50000 + 10 * a + 1000 * (d % 7))::numeric, 2), 'USD', $2::date + d + lag,
                   k, $1 || '-O-' || a || '-' || d, repeat('0', 64), '{}'::jsonb
            FROM generate_series(1, $3::int) a, generate_series(0, $4::int - 1) d,
                 (VALUES ('SWEEP', 'DBIT', 0), ('MATURITY', 'CRDT', 7)) AS t(k, dir, lag)
            WHERE (d + a) % $5::int = 0 AND d + lag < $4::int
            """,
            prefix, first, accounts, days, sweep_every)
        if entries_per_day:  # three debits in four, amounts that vary by account, day and entry
            await conn.execute(
                """
                INSERT INTO statement_entry (account_id, entry_id, direction, status, amount_usd, currency,
                                             booking_date, content_sha256, raw_entry)
                SELECT $1 || lpad(a::text, 6, '0'), 'b-' || d || '-' || k,
                       CASE WHEN k % 4 = 3 THEN 'CRDT' ELSE 'DBIT' END, 'BOOK',
                       round((1000 + 37 * a % 5000 + 113 * d % 900 + 7 * k)::numeric, 2), 'USD',
                       $2::date + d, repeat('0', 64), '{}'::jsonb
                FROM generate_series(1, $3::int) a, generate_series(0, $4::int - 1) d,
                     generate_series(0, $5::int - 1) k
                """,
                prefix, first, accounts, days, entries_per_day)
        await conn.execute("INSERT INTO bench_seed VALUES ($1)", marker)
        # A ledger at rest, as autovacuum leaves it: statistics, and the visibility map index-only scans need.
        await conn.execute("VACUUM (ANALYZE) account, balance, statement_entry")
        counts = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM balance WHERE account_id LIKE $1) AS closes,"
            " (SELECT count(*) FROM statement_entry WHERE account_id LIKE $1 AND own_transfer IS NOT NULL) AS own,"
            " (SELECT count(*) FROM statement_entry WHERE account_id LIKE $1 AND own_transfer IS NULL) AS business",
            like)
        print(f"seed: {accounts} accounts, {counts['closes']:,} closes, {counts['own']:,} own transfers, "
              f"{counts['business']:,} business entries "
              f"in {time.perf_counter() - t0:.0f} s")
    finally:
        await conn.close()


async def run_recompute(dsn: str, window: int, workers: int, phases: Phases,
                        accounts: list[str] | None = None, inline_max_rows: int = 0) -> Any:
    """``var recompute`` as the CLI runs it: all accounts, the Ray pool, no shards running
    (``inline_max_rows``: computed in this process, as the scheduler does for small jobs)."""
    from actors import var_job
    from storage.db import create_pool

    for module, attr, name in _PHASES:
        target: Any = importlib.import_module(module)
        owner, _, attr = attr.rpartition(".")
        if owner:
            target = getattr(target, owner, None)
        if target is not None and hasattr(target, attr):
            phases.wrap(target, attr, name)
    pool = await create_pool(dsn, max_size=2)
    try:
        return await var_job.recompute(pool, window=window, workers=workers, shards=0, accounts=accounts,
                                       inline_max_rows=inline_max_rows)
    finally:
        phases.restore()
        await pool.close()


# (module, function, phase): what ``recompute`` calls, in order. A name missing in a version is skipped.
_PHASES: list[tuple[str, str, str]] = [
    ("actors.var_job", "closing_flows", "SQL read (closes, own transfers)"),
    ("actors.var_job", "window_flows", "SQL read + matrix (binary COPY)"),
    # Since the forecasts' closes come from the VaR read: the same phase, one read for both (since
    # migration 008 of the packed closes, close_series; the own transfers still by binary COPY).
    ("actors.var_job", "window_and_recent_flows", "SQL read + matrix (packed closes)"),
    ("actors.var_job", "build_matrix", "matrix build"),
    ("actors.var_job", "var_and_es", "kernel (inline)"),
    ("actors.var_job", "VarPool.compute", "kernel (Ray pool)"),
    ("storage.balances", "latest_positions", "SQL read (positions, for bps)"),
    ("storage.var_results", "latest_available", "SQL read (positions, for bps)"),
    ("actors.var_job", "_rows", "result rows (Decimal, bps)"),
    ("storage.var_results", "upsert_many", "write var_result"),
    ("actors.var_job", "push_to_shards", "push to shards"),
    ("actors.var_job", "recompute_forecasts", "outflow forecasts (whole)"),
    ("storage.forecasts", "outflow_history", "  forecasts: SQL read (entries, closes)"),
    ("storage.forecasts", "outflow_columns", "  forecasts: SQL read (entries; closes if not read)"),
    ("actors.var_job", "forecast_table", "  forecasts: estimator per account"),
    ("actors.var_job", "forecast_columns", "  forecasts: estimator (all accounts at once)"),
    ("storage.forecasts", "expected_inflows", "  forecasts: SQL read (maturities)"),
    ("storage.forecasts", "upsert_many", "  forecasts: write forecast_result"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=260)
    parser.add_argument("--window", type=int, default=250)
    parser.add_argument("--sweep-every", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--reseed", action="store_true")
    parser.add_argument("--entries-per-day", type=int, default=0,
                        help="booked business entries per account and day (the outflow forecasts' input); 0: none")
    parser.add_argument("--label", default="", help="printed with the figures (e.g. before / after)")
    parser.add_argument("--prefix", default=PREFIX,
                        help=f"account ids' prefix; other than {PREFIX}, only these accounts are recomputed")
    args = parser.parse_args()

    import ray

    from devstack import stack
    from treasury.actor_names import NAMESPACE

    # DATABASE_URL (what `infra up` exports) names a running stack; otherwise start .stack/bench.
    dsn = os.environ.get("DATABASE_URL") or stack.up(BENCH_HOME).settings().database_url
    asyncio.run(seed(dsn, args.accounts, args.days, args.sweep_every, args.reseed, prefix=args.prefix,
                     entries_per_day=args.entries_per_day))
    accounts = None if args.prefix == PREFIX else [f"{args.prefix}{a:06d}" for a in range(1, args.accounts + 1)]
    ray.init(namespace=NAMESPACE, num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        print(f"\nvar recompute {args.label}: {args.accounts:,} accounts ({args.prefix}) x {args.days} days, "
              f"window {args.window}, "
              f"{args.workers} VaR workers, no shards running (push skipped: results are read from var_result "
              "when a shard loads an account)")
        print(f"  load before: {uptime()}")
        with RssSampler() as sampler:
            phases = Phases(sampler)
            t0 = time.perf_counter()
            try:
                summary: Any = asyncio.run(run_recompute(dsn, args.window, args.workers, phases, accounts))
            except Exception as exc:  # a figure too: how far it got, and after how long
                summary = f"FAILED: {type(exc).__name__}: {exc}"
            total = time.perf_counter() - t0
        phases.print(total)
        print(f"  summary: {summary if isinstance(summary, str) else summary.as_dict()}")
        print(f"  load after: {uptime()}")
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
