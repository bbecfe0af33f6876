"""Liveness, readiness and the Prometheus scrape: open to the platform, no token needed."""

from __future__ import annotations

import asyncio

import asyncpg
from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from serve_app.rest.backend import Backend
from serve_app.rest.errors import responses
from storage import entries, investments, orders
from treasury.clock import utc_now
from treasury.metrics import BookFigures, ShardMetrics, render
from treasury.settings import RuntimeSettings


class Readiness(BaseModel):
    """Each dependency's state: ``ok``, ``starting`` or ``down: <why>``."""

    status: str
    checks: dict[str, str]


def router(backend: Backend) -> APIRouter:
    api = APIRouter(tags=["ops"])

    @api.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz", responses={200: {"model": Readiness, "description": "every dependency answers"},
                                   503: {"model": Readiness, "description": "a dependency is down"}})
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

    @api.get("/metrics", response_class=PlainTextResponse, responses=responses(503))
    async def metrics() -> PlainTextResponse:
        """Prometheus exposition: the spec's metrics and the operator's, gathered for this scrape."""
        pool = await backend.pool()
        rows = await pool.fetch("SELECT status, count(*) AS n FROM sweep_order GROUP BY status")
        parts = [*await backend.shards.metrics(), ShardMetrics(config_version=backend.config_version)]
        body = render(parts, {r["status"]: int(r["n"]) for r in rows}, book=await book_figures(pool, backend.settings))
        return PlainTextResponse(body.decode(), media_type=CONTENT_TYPE_LATEST)

    return api


async def book_figures(pool: asyncpg.Pool, settings: RuntimeSettings) -> BookFigures:
    """The money loop's figures for a scrape, from the ledger (``treasury.metrics.BookFigures``)."""
    now = utc_now()
    invested, overdue_investments = await investments.book_totals(pool, now.date(), settings.maturity_grace_days)
    return BookFigures(invested, overdue_investments,
                       await orders.overdue_count(pool, now, settings.settlement_overdue_after_s),
                       await entries.break_counts(pool))
