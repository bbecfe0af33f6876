"""VaR recomputes on the Ray pool, and replays of the ledger under other policies: start one, then
poll it by job id."""

from __future__ import annotations

import re
from datetime import date, timedelta
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from actors.replay_job import ReplaySpec
from schemas.errors import decode
from schemas.types import AccountId
from serve_app.rest.auth import scope
from serve_app.rest.backend import Backend
from serve_app.rest.errors import error, responses
from serve_app.rest.idempotency import IdempotencyKey, idempotent
from serve_app.rest.openapi import RequestBodies
from treasury.auth import Scope
from treasury.money import MAX_ABS_USD
from treasury.settings import ConfigError

# Job ids are UUIDs (v7) the scheduler issues; any other id is simply not found (404).
JOB_ID = Path(description="the job_id the recompute answered", json_schema_extra={"format": "uuid"})


class RecomputeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    accounts: list[AccountId] | None = Field(default=None, max_length=100_000, description="default: every account")
    window: int | None = Field(default=None, ge=2, le=5000, description="days; default VAR_WINDOW_DAYS")
    confidence: float = Field(default=0.99, gt=0.5, lt=1)


REPLAY_JOB_ID = Path(description="the job_id the replay answered", json_schema_extra={"format": "uuid"})
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# The policy keys a replay may change, typed as the REST body states them (PolicyConfig checks them again).


def _number(value: object) -> object:
    """A JSON number (the body's floats arrive as their text, ``schemas.errors.decode``: 211.0 is a whole
    number of days), never a boolean."""
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    return value


NOT_BOOL = BeforeValidator(_number)
LiqBuffer = Annotated[float, Field(ge=0, le=1), NOT_BOOL]
VarLimit = Annotated[float, Field(ge=0, le=10_000), NOT_BOOL]
LadderDays = Annotated[int, Field(ge=1, le=366), NOT_BOOL]
MinSweep = Annotated[float, Field(gt=0, le=float(MAX_ABS_USD)), NOT_BOOL]
Rate = Annotated[float, Field(ge=0, le=100), NOT_BOOL]
Cutoff = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
GRID_VALUES = 4  # per key: at most 4**4 = 256 policies in one job


class PolicySet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    LIQ_BUFFER_PCT: LiqBuffer | None = None
    VAR_LIMIT_BPS: VarLimit | None = None
    TARGET_LADDER_DAYS: LadderDays | None = None
    MIN_SWEEP_USD: MinSweep | None = None
    SWEEP_CUTOFFS_UTC: list[Cutoff] | None = Field(default=None, min_length=1, max_length=8,
                                                   json_schema_extra={"uniqueItems": True})


class PolicyGrid(BaseModel):
    model_config = ConfigDict(extra="forbid")

    LIQ_BUFFER_PCT: list[LiqBuffer] | None = Field(default=None, min_length=1, max_length=GRID_VALUES)
    VAR_LIMIT_BPS: list[VarLimit] | None = Field(default=None, min_length=1, max_length=GRID_VALUES)
    TARGET_LADDER_DAYS: list[LadderDays] | None = Field(default=None, min_length=1, max_length=GRID_VALUES)
    MIN_SWEEP_USD: list[MinSweep] | None = Field(default=None, min_length=1, max_length=GRID_VALUES)


class Rates(BaseModel):
    """Yearly rates in percent, act/360; a product not named earns 0."""

    model_config = ConfigDict(extra="forbid")

    FED_RRP: Rate | None = None
    TBILL_4W: Rate | None = None
    CARBON_NOTE: Rate | None = None


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: str = Field(alias="from", max_length=10, pattern=_DAY.pattern, json_schema_extra={"format": "date"},
                       description="the first as-of date replayed (YYYY-MM-DD)")
    days: Annotated[int, NOT_BOOL] = Field(default=1, ge=1, le=366, description="how many days from `from` (default 1)")
    accounts: list[AccountId] | None = Field(default=None, max_length=10_000, description="default: every account")
    set: PolicySet = Field(default_factory=PolicySet, description="keys changed from the live configuration")
    grid: PolicyGrid = Field(default_factory=PolicyGrid,
                             description="one policy per combination of values (a key here wins over `set`)")
    rates: Rates = Field(default_factory=Rates)


def _text(value: object) -> str:
    return ",".join(value) if isinstance(value, list) else str(value)


def replay_spec(request: ReplayRequest, backend: Backend) -> ReplaySpec:
    """The job a request asks for, over the live policy of this replica; ConfigError names a key."""
    from actors.replay import parse_rates, variants
    from actors.settlement import Terms

    try:
        start = date.fromisoformat(request.start)
    except ValueError:
        raise ConfigError(f"from: {request.start!r} is not a date (YYYY-MM-DD)") from None
    end = start + timedelta(days=request.days - 1) if date.max - start >= timedelta(days=request.days) else date.max
    grid = [(k, [str(v) for v in vs]) for k, vs in request.grid.model_dump(exclude_none=True).items()]
    grid = [(k, list(dict.fromkeys(vs))) for k, vs in grid]  # a value given twice is one policy
    sets = {k: _text(v) for k, v in request.set.model_dump(exclude_none=True).items() if k not in dict(grid)}
    rates = parse_rates(",".join(f"{k}={Decimal(str(v))}" for k, v in request.rates.model_dump(exclude_none=True)
                                 .items()))
    return ReplaySpec(start, end, request.accounts, variants(backend.policy, sets, grid, limit=GRID_VALUES ** 4),
                      rates, Terms(carbon_note_tenor_days=backend.settings.carbon_note_tenor_days))


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

    @api.post("/risk/replay", status_code=202, openapi_extra=bodies(ReplayRequest),
              responses=responses(401, 403, 409, 422, 503))
    async def replay(request: Request, idempotency_key: IdempotencyKey = None) -> Response:
        """Start a replay of the ledger under the live policy and its variants; poll the returned job id."""
        return await idempotent(backend.pool, request, idempotency_key, lambda: start_replay(request))

    async def start_replay(request: Request) -> JSONResponse:
        wanted = decode(ReplayRequest, await request.body())
        try:
            spec = replay_spec(wanted, backend)
        except ConfigError as exc:
            field, _, reason = str(exc).partition(": ")
            return error(422, field if reason else "$", reason or str(exc))
        job_id = await backend.replay_jobs.submit(spec)
        return JSONResponse({"job_id": job_id, "status": "queued", "variants": len(spec.variants)}, status_code=202)

    @api.get("/risk/replay/{job_id}", responses=responses(401, 403, 404, 503))
    async def replay_status(job_id: str = REPLAY_JOB_ID) -> JSONResponse:
        """queued | running (with progress) | done (with the figures per policy and account) | failed (with
        the error)."""
        job = await backend.replay_jobs.status(job_id)
        if job is None:
            return error(404, "job_id", f"no replay job {job_id!r}")
        return JSONResponse(job)

    return api
