"""Four-eyes approval on the real Kafka, Postgres and OpenBao (docs/approval.md).

Orders are handed to a real ``Coordinator`` (signed by the stack's Transit, written to Postgres,
published on ``sweep_intent``); the approvers call the in-process REST app with JWTs of their own
subjects, signed by the stack's Transit key. The last test runs balances through a real shard.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from confluent_kafka import Producer

from actors import kafka_clients
from actors.coordinator import Coordinator
from actors.replay import live_open
from actors.shard import ShardWorker
from schemas.balance_event import BalanceEvent, BalanceKind
from serve_app.rest.api import Backend, build_app
from storage import orders, replay_source
from storage.migrate import discover, migrate
from storage.orders import NewOrder
from tests.integration.conftest import LocalShards, new_accounts, register
from tests.integration.kafka_tools import (
    close_producer,
    high_watermarks,
    poll_until,
    produce_events,
    read_from,
    skip_to_end,
)
from treasury.auth import Scope, mint_token
from treasury.envelope import EnvelopeCipher
from treasury.ids import new_order_id
from treasury.keyring import Keyring
from treasury.order_status import ApprovalRule
from treasury.settings import PolicyConfig
from treasury.signing import verify_order

pytestmark = pytest.mark.integration
THRESHOLD = Decimal("25000000")
RULE = ApprovalRule(THRESHOLD, 2)
APPROVER_SCOPES = [Scope.ORDERS_READ.value, Scope.ORDERS_APPROVE.value]


def big(account: str, n: int, amount: Decimal = Decimal("30000000"), cutoff_in: timedelta = timedelta(hours=2)
        ) -> NewOrder:
    oid, now = new_order_id(), datetime.now(UTC)
    return NewOrder(oid, f"{account}:big{n}", account, amount, "FED_RRP", now + cutoff_in, now,
                    {"order_id": oid, "source_account": account, "amount_usd": str(amount)}, {"reason": "test"},
                    f"trace-{oid}")


@dataclass
class Desk:
    """A coordinator with approval on, the REST app, and a client per approver."""

    stack: Any
    pool: asyncpg.Pool
    coordinator: Coordinator
    app: Any
    keyring: Keyring
    intent_start: dict[int, int]

    def client(self, subject: str, scopes: list[str] | None = None) -> httpx.AsyncClient:
        token = mint_token(self.keyring, self.stack.settings().token_signing_key, subject,
                           APPROVER_SCOPES if scopes is None else scopes)
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://api",
                                 headers={"Authorization": f"Bearer {token}"})

    async def status(self, order_id: str) -> str:
        return str(await self.pool.fetchval("SELECT status FROM sweep_order WHERE order_id = $1", order_id))

    async def publish_released(self, order_id: str) -> None:
        """Drive the coordinator as its run loop does until the order is on the topic and SENT."""
        async def step() -> None:
            await self.coordinator.release_and_expire()
            await self.coordinator.settle(0.05)

        async def sent() -> bool:
            return await self.status(order_id) == "SENT"

        await poll_until(step, sent, timeout=30)

    def published(self, order_id: str, expect: int) -> int:
        msgs = read_from(self.stack.kafka_bootstrap, "sweep_intent", self.intent_start, expect=expect, settle=1.5)
        return [(m.key() or b"").decode() for m in msgs].count(order_id)


@pytest.fixture
def producers(stack: Any) -> Iterator[Callable[[], Producer]]:
    """Producers for this test's coordinators, closed when it ends."""
    made: list[Producer] = []

    def make() -> Producer:
        made.append(kafka_clients.producer(stack.kafka_bootstrap))
        return made[-1]

    yield make
    for p in made:
        close_producer(p)


def coordinator_for(stack: Any, pool: asyncpg.Pool, keyring: Keyring, producer: Producer,
                    rule: ApprovalRule = RULE) -> Coordinator:
    return Coordinator(pool, producer, stack.kafka_bootstrap, keyring=keyring,
                       signing_key=stack.settings().order_signing_key, approval=rule)


