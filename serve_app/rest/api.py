"""The REST tier (spec 7.2): the Bank-Connector pulls orders, pushes balances and reports outcomes.

``build_app(backend)`` is a plain FastAPI app, so it runs under Ray Serve in production and
in-process under tests; ``Backend`` owns the connections and how to reach the shards. The routes
live in ``serve_app.rest.routes`` (one module per resource), the error body and its handlers in
``serve_app.rest.errors``, the scope check in ``serve_app.rest.auth``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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


class TraceIds:
    """Every answer carries the request's trace id (the caller's ``x-trace-id`` or a new one), and
    every line logged while serving it names that id.

    A plain ASGI middleware, not ``@app.middleware("http")``: Starlette's ``BaseHTTPMiddleware`` runs
    each request in a task group with memory streams between the halves, a measurable share of a
    small request's CPU (bench/rest). The id is set on ``request.state`` (``scope["state"]``) as before.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        trace_id = Headers(scope=scope).get("x-trace-id") or new_trace_id()
        scope.setdefault("state", {})["trace_id"] = trace_id
        value = trace_id.encode("latin-1")  # it came in as a header (latin-1) or is ours (ASCII)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"x-trace-id"]
                message = {**message, "headers": [*headers, (b"x-trace-id", value)]}
            await send(message)

        with trace_context(trace_id):
            await self.app(scope, receive, send_with_id)


def closing(backend: Backend) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's lifespan: when its server stops (a Serve replica going away, the pull front's
    uvicorn on SIGTERM), the backend hands back its Postgres connections and its Kafka producer
    rather than leaving them to the process's exit, where the producer went on reconnecting to a
    stopped broker and Postgres logged each dropped connection."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await backend.close()

    return lifespan


def build_app(backend: Backend) -> FastAPI:
    app = FastAPI(
        title="Treasury Orchestrator",
        version="0.1.0",
        description="Sweep orders for the Bank-Connector; balance webhooks; order outcomes.",
        docs_url=None,  # /docs and /redoc come from docs_ui, every file served here (no CDN)
        redoc_url=None,
        lifespan=closing(backend),
    )
    bodies = RequestBodies()
    errors.install(app)
    app.add_middleware(TraceIds)
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
