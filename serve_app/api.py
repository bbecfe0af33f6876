"""The REST tier (spec 7.2): the Bank-Connector pulls orders, pushes balances and reports outcomes.

``build_app(backend)`` is a plain FastAPI app, so it runs under Ray Serve in production and
in-process under tests; ``Backend`` owns the connections and how to reach the shards.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import asyncpg
from confluent_kafka import KafkaException
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field

from actors import kafka_clients
from schemas.bank_formats import sniff_and_parse
from schemas.errors import MessageRejected, decode, field_path
from schemas.types import AccountId
from serve_app.ingest import check_ingestible
from storage import accounts, orders
from storage.db import create_pool
from storage.orders import IllegalTransition, OrderNotFound
from treasury.ids import new_trace_id
from treasury.metrics import ShardMetrics, render
from treasury.settings import PolicyConfig, RuntimeSettings, policy_from_env
from treasury.topics import BALANCE_EVENTS

log = logging.getLogger("treasury.api")
MAX_BODY_BYTES = 1_000_000
CURSOR_PREFIX = "c1."


class ShardLookup(Protocol):
    async def position(self, account_id: str) -> dict[str, Any] | None: ...
    async def ready(self) -> bool: ...
    async def metrics(self) -> list[ShardMetrics]: ...


class RiskJobs(Protocol):
    async def submit(self, accounts: list[str] | None, window: int | None, confidence: float) -> str: ...
    async def status(self, job_id: str) -> dict[str, Any] | None: ...


class _Versioned(Protocol):
    """The replica's config follower, as the app sees it."""

    version: int

    def stop(self) -> None: ...


class RecomputeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    accounts: list[AccountId] | None = Field(default=None, max_length=100_000, description="default: every account")
    window: int | None = Field(default=None, ge=2, le=5000, description="days; default VAR_WINDOW_DAYS")
    confidence: float = Field(default=0.99, gt=0.5, lt=1)


class Backend:
    """Connections a replica opens once, lazily, so the app starts even while a part is down."""

    def __init__(self, settings: RuntimeSettings, shards: ShardLookup, risk_jobs: RiskJobs | None = None) -> None:
        self.settings = settings
        self.shards = shards
        self.risk_jobs = risk_jobs
        # The policy in force for this replica: env/file at start, each live version after that.
        self.policy: PolicyConfig = policy_from_env()
        self.follower: _Versioned | None = None
        self._pool: asyncpg.Pool | None = None
        self._producer: kafka_clients.AsyncProducer | None = None
        self._lock = asyncio.Lock()

    async def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    self._pool = await create_pool(self.settings.database_url, max_size=8)
        return self._pool

    def producer(self) -> kafka_clients.AsyncProducer:
        if self._producer is None:
            self._producer = kafka_clients.AsyncProducer(kafka_clients.producer(self.settings.kafka_bootstrap))
        return self._producer

    def apply_policy(self, policy: PolicyConfig) -> None:
        self.policy = policy

    @property
    def config_version(self) -> int:
        return self.follower.version if self.follower is not None else 0

    async def close(self) -> None:
        if self.follower is not None:
            self.follower.stop()
        if self._producer is not None:
            self._producer.close()
        if self._pool is not None:
            await self._pool.close()