@pytest.fixture
async def desk(stack: Any, pool: asyncpg.Pool, keyring: Keyring,
               producers: Callable[[], Producer]) -> AsyncIterator[Desk]:
    coordinator = coordinator_for(stack, pool, keyring, producers())
    await coordinator.start()
    backend = Backend(stack.settings(), LocalShards(None))
    yield Desk(stack, pool, coordinator, build_app(backend), keyring,
               high_watermarks(stack.kafka_bootstrap, "sweep_intent"))
    await coordinator.settle(0.2)
    await backend.close()


async def written(desk: Desk, *new: NewOrder) -> list[str]:
    results = await desk.coordinator.submit(list(new))
    return [r.status for r in results]


async def test_threshold_zero_is_off_and_the_threshold_itself_waits(
        stack: Any, pool: asyncpg.Pool, keyring: Keyring, producers: Callable[[], Producer]) -> None:
    [a] = new_accounts()
    await register(pool, [a])
    on = coordinator_for(stack, pool, keyring, producers())
    off = coordinator_for(stack, pool, keyring, producers(), ApprovalRule(Decimal(0), 2))
    start = high_watermarks(stack.kafka_bootstrap, "sweep_intent")
    at = big(a.account_id, 1, THRESHOLD)
    below = big(a.account_id, 2, THRESHOLD - Decimal("0.0001"))
    huge_but_off = big(a.account_id, 3, Decimal("900000000"))
    assert [r.status for r in await on.submit([at, below])] == ["AWAITING_APPROVAL", "NEW"]
    assert [r.status for r in await off.submit([huge_but_off])] == ["NEW"]
    row = await orders.get(pool, at.order_id)
    assert row is not None and row["approvals_required"] == 2 and row["release_seq"] is None
    assert row["payload"]["signature"], "an order awaiting approval is signed like every other"

    async def step() -> None:
        await on.settle(0.05)
        await off.settle(0.05)

    async def both_sent() -> bool:
        rows = await pool.fetch("SELECT status FROM sweep_order WHERE order_id = ANY($1::varchar[])",
                                [below.order_id, huge_but_off.order_id])
        return [r["status"] for r in rows] == ["SENT", "SENT"]

    await poll_until(step, both_sent, timeout=30)
    await on.release_and_expire()  # nothing released: nothing more to publish
    await on.settle(0.2)
    keys = [(m.key() or b"").decode() for m in read_from(stack.kafka_bootstrap, "sweep_intent", start, expect=2,
                                                           settle=1.5)]
    assert keys.count(below.order_id) == 1 and keys.count(huge_but_off.order_id) == 1
    assert at.order_id not in keys and await pool.fetchval(
        "SELECT status FROM sweep_order WHERE order_id = $1", at.order_id) == "AWAITING_APPROVAL"
    assert (await pool.fetchrow("SELECT approvals_required FROM sweep_order WHERE order_id = $1",
                                huge_but_off.order_id))["approvals_required"] is None


