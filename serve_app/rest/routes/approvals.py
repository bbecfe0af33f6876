"""Four-eyes approval of large orders (docs/approval.md): the queue, and the approvers' verdicts.

``GET /approvals`` lists the orders awaiting approval (scope ``orders:read``: the queue is for
whoever follows orders; acting on it is not). ``POST /sweep-intent/{id}/approve`` and ``/reject``
need ``orders:approve`` and record the caller's JWT subject, the time and an optional comment; the
order is released (NEW, then published once by the coordinator's outbox and returned by the pull)
only after as many approvals by distinct subjects as it was written needing. A second approval by
the same subject changes nothing and says why: 200 with ``changed: false`` and a ``reason`` (a
retried click is not an error). A verdict on an order not awaiting approval is 409.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from schemas.errors import decode
from serve_app.rest.auth import scope
from serve_app.rest.backend import Backend
from serve_app.rest.errors import error, responses
from serve_app.rest.idempotency import IdempotencyKey, idempotent
from serve_app.rest.openapi import RequestBodies
from serve_app.rest.routes.orders import ORDER_ID, never_issued
from storage import approvals, orders
from storage.approvals import MAX_COMMENT, MAX_SUBJECT, Verdict
from storage.orders import OrderNotFound
from treasury.auth import Caller, Scope
from treasury.clock import iso_z, utc_now

log = logging.getLogger("treasury.api")


class VerdictBody(BaseModel):
    comment: str | None = Field(default=None, max_length=MAX_COMMENT, pattern=r"^[^\x00]*$",
                                description="why (kept in the order's audit trail; no NUL characters)")


def router(backend: Backend, bodies: RequestBodies) -> APIRouter:
    api = APIRouter(tags=["approvals"])

    @api.get("/approvals", dependencies=[scope(backend, Scope.ORDERS_READ)], responses=responses(401, 403, 422, 503))
    async def queue(limit: int = Query(default=100, ge=1, le=1000)) -> dict[str, Any]:
        """Orders awaiting approval whose cut-off is still ahead, soonest cut-off first, with the
        approvals each has so far and how many it needs."""
        pool = await backend.pool()
        rows = await orders.awaiting(pool, utc_now(), limit)
        trail = await approvals.trails(pool, [r["order_id"] for r in rows])
        return {
            "orders": [{
                "order_id": r["order_id"],
                "account_id": r["account_id"],
                "product": r["product"],
                "amount_usd": format(r["amount_usd"], "f"),
                "created_ts": iso_z(r["created_ts"]),
                "cutoff_ts": iso_z(r["cutoff_utc"]),
                "approvals": [a.view() for a in trail[r["order_id"]].approvals],
                "approvals_required": r["approvals_required"],
                "trace_id": r["trace_id"],
            } for r in rows],
            "count": len(rows),
            "approval_threshold_usd": format(backend.settings.approval_threshold_usd, "f"),
        }

    async def record(order_id: str, verdict: Verdict, request: Request) -> JSONResponse:
        body = await request.body()
        comment = (decode(VerdictBody, body).comment or None) if body.strip() else None
        if (refused := never_issued(order_id)) is not None:
            return refused
        caller: Caller | None = getattr(request.state, "caller", None)
        if caller is None:
            return error(403, "authorization", "four-eyes approval records who approved: it needs signed-in "
                                               "callers (AUTH=jwt), and this service runs with AUTH=off")
        if len(caller.subject) > MAX_SUBJECT:
            return error(403, "authorization", f"the token's subject is longer than {MAX_SUBJECT} characters")
        try:
            async with (await backend.pool()).acquire() as conn:
                outcome = await approvals.decide(conn, order_id, caller.subject, verdict, comment, utc_now())
        except OrderNotFound:
            return error(404, "order_id", f"no order {order_id!r}")
        row = outcome.row
        if outcome.changed:
            log.info("order %s %s by %s: %s", order_id, verdict.value.lower(), caller.subject, row["status"],
                     extra={"order_id": order_id, "trace_id": row["trace_id"], "account_id": row["account_id"]})
        if outcome.conflict is not None:
            return error(409, "status", outcome.conflict)
        return JSONResponse({"order_id": order_id, "status": row["status"], **outcome.trail.view(),
                             "approvals_required": row["approvals_required"], "changed": outcome.changed,
                             "reason": outcome.reason})

    body, approvers = bodies(VerdictBody, required=False), [scope(backend, Scope.ORDERS_APPROVE)]
    answers = responses(401, 403, 404, 409, 422, 503)

    @api.post("/sweep-intent/{order_id}/approve", openapi_extra=body, dependencies=approvers, responses=answers)
    async def approve(request: Request, order_id: str = ORDER_ID, idempotency_key: IdempotencyKey = None) -> Response:
        """Approve an order awaiting approval; released once it has APPROVALS_REQUIRED approvals by
        distinct subjects. The same subject again: 200, ``changed: false`` and the ``reason``."""
        return await idempotent(backend.pool, request, idempotency_key,
                                lambda: record(order_id, Verdict.APPROVE, request))

    @api.post("/sweep-intent/{order_id}/reject", openapi_extra=body, dependencies=approvers, responses=answers)
    async def reject(request: Request, order_id: str = ORDER_ID, idempotency_key: IdempotencyKey = None) -> Response:
        """Reject an order awaiting approval: it ends REJECTED, never published, no longer pending."""
        return await idempotent(backend.pool, request, idempotency_key,
                                lambda: record(order_id, Verdict.REJECT, request))

    return api
