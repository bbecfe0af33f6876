"""SWEEP_ORDER rows, which double as the outbox: NEW rows are the ones still to publish.

Status lifecycle ``NEW -> SENT -> ACK | FAILED``, ``SENT | ACK -> SETTLED``, and for a large order
``AWAITING_APPROVAL -> NEW | REJECTED | EXPIRED`` first (``treasury.order_status``; its approvals are
``storage.approvals``). The Bank-Connector's pull pages by ``release_seq``, which the ledger assigns
when an order becomes pullable (migration 006), not by id. The queries the
partial indexes of migration 001 serve (the outbox, the open orders) name their statuses as SQL
literals, so that Postgres can prove the index predicate under a generic plan too; a unit test
keeps every literal an ``OrderStatus`` and the table's CHECK equal to the enum. Repeating the
transition an order already made is answered as a no-op (the Bank-Connector retries); any other
transition is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from storage.db import Executor
from treasury.order_status import TRANSITIONS, OrderStatus

# The transaction-scoped advisory lock under which migration 006's trigger assigns release_seq.
RELEASE_LOCK_KEY = 0x7EB5_0006


class OrderNotFound(LookupError):
    pass


class IllegalTransition(ValueError):
    def __init__(self, order_id: str, current: str, wanted: str) -> None:
        super().__init__(f"order {order_id} is {current}; {current} -> {wanted} is not allowed")
        self.current = current
        self.wanted = wanted


@dataclass(frozen=True)
class NewOrder:
    order_id: str
    decision_key: str
    account_id: str
    amount_usd: Decimal
    product: str
    cutoff_utc: datetime
    created_ts: datetime
    payload: dict[str, Any]
    decision: dict[str, Any]
    trace_id: str | None
    # AWAITING_APPROVAL for an order of at least APPROVAL_THRESHOLD_USD (the coordinator decides,
    # ``treasury.order_status.ApprovalRule``), with the number of approvals it then needs.
    status: OrderStatus = OrderStatus.NEW
    approvals_required: int | None = None


@dataclass(frozen=True)
class OpenOrder:
    """What the pending-sweeps rule needs of an order that may not be reflected in a balance yet:
    ``booked_ts`` is the booking time of the debit that settled it (SETTLED orders only)."""

    account_id: str
    amount_usd: Decimal
    status: OrderStatus
    booked_ts: datetime | None = None


async def insert_new(conn: asyncpg.Connection, orders: Sequence[NewOrder]) -> tuple[list[asyncpg.Record], set[str]]:
    """One transaction; an order whose decision_key exists already is not written again.

    Returns the row of every order asked for (new or pre-existing), in id order, and the ids this
    call inserted: only those are the caller's to publish. A retried call (same order ids) gets
    an empty set, so it can never publish an order a second time.
    """
    if not orders:
        return [], set()
    async with conn.transaction():
        # RETURNING * gives the new rows whole: only the decision keys written before (a replay) are
        # read back, not every row of the batch with its payload and decision a second time.
        inserted = await conn.fetch(
            """
            INSERT INTO sweep_order (order_id, decision_key, account_id, amount_usd, product, cutoff_utc,
                                     created_ts, payload, decision, trace_id, status, approvals_required)
            SELECT * FROM unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::numeric[], $5::varchar[],
                                 $6::timestamptz[], $7::timestamptz[], $8::jsonb[], $9::jsonb[], $10::varchar[],
                                 $11::varchar[], $12::smallint[])
            ON CONFLICT (decision_key) DO NOTHING
            RETURNING *
            """,
            [o.order_id for o in orders],
            [o.decision_key for o in orders],
            [o.account_id for o in orders],
            [o.amount_usd for o in orders],
            [o.product for o in orders],
            [o.cutoff_utc for o in orders],
            [o.created_ts for o in orders],
            [o.payload for o in orders],
            [o.decision for o in orders],
            [o.trace_id for o in orders],
            [str(o.status) for o in orders],
            [o.approvals_required for o in orders],
        )
        written = {r["decision_key"] for r in inserted}
        earlier = [o.decision_key for o in orders if o.decision_key not in written]
        rows = [*inserted, *(await by_decision_keys(conn, earlier) if earlier else [])]
        return sorted(rows, key=lambda r: r["id"]), {r["order_id"] for r in inserted}


async def by_decision_keys(db: Executor, decision_keys: Sequence[str]) -> list[asyncpg.Record]:
    return list(await db.fetch(
        "SELECT * FROM sweep_order WHERE decision_key = ANY($1::varchar[]) ORDER BY id", list(decision_keys)
    ))


async def mark_sent(db: Executor, order_ids: Sequence[str]) -> int:
    if not order_ids:
        return 0
    result = await db.execute(
        "UPDATE sweep_order SET status = $2::varchar, sent_ts = now()"
        " WHERE order_id = ANY($1::varchar[]) AND status = $3::varchar",
        list(order_ids),
        OrderStatus.SENT,
        OrderStatus.NEW,
    )
    return int(result.split()[-1])


async def unsent(db: Executor) -> list[asyncpg.Record]:
    return list(await db.fetch("SELECT * FROM sweep_order WHERE status = 'NEW' ORDER BY id"))


# A released order still NEW this long after a coordinator claimed it was never produced by that
# claim (a claim whose reply was lost, say): it may be claimed again. Twice librdkafka's default
# message.timeout.ms, so a claim still being retried by a live producer is not taken from it.
RECLAIM_AFTER_S = 600


async def claim_released(db: Executor, reclaim_after_s: int = RECLAIM_AFTER_S) -> list[asyncpg.Record]:
    """Orders released from approval (NEW again, by a REST replica) that no coordinator has taken
    yet; marks them taken, so that of two coordinators on one ledger only one publishes each. A
    coordinator that dies after claiming leaves them NEW: the next one's ``start`` publishes every
    NEW order, claimed or not, once it has checked the topic; a claim ``reclaim_after_s`` old whose
    order is still NEW is taken again (the claimer skips an order it still has in flight)."""
    return list(await db.fetch(
        "UPDATE sweep_order SET release_claimed_ts = now()"
        " WHERE status = 'NEW' AND released_ts IS NOT NULL"
        " AND (release_claimed_ts IS NULL OR release_claimed_ts < now() - make_interval(secs => $1::int))"
        " RETURNING *",
        reclaim_after_s,
    ))


async def page_after(db: Executor, after_seq: int, limit: int) -> list[asyncpg.Record]:
    """Pullable orders with release_seq > after_seq, in release order. The sequence is assigned
    when an order becomes pullable (written NEW, or released from approval) under a lock held to
    commit (migration 006), so sequences commit in order and a page never skips one: an order
    released late comes after every order a client has already paged past."""
    return list(await db.fetch(
        "SELECT * FROM sweep_order WHERE release_seq > $1 ORDER BY release_seq LIMIT $2", after_seq, limit
    ))


@dataclass(frozen=True)
class PageText:
    """A page of the pull as JSON text Postgres assembled: ``orders`` is the members of the
    ``orders`` array (``''`` for none), ``last_seq`` the last release sequence on it (None: empty)."""

    orders: str
    count: int
    last_seq: int | None


async def page_text_after(db: Executor, after_seq: int, limit: int) -> PageText:
    """The rows of ``page_after`` as one text: each order is its stored signed payload as Postgres
    prints the jsonb, with ``"status"`` appended as the last key (what ``{**payload, "status": s}``
    gives), in release order, joined by commas.

    The pull's cost was decoding every payload into Python objects and encoding it again (about
    210 ``json.loads`` and a pydantic pass per 100-order page); the Bank-Connector only needs the
    same JSON, and the signature covers the RFC 8785 canonical form, never our whitespace. The
    printed payload without its closing brace is kept with the row (``payload_head``, generated
    by migration 011), so a pull only joins texts. The splice is guarded: a payload that already
    holds a ``status`` key (a SweepOrder never does) or is empty has no head and goes through
    jsonb's own merge, which replaces the key rather than repeating it.
    """
    row = await db.fetchrow(
        """
        SELECT coalesce(string_agg(
                   CASE WHEN payload_head IS NOT NULL
                        THEN payload_head || ', "status": ' || to_jsonb(status)::text || '}'
                        ELSE (payload || jsonb_build_object('status', status))::text END,
                   ', ' ORDER BY release_seq), '') AS orders,
               count(*)::int AS count, max(release_seq) AS last_seq
        FROM (SELECT payload_head, payload, status, release_seq FROM sweep_order WHERE release_seq > $1
              ORDER BY release_seq LIMIT $2) AS page
        """,
        after_seq, limit,
    )
    assert row is not None  # an aggregate always answers one row
    return PageText(row["orders"], row["count"], row["last_seq"])


async def get(db: Executor, order_id: str) -> asyncpg.Record | None:
    return await db.fetchrow("SELECT * FROM sweep_order WHERE order_id = $1", order_id)


async def transition(
    db: Executor, order_id: str, wanted: OrderStatus, reason: str | None = None
) -> tuple[asyncpg.Record, bool]:
    """Move an order to ``wanted``; returns (row, changed). Raises OrderNotFound / IllegalTransition."""
    sources = [str(src) for src, dst in TRANSITIONS if dst == wanted]
    # One fixed statement (no column name spliced into SQL text): the CASEs stamp the column of
    # the status reached and leave the others as they are.
    row = await db.fetchrow(
        "UPDATE sweep_order SET status = $2::varchar,"
        " sent_ts = CASE WHEN $2::varchar = $5::varchar THEN now() ELSE sent_ts END,"
        " acked_ts = CASE WHEN $2::varchar = $6::varchar THEN now() ELSE acked_ts END,"
        " failed_ts = CASE WHEN $2::varchar = $7::varchar THEN now() ELSE failed_ts END,"
        " failure_reason = COALESCE($3, failure_reason)"
        " WHERE order_id = $1 AND status = ANY($4::varchar[]) RETURNING *",
        order_id,
        wanted,
        reason,
        sources,
        OrderStatus.SENT,
        OrderStatus.ACK,
        OrderStatus.FAILED,
    )
    if row is not None:
        return row, True
    current = await get(db, order_id)
    if current is None:
        raise OrderNotFound(order_id)
    if current["status"] == wanted:
        return current, False
    raise IllegalTransition(order_id, current["status"], wanted)


async def leave_approval(conn: asyncpg.Connection, order_id: str, wanted: OrderStatus,
                         at: datetime) -> asyncpg.Record | None:
    """Move an order out of AWAITING_APPROVAL to ``wanted`` (NEW: released; REJECTED; EXPIRED),
    stamping the matching column with ``at``; None when it was not awaiting approval. Releasing
    sets status NEW, on which migration 006's trigger gives it its release sequence (pullable from
    then on) and the coordinator's next look publishes it (``claim_released``)."""
    if (OrderStatus.AWAITING_APPROVAL, wanted) not in TRANSITIONS:
        raise ValueError(f"{wanted} is not a way out of {OrderStatus.AWAITING_APPROVAL}")
    return await conn.fetchrow(
        "UPDATE sweep_order SET status = $2::varchar,"
        " released_ts = CASE WHEN $2::varchar = $4::varchar THEN $3 ELSE released_ts END,"
        " rejected_ts = CASE WHEN $2::varchar = $5::varchar THEN $3 ELSE rejected_ts END,"
        " expired_ts = CASE WHEN $2::varchar = $6::varchar THEN $3 ELSE expired_ts END"
        " WHERE order_id = $1 AND status = 'AWAITING_APPROVAL' RETURNING *",
        order_id, wanted, at, OrderStatus.NEW, OrderStatus.REJECTED, OrderStatus.EXPIRED,
    )


