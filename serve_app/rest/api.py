"""The REST tier (spec 7.2): the Bank-Connector pulls orders, pushes balances and reports outcomes.

``build_app(backend)`` is a plain FastAPI app, so it runs under Ray Serve in production and
in-process under tests; ``Backend`` owns the connections and how to reach the shards. The routes
live in ``serve_app.rest.routes`` (one module per resource), the error body and its handlers in
``serve_app.rest.errors``, the scope check in ``serve_app.rest.auth``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request

from serve_app.rest import errors
from serve_app.rest.backend import Backend, RiskJobs, ShardLookup
from serve_app.rest.errors import error
from serve_app.rest.openapi import RequestBodies
from serve_app.rest.routes import accounts, approvals, balances, book, console, docs_ui, ops, orders, risk
from serve_app.rest.routes.balances import MAX_BODY_BYTES
from serve_app.rest.routes.orders import decode_cursor, encode_cursor
from serve_app.rest.routes.risk import RecomputeRequest
from treasury.ids import new_trace_id
from treasury.logs import trace_context

__all__ = ["MAX_BODY_BYTES", "Backend", "RecomputeRequest", "RiskJobs", "ShardLookup", "build_app",
           "decode_cursor", "encode_cursor", "error"]


async def _trace(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
    """Every answer carries the request's trace id (the caller's ``x-trace-id`` or a new one)."""
    request.state.trace_id = request.headers.get("x-trace-id") or new_trace_id()
    with trace_context(request.state.trace_id):
        response = await call_next(request)
    response.headers["x-trace-id"] = request.state.trace_id
    return response


def build_app(backend: Backend) -> FastAPI:
    app = FastAPI(
        title="Treasury Orchestrator",
        version="0.1.0",
        description="Sweep orders for the Bank-Connector; balance webhooks; order outcomes.",
        docs_url=None,  # /docs and /redoc come from docs_ui, every file served here (no CDN)
        redoc_url=None,
    )
    bodies = RequestBodies()
    errors.install(app)
    app.middleware("http")(_trace)
    app.include_router(ops.router(backend))
    app.include_router(orders.router(backend, bodies))
    app.include_router(approvals.router(backend, bodies))  # four-eyes approval (docs/approval.md)
    app.include_router(balances.router(backend, bodies))
    app.include_router(accounts.router(backend))
    app.include_router(book.router(backend))
    app.include_router(risk.router(backend, bodies))
    app.include_router(docs_ui.router(app))
    app.include_router(console.router(backend, bodies))  # /console and the reads it needs
    bodies.install(app)
    return app