async def test_two_distinct_approvers_release_it_once_and_the_same_one_twice_changes_nothing(
        desk: Desk) -> None:
    [a] = new_accounts()
    await register(desk.pool, [a])
    o = big(a.account_id, 1)
    assert await written(desk, o) == ["AWAITING_APPROVAL"]
    alice, bob, reader = desk.client("alice@treasury"), desk.client("bob@treasury"), desk.client(
        "bank-connector", [Scope.ORDERS_READ.value, Scope.ORDERS_WRITE.value])
    async with alice, bob, reader:
        refused = await reader.post(f"/sweep-intent/{o.order_id}/approve")
        assert refused.status_code == 403 and "orders:approve" in refused.text

        queue = (await reader.get("/approvals")).json()
        [mine] = [q for q in queue["orders"] if q["order_id"] == o.order_id]
        assert mine["amount_usd"] == "30000000.0000" and mine["approvals"] == [] and mine["approvals_required"] == 2
        assert mine["account_id"] == a.account_id and mine["product"] == "FED_RRP"
        assert mine["cutoff_ts"].endswith("Z") and mine["created_ts"].endswith("Z")

        first = (await alice.post(f"/sweep-intent/{o.order_id}/approve", json={"comment": "checked the ladder"}))
        assert first.status_code == 200, first.text
        assert first.json()["changed"] is True and first.json()["status"] == "AWAITING_APPROVAL"
        again = (await alice.post(f"/sweep-intent/{o.order_id}/approve", json={"comment": "again"}))
        assert again.status_code == 200 and again.json()["changed"] is False
        assert "alice@treasury" in again.json()["reason"] and again.json()["status"] == "AWAITING_APPROVAL"
        assert [x["subject"] for x in again.json()["approvals"]] == ["alice@treasury"]
        [mine] = [q for q in (await reader.get("/approvals")).json()["orders"] if q["order_id"] == o.order_id]
        assert [(x["subject"], x["comment"]) for x in mine["approvals"]] == [("alice@treasury", "checked the ladder")]
        await desk.coordinator.release_and_expire()
        assert await desk.status(o.order_id) == "AWAITING_APPROVAL"

        second = await bob.post(f"/sweep-intent/{o.order_id}/approve")
        assert second.status_code == 200 and second.json()["changed"] is True and second.json()["status"] == "NEW"
        assert [x["subject"] for x in second.json()["approvals"]] == ["alice@treasury", "bob@treasury"]
        late = await alice.post(f"/sweep-intent/{o.order_id}/approve")  # after release: still no error, no change
        assert late.status_code == 200 and late.json()["changed"] is False
        assert (await bob.post(f"/sweep-intent/{o.order_id}/reject")).status_code == 409
        assert o.order_id not in [q["order_id"] for q in (await reader.get("/approvals")).json()["orders"]]

        await desk.publish_released(o.order_id)
        detail = (await reader.get(f"/sweep-intent/{o.order_id}")).json()
    assert desk.published(o.order_id, expect=1) == 1
    keys = desk.keyring.public_keys(desk.stack.settings().order_signing_key)
    assert verify_order(detail, keys) == detail["signing_key_version"]  # the trail is view, not signed content
    assert detail["status"] == "SENT" and detail["rejection"] is None
    assert list(detail["status_history"]) == ["AWAITING_APPROVAL", "NEW", "SENT"]
    assert [(x["subject"], x["comment"]) for x in detail["approvals"]] == [
        ("alice@treasury", "checked the ladder"), ("bob@treasury", None)]
    assert detail["status_history"]["NEW"] == detail["approvals"][1]["ts"]


async def test_a_rejection_ends_it_and_it_is_no_longer_pending(desk: Desk) -> None:
    [a] = new_accounts()
    await register(desk.pool, [a])
    o = big(a.account_id, 1)
    await written(desk, o)
    now = datetime.now(UTC)
    [pending] = await orders.open_orders(desk.pool, [a.account_id], now, now)
    assert pending.status == "AWAITING_APPROVAL" and pending.amount_usd == Decimal("30000000")
    async with desk.client("alice@treasury") as alice, desk.client("carol@treasury") as carol:
        assert (await alice.post(f"/sweep-intent/{o.order_id}/approve")).json()["changed"] is True
        no = await carol.post(f"/sweep-intent/{o.order_id}/reject", json={"comment": "x" * 1001})
        assert no.status_code == 422 and no.json()["error"]["field"] == "comment"
        no = await carol.post(f"/sweep-intent/{o.order_id}/reject", json={"comment": "duplicate of yesterday's"})
        assert no.status_code == 200 and no.json()["status"] == "REJECTED" and no.json()["changed"] is True
        assert no.json()["rejection"]["subject"] == "carol@treasury"
        after = await alice.post(f"/sweep-intent/{o.order_id}/approve", json={})
        assert after.status_code == 200 and after.json()["changed"] is False  # alice's approval stands, once
        other = await carol.post(f"/sweep-intent/{o.order_id}/approve")
        assert other.status_code == 409 and "REJECTED" in other.json()["error"]["reason"]
        assert (await alice.post("/sweep-intent/no-such-order/approve")).status_code == 404
        detail = (await alice.get(f"/sweep-intent/{o.order_id}")).json()
    assert list(detail["status_history"]) == ["AWAITING_APPROVAL", "REJECTED"]
    assert detail["rejection"]["comment"] == "duplicate of yesterday's"
    assert await orders.open_orders(desk.pool, [a.account_id], now, now) == []
    await desk.coordinator.release_and_expire()
    await desk.coordinator.settle(0.2)
    assert desk.published(o.order_id, expect=0) == 0


