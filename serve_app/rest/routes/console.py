"""The treasurer's console (issue 20): its page and files at ``/console``, and the read-only JSON it needs.

The page is plain HTML, vanilla JavaScript modules and CSS from ``serve_app/console/`` (packaged with
the wheel, no build step, no CDN: bank networks have no internet). It signs in with the same JWTs
as the API and calls the API with them; the API stays the authority on every scope.

Every console file answers with the headers a money screen needs: a Content-Security-Policy of this
origin only, with no inline script or style, Trusted Types required (so no string of data can ever
become markup through ``innerHTML``) and no framing; ``X-Frame-Options: DENY``; ``no-store`` (a
treasurer's figures must not stay in a shared machine's cache); no referrer; ``nosniff``.

The JSON routes here are small reads the console needs and the other resources lack; each declares
its scope like every other route (docs/rest-api.md, docs/console.md):

* ``GET /accounts``: every registered account with its live position and the 24 h outflow
  projection its next decision would use, with the projection's source.
* ``GET /orders``: the newest orders, each with its status history and the decision that made it.
* ``GET /config``: the policy in force in this replica and its live version.
* ``GET /accounts/{id}/var/backtest``: the account's daily operating flows against the VaR forecast
  of the days before each (``risk.backtest``), with the Kupiec/Christoffersen figures.
* ``POST /accounts/{id}/what-if``: one decision on the account as it stands, under changed keys
  (the policy itself, ``actors.policy.decide``; nothing is written).
* ``GET /metrics/series``: the spec's three metrics over time, from the Prometheus that ``run``
  started when it scrapes this service, else from the service's own figures (one point now).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from html import escape
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from actors.account_state import OBSERVED, decision_inputs, pending_sweeps
from actors.batch_plan import states_from_ledger
from actors.policy import DecisionInputs, decide
from risk.backtest import backtest, var_forecasts
from schemas.errors import decode
from serve_app.rest.auth import scope
from serve_app.rest.backend import Backend
from serve_app.rest.errors import error, responses
from serve_app.rest.openapi import RequestBodies
from serve_app.rest.routes.accounts import ACCOUNT_ID
from serve_app.rest.routes.orders import order_detail
from serve_app.rest.routes.risk import NOT_BOOL, PolicySet
from storage import accounts, history, orders
from treasury.auth import Scope
from treasury.clock import utc_now
from treasury.metrics import LATENCY_BUCKETS, PRODUCTS, merge
from treasury.money import fmt
from treasury.settings import ConfigError, policy_from_mapping

ROOT = "/console"
_FILES = Path(str(files("serve_app") / "console"))
_JS = "text/javascript; charset=utf-8"
# A fixed list: no path from the request ever reaches the file system.
ASSETS: dict[str, str] = {
    "app.js": _JS,
    "api.js": _JS,
    "dom.js": _JS,
    "charts.js": _JS,
    "views.js": _JS,
    "console.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",  # named by the page, so the browser asks no /favicon.ico
}
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; "
       "require-trusted-types-for 'script'; trusted-types 'none'")
HEADERS: dict[str, str] = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}
NO_STORE = {"Cache-Control": "no-store"}  # the JSON routes: money figures stay out of caches

# The three metrics of the spec, as the console charts them from Prometheus (a unit test keeps every
# metric name here among the names treasury.metrics renders, as it does for grafana/treasury.json).
PROMQL: dict[str, dict[str, str]] = {
    "swept_usd": {"by product": "sum by (product) (treasury_swept_usd_total)"},
    "var_bps": {"max over accounts": 'max(treasury_var_bps{account_id=""})'},
    "latency_seconds": {
        "p50": "histogram_quantile(0.5, sum by (le) (rate(sweep_decision_latency_seconds_bucket[2m])))",
        "p95": "histogram_quantile(0.95, sum by (le) (rate(sweep_decision_latency_seconds_bucket[2m])))",
    },
}
PROMETHEUS_TIMEOUT_S = 3.0
MAX_ACCOUNTS = 500

_RECENT_ORDERS = """
    SELECT * FROM sweep_order
    WHERE ($1::varchar IS NULL OR status = $1::varchar) AND ($2::varchar IS NULL OR account_id = $2::varchar)
    ORDER BY id DESC LIMIT $3
