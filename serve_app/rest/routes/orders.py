"""Orders for the Bank-Connector: the idempotent pull (``GET /sweep-intent``) and the outcomes it reports.

The pull pages by an opaque cursor; the outcome routes move an order SENT -> ACK or SENT -> FAILED
(repeating an outcome is harmless, contradicting one is 409). Orders awaiting approval are not
pulled until released (``serve_app.rest.routes.approvals``); the cursor stands for the ledger's
release sequence, so an order released late is still returned to a client that paged past its id.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from typing import Any

import asyncpg
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from schemas.errors import MessageRejected, decode
from schemas.sweep_order import SweepOrder
from serve_app.rest.auth import scope
from serve_app.rest.backend import Backend
from serve_app.rest.errors import error, responses
from serve_app.rest.idempotency import IdempotencyKey, idempotent
from serve_app.rest.openapi import RequestBodies, constraints
from storage import investments, orders
from storage.approvals import Trail, trails
from storage.orders import IllegalTransition, OrderNotFound
from treasury.auth import Scope
from treasury.clock import iso_z, utc_now
from treasury.order_status import OrderStatus

log = logging.getLogger("treasury.api")
CURSOR_PREFIX = "c1."
MAX_ORDER_ID = 64  # sweep_order.order_id
ORDER_ID = Path(description="an order's order_id", json_schema_extra=constraints(
    SweepOrder.model_json_schema()["properties"]["order_id"]))


def _cursor_pattern() -> str:
    """The cursors this service issues: ``c1.`` + unpadded base64url of a release sequence's decimal
    digits (a ledger id before migration 006: the same number for those orders).

    Stated exactly, so a client (or a generated test) can tell a cursor from garbage without asking:
    a 4-character group encodes three digits, a trailing group of 2 or 3 characters one or two.
    Ids up to 18 digits, and 19-digit ones below 9 * 10**18, always below Postgres's bigint limit.
    """
    lead = "(?:[MN][DTjz]|O[DT])"  # a digit byte, then the high bits of another ('0'-'9' = 0x30-0x39)
    group = f"{lead}[AEIMQUYcgk][w-z0-5]"  # three digits
    one, two = "(?:[MN][AQgw]|O[AQ])", f"{lead}[AEIMQUYcgk]"  # a trailing one or two digits
    below_nine = "(?:[MN][DTjz]|OD)[AEIMQUYcgk][w-z0-5]"  # three digits, the first 0-8
    digits = f"(?:{group}){{0,5}}(?:{group}|{one}|{two})|{below_nine}(?:{group}){{5}}{one}"
    return f"^(?:c1\\.(?:{digits}))?$"


CURSOR_PATTERN = _cursor_pattern()
_CURSOR = re.compile(CURSOR_PATTERN)


def encode_cursor(last_seq: int) -> str:
    return CURSOR_PREFIX + base64.urlsafe_b64encode(str(last_seq).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    """Opaque to clients; here just the last release sequence they have seen (``storage.orders.page_after``)."""
    if not cursor:
        return 0
    if not _CURSOR.fullmatch(cursor):  # what the document states; also keeps a forged huge id from Postgres
        raise MessageRejected("after", "not a cursor this service issued")
    try:
        raw = cursor[len(CURSOR_PREFIX):]
        value = int(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode())
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise MessageRejected("after", "not a cursor this service issued") from None
    if not 0 <= value < 2**63:  # ledger ids are bigint; a forged huge one must not reach Postgres
        raise MessageRejected("after", "not a cursor this service issued")
    return value


def never_issued(order_id: str) -> JSONResponse | None:
    """404 for an id this service could never have issued (too long, or a NUL Postgres text cannot
    hold), answered before any query; None for an id worth looking up."""
    if len(order_id) > MAX_ORDER_ID or "\x00" in order_id:
        return error(404, "order_id", f"no order {order_id[:80]!r}")
    return None


def order_view(row: asyncpg.Record) -> dict[str, Any]:
    return {**row["payload"], "status": row["status"]}


def status_history(row: asyncpg.Record) -> dict[str, str]:
    """When the order reached each status it went through. An order that needed approval was
    written AWAITING_APPROVAL and became NEW when released; its approvals are in its trail."""
    written = OrderStatus.AWAITING_APPROVAL if row["approvals_required"] is not None else OrderStatus.NEW
    stamps = ((written, "created_ts"), (OrderStatus.NEW, "released_ts"), (OrderStatus.REJECTED, "rejected_ts"),
              (OrderStatus.EXPIRED, "expired_ts"), (OrderStatus.SENT, "sent_ts"), (OrderStatus.ACK, "acked_ts"),
              (OrderStatus.FAILED, "failed_ts"), (OrderStatus.SETTLED, "settled_ts"))
    return {str(name): iso_z(row[column]) for name, column in stamps if row[column] is not None}


def order_detail(row: asyncpg.Record, investment: asyncpg.Record | None, trail: Trail | None = None) -> dict[str, Any]:
    """One order as a treasurer follows it: the signed payload, its status and when it reached each,
    its settlement (the booked entry: id, bank reference, booking time, how it was matched), and
    the investment it opened. With its ``trail`` (``storage.approvals.trails``), who approved or
    rejected it, when and why; a caller that did not read the trail shows none rather than an empty one."""
    detail = {
        **order_view(row),
        "status_history": status_history(row),
        "failure_reason": row["failure_reason"],
        "settlement": row["settlement"],
        "investment": None if investment is None else investments.view(investment),
        "approvals_required": row["approvals_required"],
    }
    if trail is not None:
        detail.update(trail.view())
    return detail


def page_body(page: orders.PageText, after_seq: int) -> bytes:
    """The pull's answer ``{"orders", "next_cursor", "count"}`` around the orders' stored JSON text.

    Each order is the JSON ``order_view`` gives (its signed payload and ``status`` as the last key)
    but never decoded here: a 100-order page was about 210 ``json.loads`` and as many encodings per
    request, the larger part of the pull's CPU. ``next_cursor`` is the last order's sequence, or
    the cursor asked with on an empty page (the client asks again from the same place).
    """
    next_seq = page.last_seq if page.last_seq is not None else after_seq
    cursor = encode_cursor(next_seq)  # c1. + base64url: nothing in it needs escaping in JSON
    return f'{{"orders":[{page.orders}],"next_cursor":"{cursor}","count":{page.count}}}'.encode()


class TransitionBody(BaseModel):
    reason: str | None = Field(default=None, max_length=2000, pattern=r"^[^\x00]*$",
                               description="why the bank could not execute the order (no NUL characters)")


def router(backend: Backend, bodies: RequestBodies) -> APIRouter:
    api = APIRouter(tags=["orders"])

    # response_model only states the 200 in the OpenAPI document: the handler returns the page's
    # bytes, which FastAPI passes through untouched (no validation or encoding of outgoing data).
    @api.get("/sweep-intent", dependencies=[scope(backend, Scope.ORDERS_READ)], response_model=dict[str, Any],
             responses=responses(401, 403, 422, 503))
    async def pull(
        after: str = Query(default="", description="cursor from the previous page's next_cursor; omit to start",
                           json_schema_extra={"pattern": CURSOR_PATTERN}),
        limit: int = Query(default=100, ge=1, le=1000),
    ) -> Response:
        """Idempotent pull: the same cursor always returns the same orders, in the order they became
        pullable (written, or released by their approvers); an order awaiting approval is not returned
        until it is released, and then comes after everything already pulled."""
        after_seq = decode_cursor(after)
        page = await orders.page_text_after(await backend.pool(), after_seq, limit)
        return Response(page_body(page, after_seq), media_type="application/json")

    async def transition(order_id: str, wanted: OrderStatus, request: Request) -> JSONResponse:
        body = await request.body()
        reason = (decode(TransitionBody, body).reason or None) if body.strip() else None
        if (refused := never_issued(order_id)) is not None:
            return refused
        try:
            row, changed = await orders.transition(await backend.pool(), order_id, wanted, reason)
        except OrderNotFound:
            return error(404, "order_id", f"no order {order_id!r}")
        except IllegalTransition as exc:
            return error(409, "status", str(exc))
        log.info("order %s -> %s", order_id, row["status"], extra={"order_id": order_id, "trace_id": row["trace_id"]})
        return JSONResponse({"order_id": order_id, "status": row["status"], "changed": changed,
                             "trace_id": row["trace_id"]})

    @api.get("/sweep-intent/{order_id}", dependencies=[scope(backend, Scope.ORDERS_READ)],
             responses=responses(401, 403, 404, 422, 503))
    async def one(order_id: str = ORDER_ID) -> JSONResponse:
        """One order with its status history, its approvals, its settlement (entry reference, booking
        time) and its investment."""
        if (refused := never_issued(order_id)) is not None:
            return refused
        pool = await backend.pool()
        row = await orders.get(pool, order_id)
        if row is None:
            return error(404, "order_id", f"no order {order_id!r}")
        held = await investments.of_order(pool, order_id, utc_now().date(), backend.settings.maturity_grace_days)
        return JSONResponse(order_detail(row, held, (await trails(pool, [order_id]))[order_id]))

    body, writer = bodies(TransitionBody, required=False), [scope(backend, Scope.ORDERS_WRITE)]
    answers = responses(401, 403, 404, 409, 422, 503)

    @api.post("/sweep-intent/{order_id}/ack", openapi_extra=body, dependencies=writer, responses=answers)
    async def ack(request: Request, order_id: str = ORDER_ID, idempotency_key: IdempotencyKey = None) -> Response:
        """The Bank-Connector executed the order (SENT -> ACK); repeating it is harmless."""
        return await idempotent(backend.pool, request, idempotency_key,
                                lambda: transition(order_id, OrderStatus.ACK, request))

    @api.post("/sweep-intent/{order_id}/fail", openapi_extra=body, dependencies=writer, responses=answers)
    async def fail(request: Request, order_id: str = ORDER_ID, idempotency_key: IdempotencyKey = None) -> Response:
        """The Bank-Connector could not execute the order (SENT -> FAILED); body {"reason": "..."}."""
        return await idempotent(backend.pool, request, idempotency_key,
                                lambda: transition(order_id, OrderStatus.FAILED, request))

    return api
