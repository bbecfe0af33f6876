"""The console's pure parts (issue 20 point 2): its page and files, its headers, what its scripts may not
do, and the payloads of its read routes that need no ledger. The browser's view of the same, on the
real stack: tests/integration/test_console_browser.py; the routes on the ledger:
tests/integration/test_console_api.py.
"""

from __future__ import annotations

import json
import re
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import httpx
import jwt
import pytest

from serve_app.rest.api import Backend, build_app
from serve_app.rest.routes import console
from tests.unit.test_docs_offline import is_local, links
from tests.unit.test_grafana_dashboard import exported_names, metric_names
from treasury.auth import AuthError, Caller, Scope
from treasury.metrics import LATENCY_BUCKETS, ShardMetrics
from treasury.settings import PolicyConfig, RuntimeSettings

CONSOLE_DIR = Path(console.__file__).resolve().parents[2] / "console"


def bearer(*scopes: str) -> dict[str, str]:
    """An unsigned JWT with these scopes: the stand-in verifier reads its claims (the real check: test_security)."""
    token = jwt.encode({"sub": "tester", "scope": " ".join(scopes), "exp": int(time.time()) + 600},
                       "not-a-secret-only-a-test-key-of-32b", algorithm="HS256")
    return {"Authorization": f"Bearer {token}"}


class Verifier:
    """Checks the route's scope against the token's claims, without a signature."""

    def verify(self, authorization: str | None, needed: Scope) -> Caller:
        if not authorization:
            raise AuthError(401, "missing Authorization header")
        claims = jwt.decode(authorization.removeprefix("Bearer "), options={"verify_signature": False})
        scopes = frozenset(claims["scope"].split())
        if needed.value not in scopes:
            raise AuthError(403, f"token lacks scope {needed.value!r}")
        return Caller(claims["sub"], scopes)


class Shards:
    def __init__(self, parts: list[ShardMetrics]) -> None:
        self.parts = parts

    async def metrics(self) -> list[ShardMetrics]:
        return self.parts


class FakeBackend:
    def __init__(self, parts: list[ShardMetrics] | None = None, verifier: Verifier | None = None) -> None:
        self.verifier = verifier
        self.settings = RuntimeSettings(prometheus_port=0)
        self.policy = PolicyConfig(LIQ_BUFFER_PCT=Decimal("0.25"))
        self.config_version = 3
        self.shards = Shards(parts or [])


async def get(url: str, backend: Any = None, root_path: str = "", **kw: Any) -> httpx.Response:
    app = build_app(cast(Backend, backend or FakeBackend()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, root_path=root_path),
                                 base_url="http://api") as http:
        return await http.get(url, **kw)


async def post(url: str, body: Any, backend: Any, **kw: Any) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(cast(Backend, backend))),
                                 base_url="http://api") as http:
        return await http.post(url, json=body, **kw)


def directives(policy: str) -> dict[str, str]:
    pairs = [d.strip().partition(" ") for d in policy.split(";")]
    return {name: value for name, _, value in pairs}


@pytest.mark.parametrize("url", ["/console", "/console/", *[f"/console/{name}" for name in console.ASSETS]])
async def test_every_console_answer_sends_the_money_screen_headers(url: str) -> None:
    answer = await get(url)
    assert answer.status_code == 200, url
    h = answer.headers
    assert h["content-security-policy"] == console.CSP
    assert h["x-frame-options"] == "DENY" and h["cache-control"] == "no-store"
    assert h["referrer-policy"] == "no-referrer" and h["x-content-type-options"] == "nosniff"


def test_the_policy_allows_this_origin_only_and_no_inline_code() -> None:
    d = directives(console.CSP)
    assert d["default-src"] == "'self'" and d["script-src"] == "'self'" and d["style-src"] == "'self'"
    assert d["connect-src"] == "'self'" and d["frame-ancestors"] == "'none'" and d["object-src"] == "'none'"
    assert d["require-trusted-types-for"] == "'script'" and d["trusted-types"] == "'none'"
    assert "unsafe" not in console.CSP and "http" not in console.CSP and "*" not in console.CSP


async def test_the_page_runs_no_inline_script_or_style_and_names_only_its_own_files() -> None:
    html = (await get("/console")).text
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert scripts == [(' type="module" src="/console/app.js"', "")]
    assert "<style" not in html and " style=" not in html and not re.search(r"\son\w+\s*=", html)
    found = links(html)
    assert sorted(found) == ["/console/app.js", "/console/console.css", "/console/favicon.svg"]
    assert all(is_local(u) for u in found)


async def test_the_page_follows_the_root_path_and_escapes_it() -> None:
    html = (await get("/console", root_path="/api")).text
    assert 'src="/api/console/app.js"' in html and 'data-api-root="/api"' in html
    assert console.page('/x"><script>') .count("<script") == 1  # the root is escaped, not markup
    assert "&quot;&gt;&lt;script&gt;" in console.page('/x"><script>')


def test_the_listed_files_are_exactly_the_folder() -> None:
    on_disk = {p.name for p in CONSOLE_DIR.iterdir() if p.is_file()}
    assert on_disk == set(console.ASSETS)


