"""VAR_RESULT rows: the VaR engine writes them, the shards read the latest per account."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from storage.db import Executor


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


async def upsert_many(db: Executor, results: Sequence[VarResult]) -> None:
    await db.executemany(
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
