"""The demo's whole money loop on the real stack: seeded past, live orders, settlements, maturities.

The demo Bank-Connector (serve_app.job.bank) runs against the in-process REST app over the test's
shard and coordinator (LocalShards; the VaR recompute answered in-process, as the scheduler would),
with its reports on the real Kafka. Accounts are this test's own, so other tests' traffic on the
shared topics does not count.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from actors import kafka_clients, var_job
from actors.shard import ShardWorker
from devstack.stack import StackInfo
from schemas.balance_event import BalanceEvent
from schemas.statement_entry import StatementEntry
from serve_app.job.bank.connector import BankConnector, send
from serve_app.job.bank.model import Order, seed_plan, unsettled_within_headroom
from serve_app.job.bank.seed import SeedSummary, seed_history, settled, stored, until
from serve_app.job.simulator import FeedSimulator, SimProfile, make_accounts
from serve_app.rest.api import Backend, build_app
from storage import accounts, var_results
from tests.integration.conftest import LocalShards, Pipeline
from tests.integration.kafka_tools import close_producer
from treasury.clock import utc_now
from treasury.ids import new_order_id

pytestmark = pytest.mark.integration
LIVE_STEPS = 4
TIMEOUT_S = 45.0


class LocalRiskJobs:
    """The VaR scheduler's two answers, in-process: the job runs inline, then its figures go to the shard."""

    def __init__(self, pool: asyncpg.Pool, worker: ShardWorker) -> None:
        self.pool, self.worker = pool, worker
        self.jobs: dict[str, dict[str, Any]] = {}

    async def submit(self, accounts: list[str] | None, window: int | None, confidence: float) -> str:
        summary = await var_job.recompute(self.pool, window=window or 250, confidence=confidence, accounts=accounts,
                                          inline_max_rows=1_000_000)
        for account_id, row in (await var_results.latest(self.pool, accounts or [])).items():
            self.worker.set_var(account_id, None if row.var_usd is None else float(row.var_usd), row.days)
        job_id = new_order_id()
        self.jobs[job_id] = {"job_id": job_id, "status": "done", "counts": summary.as_dict()}
        return job_id

    async def status(self, job_id: str) -> dict[str, Any] | None:
        return self.jobs.get(job_id)


@pytest.fixture
async def client(stack: StackInfo, pipeline: Pipeline,
                 auth_headers: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    backend = Backend(stack.settings(), LocalShards(pipeline.worker), LocalRiskJobs(pipeline.pool, pipeline.worker))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(backend)), base_url="http://api",
                                 headers=auth_headers) as c:
        yield c
    await backend.close()


@contextlib.asynccontextmanager
async def pumping(pipeline: Pipeline) -> AsyncIterator[None]:
    """The shard and the coordinator run beside the test, as their actors would."""
    stop = asyncio.Event()

    async def pump() -> None:
        while not stop.is_set():
            await pipeline.step()
            await asyncio.sleep(0)

    task = asyncio.ensure_future(pump())
    try:
        yield
    finally:
        stop.set()
        await task


async def unsettled(pool: asyncpg.Pool, ids: Sequence[str]) -> list[Order]:
    rows = await pool.fetch("SELECT order_id, account_id, product, amount_usd, status FROM sweep_order"
                            " WHERE account_id = ANY($1::varchar[]) AND status IN ('NEW', 'SENT', 'ACK')", list(ids))
    return [Order(r["order_id"], r["account_id"], r["product"], r["amount_usd"], r["status"]) for r in rows]


async def live_step(feed: FeedSimulator, connector: BankConnector, client: httpx.AsyncClient,
                    pool: asyncpg.Pool, ids: list[str], live_credits: list[StatementEntry]) -> list[Order]:
    """Maturities due booked back, one balance per account, the orders it makes checked and executed."""
    live_credits.extend(await connector.mature())
    ticked = feed.tick()  # a day's statement first, should the step cross midnight
    reports = [e for e in ticked if isinstance(e, BalanceEvent) and e.available_usd is not None]
    send(connector.producer, ticked)
    await connector.flush()
    await stored(client, reports, decided=True, timeout_s=TIMEOUT_S)
    found: dict[str, Order] = {}

    async def published() -> bool:
        pulled = await connector.pull()
        found.update((o.order_id, o) for o in pulled.orders)
        return pulled.complete

    await until("live orders published", published, TIMEOUT_S)
    # Nothing ordered twice from the same money: before the bank books anything of this step.
    assert unsettled_within_headroom(connector.bank, await unsettled(pool, ids)) == {}
    await connector.execute(list(found.values()))
    await connector.follow()
    return list(found.values())


