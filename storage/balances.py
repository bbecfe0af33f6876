"""BALANCE rows: every event received, applied or not, idempotent on (account_id, event_id).

Each row carries ``content_sha256``, a fingerprint of its balance-relevant content
(:meth:`BalanceContent.fingerprint`), so an event id seen again can be told apart as a true repeat (same
content: a duplicate) or a conflict (different content), although the raw event is encrypted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from storage.db import Executor


@dataclass(frozen=True)
class BalanceContent:
    """What a balance event says, as far as the ledger's decisions go: the content an event id names.

    Not the event id, account or trace id (the first two are the key, the trace differs per
    delivery). Amounts are as sent, not as stored (``numeric(20,4)`` would round a sixth decimal).
    """

    as_of_ts: datetime
    kind: str
    balance_code: str | None
    available_usd: Decimal | None
    booked_usd: Decimal | None
    currency: str
    projected_outflows_usd: Decimal | None

    def fingerprint(self) -> str:
        """sha-256 (hex) of the canonical form; equal amounts written differently (``5E+4``,
        ``50000.00``) and equal instants in different zones give the same fingerprint."""
        canonical = [
            self.as_of_ts.astimezone(UTC).isoformat(timespec="microseconds"),
            self.kind,
            self.balance_code,
            _canonical_amount(self.available_usd),
            _canonical_amount(self.booked_usd),
            self.currency,
            _canonical_amount(self.projected_outflows_usd),
        ]
        return hashlib.sha256(json.dumps(canonical, separators=(",", ":")).encode()).hexdigest()


def _canonical_amount(value: Decimal | None) -> str | None:
    if value is None:
        return None
    if value == 0:
        return "0"  # 0, 0.00 and -0 are one amount
    return format(value.normalize(), "f")


@dataclass(frozen=True)
class StoredBalance:
    """A row the ledger holds for an event id: its id, whether its decision is durable, its content
    (columns as stored) and the fingerprint of the content as it was sent (``None`` for rows stored
    before migration 003, which had none)."""

    row_id: int
    decided: bool
    fingerprint: str | None
    content: BalanceContent


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

    @property
    def content(self) -> BalanceContent:
        return BalanceContent(self.as_of_ts, self.kind, self.balance_code, self.avail_usd, self.booked_usd,
                              self.currency, self.projected_outflows_usd)

    @property
    def fingerprint(self) -> str:
        """Stored in ``content_sha256``: the same fingerprint the shard computes for an incoming event."""
        return self.content.fingerprint()


async def insert_batch(db: Executor, rows: Sequence[BalanceRow]) -> dict[tuple[str, str], int]:
    """Insert in one round trip; returns the ids of rows that were new (duplicates are skipped)."""
    if not rows:
        return {}
    records = await db.fetch(
        """
        INSERT INTO balance (account_id, event_id, as_of_ts, kind, balance_code, avail_usd, booked_usd,
                             currency, projected_outflows_usd, applied, raw_event, decided_ts, content_sha256)
        SELECT a, e, t, k, c, av, bo, cu, pr, ap, rw, CASE WHEN d THEN now() END, fp
        FROM unnest($1::varchar[], $2::varchar[], $3::timestamptz[], $4::varchar[], $5::varchar[],
                    $6::numeric[], $7::numeric[], $8::char(3)[], $9::numeric[], $10::boolean[],
                    $11::jsonb[], $12::boolean[], $13::char(64)[]) AS r(a, e, t, k, c, av, bo, cu, pr, ap, rw, d, fp)
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
        [r.fingerprint for r in rows],
    )
    return {(rec["account_id"], rec["event_id"]): rec["id"] for rec in records}


async def existing(db: Executor, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, bool]]:
    """Which of these events the ledger holds already: row id, and whether its decision is durable.

    A row that is held but not decided was stored by an attempt that crashed before its decision
    was recorded: the caller decides it again and marks it by id.
    """
    return {key: (row.row_id, row.decided) for key, row in (await stored(db, keys)).items()}


def stored_select(account_ids: str, event_ids: str) -> str:
    """The SELECT of ``stored``, its two key arrays placed by the caller (``"$1"``, ``"$2"``):
    ``storage.batch_read`` runs it in one statement with a batch's other reads."""
    return f"""
        SELECT b.id, b.account_id, b.event_id, b.decided_ts IS NOT NULL AS decided, b.content_sha256,
               b.as_of_ts, b.kind, b.balance_code, b.avail_usd, b.booked_usd, b.currency, b.projected_outflows_usd
        FROM balance b
        JOIN unnest({account_ids}::varchar[], {event_ids}::varchar[]) AS k(account_id, event_id)
          ON b.account_id = k.account_id AND b.event_id = k.event_id
        """  # noqa: S608  # nosec B608: the placeholders are parameter markers ("$1"), never data


def stored_balance(r: Sequence[Any]) -> tuple[tuple[str, str], StoredBalance]:
    """One row of ``stored_select`` by position: an ``asyncpg.Record`` or an anonymous record's tuple."""
    return (r[1], r[2]), StoredBalance(r[0], bool(r[3]), r[4], BalanceContent(*r[5:12]))


async def stored(db: Executor, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], StoredBalance]:
    """The rows the ledger holds for these events, with their content: what ``existing`` says, plus
    what the shard needs to tell a repeat (same fingerprint) from a conflict (another one).

    A row stored before migration 003 has no fingerprint (``None``): the caller treats a repeat
    of its id as a plain duplicate, as it always did, since nothing proves the content differs.
    """
    if not keys:
        return {}
    records = await db.fetch(stored_select("$1", "$2"), [k[0] for k in keys], [k[1] for k in keys])
    return dict(stored_balance(r) for r in records)


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