async def expire_due(db: Executor, now: datetime, limit: int = 1000) -> list[asyncpg.Record]:
    """Mark EXPIRED every order still awaiting approval at its cut-off (``now`` at or past it): it
    was not approved in time, so it no longer counts as pending and is never released. One
    statement: an approval committing meanwhile holds the row, and the row it leaves (NEW) no
    longer matches, so an order is released or expired, never both."""
    return list(await db.fetch(
        "UPDATE sweep_order SET status = 'EXPIRED', expired_ts = $1 WHERE order_id IN ("
        " SELECT order_id FROM sweep_order WHERE status = 'AWAITING_APPROVAL' AND cutoff_utc <= $1"
        " ORDER BY cutoff_utc LIMIT $2) AND status = 'AWAITING_APPROVAL' RETURNING *",
        now, limit,
    ))


async def awaiting(db: Executor, now: datetime, limit: int) -> list[asyncpg.Record]:
    """Orders awaiting approval that can still be approved (cut-off ahead), soonest cut-off first."""
    return list(await db.fetch(
        "SELECT * FROM sweep_order WHERE status = 'AWAITING_APPROVAL' AND cutoff_utc > $1"
        " ORDER BY cutoff_utc, id LIMIT $2",
        now, limit,
    ))


def open_orders_select(account_ids: str, booked_after: str, now: str) -> str:
    """The SELECT of ``open_orders``, its parameters placed by the caller (``"$1"``, ...):
    ``storage.batch_read`` runs it in one statement with a batch's other reads."""
    return f"""
        SELECT account_id, status, sum(amount_usd) AS amount_usd, NULL::timestamptz AS booked_ts FROM sweep_order
        WHERE account_id = ANY({account_ids}::varchar[])
          AND (status <> 'AWAITING_APPROVAL' OR cutoff_utc > COALESCE({now}::timestamptz, now()))
          AND status IN ('AWAITING_APPROVAL', 'NEW', 'SENT', 'ACK')
        GROUP BY account_id, status
        UNION ALL
        SELECT account_id, status, amount_usd, booked_ts FROM sweep_order
        WHERE account_id = ANY({account_ids}::varchar[]) AND status = 'SETTLED' AND booked_ts > {booked_after}
        """  # noqa: S608  # nosec B608: the placeholders are parameter markers ("$1"), never data