async def test_the_demo_bank_closes_the_money_loop(client: httpx.AsyncClient, pipeline: Pipeline) -> None:
    started = time.monotonic()
    profiles: list[SimProfile] = make_accounts(5, prefix=f"Q{uuid.uuid4().hex[:8]}-")
    ids = [p.account.account_id for p in profiles]
    await accounts.upsert(pipeline.pool, [p.account for p in profiles])
    feed_bank = FeedSimulator(profiles).bank  # the openings and minimum balances of the accounts
    producer = kafka_clients.producer(pipeline.bootstrap)
    connector = BankConnector(feed_bank, client, producer)
    try:
        async with pumping(pipeline):
            summary: SeedSummary = await seed_history(profiles, connector, client, seed_plan(utc_now().date()),
                                                      timeout_s=TIMEOUT_S)
            seeded_s = time.monotonic() - started
            feed = FeedSimulator(profiles, start=utc_now() - timedelta(seconds=5), step=timedelta(milliseconds=10),
                                 bank=connector.bank)
            connector.clock = lambda: feed.now
            live: list[Order] = []
            live_credits: list[StatementEntry] = []
            for _ in range(LIVE_STEPS):
                live.extend(await live_step(feed, connector, client, pipeline.pool, ids, live_credits))
            await settled(connector, live, TIMEOUT_S)
            await _matured_live(client, connector, ids)
    finally:
        close_producer(producer)

    assert summary.breaches == [] and summary.var_accounts == len(ids)
    products = {r["product"] for r in await pipeline.pool.fetch(
        "SELECT DISTINCT product FROM sweep_order WHERE account_id = ANY($1::varchar[])", ids)}
    assert products == {"FED_RRP", "TBILL_4W", "CARBON_NOTE"}, products
    assert live_credits, "nothing matured today: the seeded past left no investment due"
    assert summary.matured > 0, "no maturity was booked back in the seeded past"
    assert live, "the maturities booked back today made no new order"
    one = (await client.get(f"/sweep-intent/{live[0].order_id}")).json()
    entry = connector.bank.booked[live[0].order_id]
    assert one["status"] == "SETTLED" and one["settlement"]["entry_id"] == entry.entry_id
    assert one["settlement"]["bank_reference"] == entry.bank_reference and one["investment"]["status"] == "OPEN"
    still_open = await unsettled(pipeline.pool, ids)
    assert still_open == [], still_open
    await _operating_entries_settle_nothing(pipeline.pool, profiles, summary)
    assert time.monotonic() - started < 90, f"seeded in {seeded_s:.0f} s, whole loop {time.monotonic() - started:.0f} s"


async def _operating_entries_settle_nothing(pool: asyncpg.Pool, profiles: Sequence[SimProfile],
                                            summary: SeedSummary) -> None:
    """The days' takings and payments are in the ledger as the business's flows, not ours: no entry
    without the order's id settled or matured anything, and no break. VaR is of those flows: nil for
    the calm accounts (they gain every day), far above the limit for the jackpot ones; the ladder
    (term investments maturing after today) is populated."""
    ids = [p.account.account_id for p in profiles]
    rows = await pool.fetch("SELECT entry_id, direction, own_transfer, refs FROM statement_entry"
                            " WHERE account_id = ANY($1::varchar[])", ids)
    operating = [r for r in rows if "-TAKINGS" in r["entry_id"] or r["entry_id"].endswith("-PAYMENTS")]
    assert len(operating) == summary.entries > 0
    assert {r["direction"] for r in operating} == {"CRDT", "DBIT"}
    assert all(r["own_transfer"] is None and list(r["refs"]) == [] for r in operating)
    assert all(r["own_transfer"] is not None for r in rows if r not in operating)  # ours, settled by reference
    matched = await pool.fetch("SELECT DISTINCT matched_by FROM statement_entry WHERE account_id = ANY($1::varchar[])"
                               " AND matched_by IS NOT NULL", ids)
    assert {r["matched_by"] for r in matched} == {"end_to_end_id"}
    breaks = await pool.fetchval("SELECT count(*) FROM settlement_break WHERE account_id = ANY($1::varchar[])", ids)
    assert breaks == 0
    var = await var_results.latest(pool, ids)
    products = await pool.fetch("SELECT account_id, array_agg(DISTINCT product) AS products FROM sweep_order"
                                " WHERE account_id = ANY($1::varchar[]) GROUP BY account_id", ids)
    by_account = {r["account_id"]: set(r["products"]) for r in products}
    for p in profiles:
        var_usd, mine = var[p.account.account_id].var_usd, by_account[p.account.account_id]
        assert var_usd is not None and (var_usd > 0 if p.volatile else var_usd == 0), (p.account.account_id, var_usd)
        term = "CARBON_NOTE" if p.account.esg_pref else "TBILL_4W"
        assert mine == ({"FED_RRP"} if p.volatile else {term}), (p.account.account_id, mine)
    ladder = await pool.fetchval("SELECT count(*) FROM investment WHERE account_id = ANY($1::varchar[])"
                                 " AND status = 'OPEN' AND product = 'TBILL_4W' AND maturity_date > $2", ids,
                                 utc_now().date())
    assert ladder > 0


async def _matured_live(client: httpx.AsyncClient, connector: BankConnector, ids: list[str]) -> None:
    """Every maturity the bank credited shows MATURED by that very credit."""
    credited = dict(connector.bank.credited)
    assert credited, "no maturity was booked back"

    async def all_matured() -> bool:
        book = {}
        for account_id in ids:
            doc = (await client.get(f"/accounts/{account_id}/investments")).raise_for_status().json()
            book.update({i["order_id"]: i for i in doc["investments"]})
        return all(book[o]["status"] == "MATURED" and book[o]["matured_entry_id"] == e.entry_id
                   for o, e in credited.items())

    await until(f"{len(credited)} investments MATURED", all_matured, TIMEOUT_S)
