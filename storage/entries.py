"""STATEMENT_ENTRY rows, settlement breaks, and the writes a booked entry's proof makes.

The statements here are the parts ``actors.entry_ledger.apply`` runs in one transaction: insert
the entries (idempotent on (account_id, entry_id)), lock the account's settleable orders and open
investments (``book_rows``), then ``settle``, ``mature`` or ``record_break`` as the pure matching
(``actors.settlement``) says.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import asyncpg

from schemas.statement_entry import StatementEntry
from storage.db import Executor


def fingerprint(entry: StatementEntry) -> str:
    """sha-256 of what the entry id stands for (``StatementEntry.content``), the amount normalised."""
    content = entry.content()
    content["amount_usd"] = format(entry.amount_usd.normalize(), "f")
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class EntryRow:
    entry: StatementEntry
    raw_entry: dict[str, Any]  # the entry as received, encrypted

    @property
    def key(self) -> tuple[str, str]:
        return self.entry.account_id, self.entry.entry_id


async def insert(conn: asyncpg.Connection, rows: Sequence[EntryRow]) -> set[tuple[str, str]]:
    records = await conn.fetch(
        """
        INSERT INTO statement_entry (account_id, entry_id, direction, status, amount_usd, currency, booking_date,
                                     booked_ts, value_date, refs, bank_reference, content_sha256, raw_entry)
        SELECT a, e, d, s, am, c, bd, bt, vd, ARRAY(SELECT jsonb_array_elements_text(r::jsonb)), br, fp, raw
        FROM unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::varchar[], $5::numeric[], $6::varchar[],
                    $7::date[], $8::timestamptz[], $9::date[], $10::text[], $11::varchar[], $12::varchar[],
                    $13::jsonb[]) AS t(a, e, d, s, am, c, bd, bt, vd, r, br, fp, raw)
        ON CONFLICT (account_id, entry_id) DO NOTHING
        RETURNING account_id, entry_id
        """,
        [r.entry.account_id for r in rows],
        [r.entry.entry_id for r in rows],
        [r.entry.direction.value for r in rows],
        [r.entry.status.value for r in rows],
        [r.entry.amount_usd for r in rows],
        [r.entry.currency for r in rows],
        [r.entry.booking_date for r in rows],
        [r.entry.booked_ts for r in rows],
        [r.entry.value_date for r in rows],
        [json.dumps(r.entry.order_references) for r in rows],  # a list each: nested lists would be a 2-D array
        [r.entry.bank_reference for r in rows],
        [fingerprint(r.entry) for r in rows],
        [r.raw_entry for r in rows],
    )
    return {(r["account_id"], r["entry_id"]) for r in records}


async def stored_contents(conn: asyncpg.Connection,
                               keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], tuple[str, dict[str, Any]]]:
    records = await conn.fetch(
        """
        SELECT s.account_id, s.entry_id, s.content_sha256, s.direction, s.amount_usd, s.refs, s.status,
               s.booking_date
        FROM statement_entry s JOIN unnest($1::varchar[], $2::varchar[]) AS k(a, e)
          ON s.account_id = k.a AND s.entry_id = k.e
        """,
        [k[0] for k in keys], [k[1] for k in keys],
    )
    return {
        (r["account_id"], r["entry_id"]): (r["content_sha256"], {
            "direction": r["direction"], "amount_usd": format(r["amount_usd"].normalize(), "f"),
            "refs": list(r["refs"]), "status": r["status"],
            "booking_date": r["booking_date"].isoformat() if r["booking_date"] else None})
        for r in records
    }


def held_view(entry: StatementEntry) -> dict[str, Any]:
    """What ``stored_contents`` gives for an entry held earlier in the same batch."""
    return {**entry.content(), "status": entry.status.value,
            "booking_date": entry.booking_date.isoformat() if entry.booking_date else None}


def booked_on_another_day(held: Mapping[str, Any], again: StatementEntry) -> bool:
    """A booked entry re-sent under a held booked entry's id with another booking date.

    Why it is not the same entry re-sent: a bank books an entry once, so its re-sends (the file
    again, the camt.052 then the camt.053) carry its booking date. Under one id on two days it is
    a bank reusing a reference (AcctSvcrRef) on another entry, which as a duplicate would vanish.
    """
    return (again.status.value == held.get("status") == "BOOK" and again.booking_date is not None
            and held.get("booking_date") not in (None, again.booking_date.isoformat()))


async def promote(conn: asyncpg.Connection, entry: StatementEntry) -> bool:
    """A held entry not yet booked (PDNG, INFO, FUTR) that the bank now reports booked: the same
    entry moving on. Takes the booking's dates; True when the row changed (it can settle now)."""
    changed = await conn.fetchval(
        "UPDATE statement_entry SET status = 'BOOK', booking_date = $3, booked_ts = $4, value_date = $5"
        " WHERE account_id = $1 AND entry_id = $2 AND status <> 'BOOK' RETURNING id",
        entry.account_id, entry.entry_id, entry.booking_date, entry.booked_ts, entry.value_date,
    )
    return changed is not None