"""


# A what-if's figures: a decimal string of USD, at most 4 places (the document states exactly what is taken,
# so a generated client cannot send a string the server then refuses).
UsdText = Annotated[str, Field(pattern=r"^[0-9]{1,16}(\.[0-9]{1,4})?$", max_length=21)]
# Bounds inside the type, so the document states them on the number (on an optional field they would be lost).
VarBps = Annotated[float, Field(ge=0, le=1_000_000), NOT_BOOL]


class WhatIfRequest(BaseModel):
    """One decision on the account as it stands now, with some keys changed; figures left out are the live ones."""

    model_config = ConfigDict(extra="forbid")

    set: PolicySet = Field(default_factory=PolicySet, description="keys changed from the configuration in force")
    available_usd: UsdText | None = Field(default=None, description="default: the live balance")
    eod_projection_usd: UsdText | None = Field(default=None,
                                               description="default: the projection the next decision would use")
    var_bps: VarBps | None = Field(default=None, description="default: the observed VaR in bps")


def security_headers(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {**HEADERS, **(extra or {})}


def page(root: str) -> str:
    """The console's one page; ``root`` is the app's root path (escaped: it comes from the proxy in front)."""
    base = escape(root.rstrip("/") + ROOT)
    api = escape(root.rstrip("/"))
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<title>Treasury Orchestrator - console</title>\n"
        f'<link rel="icon" type="image/svg+xml" href="{base}/favicon.svg">\n'
        f'<link rel="stylesheet" href="{base}/console.css">\n'
        f'<script type="module" src="{base}/app.js"></script>\n'
        f'</head>\n<body data-api-root="{api}">\n'
        '<header><h1>Treasury console</h1><div id="who"></div></header>\n'
        '<main id="main"><noscript>The console needs JavaScript.</noscript></main>\n'
        "</body>\n</html>\n"
    )


def quantile_from_buckets(counts: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile of a histogram (non-cumulative ``counts`` per ``LATENCY_BUCKETS`` bucket, +Inf
    last), interpolated within its bucket as Prometheus's ``histogram_quantile`` does; None when empty.
    A quantile in the +Inf bucket is reported as the largest finite bound."""
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    running = 0
    bounds = [*LATENCY_BUCKETS, float("inf")]
    for i, n in enumerate(counts):
        if running + n >= rank and n > 0:
            if bounds[i] == float("inf"):
                return LATENCY_BUCKETS[-1]
            low = 0.0 if i == 0 else bounds[i - 1]
            return low + (bounds[i] - low) * (rank - running) / n
        running += n
    return LATENCY_BUCKETS[-1]


def own_series(parts: Sequence[Any], now: float) -> dict[str, list[dict[str, Any]]]:
    """The three metrics from the service's own figures (``treasury.metrics``): one point, now."""
    m = merge(parts)

    def one(label: str, value: float | None) -> dict[str, Any]:
        return {"label": label, "points": [] if value is None else [[now, value]]}

    return {
        "swept_usd": [one(p, float(m.swept_usd.get(p, Decimal(0)))) for p in PRODUCTS],
        "var_bps": [one("max over accounts", max(m.var_bps.values(), default=0.0))],
        "latency_seconds": [one("p50", quantile_from_buckets(m.latency_counts, 0.5)),
                            one("p95", quantile_from_buckets(m.latency_counts, 0.95))],
    }


def prometheus_points(result: Sequence[Mapping[str, Any]], label: str) -> list[dict[str, Any]]:
    """A ``query_range`` matrix as chart series: one per result, named by its ``product`` label if any."""
    out = []
    for item in result:
        name = str(item.get("metric", {}).get("product") or label)
        points = [[float(ts), float(v)] for ts, v in item.get("values", []) if v not in ("NaN", "+Inf", "-Inf")]
        out.append({"label": name, "points": points})
    return out


