"""The REST tier (spec 7.2): the Bank-Connector pulls orders, pushes balances and reports outcomes.

``build_app(backend)`` is a plain FastAPI app, so it runs under Ray Serve in production and
in-process under tests; ``Backend`` owns the connections and how to reach the shards.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Protocol

import asyncpg
from confluent_kafka import KafkaException
from fastapi import Depends, FastAPI, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from actors import kafka_clients
from schemas.balance_event import BalanceEvent
from schemas.bank_formats import sniff_and_parse
from schemas.catalog import VERSIONS
from schemas.errors import MessageRejected, decode, field_path
from schemas.types import AccountId
from serve_app.ingest import check_ingestible
from serve_app.rest.idempotency import IdempotencyKey, idempotent
from storage import accounts, balances, orders
from storage.db import create_pool
from storage.orders import IllegalTransition, OrderNotFound
from treasury.auth import AuthError, Caller, Scope, TokenVerifier
from treasury.clock import iso_z
from treasury.envelope import EnvelopeCipher, EnvelopeError, is_envelope, row_context
from treasury.ids import new_trace_id
from treasury.keyring import KeyringError, keyring_from_settings
from treasury.logs import trace_context
from treasury.metrics import ShardMetrics, render
from treasury.order_status import OrderStatus
from treasury.settings import PolicyConfig, RuntimeSettings, policy_from_env
from treasury.topics import BALANCE_EVENTS

log = logging.getLogger("treasury.api")
MAX_BODY_BYTES = 1_000_000
CURSOR_PREFIX = "c1."
BEARER = HTTPBearer(auto_error=False, description="JWT (EdDSA) signed by the Vault Transit key TOKEN_SIGNING_KEY")
MAX_ORDER_ID = 64  # sweep_order.order_id
BALANCE_EVENT_VERSION = f"balance_event/{VERSIONS['BalanceEvent']}"  # the header the shards check


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
        keyring = keyring_from_settings(settings)  # refuses to start without Vault unless SIGNER=dev
        self.cipher = EnvelopeCipher(keyring, settings.data_key)
        self.verifier: TokenVerifier | None = None
        if settings.auth == "jwt":
            self.verifier = TokenVerifier(keyring, settings.token_signing_key, settings.jwt_audience)
        else:
            log.warning("AUTH=off: the REST API accepts requests from anyone. Never run this in production.")
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
    if not 0 <= value < 2**63:  # ledger ids are bigint; a forged huge one must not reach Postgres
        raise MessageRejected("after", "not a cursor this service issued")
    return value


def order_view(row: asyncpg.Record) -> dict[str, Any]:
    return {**row["payload"], "status": row["status"]}


class TransitionBody(BaseModel):
    reason: str | None = Field(default=None, max_length=2000, pattern=r"^[^\x00]*$",
                               description="why the bank could not execute the order (no NUL characters)")


class RequestBodies:
    """OpenAPI request bodies for endpoints that read the raw body themselves (several formats,
    an optional body): the document then says what to send, and generated tests send it."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def __call__(self, model: type[BaseModel], *, required: bool = True, xml: str | None = None) -> dict[str, Any]:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        self.components.update(schema.pop("$defs", {}))
        content: dict[str, Any] = {"application/json": {"schema": schema}}
        if xml:
            content["application/xml"] = {"schema": {"type": "string", "description": xml}}
        return {"requestBody": {"required": required, "content": content}}

    def install(self, app: FastAPI) -> None:
        generate = app.openapi

        def openapi() -> dict[str, Any]:
            document = generate()
            document.setdefault("components", {}).setdefault("schemas", {}).update(self.components)
            return document

        app.openapi = openapi  # type: ignore[method-assign]


