"""Replay is exact (issue 17 point 4) on the real Kafka and Postgres: a few accounts driven through
balances, ACKs, booked debits and a VaR result by the in-process shard; the replay of the period
with the live configuration makes the live orders again (decision keys, products, amounts); a
what-if gives other, plausible figures; a grid runs through the CLI on a local Ray.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx
import pytest

from actors.replay import Variant, parse_rates, parse_sets, run_variant, variants
from devstack.stack import StackInfo
from schemas.balance_event import BalanceCode, BalanceEvent, BalanceKind
from storage import replay_source, var_results
from storage.accounts import Account
from storage.var_results import VarResult
from tests.integration.conftest import Pipeline, new_accounts, register
from tests.integration.kafka_tools import poll_until, produce_entries, produce_events
from tests.integration.test_cli_stack import cli
from tests.integration.test_money_loop import entry
from treasury.settings import PolicyConfig

pytestmark = pytest.mark.integration
M = Decimal("1000000")
RATES = "FED_RRP=4.3,TBILL_4W=4.2,CARBON_NOTE=3.9"


def itav(account: str, event_id: str, available: Decimal, at: datetime, projection: Decimal) -> BalanceEvent:
    return BalanceEvent(event_id=event_id, account_id=account, as_of_ts=at, kind=BalanceKind.INTRADAY,
                        balance_code=BalanceCode.ITAV, available_usd=available, projected_outflows_24h_usd=projection)


async def var_row(pool: asyncpg.Pool, account: str, day: date, var_usd: Decimal) -> None:
    await var_results.upsert_many(pool, [VarResult(account, day, 250, Decimal("0.99"), 250, var_usd, None, None)])


async def entries_held(pipeline: Pipeline, accounts: list[str], n: int) -> None:
    async def done() -> bool:
        held = await pipeline.pool.fetchval(
            "SELECT count(*) FROM statement_entry WHERE account_id = ANY($1::varchar[])", accounts)
        return bool(held >= n)

    await poll_until(pipeline.step, done)


async def drive(pipeline: Pipeline, api: httpx.AsyncClient, a: Account, b: Account,
                c: Account) -> list[dict[str, object]]:
    """A: 10 M, swept, its debit booked, 1.2 M more in, swept again, then a 1 M payment out. B: 5 M,
    swept, debit booked, then its VaR jumps (a new result, pushed): the next sweep goes overnight.
    C (ESG): 8 M to CARBON_NOTE, ACKed but never booked: still pending at its next balance."""
    ids = [a.account_id, b.account_id, c.account_id]
    now = datetime.now(UTC).replace(microsecond=0)
    t1, t2, t3 = now - timedelta(minutes=40), now - timedelta(minutes=30), now - timedelta(minutes=20)
    produce_events(pipeline.bootstrap, [itav(a.account_id, "r-1", 10 * M, t1, 2 * M),
                                        itav(b.account_id, "r-1", 5 * M, t1, M),
                                        itav(c.account_id, "r-1", 8 * M, t1, M)])
    await pipeline.drain(ids, events=3)
    first = {r["account_id"]: r for r in await pipeline.orders_for(ids)}
    for row in first.values():
        assert (await api.post(f"/sweep-intent/{row['order_id']}/ack")).status_code == 200
    produce_entries(pipeline.bootstrap, [
        entry(a.account_id, "d-1", first[a.account_id]["amount_usd"], t2,
              end_to_end_id=first[a.account_id]["order_id"].replace("-", "")),
        entry(b.account_id, "d-1", first[b.account_id]["amount_usd"], t2,
              end_to_end_id=first[b.account_id]["order_id"])])
    await entries_held(pipeline, ids, 2)
    await var_row(pipeline.pool, b.account_id, now.date(), Decimal("50000"))  # B's VaR jumps: 50 k
    assert pipeline.worker.set_var(b.account_id, 50000.0, 250)  # pushed, as the recompute does
    produce_events(pipeline.bootstrap, [
        itav(a.account_id, "r-2", 10 * M - first[a.account_id]["amount_usd"] + Decimal("1200000"), t3, 2 * M),
        itav(b.account_id, "r-2", 5 * M - first[b.account_id]["amount_usd"] + 2 * M, t3, M),
        itav(c.account_id, "r-2", Decimal("8500000"), t3, M)])
    await pipeline.drain(ids, events=6)
    produce_entries(pipeline.bootstrap, [entry(a.account_id, "pay-1", M, now - timedelta(minutes=10))])
    await entries_held(pipeline, ids, 3)
    return [dict(r) for r in await pipeline.orders_for(ids)]


async def test_replay_reproduces_the_live_orders_and_a_what_if_and_a_grid_differ(
    stack: StackInfo, pipeline: Pipeline, api: httpx.AsyncClient, tmp_path: Path,
) -> None:
    a, b = new_accounts(2, min_balance_usd=M)
    [c] = new_accounts(1, min_balance_usd=M, esg_pref=True)
    ids = [a.account_id, b.account_id, c.account_id]
    await register(pipeline.pool, [a, b, c])
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    for x in ids:  # known before any balance: yesterday's VaR, 1 k
        await var_row(pipeline.pool, x, yesterday, Decimal("1000"))
    live = await drive(pipeline, api, a, b, c)
    assert sorted((o["decision_key"], o["product"], o["amount_usd"]) for o in live) == sorted([
        (f"{a.account_id}:r-1", "TBILL_4W", Decimal("8400000")),
        (f"{b.account_id}:r-1", "TBILL_4W", Decimal("3700000")),
        (f"{c.account_id}:r-1", "CARBON_NOTE", Decimal("6700000")),
        (f"{a.account_id}:r-2", "TBILL_4W", Decimal("1200000")),
        (f"{b.account_id}:r-2", "FED_RRP", Decimal("2300000")),  # B's VaR jumped: overnight
        (f"{c.account_id}:r-2", "CARBON_NOTE", Decimal("500000"))])

    today = datetime.now(UTC).date()
    source = await replay_source.load(pipeline.pool, yesterday, today, ids)
    rates = parse_rates(RATES)
    replayed = run_variant(source, Variant("live", PolicyConfig()), rates)
    assert sorted((o.decision_key, o.product, o.amount_usd) for o in replayed.orders) == sorted(
        (o["decision_key"], o["product"], o["amount_usd"]) for o in live)
    assert all(o.twin is not None for o in replayed.orders)
    figures = replayed.as_dict()
    by_account = {f["account_id"]: f for f in figures["accounts"]}  # type: ignore[attr-defined]
    assert by_account[a.account_id]["buffer_breaches"] == 1  # 0.6 M left, 1 M went out
    print(f"\nlive policy replayed: {json.dumps({k: v for k, v in figures.items() if k != 'accounts'})}")

    [wide] = variants(PolicyConfig(), parse_sets(["LIQ_BUFFER_PCT=0.6"]), [])
    what_if = run_variant(source, wide, rates)
    assert sorted((o.decision_key, o.product, o.amount_usd) for o in what_if.orders) == sorted([
        (f"{a.account_id}:r-1", "TBILL_4W", Decimal("7800000")),
        (f"{b.account_id}:r-1", "TBILL_4W", Decimal("3400000")),
        (f"{c.account_id}:r-1", "CARBON_NOTE", Decimal("6400000")),
        # A's balance would have shown 0.6 M more (7.8 M swept, not 8.4 M): 3.4 M, excess 2.4 M - 1.2 M buffer
        (f"{a.account_id}:r-2", "TBILL_4W", Decimal("1200000")),
        (f"{b.account_id}:r-2", "FED_RRP", Decimal("2600000")),  # 3.6 M: VaR breach, the whole excess overnight
        (f"{c.account_id}:r-2", "CARBON_NOTE", Decimal("500000"))])  # 8.5 M - 6.4 M pending - 1 M - 0.6 M
    wide_figures = what_if.as_dict()
    assert wide_figures["buffer_breaches"] == 0 and wide_figures["usd_days"] < figures["usd_days"]  # type: ignore[operator]
    print(f"what-if LIQ_BUFFER_PCT=0.6: {json.dumps({k: v for k, v in wide_figures.items() if k != 'accounts'})}")

    png = tmp_path / "replay.png"
    done = cli(stack, "replay", "--from", yesterday.isoformat(), "--to", today.isoformat(), "--accounts", *ids,
               "--grid", "LIQ_BUFFER_PCT=0.3,0.6,0.9", "--rates", RATES, "--png", str(png))
    assert done.returncode == 0, done.stderr
    grid = json.loads(done.stdout)
    assert [v["variant"] for v in grid["variants"]] == [f"LIQ_BUFFER_PCT={x}" for x in ("0.3", "0.6", "0.9")]
    assert grid["variants"][0]["orders"] == figures["orders"]
    assert grid["variants"][1]["orders"] == wide_figures["orders"]
    assert "3/3 policies" in done.stderr and png.stat().st_size > 10_000
    print("grid:", [(v["variant"], v["orders"], v["usd_days"], v["yield_usd"], v["buffer_breaches"])
                    for v in grid["variants"]])

    bad = cli(stack, "replay", "--from", today.isoformat(), "--to", today.isoformat(), "--set", "LIQ_BUFFER_PCT=2")
    assert bad.returncode == 2 and "LIQ_BUFFER_PCT" in bad.stderr and "Traceback" not in bad.stderr


async def test_post_risk_replay_runs_the_same_as_a_job(pipeline: Pipeline, api: httpx.AsyncClient) -> None:
    [a] = new_accounts(1, min_balance_usd=M)
    await register(pipeline.pool, [a], var_usd=Decimal("1000"))
    now = datetime.now(UTC).replace(microsecond=0)
    produce_events(pipeline.bootstrap, [itav(a.account_id, "j-1", 10 * M, now - timedelta(minutes=5), 2 * M)])
    await pipeline.drain([a.account_id], events=1)
    body = {"from": now.date().isoformat(), "accounts": [a.account_id], "grid": {"LIQ_BUFFER_PCT": [0.3, 0.5]},
            "rates": {"TBILL_4W": 4.2}}
    started = await api.post("/risk/replay", json=body)
    assert started.status_code == 202, started.text
    job_id = started.json()["job_id"]
    assert started.json()["variants"] == 2
    job: dict[str, object] = {}

    async def finished() -> bool:
        nonlocal job
        job = (await api.get(f"/risk/replay/{job_id}")).json()
        return job["status"] in {"done", "failed"}

    await poll_until(pipeline.step, finished)
    assert job["status"] == "done", job
    result = job["result"]
    assert [v["orders"] for v in result["variants"]] == [  # type: ignore[index]
        {"TBILL_4W": {"count": 1, "usd": "8400000.0000"}}, {"TBILL_4W": {"count": 1, "usd": "8000000.0000"}}]
    refused = await api.post("/risk/replay", json={**body, "set": {"SWEEP_CUTOFFS_UTC": ["10:00", "10:00"]}})
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "SWEEP_CUTOFFS_UTC", refused.text
    assert (await api.get("/risk/replay/0190a3c2-e1f4-7c3a-8000-000000000000")).status_code == 404