async def book_rows(conn: asyncpg.Connection, account_ids: Sequence[str],
                    refs: Sequence[str]) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
    """The accounts' settleable orders, the orders their entries name (``refs``: order ids in the
    ledger's form; any status, to explain a break) and their open investments, locked until the
    transaction ends. Two statements for a whole batch, however many accounts its statement names."""
    orders = await conn.fetch(
        """
        SELECT order_id, account_id, amount_usd, status, created_ts, product, decision->>'ladder_days' AS ladder
        FROM sweep_order
        WHERE id IN (SELECT id FROM sweep_order WHERE account_id = ANY($1::varchar[]) AND status IN ('SENT', 'ACK')
                     UNION SELECT id FROM sweep_order WHERE order_id = ANY($2::varchar[])
                                                        AND account_id = ANY($1::varchar[]))
        ORDER BY id FOR UPDATE
        """,
        list(account_ids), list(refs),
    )
    investments = await conn.fetch(
        "SELECT order_id, account_id, principal_usd, value_date, maturity_date FROM investment"
        " WHERE account_id = ANY($1::varchar[]) AND status = 'OPEN' ORDER BY id FOR UPDATE",
        list(account_ids),
    )
    return list(orders), list(investments)


@dataclass(frozen=True)
class NewInvestment:
    order_id: str
    account_id: str
    product: str
    principal_usd: Decimal
    value_date: date
    maturity_date: date


async def settle(conn: asyncpg.Connection, entry: StatementEntry, order_id: str, matched_by: str,
                 investment: NewInvestment) -> None:
    """The order SETTLED by ``entry`` (its booking time is from when balances show it), the entry
    marked our own sweep, and the investment it opens."""
    settlement = {"entry_id": entry.entry_id, "bank_reference": entry.bank_reference,
                  "booking_date": entry.booking_date.isoformat() if entry.booking_date else None,
                  "booked_ts": _iso(entry), "matched_by": matched_by}
    await conn.execute(
        "UPDATE sweep_order SET status = 'SETTLED', settled_ts = now(), booked_ts = $2, settlement = $3"
        " WHERE order_id = $1 AND status IN ('SENT', 'ACK')",
        order_id, entry.booked_ts, settlement,
    )
    await _own(conn, entry, "SWEEP", order_id, matched_by)
    inv = investment
    await conn.execute(
        "INSERT INTO investment (order_id, account_id, product, principal_usd, value_date, maturity_date)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (order_id) DO NOTHING",
        inv.order_id, inv.account_id, inv.product, inv.principal_usd, inv.value_date, inv.maturity_date,
    )


async def mature(conn: asyncpg.Connection, entry: StatementEntry, order_id: str, matched_by: str) -> None:
    await conn.execute(
        "UPDATE investment SET status = 'MATURED', matured_entry_id = $2, matured_amount_usd = $3,"
        " matured_booked_ts = $4 WHERE order_id = $1 AND status = 'OPEN'",
        order_id, entry.entry_id, entry.amount_usd, entry.booked_ts,
    )
    await _own(conn, entry, "MATURITY", order_id, matched_by)


async def record_break(conn: asyncpg.Connection, entry: StatementEntry, kind: str, detail: str,
                       order_id: str | None, order_amount_usd: Decimal | None) -> None:
    """Kept once per entry, with both figures: what the order said and what the bank booked."""
    await conn.execute(
        "INSERT INTO settlement_break (account_id, entry_id, order_id, kind, order_amount_usd, entry_amount_usd,"
        " detail) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (account_id, entry_id) DO NOTHING",
        entry.account_id, entry.entry_id, order_id, kind, order_amount_usd, entry.amount_usd, detail,
    )


async def _own(conn: asyncpg.Connection, entry: StatementEntry, kind: str, order_id: str, matched_by: str) -> None:
    await conn.execute(
        "UPDATE statement_entry SET own_transfer = $3, order_id = $4, matched_by = $5"
        " WHERE account_id = $1 AND entry_id = $2",
        entry.account_id, entry.entry_id, kind, order_id, matched_by,
    )


def _iso(entry: StatementEntry) -> str | None:
    return entry.model_dump(mode="json")["booked_ts"]


async def breaks(db: Executor, account_id: str | None = None, limit: int = 100) -> list[asyncpg.Record]:
    return list(await db.fetch(
        "SELECT * FROM settlement_break WHERE $1::varchar IS NULL OR account_id = $1 ORDER BY id DESC LIMIT $2",
        account_id, limit,
    ))


async def break_counts(db: Executor) -> dict[str, int]:
    return {r["kind"]: r["n"] for r in await db.fetch("SELECT kind, count(*) AS n FROM settlement_break GROUP BY kind")}
