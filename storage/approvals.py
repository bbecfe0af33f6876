"""Four-eyes approval of large orders: who approved or rejected an order, when and why (docs/approval.md).

``decide`` is the one way an approver's verdict reaches the ledger. It runs in one transaction that
first locks the order's row (``SELECT ... FOR UPDATE``), so two approvers at once, an approval
against a rejection, or an approval against the coordinator's expiry are serialised on that row:
the second sees what the first did. The table's unique key (order, subject, verdict) makes "distinct
subjects" hold even without the lock. The order's statuses are moved by ``storage.orders``
(``leave_approval``), whose SQL names them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import asyncpg

from storage import orders
from storage.db import Executor
from storage.orders import OrderNotFound
from treasury.clock import iso_z
from treasury.order_status import OrderStatus

MAX_COMMENT = 1000  # order_approval.comment's CHECK
MAX_SUBJECT = 256  # order_approval.subject


class Verdict(StrEnum):
    APPROVE = "APPROVE"
    REJECT = "REJECT"


@dataclass(frozen=True)
class Approval:
    """One verdict on one order, as the audit trail keeps it."""

    subject: str
    verdict: Verdict
    comment: str | None
    ts: datetime

    def view(self) -> dict[str, Any]:
        return {"subject": self.subject, "ts": iso_z(self.ts), "comment": self.comment}


@dataclass(frozen=True)
class Trail:
    """An order's verdicts: its approvals in the order given, and its rejection if any."""

    approvals: tuple[Approval, ...] = ()
    rejection: Approval | None = None

    def view(self) -> dict[str, Any]:
        return {"approvals": [a.view() for a in self.approvals],
                "rejection": None if self.rejection is None else self.rejection.view()}


@dataclass(frozen=True)
class Outcome:
    """What a verdict did. ``conflict`` set: refused (HTTP 409) with that reason, although the
    transaction may still have changed the order (an approval at or past the cut-off expires it)."""

    row: asyncpg.Record
    trail: Trail
    changed: bool
    reason: str | None = None
    conflict: str | None = None


async def decide(conn: asyncpg.Connection, order_id: str, subject: str, verdict: Verdict, comment: str | None,
                 now: datetime) -> Outcome:
    """Record ``subject``'s verdict on an order awaiting approval, at ``now``.

    An approval releases the order (status NEW: the coordinator publishes it, the pull returns it)
    once it has as many approvals by distinct subjects as it was written needing; a rejection ends
    it (REJECTED). The same subject's same verdict again changes nothing and says so (not an
    error: a retried click must not fail). A verdict on an order that is not awaiting approval is a
    conflict; so is one at or past its cut-off, which expires the order there and then.
    Raises ``OrderNotFound``.
    """
    async with conn.transaction():
        row = await conn.fetchrow("SELECT * FROM sweep_order WHERE order_id = $1 FOR UPDATE", order_id)
        if row is None:
            raise OrderNotFound(order_id)
        trail = (await trails(conn, [order_id]))[order_id]
        mine = [a for a in (*trail.approvals, trail.rejection) if a is not None
                and a.subject == subject and a.verdict is verdict]
        if mine:
            done = "approved" if verdict is Verdict.APPROVE else "rejected"
            return Outcome(row, trail, False, f"{subject!r} already {done} this order at {iso_z(mine[0].ts)}; "
                                              f"the same person's {verdict.value.lower()} counts once")
        if row["status"] != OrderStatus.AWAITING_APPROVAL:
            return Outcome(row, trail, False, conflict=f"order {order_id} is {row['status']}, not "
                                                       f"{OrderStatus.AWAITING_APPROVAL}: nothing to "
                                                       f"{verdict.value.lower()}")
        if row["cutoff_utc"] <= now:
            expired = await orders.leave_approval(conn, order_id, OrderStatus.EXPIRED, now)
            assert expired is not None  # the row is locked and was awaiting approval
            return Outcome(expired, trail, True, conflict=f"order {order_id} reached its cut-off "
                                                          f"{iso_z(row['cutoff_utc'])} unapproved: EXPIRED")
        await conn.execute(
            "INSERT INTO order_approval (order_id, subject, verdict, comment, ts) VALUES ($1, $2, $3, $4, $5)",
            order_id, subject, verdict, comment, now)
        given = Approval(subject, verdict, comment, now)  # the row just written: the trail as it now stands
        if verdict is Verdict.REJECT:
            trail = Trail(trail.approvals, given)
            row = await orders.leave_approval(conn, order_id, OrderStatus.REJECTED, now)
        else:
            trail = Trail((*trail.approvals, given), trail.rejection)
            if len({a.subject for a in trail.approvals}) >= row["approvals_required"]:
                row = await orders.leave_approval(conn, order_id, OrderStatus.NEW, now)
        assert row is not None
        return Outcome(row, trail, True)


async def trails(db: Executor, order_ids: Sequence[str]) -> dict[str, Trail]:
    """Every order's verdicts, in one query; an order without any gets an empty trail."""
    records = await db.fetch(
        "SELECT order_id, subject, verdict, comment, ts FROM order_approval"
        " WHERE order_id = ANY($1::varchar[]) ORDER BY ts, id", list(order_ids))
    approvals: dict[str, list[Approval]] = defaultdict(list)
    rejections: dict[str, Approval] = {}
    for r in records:
        verdict = Approval(r["subject"], Verdict(r["verdict"]), r["comment"], r["ts"])
        if verdict.verdict is Verdict.APPROVE:
            approvals[r["order_id"]].append(verdict)
        else:
            rejections.setdefault(r["order_id"], verdict)
    return {oid: Trail(tuple(approvals.get(oid, ())), rejections.get(oid)) for oid in order_ids}