def error(status: int, field: str, reason: str, trace_id: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": {"field": field, "reason": reason}}
    if trace_id:
        body["trace_id"] = trace_id
    return JSONResponse(body, status_code=status)


def encode_cursor(last_id: int) -> str:
    return CURSOR_PREFIX + base64.urlsafe_b64encode(str(last_id).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    """Opaque to clients; here just the last ledger id they have seen."""
    if not cursor:
        return 0
    try:
        if not cursor.startswith(CURSOR_PREFIX):
            raise ValueError
        raw = cursor[len(CURSOR_PREFIX):]
        value = int(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode())
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise MessageRejected("after", "not a cursor this service issued") from None
    if value < 0:
        raise MessageRejected("after", "not a cursor this service issued")
    return value


def order_view(row: asyncpg.Record) -> dict[str, Any]:
    return {**row["payload"], "status": row["status"]}


def build_app(backend: Backend) -> FastAPI:
    app = FastAPI(
        title="Treasury Orchestrator",
        version="0.1.0",
        description="Sweep orders for the Bank-Connector; balance webhooks; order outcomes.",
    )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        loc = tuple(p for p in first.get("loc", ()) if p not in ("query", "path", "body"))
        return error(422, field_path(loc), str(first.get("msg")))

    async def _unavailable(_: Request, exc: Exception) -> JSONResponse:
        # Nothing was accepted: the caller may retry the same request safely.
        log.warning("dependency unavailable: %s", exc)
        return error(503, "$", f"temporarily unavailable, retry: {type(exc).__name__}: {exc}")

    for kind in (OSError, TimeoutError, asyncpg.PostgresError, KafkaException):
        app.add_exception_handler(kind, _unavailable)

    @app.exception_handler(MessageRejected)
    async def _rejected(_: Request, exc: MessageRejected) -> JSONResponse:
        return error(422, exc.field, exc.reason)

    @app.middleware("http")
    async def _trace(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
        request.state.trace_id = request.headers.get("x-trace-id") or new_trace_id()
        response = await call_next(request)
        response.headers["x-trace-id"] = request.state.trace_id
        return response

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], responses={503: {"description": "a dependency is down"}})
    async def readyz() -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            pool = await backend.pool()
            await pool.fetchval("SELECT 1")
            checks["postgres"] = "ok"
        except (OSError, asyncpg.PostgresError) as exc:
            checks["postgres"] = f"down: {exc}"
        try:
            checks["shards"] = "ok" if await asyncio.wait_for(backend.shards.ready(), 5) else "starting"
        except (TimeoutError, RuntimeError) as exc:
            checks["shards"] = f"down: {exc}"
        ok = all(v == "ok" for v in checks.values())
        body = {"status": "ready" if ok else "not ready", "checks": checks}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        """Prometheus exposition: the spec's metrics and the operator's, gathered for this scrape."""
        rows = await (await backend.pool()).fetch("SELECT status, count(*) AS n FROM sweep_order GROUP BY status")
        parts = [*await backend.shards.metrics(), ShardMetrics(config_version=backend.config_version)]
        body = render(parts, {r["status"]: int(r["n"]) for r in rows})
        return PlainTextResponse(body.decode(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/sweep-intent", tags=["orders"])
    async def pull(
        after: str | None = Query(default=None, description="cursor from the previous page; omit to start"),
        limit: int = Query(default=100, ge=1, le=1000),
    ) -> dict[str, Any]:
        """Idempotent pull: the same cursor always returns the same orders, in creation order."""
        after_id = decode_cursor(after)
        rows = await orders.page_after(await backend.pool(), after_id, limit)
        next_id = rows[-1]["id"] if rows else after_id
        return {"orders": [order_view(r) for r in rows], "next_cursor": encode_cursor(next_id), "count": len(rows)}

    @app.post("/balances", status_code=202, tags=["balances"], responses={422: {"description": "refused"}})
    async def post_balances(request: Request) -> JSONResponse:
        """A native ``BalanceEvent`` (JSON), a camt.052/053 report (XML) or Finastra balances (JSON).

        Everything in the body is checked first; only then is every event appended to
        ``balance_events``, where the shards apply it in order.
        """
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return error(413, "$", f"body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}")
        events = sniff_and_parse(body, request.headers.get("content-type"))
        known = await accounts.get_many(await backend.pool(), sorted({e.account_id for e in events}))
        check_ingestible(events, known)
        trace_id = request.state.trace_id
        producer = backend.producer()
        delivered = await asyncio.gather(*[
            producer.send(
                BALANCE_EVENTS.name,
                e.account_id.encode(),
                e.model_copy(update={"trace_id": e.trace_id or trace_id}).model_dump_json(exclude_none=True).encode(),
                kafka_clients.headers(trace_id=e.trace_id or trace_id),
            )
            for e in events
        ])
        return JSONResponse(
            {
                "accepted": True,
                "count": len(events),
                "topic": BALANCE_EVENTS.name,
                "trace_id": trace_id,
                "events": [
                    {"event_id": e.event_id, "account_id": e.account_id, "partition": m.partition(),
                     "offset": m.offset()}
                    for e, m in zip(events, delivered, strict=True)
                ],
            },
            status_code=202,
        )

    async def _transition(order_id: str, wanted: str, request: Request) -> JSONResponse:
        reason: str | None = None
        body = await request.body()
        if body.strip():
            try:
                data = json.loads(body)
            except json.JSONDecodeError as exc:
                raise MessageRejected("$", f"malformed JSON: {exc.msg}") from exc
            if not isinstance(data, dict) or not isinstance(data.get("reason", ""), str):
                raise MessageRejected("reason", "expected an object with an optional string 'reason'")
            reason = data.get("reason") or None
        try:
            row, changed = await orders.transition(await backend.pool(), order_id, wanted, reason)
        except OrderNotFound:
            return error(404, "order_id", f"no order {order_id!r}")
        except IllegalTransition as exc:
            return error(409, "status", str(exc))
        log.info("order %s -> %s", order_id, row["status"], extra={"order_id": order_id, "trace_id": row["trace_id"]})
        return JSONResponse({"order_id": order_id, "status": row["status"], "changed": changed,
                             "trace_id": row["trace_id"]})

    @app.post("/sweep-intent/{order_id}/ack", tags=["orders"])
    async def ack(order_id: str, request: Request) -> JSONResponse:
        """The Bank-Connector executed the order (SENT -> ACK); repeating it is harmless."""
        return await _transition(order_id, "ACK", request)

    @app.post("/sweep-intent/{order_id}/fail", tags=["orders"])
    async def fail(order_id: str, request: Request) -> JSONResponse:
        """The Bank-Connector could not execute the order (SENT -> FAILED); body {"reason": "..."}."""
        return await _transition(order_id, "FAILED", request)

    @app.get("/accounts/{account_id}/position", tags=["accounts"])
    async def position(account_id: str) -> JSONResponse:
        pos = await backend.shards.position(account_id)
        if pos is None:
            return error(404, "account_id", f"no live position for {account_id!r}")
        return JSONResponse(pos)

    @app.post("/risk/var/recompute", status_code=202, tags=["risk"])
    async def var_recompute(request: Request) -> JSONResponse:
        """Start a VaR recompute on the Ray pool; poll the returned job id."""
        body = await request.body()
        spec = decode(RecomputeRequest, body) if body.strip() else RecomputeRequest()
        if backend.risk_jobs is None:
            return error(503, "$", "the VaR scheduler is not running")
        job_id = await backend.risk_jobs.submit(spec.accounts, spec.window, spec.confidence)
        return JSONResponse({"job_id": job_id, "status": "queued"}, status_code=202)

    @app.get("/risk/var/recompute/{job_id}", tags=["risk"])
    async def var_recompute_status(job_id: str) -> JSONResponse:
        """queued | running | done (with counts) | failed (with the error)."""
        job = await backend.risk_jobs.status(job_id) if backend.risk_jobs is not None else None
        if job is None:
            return error(404, "job_id", f"no VaR job {job_id!r}")
        return JSONResponse(job)

    return app