async def test_not_approved_by_its_cutoff_it_expires(desk: Desk) -> None:
    [a] = new_accounts()
    await register(desk.pool, [a])
    o, gone = big(a.account_id, 1), big(a.account_id, 2, cutoff_in=timedelta(seconds=-1))
    await written(desk, o, gone)
    cutoff = o.cutoff_utc
    just_before = cutoff - timedelta(microseconds=1)
    assert sum(p.amount_usd for p in await orders.open_orders(desk.pool, [a.account_id], just_before,
                                                                 just_before)) == Decimal("30000000")
    assert await orders.open_orders(desk.pool, [a.account_id], cutoff, cutoff) == []  # pending no more at cut-off

    async with desk.client("alice@treasury") as alice:
        assert (await alice.post(f"/sweep-intent/{o.order_id}/approve")).json()["changed"] is True
        late = await alice.post(f"/sweep-intent/{gone.order_id}/approve")  # its cut-off passed a second ago
        assert late.status_code == 409 and "EXPIRED" in late.json()["error"]["reason"]
        assert await desk.status(gone.order_id) == "EXPIRED"
        assert gone.order_id not in [q["order_id"] for q in (await alice.get("/approvals")).json()["orders"]]

        await desk.coordinator.release_and_expire(now=just_before)  # (other tests' orders may expire)
        assert await desk.status(o.order_id) == "AWAITING_APPROVAL"
        released, expired = await desk.coordinator.release_and_expire(now=cutoff)
        assert released == 0 and expired >= 1 and await desk.status(o.order_id) == "EXPIRED"
        detail = (await alice.get(f"/sweep-intent/{o.order_id}")).json()
        repeat = await alice.post(f"/sweep-intent/{o.order_id}/approve")
        assert repeat.status_code == 200 and repeat.json()["changed"] is False  # alice's, already on record
        async with desk.client("bob@treasury") as bob:
            assert (await bob.post(f"/sweep-intent/{o.order_id}/approve")).status_code == 409
    assert list(detail["status_history"]) == ["AWAITING_APPROVAL", "EXPIRED"]
    assert [x["subject"] for x in detail["approvals"]] == ["alice@treasury"]
    await desk.coordinator.settle(0.2)
    assert desk.published(o.order_id, expect=0) == 0


async def pull_all(client: httpx.AsyncClient, cursor: str) -> tuple[list[str], str]:
    ids: list[str] = []
    while True:
        page = (await client.get("/sweep-intent", params={"after": cursor, "limit": 1000})).json()
        ids.extend(o["order_id"] for o in page["orders"])
        cursor = page["next_cursor"]
        if page["count"] < 1000:
            return ids, cursor


async def test_a_client_that_paged_past_a_waiting_order_still_receives_it_once_released(desk: Desk) -> None:
    [a] = new_accounts()
    await register(desk.pool, [a])
    waiting, later = big(a.account_id, 1), big(a.account_id, 2, Decimal("1000000"))
    async with desk.client("bank-connector", [Scope.ORDERS_READ.value]) as bank, \
            desk.client("alice@treasury") as alice, desk.client("bob@treasury") as bob:
        _, cursor = await pull_all(bank, "")
        assert await written(desk, waiting) == ["AWAITING_APPROVAL"]
        assert await written(desk, later) == ["NEW"]  # a larger id than the waiting order's
        seen, cursor = await pull_all(bank, cursor)
        assert later.order_id in seen and waiting.order_id not in seen
        ids = {r["order_id"]: r["id"] for r in await desk.pool.fetch(
            "SELECT order_id, id FROM sweep_order WHERE order_id = ANY($1::varchar[])",
            [waiting.order_id, later.order_id])}
        assert ids[waiting.order_id] < ids[later.order_id]  # the client is past the waiting order's id

        for approver in (alice, bob):
            assert (await approver.post(f"/sweep-intent/{waiting.order_id}/approve")).status_code == 200
        again, cursor = await pull_all(bank, cursor)
        assert again == [waiting.order_id]
        assert (await pull_all(bank, cursor))[0] == []  # and only once
        await desk.publish_released(waiting.order_id)
    assert desk.published(waiting.order_id, expect=2) == 1