async def test_only_the_listed_files_are_served() -> None:
    for name in ("../rest/api.py", "..%2Froutes%2Fconsole.py", "%2e%2e/api.py", "index.html", "nope.js"):
        assert (await get(f"/console/{name}")).status_code == 404, name


def test_scripts_import_only_each_other_and_name_no_host() -> None:
    for path in CONSOLE_DIR.glob("*.js"):
        text = path.read_text(encoding="utf-8")
        for target in re.findall(r"""^\s*import\s[^;]*?from\s+["']([^"']+)["']""", text, re.M | re.S):
            assert target.startswith("./") and target[2:] in console.ASSETS, (path.name, target)
        urls = re.findall(r"[a-z]+://[^\s\"'`]+", text)
        assert set(urls) <= {"http://www.w3.org/2000/svg"}, (path.name, urls)  # a namespace name, never fetched


@pytest.mark.parametrize("sink", ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                                  "new Function", "setAttribute(\"on", "localStorage", "javascript:"])
def test_no_script_turns_text_into_markup_or_code(sink: str) -> None:
    for path in CONSOLE_DIR.glob("*.js"):
        assert sink not in path.read_text(encoding="utf-8"), (path.name, sink)


def test_the_stylesheet_and_the_icon_load_nothing() -> None:
    css = (CONSOLE_DIR / "console.css").read_text(encoding="utf-8")
    assert "url(" not in css and "@import" not in css
    icon = (CONSOLE_DIR / "favicon.svg").read_text(encoding="utf-8")
    assert "<script" not in icon and "href" not in icon and "url(" not in icon


def test_the_charts_promql_names_only_metrics_the_service_exports() -> None:
    exported = exported_names()
    for chart, exprs in console.PROMQL.items():
        for label, expr in exprs.items():
            names = metric_names(expr)
            assert names and names <= exported, (chart, label, names - exported)
    used = {n for exprs in console.PROMQL.values() for e in exprs.values() for n in metric_names(e)}
    assert used == {"treasury_swept_usd_total", "treasury_var_bps", "sweep_decision_latency_seconds_bucket"}


def test_quantiles_from_the_histogram_interpolate_as_prometheus_does() -> None:
    empty = [0] * (len(LATENCY_BUCKETS) + 1)
    assert console.quantile_from_buckets(empty, 0.5) is None
    counts = empty.copy()
    counts[0] = 10  # all ten in (0, 1 ms]
    assert console.quantile_from_buckets(counts, 0.5) == pytest.approx(0.0005)
    counts = empty.copy()
    counts[3], counts[4] = 50, 50  # (5, 10] ms and (10, 25] ms
    assert console.quantile_from_buckets(counts, 0.5) == pytest.approx(0.01)
    assert console.quantile_from_buckets(counts, 0.95) == pytest.approx(0.01 + 0.015 * 0.9)
    counts = empty.copy()
    counts[-1] = 4  # beyond the last bound
    assert console.quantile_from_buckets(counts, 0.95) == LATENCY_BUCKETS[-1]


def test_own_series_merge_every_shard() -> None:
    a = ShardMetrics({"FED_RRP": Decimal("5")}, var_bps={"A": 2.0})
    b = ShardMetrics({"FED_RRP": Decimal("7"), "TBILL_4W": Decimal("1")}, var_bps={"B": 9.5})
    b.latency_counts[2] = 4
    series = console.own_series([a, b], 100.0)
    swept = {s["label"]: s["points"] for s in series["swept_usd"]}
    assert swept == {"FED_RRP": [[100.0, 12.0]], "TBILL_4W": [[100.0, 1.0]], "CARBON_NOTE": [[100.0, 0.0]]}
    assert series["var_bps"] == [{"label": "max over accounts", "points": [[100.0, 9.5]]}]
    latency = {s["label"]: s["points"] for s in series["latency_seconds"]}
    assert 0.0025 < latency["p50"][0][1] <= 0.005 and 0.0025 < latency["p95"][0][1] <= 0.005


def test_prometheus_matrix_becomes_series_named_by_product() -> None:
    result: list[dict[str, Any]] = [
        {"metric": {"product": "FED_RRP"}, "values": [[1.0, "3"], [2.0, "NaN"], [3.0, "4.5"]]},
        {"metric": {}, "values": [[1.0, "0.2"]]}]
    assert console.prometheus_points(result, "p50") == [
        {"label": "FED_RRP", "points": [[1.0, 3.0], [3.0, 4.5]]}, {"label": "p50", "points": [[1.0, 0.2]]}]


def test_backtest_payload_is_strict_json_with_exceptions_marked() -> None:
    flows = [100.0, -50.0, 20.0, -10.0, -400.0, 30.0, 5.0, -1.0]
    body = console.backtest_payload("A1", [f"2026-01-0{i + 1}" for i in range(8)], flows, 3, 0.99)
    json.dumps(body, allow_nan=False)  # no NaN may reach the browser
    days = body["days"]
    assert body["window"] == body["window_asked"] == 3
    assert [d["var_usd"] is None for d in days] == [True, True, True, False, False, False, False, False]
    # day 5 loses 400, far beyond the VaR of the three days before it (a loss of 50 at most)
    assert days[4]["exception"] and days[4]["var_usd"] == 50
    assert [d["exception"] for d in days] == [False, False, False, False, True, False, False, False]
    assert body["report"]["observations"] == 5 and body["report"]["exceptions"] == 1


