"""VAR_RESULT rows: the VaR engine writes them, the shards read the latest per account."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import asyncpg

from storage.db import Executor, execute_many


@dataclass(frozen=True)
class VarResult:
    account_id: str
    as_of: date
    window_days: int
    confidence: Decimal
    days: int
    var_usd: Decimal | None
    # ``double precision``, nullable (001_ledger.sql): the figure the decisions use for this VaR
    # over the account's newest balance (``actors.policy.observed_var_bps``; a non-positive balance
    # is a breach, stored as its cap). None: no VaR, or no available balance to compare it with.
    var_bps: float | None
    es_usd: Decimal | None


# Above this many rows a write goes through COPY into a temporary table and one INSERT .. SELECT:
# executemany is a round trip's worth of work per row (100,000 accounts: seconds), COPY is one stream.
COPY_MIN_ROWS = 1000
READ_TIMEOUT_S = 600.0  # as storage.history's window reads: a recompute is a batch job

_UPSERT_FROM_COPY = """
    INSERT INTO var_result (account_id, as_of, window_days, confidence, days, var_usd, var_bps, es_usd)
    SELECT account_id, as_of, window_days, confidence, days, var_usd, var_bps, es_usd FROM var_result_in
    ON CONFLICT (account_id, as_of, window_days, confidence) DO UPDATE SET
        days = EXCLUDED.days, var_usd = EXCLUDED.var_usd, var_bps = EXCLUDED.var_bps,
        es_usd = EXCLUDED.es_usd, computed_ts = now()
"""


async def upsert_many(db: Executor, results: Sequence[VarResult]) -> None:
    """Insert or replace each (account, as_of, window, confidence)'s result; the same rows either
    way, by COPY for a large recompute."""
    if len(results) >= COPY_MIN_ROWS:
        await _upsert_by_copy(db, results)
        return
    await execute_many(
        db,
        """
        INSERT INTO var_result (account_id, as_of, window_days, confidence, days, var_usd, var_bps, es_usd)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        ON CONFLICT (account_id, as_of, window_days, confidence) DO UPDATE SET
            days = EXCLUDED.days, var_usd = EXCLUDED.var_usd, var_bps = EXCLUDED.var_bps,
            es_usd = EXCLUDED.es_usd, computed_ts = now()
        """,
        [
            (r.account_id, r.as_of, r.window_days, r.confidence, r.days, r.var_usd, r.var_bps, r.es_usd)
            for r in results
        ],
    )


async def _upsert_by_copy(db: Executor, results: Sequence[VarResult]) -> None:
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            await _upsert_by_copy(conn, results)
            return
    async with db.transaction():
        await db.execute(
            "CREATE TEMPORARY TABLE var_result_in (account_id varchar(64), as_of date, window_days integer,"
            " confidence numeric(6,5), days integer, var_usd numeric(20,4), var_bps double precision,"
            " es_usd numeric(20,4)) ON COMMIT DROP"
        )
        await db.copy_records_to_table("var_result_in", timeout=READ_TIMEOUT_S, records=[
            (r.account_id, r.as_of, r.window_days, r.confidence, r.days, r.var_usd, r.var_bps, r.es_usd)
            for r in results
        ])
        await db.execute(_UPSERT_FROM_COPY, timeout=READ_TIMEOUT_S)


async def latest_available(db: Executor, account_ids: Sequence[str]) -> dict[str, asyncpg.Record]:
    """Each account's newest applied, decided available balance (``storage.balances.latest_positions``'
    rule; ``avail_usd``), by one index probe per account: a recompute of every account must not sort the whole
    balance history (26 M rows at 100,000 accounts x 260 days) to find 100,000 rows."""
    rows = await db.fetch(
        """
        SELECT i.account_id, p.avail_usd
        FROM unnest($1::varchar[]) AS i(account_id)
        CROSS JOIN LATERAL (
            SELECT b.avail_usd FROM balance b
            WHERE b.account_id = i.account_id AND b.applied AND b.decided_ts IS NOT NULL
                  AND b.avail_usd IS NOT NULL
            ORDER BY b.as_of_ts DESC, b.id DESC
            LIMIT 1
        ) p
        """,
        list(account_ids),
        timeout=READ_TIMEOUT_S,  # a batch job's read of every account, not a request's
    )
    return {r["account_id"]: r for r in rows}


async def latest(db: Executor, account_ids: Sequence[str]) -> dict[str, VarResult]:
    rows = await db.fetch(
        """
        SELECT DISTINCT ON (account_id) * FROM var_result
        WHERE account_id = ANY($1::varchar[])
        ORDER BY account_id, as_of DESC, computed_ts DESC
        """,
        list(account_ids),
    )
    return {
        r["account_id"]: VarResult(
            r["account_id"], r["as_of"], r["window_days"], r["confidence"], r["days"],
            r["var_usd"], r["var_bps"], r["es_usd"],
        )
        for r in rows
    }
