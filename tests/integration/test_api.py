"""The REST app in-process (httpx's ASGI transport) on the real Kafka and Postgres.

Positions come from a real in-process ShardWorker; the same app runs under Ray Serve in
``test_ray_system``. Error bodies always name the field.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from serve_app.rest.api import MAX_BODY_BYTES, Backend, build_app, decode_cursor, encode_cursor
from tests.integration.camt_samples import camt053, finastra
from tests.integration.conftest import LocalShards, Pipeline, new_accounts, register

pytestmark = pytest.mark.integration


def balance(account: str, event_id: str = "a1", **changes: object) -> dict[str, object]:
    body: dict[str, object] = {"event_id": event_id, "account_id": account, "as_of_ts": datetime.now(UTC).isoformat(),
                               "kind": "INTRADAY", "available_usd": "10000000", "projected_outflows_24h_usd": "2000000"}
    body.update(changes)
    return body


async def test_post_balance_to_ack(api: httpx.AsyncClient, pipeline: Pipeline) -> None:
    [a] = new_accounts(min_balance_usd=Decimal("1000000"))
    await register(pipeline.pool, [a], var_usd=Decimal("8000"))
    start = (await api.get("/sweep-intent", params={"limit": 1})).json()
    assert set(start) == {"orders", "next_cursor", "count"}

    r = await api.post("/balances", json=balance(a.account_id), headers={"x-trace-id": "api-trace-1"})
    assert r.status_code == 202, r.text
    assert r.json()["trace_id"] == "api-trace-1" and r.headers["x-trace-id"] == "api-trace-1"
    [where] = r.json()["events"]
    assert where["partition"] in range(12) and where["offset"] >= 0 and where["event_id"] == "a1"
    await pipeline.drain([a.account_id], events=1)

    [row] = await pipeline.orders_for([a.account_id])
    cursor = encode_cursor(row["release_seq"] - 1)  # the pull pages by release sequence
    page = (await api.get("/sweep-intent", params={"after": cursor, "limit": 1})).json()
    assert page["count"] == 1 and page["orders"][0]["order_id"] == row["order_id"]
    assert page["orders"][0]["status"] == "SENT" and page["orders"][0]["trace_id"] == "api-trace-1"
    assert decode_cursor(page["next_cursor"]) == row["release_seq"]

    pos = (await api.get(f"/accounts/{a.account_id}/position")).json()
    # the order counts as pending, as it does for the next decision (issue 16: the view and the decision agree)
    assert pos["available_usd"] == "10000000" and pos["pending_sweeps_usd"] == str(row["amount_usd"]) == "8400000.0000"
    assert pos["excess_usd"] == "600000.0000"
    assert (await api.get("/accounts/NOBODY/position")).status_code == 404

    exposition = (await api.get("/metrics")).text
    assert 'treasury_swept_usd_total{product="TBILL_4W"}' in exposition
    assert "sweep_decision_latency_seconds_bucket" in exposition and 'treasury_orders{status="SENT"}' in exposition
    # lag for every partition the shard owns, also those it has not consumed from since its start
    assert all(f'treasury_consumer_lag{{partition="{p}"}}' in exposition for p in range(12)), exposition

    oid = row["order_id"]
    failed = await api.post(f"/sweep-intent/{oid}/fail", json={"reason": "account frozen"})
    assert failed.status_code == 200 and failed.json()["status"] == "FAILED"
    stored = await pipeline.pool.fetchrow("SELECT failure_reason, failed_ts FROM sweep_order WHERE order_id = $1", oid)
    assert stored["failure_reason"] == "account frozen" and stored["failed_ts"] is not None
    late_ack = await api.post(f"/sweep-intent/{oid}/ack")
    assert late_ack.status_code == 409 and late_ack.json()["error"]["field"] == "status"


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        (b"{", "$", "malformed JSON"),
        (b'{"event_id": "x"}', "account_id", "Field required"),
        ("balance", "available_usd", "decimal"),
        ("eur", "currency", "only USD"),
        ("unknown", "account_id", "unknown account"),
    ],
)
async def test_post_balance_refusals_name_the_field(
    api: httpx.AsyncClient, pipeline: Pipeline, body: object, field: str, reason: str
) -> None:
    [a] = new_accounts()
    await register(pipeline.pool, [a])
    content = {
        "balance": balance(a.account_id, available_usd="ten"),
        "eur": balance(a.account_id, currency="EUR"),
        "unknown": balance("UNKNOWN-ACCT"),
    }.get(body) if isinstance(body, str) else None  # type: ignore[call-overload]
    r = await (api.post("/balances", json=content) if content is not None else api.post("/balances", content=body))
    assert r.status_code == 422
    assert r.json()["error"]["field"] == field and reason in r.json()["error"]["reason"]


async def test_transition_bodies_and_limits(api: httpx.AsyncClient) -> None:
    assert (await api.post("/sweep-intent/x/fail", content=b"{nope")).json()["error"]["reason"].startswith("malformed")
    assert (await api.post("/sweep-intent/x/fail", json={"reason": 5})).json()["error"]["field"] == "reason"
    assert (await api.post("/sweep-intent/x/ack", json={})).status_code == 404
    big = await api.post("/balances", content=b" " * (MAX_BODY_BYTES + 1))  # REST_MAX_BODY_BYTES, default
    assert big.status_code == 413 and "limit" in big.json()["error"]["reason"]
    for bad in ("garbage", "c1.!!!", "c1.LTE"):
        r = await api.get("/sweep-intent", params={"after": bad})
        assert r.status_code == 422 and r.json()["error"]["field"] == "after"
    assert (await api.get("/sweep-intent", params={"limit": 5000})).json()["error"]["field"] == "limit"


async def test_health_and_readiness(api: httpx.AsyncClient) -> None:
    assert (await api.get("/healthz")).json() == {"status": "ok"}
    ready = await api.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"postgres": "ok", "shards": "ok"}
    openapi = (await api.get("/openapi.json")).json()
    assert {"/sweep-intent", "/balances", "/sweep-intent/{order_id}/ack"} <= set(openapi["paths"])


async def test_dependencies_down_answer_503_not_500(stack, auth_headers: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    settings = stack.settings(database_url="postgresql://treasury@127.0.0.1:1/treasury")
    backend = Backend(settings, LocalShards(None))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(backend)), base_url="http://api",
                                 headers=auth_headers) as c:
        ready = await c.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["postgres"].startswith("down") and ready.json()["checks"]["shards"].startswith(
            "down")
        pull = await c.get("/sweep-intent")
        assert pull.status_code == 503 and "retry" in pull.json()["error"]["reason"]


async def test_post_camt_and_finastra_bodies(api: httpx.AsyncClient, pipeline: Pipeline) -> None:
    [a] = new_accounts()
    await register(pipeline.pool, [a], var_usd=Decimal("1000"))
    camt = await api.post("/balances", content=camt053(a.account_id), headers={"content-type": "application/xml"})
    assert camt.status_code == 202, camt.text
    assert camt.json()["count"] == 2 and {e["account_id"] for e in camt.json()["events"]} == {a.account_id}
    fin = await api.post("/balances", content=finastra(a.account_id), headers={"content-type": "application/json"})
    assert fin.status_code == 202 and fin.json()["count"] == 1
    await pipeline.drain([a.account_id], events=3)
    rows = await pipeline.balances_for([a.account_id])
    assert sorted((r["balance_code"] or "-", str(r["avail_usd"]), str(r["booked_usd"])) for r in rows) == [
        ("-", "2500000.0000", "2400000.0000"), ("CLAV", "10000000.0000", "None"), ("CLBD", "None", "9000000.0000")]
    # the statement's available close drove a sweep; the later Finastra balance sees it pending
    [order] = await pipeline.orders_for([a.account_id])
    assert order["amount_usd"] == Decimal("10000000.0000") and order["product"] == "FED_RRP"  # no projection yet
    again = await api.post("/balances", content=camt053(a.account_id), headers={"content-type": "application/xml"})
    assert again.status_code == 202  # a re-sent file: new message id, same balances, decided again as duplicates


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        (b"<Document><nope/></Document>", "$", "unsupported format"),
        (b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x "xx"><!ENTITY y "&x;&x;">]><d>&y;</d>', "$", ""),
        (b"<Document", "$", ""),
    ],
)
async def test_bad_xml_is_refused_whole(api: httpx.AsyncClient, body: bytes, field: str, reason: str) -> None:
    r = await api.post("/balances", content=body, headers={"content-type": "application/xml"})
    assert r.status_code == 422 and r.json()["error"]["field"] == field and reason in r.json()["error"]["reason"]


async def test_a_file_with_one_unknown_account_sends_nothing(api: httpx.AsyncClient, pipeline: Pipeline) -> None:
    [a] = new_accounts()
    await register(pipeline.pool, [a])
    mixed = camt053(a.account_id).replace(b"</BkToCstmrStmt>", camt053("NOT-REGISTERED").split(
        b"<BkToCstmrStmt>")[1].split(b"</GrpHdr>")[1].split(b"</BkToCstmrStmt>")[0] + b"</BkToCstmrStmt>")
    r = await api.post("/balances", content=mixed, headers={"content-type": "application/xml"})
    assert r.status_code == 422 and "NOT-REGISTERED" in r.json()["error"]["reason"]
    await pipeline.step()
    assert await pipeline.balances_for([a.account_id]) == []


async def test_var_jobs_without_a_scheduler(api: httpx.AsyncClient) -> None:
    r = await api.post("/risk/var/recompute")
    assert r.status_code == 503 and "scheduler" in r.json()["error"]["reason"]
    assert (await api.get("/risk/var/recompute/x")).status_code == 404
    bad = await api.post("/risk/var/recompute", json={"accounts": ["has space"]})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "accounts.0"