async def test_concurrent_verdicts_are_serialised_on_the_order(desk: Desk) -> None:
    [a] = new_accounts()
    await register(desk.pool, [a])
    both, twice, split = big(a.account_id, 1), big(a.account_id, 2), big(a.account_id, 3)
    await written(desk, both, twice, split)
    async with desk.client("alice@treasury") as alice, desk.client("bob@treasury") as bob, \
            desk.client("carol@treasury") as carol:
        answers = await asyncio.gather(alice.post(f"/sweep-intent/{both.order_id}/approve"),
                                       bob.post(f"/sweep-intent/{both.order_id}/approve"))
        assert sorted(r.json()["status"] for r in answers) == ["AWAITING_APPROVAL", "NEW"]
        assert all(r.json()["changed"] for r in answers)

        repeated = await asyncio.gather(*(alice.post(f"/sweep-intent/{twice.order_id}/approve") for _ in range(4)))
        assert sorted(r.json()["changed"] for r in repeated) == [False, False, False, True]
        assert await desk.status(twice.order_id) == "AWAITING_APPROVAL"

        answers = await asyncio.gather(alice.post(f"/sweep-intent/{split.order_id}/approve"),
                                       carol.post(f"/sweep-intent/{split.order_id}/reject"))
        assert await desk.status(split.order_id) == "REJECTED"
        assert answers[1].status_code == 200 and answers[0].status_code in (200, 409)
    count = await desk.pool.fetchval("SELECT count(*) FROM order_approval WHERE order_id = $1 AND verdict = 'APPROVE'",
                                     twice.order_id)
    assert count == 1
    await desk.publish_released(both.order_id)
    assert desk.published(both.order_id, expect=1) == 1


async def test_two_coordinators_publish_a_released_order_once(
        stack: Any, desk: Desk, pool: asyncpg.Pool, keyring: Keyring, producers: Callable[[], Producer]) -> None:
    [a] = new_accounts()
    await register(pool, [a])
    o = big(a.account_id, 1)
    await written(desk, o)
    other = coordinator_for(stack, pool, keyring, producers())
    async with desk.client("alice@treasury") as alice, desk.client("bob@treasury") as bob:
        for approver in (alice, bob):
            assert (await approver.post(f"/sweep-intent/{o.order_id}/approve")).status_code == 200
    claims = await asyncio.gather(desk.coordinator.release_and_expire(), other.release_and_expire())
    assert sum(released for released, _ in claims) >= 1

    async def step() -> None:
        await desk.coordinator.settle(0.05)
        await other.settle(0.05)
        await desk.coordinator.release_and_expire()
        await other.release_and_expire()

    async def sent() -> bool:
        return await desk.status(o.order_id) == "SENT"

    await poll_until(step, sent, timeout=30)
    assert desk.published(o.order_id, expect=1) == 1


# -- a fresh decision after expiry, through a real shard --------------------------------------------


def ev(account: str, n: int, available: str, at: datetime) -> BalanceEvent:
    return BalanceEvent(event_id=f"ev-{n}", account_id=account, as_of_ts=at, kind=BalanceKind.INTRADAY,
                        available_usd=Decimal(available), projected_outflows_24h_usd=Decimal("0"))


