"""The console's read routes on the real ledger (Kafka, Postgres, OpenBao; an in-process shard): an
account's position with the projection a decision would use, the newest orders with their decision,
the VaR backtest of seeded closes, and a what-if that writes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.integration.conftest import Pipeline, new_accounts, register

pytestmark = pytest.mark.integration

# Daily closes whose operating flow is small but for one large loss: a VaR exception to plot.
CLOSE_FLOWS = [120_000, -80_000, 50_000, -30_000, 90_000, -60_000, 40_000, -20_000, 70_000, -50_000,
               30_000, -2_500_000, 60_000, -40_000, 20_000, -10_000, 80_000, -70_000, 10_000, -5_000]


def balance(account: str, event_id: str, **changes: object) -> dict[str, object]:
    body: dict[str, object] = {"event_id": event_id, "account_id": account, "as_of_ts": datetime.now(UTC).isoformat(),
                               "kind": "INTRADAY", "available_usd": "10000000", "projected_outflows_24h_usd": "2000000"}
    body.update(changes)
    return body


async def post_closes(http: httpx.AsyncClient, account: str, flows: list[int] = CLOSE_FLOWS) -> list[str]:
    """One CLBD close a day, ending yesterday, each the last plus its flow; returns the days."""
    start = datetime.now(UTC).replace(hour=23, minute=59, second=0, microsecond=0) - timedelta(days=len(flows) + 1)
    level, days = 50_000_000, []
    for i, flow in enumerate([0, *flows]):
        level += flow
        at = start + timedelta(days=i)
        r = await http.post("/balances", json={"event_id": f"close-{i}", "account_id": account,
                                               "as_of_ts": at.isoformat(), "kind": "PRIOR_DAY", "balance_code": "CLBD",
                                               "booked_usd": str(level)})
        assert r.status_code == 202, r.text
        days.append(at.date().isoformat())
    return days


async def wait_stored(pipeline: Pipeline, account: str, rows: int) -> None:
    async def done() -> bool:
        return len(await pipeline.balances_for([account])) >= rows
    from tests.integration.kafka_tools import poll_until
    await poll_until(pipeline.step, done, 60)


async def test_accounts_and_orders_show_the_position_projection_and_decision(
        api: httpx.AsyncClient, pipeline: Pipeline) -> None:
    [a] = new_accounts(min_balance_usd=Decimal("1000000"))
    await register(pipeline.pool, [a], var_usd=Decimal("8000"))
    assert (await api.post("/balances", json=balance(a.account_id, "c1"))).status_code == 202
    await pipeline.drain([a.account_id], events=1)
    [order] = await pipeline.orders_for([a.account_id])

    listed = (await api.get("/accounts")).json()
    [mine] = [x for x in listed["accounts"] if x["account_id"] == a.account_id]
    assert mine["position"]["available_usd"] == "10000000" and mine["position"]["pending_sweeps_usd"] == "8400000.0000"
    assert mine["projection_usd"] == "2000000.0000" and mine["projection_source"] == "last_seen"
    assert mine["min_balance_usd"] == "1000000.0000" and listed["count"] == len(listed["accounts"])

    page = (await api.get("/orders", params={"account_id": a.account_id})).json()
    [o] = page["orders"]
    assert o["order_id"] == order["order_id"] and o["status"] == "SENT" and "SENT" in o["status_history"]
    assert o["decision"]["reason"] == "within_limit" and "VaR" in o["decision"]["explanation"]
    assert o["decision"]["inputs"]["projection_source"] == "event"
    assert (await api.get("/orders", params={"account_id": a.account_id, "status": "FAILED"})).json()["count"] == 0
    newest = (await api.get("/orders", params={"limit": 2})).json()["orders"]
    assert len(newest) <= 2 and newest[0]["order_id"] >= newest[-1]["order_id"]  # UUIDv7: newest first


async def test_a_what_if_decides_with_changed_keys_and_writes_nothing(api: httpx.AsyncClient,
                                                                     pipeline: Pipeline) -> None:
    [a] = new_accounts()
    await register(pipeline.pool, [a], var_usd=Decimal("8000"))
    assert (await api.post("/balances", json=balance(a.account_id, "w1", available_usd="5000000"))).status_code == 202
    await pipeline.drain([a.account_id], events=1)
    before = len(await pipeline.orders_for([a.account_id]))
    r = await api.post(f"/accounts/{a.account_id}/what-if",
                       json={"set": {"LIQ_BUFFER_PCT": 0.9}, "available_usd": "20000000"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["changed"] == {"LIQ_BUFFER_PCT": 0.9}
    assert body["live"]["buffer_usd"] == "600000.0000" and body["what_if"]["buffer_usd"] == "1800000.0000"
    assert Decimal(body["live"]["amount_usd"]) - Decimal(body["what_if"]["amount_usd"]) == Decimal("1200000")
    assert body["what_if"]["inputs"]["available_usd"] == "20000000.0000"
    assert len(await pipeline.orders_for([a.account_id])) == before
    assert (await api.post("/accounts/NOBODY/what-if", json={})).status_code == 404


async def test_the_var_backtest_plots_the_closes_against_the_var_of_the_days_before(
        api: httpx.AsyncClient, pipeline: Pipeline) -> None:
    [a] = new_accounts()
    await register(pipeline.pool, [a])
    days = await post_closes(api, a.account_id)
    await wait_stored(pipeline, a.account_id, len(days))
    body: dict[str, Any] = (await api.get(f"/accounts/{a.account_id}/var/backtest")).json()
    assert [d["date"] for d in body["days"]] == days[1:]
    assert [d["flow_usd"] for d in body["days"]] == [float(f) for f in CLOSE_FLOWS]
    assert body["window"] == 10 and body["window_asked"] == 250  # 20 days of flows: half of them
    big = body["days"][CLOSE_FLOWS.index(-2_500_000)]
    assert big["exception"] and big["var_usd"] == 80_000  # the worst loss of the ten days before it
    assert body["report"]["exceptions"] == 1 and body["report"]["observations"] == 10
    assert (await api.get("/accounts/NOBODY/var/backtest")).status_code == 404