def open_order(r: Sequence[Any]) -> OpenOrder:
    """One row of ``open_orders_select`` by position: an ``asyncpg.Record`` or an anonymous record's tuple."""
    return OpenOrder(r[0], r[2], OrderStatus(r[1]), r[3])


async def open_orders(db: Executor, account_ids: Sequence[str], booked_after: datetime,
                      now: datetime | None = None) -> list[OpenOrder]:
    """What the pending-sweeps rule needs, in few rows however many orders an account has:
    unsettled (AWAITING_APPROVAL, NEW, SENT, ACK) amounts summed per account and status, plus each
    SETTLED order whose debit was booked after ``booked_after`` (the earliest balance time the
    caller will compare with). An order still awaiting approval at its cut-off (``now``, the
    decision's clock; the database's when None) can only expire: it no longer counts, so the next
    balance decides afresh even before the coordinator has marked it EXPIRED."""
    records = await db.fetch(open_orders_select("$1", "$2", "$3"), list(account_ids), booked_after, now)
    return [open_order(r) for r in records]


async def overdue(db: Executor, now: datetime, after_s: int, limit: int = 1000) -> list[asyncpg.Record]:
    """Published orders still not settled ``after_s`` (SETTLEMENT_OVERDUE_AFTER_S) past their cut-off,
    oldest cut-off first: the bank has not shown the debit, so the money may not have left."""
    return list(await db.fetch(
        "SELECT * FROM sweep_order WHERE status IN ('SENT', 'ACK')"
        " AND cutoff_utc + make_interval(secs => $2::int) < $1 ORDER BY cutoff_utc, id LIMIT $3",
        now, after_s, limit,
    ))


async def overdue_count(db: Executor, now: datetime, after_s: int) -> int:
    return int(await db.fetchval(
        "SELECT count(*) FROM sweep_order WHERE status IN ('SENT', 'ACK')"
        " AND cutoff_utc + make_interval(secs => $2::int) < $1",
        now, after_s,
    ))