async def test_after_expiry_the_next_balance_decides_afresh(
        stack: Any, pool: asyncpg.Pool, keyring: Keyring) -> None:
    [a] = new_accounts()
    await register(pool, [a])  # no VaR: the whole excess to FED_RRP
    clock_now = [datetime.now(UTC)]

    def clock() -> datetime:
        return clock_now[0]

    group = f"test-approval-{new_order_id()[:8]}"
    skip_to_end(stack.kafka_bootstrap, group, "balance_events")
    producer = kafka_clients.producer(stack.kafka_bootstrap)
    coordinator = Coordinator(pool, producer, stack.kafka_bootstrap, keyring=keyring,
                              signing_key=stack.settings().order_signing_key, approval=RULE)
    worker = ShardWorker(0, 1, pool, kafka_clients.consumer(stack.kafka_bootstrap, group=group), producer,
                         coordinator, PolicyConfig(), clock=clock,
                         cipher=EnvelopeCipher(keyring, stack.settings().data_key))
    await worker.start()

    async def decided(n: int) -> None:
        async def done() -> bool:
            return bool(await pool.fetchval("SELECT count(*) FROM balance WHERE account_id = $1"
                                            " AND decided_ts IS NOT NULL", a.account_id) >= n)
        await poll_until(lambda: worker.poll_once(timeout=0.1), done, timeout=30)

    async def mine() -> list[asyncpg.Record]:
        return list(await pool.fetch("SELECT * FROM sweep_order WHERE account_id = $1 ORDER BY id", a.account_id))

    try:
        t0 = datetime.now(UTC) - timedelta(minutes=10)
        produce_events(stack.kafka_bootstrap, [ev(a.account_id, 1, "40000000", t0)])
        await decided(1)
        [first] = await mine()
        assert first["status"] == "AWAITING_APPROVAL" and first["amount_usd"] == Decimal("40000000")
        # before its cut-off the waiting order is pending: a later balance sweeps only what is new
        produce_events(stack.kafka_bootstrap, [ev(a.account_id, 2, "40500000", t0 + timedelta(minutes=1))])
        await decided(2)
        assert [r["amount_usd"] for r in await mine()] == [Decimal("40000000"), Decimal("500000")]
        # past its cut-off it counts no more, even before the coordinator has marked it EXPIRED
        clock_now[0] = first["cutoff_utc"] + timedelta(minutes=1)
        produce_events(stack.kafka_bootstrap, [ev(a.account_id, 3, "40500000", t0 + timedelta(minutes=2))])
        await decided(3)
        rows = await mine()
        assert len(rows) == 3 and rows[2]["status"] == "AWAITING_APPROVAL"
        assert rows[2]["amount_usd"] == Decimal("40000000") and rows[2]["decision_key"] == f"{a.account_id}:ev-3"
        _, expired = await coordinator.release_and_expire(now=clock_now[0])
        statuses = [r["status"] for r in await mine()]
        assert expired >= 1 and statuses == ["EXPIRED", "NEW", "AWAITING_APPROVAL"]
    finally:
        await worker.close()
        close_producer(producer)


async def test_a_replay_counts_a_rejected_order_for_nothing_from_its_rejection(desk: Desk) -> None:
    [a] = new_accounts()
    await register(desk.pool, [a])
    o = big(a.account_id, 1)
    await written(desk, o)
    async with desk.client("carol@treasury") as carol:
        assert (await carol.post(f"/sweep-intent/{o.order_id}/reject")).json()["status"] == "REJECTED"
    rejected_ts = await desk.pool.fetchval("SELECT rejected_ts FROM sweep_order WHERE order_id = $1", o.order_id)
    today = datetime.now(UTC).date()
    source = await replay_source.load(desk.pool, today, today, [a.account_id])
    [live] = [x for x in source.orders if x.order_id == o.order_id]
    assert live.failed_ts == rejected_ts
    assert live_open(live, rejected_ts - timedelta(seconds=1), set()).status == "SENT"  # pending while it waited
    assert live_open(live, rejected_ts, set()).status == "FAILED"  # nothing from its rejection on