def build_app(backend: Backend) -> FastAPI:
    app = FastAPI(
        title="Treasury Orchestrator",
        version="0.1.0",
        description="Sweep orders for the Bank-Connector; balance webhooks; order outcomes.",
    )
    bodies = RequestBodies()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        loc = tuple(p for p in first.get("loc", ()) if p not in ("query", "path", "body", "header"))
        return error(422, field_path(loc), str(first.get("msg")))

    async def _unavailable(_: Request, exc: Exception) -> JSONResponse:
        # Nothing was accepted: the caller may retry the same request safely.
        log.warning("dependency unavailable: %s", exc)
        return error(503, "$", f"temporarily unavailable, retry: {type(exc).__name__}: {exc}")

    for kind in (OSError, TimeoutError, asyncpg.PostgresError, KafkaException):
        app.add_exception_handler(kind, _unavailable)

    @app.exception_handler(AuthError)
    async def _auth(_: Request, exc: AuthError) -> JSONResponse:
        response = error(exc.status, "Authorization", exc.reason)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = f'Bearer error="invalid_token", error_description="{exc.reason}"'
        return response

    @app.exception_handler(KeyringError)
    async def _keyring(_: Request, exc: KeyringError) -> JSONResponse:
        log.warning("vault unavailable: %s", exc)
        return error(503, "$", "temporarily unavailable, retry: the key service did not answer")

    def scope(needed: Scope) -> Any:
        """A route's required scope; the caller is checked before the handler runs."""
        async def check(
            request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None
        ) -> Caller | None:
            del credentials  # declared for the OpenAPI document; the verifier reads the raw header
            if backend.verifier is None:
                return None
            caller = await asyncio.to_thread(backend.verifier.verify, request.headers.get("authorization"), needed)
            request.state.caller = caller
            request.state.principal = caller.subject  # idempotency keys are per caller
            return caller
        return Depends(check)

    @app.exception_handler(asyncpg.DataError)
    async def _unstorable(_: Request, exc: asyncpg.DataError) -> JSONResponse:
        # A value our checks let through but the ledger cannot hold: retrying will not help.
        log.error("value refused by Postgres: %s", exc)
        return error(422, "$", f"a value cannot be stored: {exc}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # the router's own answers (no such path, wrong verb) in the same shape as ours
        field = {404: "path", 405: "method"}.get(exc.status_code, "$")
        return error(exc.status_code, field, f"{exc.detail}: {request.method} {request.url.path[:200]}")

    @app.exception_handler(MessageRejected)
    async def _rejected(_: Request, exc: MessageRejected) -> JSONResponse:
        return error(422, exc.field, exc.reason)

    @app.middleware("http")
    async def _trace(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
        request.state.trace_id = request.headers.get("x-trace-id") or new_trace_id()
        with trace_context(request.state.trace_id):
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

    @app.get("/sweep-intent", tags=["orders"], dependencies=[scope(Scope.ORDERS_READ)])
    async def pull(
        after: str | None = Query(default=None, description="cursor from the previous page; omit to start"),
        limit: int = Query(default=100, ge=1, le=1000),
    ) -> dict[str, Any]:
        """Idempotent pull: the same cursor always returns the same orders, in creation order."""
        after_id = decode_cursor(after)
        rows = await orders.page_after(await backend.pool(), after_id, limit)
        next_id = rows[-1]["id"] if rows else after_id
        return {"orders": [order_view(r) for r in rows], "next_cursor": encode_cursor(next_id), "count": len(rows)}

    @app.post("/balances", status_code=202, tags=["balances"], responses={422: {"description": "refused"}},
              openapi_extra=bodies(BalanceEvent, xml="a camt.052/053 report (Finastra JSON is accepted too)"),
              dependencies=[scope(Scope.BALANCES_WRITE)])
    async def post_balances(request: Request, idempotency_key: IdempotencyKey = None) -> Response:
        """A native ``BalanceEvent`` (JSON), a camt.052/053 report (XML) or Finastra balances (JSON).

        Everything in the body is checked first; only then is every event appended to
        ``balance_events``, where the shards apply it in order.
        """
        return await idempotent(backend.pool, request, idempotency_key, lambda: _append_balances(request))

    async def _append_balances(request: Request) -> JSONResponse:
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
                kafka_clients.headers(trace_id=e.trace_id or trace_id, schema_version=BALANCE_EVENT_VERSION),
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

    async def _transition(order_id: str, wanted: OrderStatus, request: Request) -> JSONResponse:
        body = await request.body()
        reason = (decode(TransitionBody, body).reason or None) if body.strip() else None
        if len(order_id) > MAX_ORDER_ID or "\x00" in order_id:
            return error(404, "order_id", f"no order {order_id[:80]!r}")  # could never have been issued
        try:
            row, changed = await orders.transition(await backend.pool(), order_id, wanted, reason)
        except OrderNotFound:
            return error(404, "order_id", f"no order {order_id!r}")
        except IllegalTransition as exc:
            return error(409, "status", str(exc))
        log.info("order %s -> %s", order_id, row["status"], extra={"order_id": order_id, "trace_id": row["trace_id"]})
        return JSONResponse({"order_id": order_id, "status": row["status"], "changed": changed,
                             "trace_id": row["trace_id"]})

    @app.post("/sweep-intent/{order_id}/ack", tags=["orders"], openapi_extra=bodies(TransitionBody, required=False),
              dependencies=[scope(Scope.ORDERS_WRITE)])
    async def ack(order_id: str, request: Request, idempotency_key: IdempotencyKey = None) -> Response:
        """The Bank-Connector executed the order (SENT -> ACK); repeating it is harmless."""
        return await idempotent(backend.pool, request, idempotency_key,
                                lambda: _transition(order_id, OrderStatus.ACK, request))

    @app.post("/sweep-intent/{order_id}/fail", tags=["orders"], openapi_extra=bodies(TransitionBody, required=False),
              dependencies=[scope(Scope.ORDERS_WRITE)])
    async def fail(order_id: str, request: Request, idempotency_key: IdempotencyKey = None) -> Response:
        """The Bank-Connector could not execute the order (SENT -> FAILED); body {"reason": "..."}."""
        return await idempotent(backend.pool, request, idempotency_key,
                                lambda: _transition(order_id, OrderStatus.FAILED, request))

    @app.get("/accounts/{account_id}/position", tags=["accounts"], dependencies=[scope(Scope.BALANCES_READ)])
    async def position(account_id: str) -> JSONResponse:
        pos = await backend.shards.position(account_id)
        if pos is None:
            return error(404, "account_id", f"no live position for {account_id!r}")
        return JSONResponse(pos)

    @app.post("/risk/var/recompute", status_code=202, tags=["risk"],
              openapi_extra=bodies(RecomputeRequest, required=False), dependencies=[scope(Scope.RISK)])
    async def var_recompute(request: Request, idempotency_key: IdempotencyKey = None) -> Response:
        """Start a VaR recompute on the Ray pool; poll the returned job id."""
        return await idempotent(backend.pool, request, idempotency_key, lambda: _start_recompute(request))

    async def _start_recompute(request: Request) -> JSONResponse:
        body = await request.body()
        spec = decode(RecomputeRequest, body) if body.strip() else RecomputeRequest()
        if backend.risk_jobs is None:
            return error(503, "$", "the VaR scheduler is not running")
        job_id = await backend.risk_jobs.submit(spec.accounts, spec.window, spec.confidence)
        return JSONResponse({"job_id": job_id, "status": "queued"}, status_code=202)

    @app.get("/risk/var/recompute/{job_id}", tags=["risk"], dependencies=[scope(Scope.RISK)])
    async def var_recompute_status(job_id: str) -> JSONResponse:
        """queued | running | done (with counts) | failed (with the error)."""
        job = await backend.risk_jobs.status(job_id) if backend.risk_jobs is not None else None
        if job is None:
            return error(404, "job_id", f"no VaR job {job_id!r}")
        return JSONResponse(job)

    @app.get("/accounts/{account_id}/balances/{event_id}", tags=["accounts"],
             dependencies=[scope(Scope.BALANCES_READ)])
    async def stored_balance(account_id: str, event_id: str) -> JSONResponse:
        """A stored balance event with its raw message decrypted (stored encrypted under a Vault data key)."""
        row = await balances.get_one(await backend.pool(), account_id, event_id)
        if row is None:
            return error(404, "event_id", f"no balance event {event_id!r} for account {account_id!r}")
        raw = row["raw_event"]
        if is_envelope(raw):
            try:
                raw = await asyncio.to_thread(backend.cipher.decrypt, raw, row_context(account_id, event_id))
            except EnvelopeError as exc:
                log.error("stored raw event cannot be decrypted: %s", exc, extra={"account_id": account_id})
                return error(500, "raw_event", str(exc))
        return JSONResponse({
            "account_id": account_id,
            "event_id": event_id,
            "as_of_ts": iso_z(row["as_of_ts"]),
            "applied": row["applied"],
            "decided": row["decided_ts"] is not None,
            "raw_event": raw,
        })

    bodies.install(app)
    return app
