"""A batch's statement entries into the ledger, and what their bookings prove, in one transaction.

A shard calls ``apply`` before it decides the batch's balances: insert the entries (idempotent on
(account_id, entry_id)), lock each account's settleable orders and open investments, let
``actors.settlement.plan_entries`` say what each *new* booked entry proves, and write it: the order
SETTLED with its booking time and the investment it opens, an investment MATURED, a break kept
with both figures. All of it commits together or not at all, so a shard that crashes before
committing its offsets replays the entries against a ledger that holds them all, already settled
(duplicates: nothing happens twice), or none of them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from actors.settlement import (
    Action,
    Book,
    Break,
    InvestmentCandidate,
    Mature,
    OrderCandidate,
    Settle,
    Terms,
    ledger_forms,
    plan_entries,
)
from schemas.statement_entry import EntryStatus, StatementEntry
from storage import entries
from storage.entries import EntryRow, NewInvestment, fingerprint
from treasury.order_status import OrderStatus

EntryKey = tuple[str, str]


@dataclass
class Applied:
    """What ``apply`` did: entries stored, entries held as pending and now booked (promoted), entries
    already held with the same content (duplicates), ids held with other content (conflicts: the
    content kept, for the dead letter), and the actions."""

    inserted: list[EntryKey] = field(default_factory=list)
    promoted: list[EntryKey] = field(default_factory=list)  # held not yet booked, booked now
    duplicates: list[EntryKey] = field(default_factory=list)
    conflicts: dict[EntryKey, dict[str, Any]] = field(default_factory=dict)
    actions: list[Action] = field(default_factory=list)


async def apply(conn: asyncpg.Connection, rows: Sequence[EntryRow], terms: Terms) -> Applied:
    """Store ``rows`` and settle, mature or break what their new booked entries prove."""
    out = Applied()
    if not rows:
        return out
    async with conn.transaction():
        inserted = await entries.insert(conn, rows)
        held = sorted({r.key for r in rows} - inserted)
        stored = await entries.stored_contents(conn, held) if held else {}
        first: dict[EntryKey, StatementEntry] = {}
        for row in rows:
            key = row.key
            if key in inserted and key not in first:
                first[key] = row.entry
                out.inserted.append(key)
                continue
            kept_sha, kept = ((fingerprint(first[key]), entries.held_view(first[key])) if key in first
                              else stored[key])
            if kept_sha != fingerprint(row.entry) or entries.booked_on_another_day(kept, row.entry):
                out.conflicts[key] = kept
            elif key not in first and row.entry.status is EntryStatus.BOOK and await entries.promote(conn, row.entry):
                first[key] = row.entry  # reported pending before, booked now: it may settle
                out.promoted.append(key)
            else:
                out.duplicates.append(key)
        by_account: dict[str, list[StatementEntry]] = defaultdict(list)
        for entry in first.values():
            by_account[entry.account_id].append(entry)
        books = await _books(conn, list(by_account),
                             ledger_forms([ref for e in first.values() for ref in e.order_references]))
        for account_id, new in by_account.items():
            actions = plan_entries(new, books[account_id], terms)
            for action in actions:
                await _record(conn, action)
            out.actions.extend(actions)
    return out


async def _books(conn: asyncpg.Connection, account_ids: Sequence[str], refs: Sequence[str]) -> dict[str, Book]:
    """Each account's book, read for the whole batch at once (``storage.entries.book_rows``)."""
    if not account_ids:
        return {}
    orders, investments = await entries.book_rows(conn, account_ids, refs)
    books = {account_id: Book() for account_id in account_ids}
    for r in orders:
        books.setdefault(r["account_id"], Book()).orders[r["order_id"]] = OrderCandidate(
            r["order_id"], r["account_id"], r["amount_usd"], OrderStatus(r["status"]), r["created_ts"], r["product"],
            int(r["ladder"]) if r["ladder"] else None)
    for r in investments:
        books.setdefault(r["account_id"], Book()).investments[r["order_id"]] = InvestmentCandidate(
            r["order_id"], r["account_id"], r["principal_usd"], r["value_date"], r["maturity_date"])
    return books


async def _record(conn: asyncpg.Connection, action: Action) -> None:
    if isinstance(action, Settle):
        inv = action.investment
        await entries.settle(conn, action.entry, action.order.order_id, action.matched_by.value,
                             NewInvestment(inv.order_id, inv.account_id, action.order.product, inv.principal_usd,
                                           inv.value_date, inv.maturity_date))
    elif isinstance(action, Mature):
        await entries.mature(conn, action.entry, action.investment.order_id, action.matched_by.value)
    elif isinstance(action, Break):
        await entries.record_break(conn, action.entry, action.kind.value, action.detail, action.order_id,
                                   action.order_amount_usd)
