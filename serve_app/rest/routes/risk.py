"""VaR recomputes on the Ray pool: start one, then poll it by job id."""

from __future__ import annotations

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from schemas.errors import decode
from schemas.types import AccountId
from serve_app.rest.auth import scope
from serve_app.rest.backend import Backend
from serve_app.rest.errors import error, responses
from serve_app.rest.idempotency import IdempotencyKey, idempotent
from serve_app.rest.openapi import RequestBodies
from treasury.auth import Scope

# Job ids are UUIDs (v7) the scheduler issues; any other id is simply not found (404).
JOB_ID = Path(description="the job_id the recompute answered", json_schema_extra={"format": "uuid"})


class RecomputeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    accounts: list[AccountId] | None = Field(default=None, max_length=100_000, description="default: every account")
    window: int | None = Field(default=None, ge=2, le=5000, description="days; default VAR_WINDOW_DAYS")
    confidence: float = Field(default=0.99, gt=0.5, lt=1)


def router(backend: Backend, bodies: RequestBodies) -> APIRouter:
    api = APIRouter(tags=["risk"], dependencies=[scope(backend, Scope.RISK)])

    @api.post("/risk/var/recompute", status_code=202, openapi_extra=bodies(RecomputeRequest, required=False),
              responses=responses(401, 403, 409, 422, 503))
    async def var_recompute(request: Request, idempotency_key: IdempotencyKey = None) -> Response:
        """Start a VaR recompute on the Ray pool; poll the returned job id."""
        return await idempotent(backend.pool, request, idempotency_key, lambda: start(request))

    async def start(request: Request) -> JSONResponse:
        body = await request.body()
        spec = decode(RecomputeRequest, body) if body.strip() else RecomputeRequest()
        if backend.risk_jobs is None:
            return error(503, "$", "the VaR scheduler is not running")
        job_id = await backend.risk_jobs.submit(spec.accounts, spec.window, spec.confidence)
        return JSONResponse({"job_id": job_id, "status": "queued"}, status_code=202)

    @api.get("/risk/var/recompute/{job_id}", responses=responses(401, 403, 404, 503))
    async def var_recompute_status(job_id: str = JOB_ID) -> JSONResponse:
        """queued | running | done (with counts) | failed (with the error)."""
        job = await backend.risk_jobs.status(job_id) if backend.risk_jobs is not None else None
        if job is None:
            return error(404, "job_id", f"no VaR job {job_id!r}")
        return JSONResponse(job)

    return api