async def test_the_coordinators_run_loop_publishes_released_orders_and_expires_late_ones(desk: Desk) -> None:
    """What the coordinator actor runs, untouched: no test step drives the release or the expiry."""
    [a] = new_accounts()
    await register(desk.pool, [a])
    o, late = big(a.account_id, 1), big(a.account_id, 2, cutoff_in=timedelta(seconds=-1))
    await written(desk, o, late)
    stop = asyncio.Event()
    running = asyncio.ensure_future(desk.coordinator.run(stop))
    try:
        async with desk.client("alice@treasury") as alice, desk.client("bob@treasury") as bob:
            for approver in (alice, bob):
                assert (await approver.post(f"/sweep-intent/{o.order_id}/approve")).status_code == 200

        async def done() -> bool:
            return (await desk.status(o.order_id), await desk.status(late.order_id)) == ("SENT", "EXPIRED")

        await poll_until(lambda: asyncio.sleep(0.05), done, timeout=30)
    finally:
        stop.set()
        await running
    assert desk.published(o.order_id, expect=1) == 1 and desk.published(late.order_id, expect=1) == 0


async def test_a_claim_is_taken_once_until_it_is_stale(desk: Desk) -> None:
    """A claim whose order stays NEW (its claimer never produced it) is taken again, but only after
    RECLAIM_AFTER_S: a claim still in flight is not taken from a live coordinator."""
    [a] = new_accounts()
    await register(desk.pool, [a])
    o = big(a.account_id, 1)
    await written(desk, o)
    async with desk.client("alice@treasury") as alice, desk.client("bob@treasury") as bob:
        for approver in (alice, bob):
            assert (await approver.post(f"/sweep-intent/{o.order_id}/approve")).status_code == 200
    assert o.order_id in [r["order_id"] for r in await orders.claim_released(desk.pool)]
    assert o.order_id not in [r["order_id"] for r in await orders.claim_released(desk.pool)]
    assert o.order_id in [r["order_id"] for r in await orders.claim_released(desk.pool, reclaim_after_s=0)]
    await desk.coordinator.start()  # what a restarted coordinator does with a claimed, unpublished order
    await desk.publish_released(o.order_id)
    assert desk.published(o.order_id, expect=1) == 1


async def test_migration_006_keeps_old_cursors_and_pages_new_orders_after_them(
        stack: Any, tmp_path: Path) -> None:
    """A ledger written before the release sequence: its orders keep their id as their place, so a
    cursor issued then still means the same rows, and orders written after come after them all."""
    for m in discover():
        if m.version < 6:
            (tmp_path / f"{m.version:03d}_{m.name}.sql").write_text(m.sql)
    conn = await asyncpg.connect(stack.postgres_dsn)
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")  # as the pool's
    try:
        await conn.execute("DROP SCHEMA IF EXISTS migration_006_check CASCADE")
        await conn.execute("CREATE SCHEMA migration_006_check")
        await conn.execute("SET search_path TO migration_006_check")
        assert await migrate(conn, tmp_path) == [1, 2, 3, 4, 5]
        await conn.execute("INSERT INTO account (account_id) VALUES ('U1')")
        old = [await conn.fetchval(
            "INSERT INTO sweep_order (order_id, decision_key, account_id, amount_usd, product, cutoff_utc, status,"
            " payload, decision) VALUES ($1, $2, 'U1', 1000000, 'FED_RRP', now(), $3, '{}', '{}') RETURNING id",
            f"old-{n}", f"U1:old-{n}", status) for n, status in enumerate(["SETTLED", "SENT", "NEW"])]
        assert 6 in await migrate(conn)  # and any later migration
        assert [r["release_seq"] for r in await conn.fetch("SELECT release_seq FROM sweep_order ORDER BY id")] == old
        new = big("U1", 1, Decimal("1000000"))
        _, inserted = await orders.insert_new(conn, [new])
        assert inserted == {new.order_id}
        page = await orders.page_after(conn, old[0], 10)  # a cursor issued before the migration
        assert [r["order_id"] for r in page] == ["old-1", "old-2", new.order_id]
        assert page[-1]["release_seq"] > max(old)
    finally:
        await conn.execute("DROP SCHEMA IF EXISTS migration_006_check CASCADE")
        await conn.close()