class Prometheus:
    """The operator's Prometheus on loopback, used only when it scrapes this very service (another
    stack's Prometheus on the same machine must never feed this console)."""

    def __init__(self, port: int, api_target: str) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.api_target = api_target

    async def _get(self, http: httpx.AsyncClient, path: str, params: dict[str, str]) -> Any:
        r = await http.get(f"{self.url}{path}", params=params)
        r.raise_for_status()
        body = r.json()
        if body.get("status") != "success":
            raise ValueError(str(body.get("error")))
        return body["data"]["result"]

    async def series(self, window_s: int, now: float) -> dict[str, list[dict[str, Any]]] | None:
        """The charts' series, or None when there is no Prometheus of ours (not running, another one)."""
        try:
            async with httpx.AsyncClient(timeout=PROMETHEUS_TIMEOUT_S) as http:
                ours = await self._get(http, "/api/v1/query", {
                    "query": f'up{{component="treasury-api",instance="{self.api_target}"}}'})
                if not ours:
                    return None
                step = max(5, window_s // 120)
                span = {"start": f"{now - window_s:.3f}", "end": f"{now:.3f}", "step": str(step)}
                out: dict[str, list[dict[str, Any]]] = {}
                for name, exprs in PROMQL.items():
                    out[name] = []
                    for label, expr in exprs.items():
                        result = await self._get(http, "/api/v1/query_range", {"query": expr, **span})
                        # no series yet (a quantile of no decisions): the chart still names it
                        out[name].extend(prometheus_points(result, label) or [{"label": label, "points": []}])
                return out
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None


def router(backend: Backend, bodies: RequestBodies) -> APIRouter:
    """The page and its files, then the reads it needs: one router, built in parts short enough to read."""
    api = APIRouter(tags=["console"])
    _page_routes(api)
    _read_routes(api, backend)
    _what_if_route(api, backend, bodies)
    return api


def _page_routes(api: APIRouter) -> None:
    """The page and its files, outside the OpenAPI document, each with the money screen's headers."""

    @api.get(ROOT, include_in_schema=False)
    async def console_page(request: Request) -> HTMLResponse:
        return HTMLResponse(page(request.scope.get("root_path", "")), headers=security_headers())

    @api.get(ROOT + "/", include_in_schema=False)
    async def console_slash(request: Request) -> HTMLResponse:
        return await console_page(request)

    @api.get(ROOT + "/{name}", include_in_schema=False)
    async def asset(name: str) -> FileResponse:
        if name not in ASSETS:
            raise HTTPException(404, "Not Found")
        return FileResponse(_FILES / name, media_type=ASSETS[name], headers=security_headers())


def _read_routes(api: APIRouter, backend: Backend) -> None:
    readers = [scope(backend, Scope.BALANCES_READ)]

    @api.get("/accounts", dependencies=readers, responses=responses(401, 403, 503))
    async def account_list() -> JSONResponse:
        """Every registered account (up to 500) with its live position and the projection its next decision
        would use (``projection_source``: event, last_seen, forecast:<method> or none)."""
        return JSONResponse(await accounts_payload(backend), headers=NO_STORE)

    @api.get("/orders", dependencies=[scope(backend, Scope.ORDERS_READ)], responses=responses(401, 403, 422, 503))
    async def recent_orders(
        status: str | None = Query(default=None, max_length=32, pattern=r"^[A-Z_]+$"),
        account_id: str | None = Query(default=None, max_length=64, pattern=r"^[^\x00]+$"),
        limit: int = Query(default=50, ge=1, le=500),
    ) -> JSONResponse:
        """The newest orders first, each with its status history and the decision that made it (inputs,
        reason, explanation). For the Bank-Connector's pull, use ``GET /sweep-intent``."""
        rows = await (await backend.pool()).fetch(_RECENT_ORDERS, status, account_id, limit)
        return JSONResponse({"orders": [{**order_detail(r, None), "decision": r["decision"]} for r in rows],
                             "count": len(rows)}, headers=NO_STORE)

    @api.get("/config", dependencies=readers, responses=responses(401, 403))
    async def config() -> JSONResponse:
        """The policy this replica decides what-ifs with (the shards apply the same live version) and its
        version: 0 is the environment's configuration, each live Consul change adds one."""
        return JSONResponse(config_payload(backend), headers=NO_STORE)

    @api.get("/accounts/{account_id}/var/backtest", dependencies=readers,
             responses=responses(401, 403, 404, 422, 503))
    async def var_backtest(
        account_id: str = ACCOUNT_ID,
        window: int | None = Query(default=None, ge=2, le=5000, description="days; default VAR_WINDOW_DAYS"),
        confidence: float = Query(default=0.99, gt=0.5, lt=1),
    ) -> JSONResponse:
        """Each day's operating flow against the VaR forecast from the days before it (never the day
        itself), exceptions marked, with Kupiec, Christoffersen and the Basel traffic light."""
        pool = await backend.pool()
        if not await accounts.get_many(pool, [account_id]):
            return error(404, "account_id", f"no account {account_id!r}")
        table = await history.closing_flows(pool, [account_id])
        dates = [d.isoformat() for d in table.column("date").to_pylist()]
        flows = table.column("net_flow_usd").to_pylist()
        body = backtest_payload(account_id, dates, flows, window or backend.settings.var_window_days, confidence)
        return JSONResponse(body, headers=NO_STORE)

    @api.get("/metrics/series", dependencies=readers, responses=responses(401, 403, 422, 503))
    async def metric_series(window_s: int = Query(default=1800, ge=60, le=86_400)) -> JSONResponse:
        """Swept USD by product, the largest VaR in bps and the decision latency p50/p95 over the last
        ``window_s`` seconds from the Prometheus ``run`` started (when it scrapes this service), else the
        service's own figures now (``source`` says which)."""
        s = backend.settings
        now = time.time()
        prom = Prometheus(s.prometheus_port, f"{s.serve_host}:{s.serve_port}") if s.prometheus_port else None
        series = await prom.series(window_s, now) if prom is not None else None
        if series is not None and prom is not None:
            return JSONResponse({"source": "prometheus", "prometheus": prom.url, "series": series}, headers=NO_STORE)
        return JSONResponse({"source": "service", "prometheus": None,
                             "series": own_series(await backend.shards.metrics(), now)}, headers=NO_STORE)


def _what_if_route(api: APIRouter, backend: Backend, bodies: RequestBodies) -> None:
    @api.post("/accounts/{account_id}/what-if", dependencies=[scope(backend, Scope.RISK)],
              openapi_extra=bodies(WhatIfRequest, required=False), responses=responses(401, 403, 404, 422, 503))
    async def what_if(request: Request, account_id: str = ACCOUNT_ID) -> JSONResponse:
        """The decision the policy would make on the account now, with the keys in ``set`` changed (and
        any figure overridden), beside the decision under the configuration in force. Writes nothing."""
        raw = await request.body()
        wanted = decode(WhatIfRequest, raw) if raw.strip() else WhatIfRequest()
        try:
            changed = policy_from_mapping({k: (",".join(v) if isinstance(v, list) else v)
                                           for k, v in wanted.set.model_dump(exclude_none=True).items()},
                                          base=backend.policy)
        except ConfigError as exc:
            field, _, reason = str(exc).partition(": ")
            return error(422, f"set.{field}", reason or str(exc))
        inputs = await what_if_inputs(backend, account_id, wanted)
        if isinstance(inputs, JSONResponse):
            return inputs
        return JSONResponse({
            "account_id": account_id,
            "config_version": backend.config_version,
            "changed": wanted.set.model_dump(exclude_none=True),
            "live": decide(inputs, backend.policy).as_record(),
            "what_if": decide(inputs, changed).as_record(),
        }, headers=NO_STORE)


async def accounts_payload(backend: Backend) -> dict[str, Any]:
    pool = await backend.pool()
    known = (await accounts.list_all(pool))[:MAX_ACCOUNTS]
    states = await _ledger_states(backend, [a.account_id for a in known])
    live = await asyncio.gather(*[backend.shards.position(a.account_id) for a in known])
    now = utc_now()
    out = []
    for account, position in zip(known, live, strict=True):
        state = states.get(account.account_id)
        projection, source = state.projection(None, now) if state is not None else (None, "none")
        out.append({"account_id": account.account_id, "esg_pref": account.esg_pref,
                    "min_balance_usd": fmt(account.min_balance_usd), "position": position,
                    "projection_usd": None if projection is None else fmt(projection),
                    "projection_source": source})
    return {"accounts": out, "count": len(out)}


def config_payload(backend: Backend) -> dict[str, Any]:
    s = backend.settings
    return {
        "version": backend.config_version,
        "source": "consul" if s.consul_http_addr else "environment",
        "policy": backend.policy.as_wire(),
        "settings": {"business_calendar": s.business_calendar, "var_window_days": s.var_window_days,
                     "shards": s.shards, "settlement_overdue_after_s": s.settlement_overdue_after_s,
                     "approval_threshold_usd": format(s.approval_threshold_usd, "f"),
                     "approvals_required": s.approvals_required},
    }


async def what_if_inputs(backend: Backend, account_id: str, wanted: WhatIfRequest) -> DecisionInputs | JSONResponse:
    """The policy's inputs for the account as it stands (the shard's live position when it has one, else
    the ledger's last decided balance), with the request's figures in place of the live ones; a 404 when
    there is no such account or no balance yet."""
    state = (await _ledger_states(backend, [account_id])).get(account_id)
    if state is None:
        return error(404, "account_id", f"no account {account_id!r}")
    live = await backend.shards.position(account_id)
    if live is not None:  # the shard may be ahead of the ledger's last decided balance
        state.available_usd = Decimal(str(live["available_usd"]))
        state.as_of_ts = datetime.fromisoformat(str(live["as_of_ts"]).replace("Z", "+00:00"))
        pending = Decimal(str(live["pending_sweeps_usd"]))
    else:
        if state.available_usd is None or state.as_of_ts is None:
            return error(404, "account_id", f"no balance for {account_id!r} yet")
        pending = pending_sweeps(await orders.open_orders(await backend.pool(), [account_id], state.as_of_ts),
                                 state.as_of_ts)
    if wanted.available_usd is not None:
        state.available_usd = Decimal(wanted.available_usd)
    if wanted.eod_projection_usd is not None:
        state.last_projection_usd, state.last_projection_ts = Decimal(wanted.eod_projection_usd), None
    return decision_inputs(state, None, pending_sweeps_usd=pending, now=utc_now(),
                           var_bps=OBSERVED if wanted.var_bps is None else wanted.var_bps)


def backtest_payload(account_id: str, dates: Sequence[str], flows: Sequence[float], window: int,
                     confidence: float) -> dict[str, Any]:
    """The plot's series and the report, JSON-safe (no NaN: a day without a forecast has ``var_usd`` null).

    A history no longer than the window (the demo seeds about 180 closes; VAR_WINDOW_DAYS is 250) would
    have no forecast at all, so it is tested with a window of half its days instead (at least 2), as
    the shards use what history there is; ``window`` says the one used, ``window_asked`` the one asked.
    """
    used = window if len(flows) > window else max(2, len(flows) // 2)
    forecast: list[float] = var_forecasts(flows, used, confidence).tolist() if flows else []
    days = [{"date": d, "flow_usd": f, "var_usd": None if v != v else float(v),  # NaN != NaN
             "exception": v == v and -f > v} for d, f, v in zip(dates, flows, forecast, strict=True)]
    body: dict[str, Any] = {"account_id": account_id, "window": used, "window_asked": window,
                            "confidence": confidence, "days": days, "report": None}
    if any(d["var_usd"] is not None for d in days):
        r = backtest(flows, forecast, confidence, window=used, account_id=account_id)
        body["report"] = {"observations": r.observations, "exceptions": r.exceptions,
                          "expected_exceptions": round(r.expected_exceptions, 4), "p_pof": r.p_pof,
                          "p_ind": r.p_ind, "p_cc": r.p_cc, "zone": r.zone}
    return body


async def _ledger_states(backend: Backend, account_ids: Sequence[str]) -> dict[str, Any]:
    """Accounts' state as a shard rebuilds it from the ledger (``actors.batch_plan.states_from_ledger``): what
    the console needs for the projection a decision would use and its source, and for a what-if."""
    if not account_ids:
        return {}
    pool = await backend.pool()
    async with pool.acquire() as conn:
        return await states_from_ledger(conn, account_ids)


__all__ = ["ASSETS", "CSP", "HEADERS", "PROMQL", "backtest_payload", "own_series", "page",
           "quantile_from_buckets", "router", "security_headers"]
