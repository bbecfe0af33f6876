"""BALANCE rows: every event received, applied or not, idempotent on (account_id, event_id)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from storage.db import Executor


@dataclass(frozen=True)
class BalanceRow:
    account_id: str
    event_id: str
    as_of_ts: datetime
    kind: str
    balance_code: str | None
    avail_usd: Decimal | None
    booked_usd: Decimal | None
    currency: str
    projected_outflows_usd: Decimal | None
    applied: bool
    raw_event: dict[str, Any]
    # True when the event's decision needs nothing else to be durable (it made no order)
    decided: bool = False


async def insert_batch(db: Executor, rows: Sequence[BalanceRow]) -> dict[tuple[str, str], int]:
    """Insert in one round trip; returns the ids of rows that were new (duplicates are skipped)."""
    if not rows:
        return {}
    records = await db.fetch(
        """
        INSERT INTO balance (account_id, event_id, as_of_ts, kind, balance_code, avail_usd, booked_usd,
                             currency, projected_outflows_usd, applied, raw_event, decided_ts)
        SELECT a, e, t, k, c, av, bo, cu, pr, ap, rw, CASE WHEN d THEN now() END
        FROM unnest($1::varchar[], $2::varchar[], $3::timestamptz[], $4::varchar[], $5::varchar[],
                    $6::numeric[], $7::numeric[], $8::char(3)[], $9::numeric[], $10::boolean[],
                    $11::jsonb[], $12::boolean[]) AS r(a, e, t, k, c, av, bo, cu, pr, ap, rw, d)
        ON CONFLICT (account_id, event_id) DO NOTHING
        RETURNING id, account_id, event_id
        """,
        [r.account_id for r in rows],
        [r.event_id for r in rows],
        [r.as_of_ts for r in rows],
        [r.kind for r in rows],
        [r.balance_code for r in rows],
        [r.avail_usd for r in rows],
        [r.booked_usd for r in rows],
        [r.currency for r in rows],
        [r.projected_outflows_usd for r in rows],
        [r.applied for r in rows],
        [r.raw_event for r in rows],
        [r.decided for r in rows],
    )
    return {(rec["account_id"], rec["event_id"]): rec["id"] for rec in records}


async def existing(db: Executor, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, bool]]:
    """Which of these events the ledger holds already: row id, and whether its decision is durable.

    A row that is held but not decided was stored by an attempt that crashed before its decision
    was recorded: the caller decides it again and marks it by id.
    """
    if not keys:
        return {}
    records = await db.fetch(
        """
        SELECT b.id, b.account_id, b.event_id, b.decided_ts IS NOT NULL AS decided FROM balance b
        JOIN unnest($1::varchar[], $2::varchar[]) AS k(account_id, event_id)
          ON b.account_id = k.account_id AND b.event_id = k.event_id
        """,
        [k[0] for k in keys],
        [k[1] for k in keys],
    )
    return {(r["account_id"], r["event_id"]): (r["id"], bool(r["decided"])) for r in records}


async def mark_decided(db: Executor, ids: Sequence[int]) -> None:
    if ids:
        await db.execute("UPDATE balance SET decided_ts = now() WHERE id = ANY($1::bigint[])", list(ids))


async def latest_positions(db: Executor, account_ids: Sequence[str]) -> dict[str, asyncpg.Record]:
    """The newest applied, decided available balance of each account: a restarted shard's state."""
    records = await db.fetch(
        """
        SELECT DISTINCT ON (account_id) account_id, event_id, as_of_ts, avail_usd, booked_usd,
               projected_outflows_usd
        FROM balance
        WHERE account_id = ANY($1::varchar[]) AND applied AND decided_ts IS NOT NULL
              AND avail_usd IS NOT NULL
        ORDER BY account_id, as_of_ts DESC, id DESC
        """,
        list(account_ids),
    )
    return {rec["account_id"]: rec for rec in records}


async def last_projections(db: Executor, account_ids: Sequence[str]) -> dict[str, Decimal]:
    records = await db.fetch(
        """
        SELECT DISTINCT ON (account_id) account_id, projected_outflows_usd
        FROM balance
        WHERE account_id = ANY($1::varchar[]) AND projected_outflows_usd IS NOT NULL AND decided_ts IS NOT NULL
        ORDER BY account_id, as_of_ts DESC, id DESC
        """,
        list(account_ids),
    )
    return {rec["account_id"]: rec["projected_outflows_usd"] for rec in records}


async def get_one(db: Executor, account_id: str, event_id: str) -> asyncpg.Record | None:
    """One stored balance event, raw_event still encrypted (the caller holds the cipher)."""
    row: asyncpg.Record | None = await db.fetchrow(
        "SELECT * FROM balance WHERE account_id = $1 AND event_id = $2", account_id, event_id)
    return row