def test_a_history_shorter_than_the_window_is_tested_on_half_of_it() -> None:
    body = console.backtest_payload("A1", [f"2026-01-0{i + 1}" for i in range(8)], [1.0, -2.0] * 4, 250, 0.99)
    assert body["window"] == 4 and body["window_asked"] == 250 and body["report"]["observations"] == 4
    assert console.backtest_payload("A1", [], [], 250, 0.99) == {
        "account_id": "A1", "window": 2, "window_asked": 250, "confidence": 0.99, "days": [], "report": None}


async def test_config_says_the_policy_in_force_and_its_version() -> None:
    body = (await get("/config")).json()
    assert body["version"] == 3 and body["source"] == "environment"
    assert body["policy"]["LIQ_BUFFER_PCT"] == "0.25" and body["policy"]["SWEEP_CUTOFFS_UTC"] == ["00:30", "15:30"]
    assert body["settings"]["business_calendar"] == "fed"
    assert body["settings"]["approval_threshold_usd"] == "25000000" and body["settings"]["approvals_required"] == 2


async def test_metric_series_fall_back_to_the_service_without_a_prometheus_of_its_own() -> None:
    answer = await get("/metrics/series", FakeBackend([ShardMetrics({"TBILL_4W": Decimal("9")})]))
    body = answer.json()
    assert answer.headers["cache-control"] == "no-store"
    assert body["source"] == "service" and body["prometheus"] is None
    assert {s["label"] for s in body["series"]["swept_usd"]} == {"FED_RRP", "TBILL_4W", "CARBON_NOTE"}
    assert body["series"]["latency_seconds"][0]["points"] == []  # no decision yet: no quantile, not 0


async def test_a_prometheus_that_does_not_answer_or_scrapes_another_service_is_not_used() -> None:
    unused = console.Prometheus(1, "127.0.0.1:8000")  # nothing listens on port 1
    assert await unused.series(600, 1000.0) is None


async def test_the_read_routes_need_their_scopes() -> None:
    backend = FakeBackend(verifier=Verifier())
    for url, needed in (("/config", "balances:read"), ("/metrics/series", "balances:read"),
                        ("/accounts", "balances:read"), ("/orders", "orders:read"),
                        ("/accounts/A1/var/backtest", "balances:read")):
        assert (await get(url, backend)).status_code == 401, url
        refused = await get(url, backend, headers=bearer("orders:write"))
        assert refused.status_code == 403 and needed in refused.json()["error"]["reason"], url
    assert (await get("/config", backend, headers=bearer("balances:read"))).status_code == 200
    refused = await post("/accounts/A1/what-if", {}, backend, headers=bearer("balances:read"))
    assert refused.status_code == 403 and "risk:run" in refused.json()["error"]["reason"]


@pytest.mark.parametrize(("body", "field"), [
    ({"set": {"LIQ_BUFFER_PCT": 2}}, "set.LIQ_BUFFER_PCT"),
    ({"set": {"NOT_A_KEY": 1}}, "set.NOT_A_KEY"),
    ({"set": {"VAR_LIMIT_BPS": True}}, "set.VAR_LIMIT_BPS"),
    ({"available_usd": "-1"}, "available_usd"),
    ({"available_usd": "1.23456"}, "available_usd"),
    ({"var_bps": -1}, "var_bps"),
    ({"extra": 1}, "extra"),
])
async def test_a_what_if_refuses_bad_keys_before_reading_the_ledger(body: dict[str, Any], field: str) -> None:
    answer = await post("/accounts/A1/what-if", body, FakeBackend())
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == field


async def test_the_read_routes_are_in_the_openapi_document_and_the_page_is_not() -> None:
    paths = (await get("/openapi.json")).json()["paths"]
    for path in ("/accounts", "/orders", "/config", "/accounts/{account_id}/var/backtest",
                 "/accounts/{account_id}/what-if", "/metrics/series"):
        assert path in paths, path
    assert not [p for p in paths if p.startswith("/console")]


def test_docs_state_the_policy_sent_and_every_route() -> None:
    root = CONSOLE_DIR.parents[1]
    doc = (root / "docs" / "console.md").read_text(encoding="utf-8")
    assert f"`{console.CSP}`" in doc
    rest = (root / "docs" / "rest-api.md").read_text(encoding="utf-8")
    for verb, path in (("GET", "/accounts"), ("GET", "/orders"), ("GET", "/config"),
                       ("GET", "/accounts/{account_id}/var/backtest"), ("POST", "/accounts/{account_id}/what-if"),
                       ("GET", "/metrics/series")):
        assert f"| `{verb}` | `{path}` |" in rest, (verb, path)
    assert "`GET /console`" in rest
    assert "docs/console.md" in (root / "README.md").read_text(encoding="utf-8")
