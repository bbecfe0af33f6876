"""The coordinator's exactly-once rules, in-process on the real Kafka and Postgres."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import pytest

from actors import kafka_clients
from actors.coordinator import Coordinator, published_order_ids
from storage import orders
from storage.orders import NewOrder
from tests.integration.conftest import new_accounts, register
from tests.integration.kafka_tools import high_watermarks, poll_until, read_from
from treasury.ids import new_order_id
from treasury.keyring import Keyring
from treasury.signing import sign_orders


def make_coordinator(stack, pool: asyncpg.Pool, keyring: Keyring) -> Coordinator:  # type: ignore[no-untyped-def]
    return Coordinator(pool, kafka_clients.producer(stack.kafka_bootstrap), stack.kafka_bootstrap, keyring=keyring,
                       signing_key=stack.settings().order_signing_key)

pytestmark = pytest.mark.integration


def order(account: str, n: int) -> NewOrder:
    oid, now = new_order_id(), datetime.now(UTC)
    return NewOrder(oid, f"{account}:c{n}", account, Decimal("250000"), "FED_RRP", now, now,
                    {"order_id": oid, "source_account": account}, {"reason": "test"}, f"trace-{n}")


async def sent(pool: asyncpg.Pool, ids: list[str]) -> bool:
    statuses = await pool.fetch("SELECT status FROM sweep_order WHERE order_id = ANY($1::varchar[])", ids)
    return bool(statuses) and all(r["status"] == "SENT" for r in statuses)


async def test_restart_then_retried_submit_publishes_each_order_once(  # type: ignore[no-untyped-def]
        stack, pool: asyncpg.Pool, keyring: Keyring) -> None:
    [a] = new_accounts()
    await register(pool, [a])
    start = high_watermarks(stack.kafka_bootstrap, "sweep_intent")
    lost, also_lost = order(a.account_id, 1), order(a.account_id, 2)
    async with pool.acquire() as conn:  # written by a coordinator that died before publishing
        await orders.insert_new(conn, [lost, also_lost])

    fresh = make_coordinator(stack, pool, keyring)
    assert (await fresh.start())["republished"] >= 2
    ids = [lost.order_id, also_lost.order_id]
    await poll_until(lambda: fresh.settle(0.05), lambda: sent(pool, ids), timeout=30)
    # only then does Ray re-send the call that was in flight when the old coordinator died
    results = await fresh.submit([lost, also_lost])
    assert [r.created for r in results] == [False, False]
    await fresh.settle(0.2)

    # a coordinator started now finds both on the topic and publishes nothing again
    again = make_coordinator(stack, pool, keyring)
    await again.start()
    msgs = read_from(stack.kafka_bootstrap, "sweep_intent", start, expect=2, settle=1.5)
    keys = [(m.key() or b"").decode() for m in msgs]
    assert sorted(k for k in keys if k in ids) == sorted(ids)


async def test_start_marks_orders_already_on_the_topic_as_sent(  # type: ignore[no-untyped-def]
        stack, pool: asyncpg.Pool, keyring: Keyring) -> None:
    [a] = new_accounts()
    await register(pool, [a])
    o = order(a.account_id, 1)
    async with pool.acquire() as conn:
        await orders.insert_new(conn, [o])
    # published, but the process died before it could mark the order SENT
    p = kafka_clients.producer(stack.kafka_bootstrap)
    p.produce("sweep_intent", key=o.order_id.encode(), value=kafka_clients.dumps(o.payload))
    assert p.flush(10) == 0
    since = int(o.created_ts.timestamp() * 1000) - 60_000
    assert o.order_id in published_order_ids(stack.kafka_bootstrap, since)
    start = high_watermarks(stack.kafka_bootstrap, "sweep_intent")
    coordinator = make_coordinator(stack, pool, keyring)
    summary = await coordinator.start()
    assert summary["reconciled"] >= 1 and await sent(pool, [o.order_id])
    await coordinator.settle(0.2)
    later = read_from(stack.kafka_bootstrap, "sweep_intent", start, expect=0, settle=1.0)
    assert o.order_id.encode() not in [m.key() for m in later]


async def test_an_order_committed_by_a_call_that_then_failed_is_published_once(  # type: ignore[no-untyped-def]
        stack, pool: asyncpg.Pool, keyring: Keyring) -> None:
    [a] = new_accounts()
    await register(pool, [a])
    coordinator = make_coordinator(stack, pool, keyring)
    await coordinator.start()
    start = high_watermarks(stack.kafka_bootstrap, "sweep_intent")
    o = order(a.account_id, 1)
    o = dataclasses.replace(o, payload=sign_orders(keyring, stack.settings().order_signing_key, [o.payload])[0])
    # The first submit's transaction committed, then Postgres went away before the reply: the
    # call raised to the shard, nothing was published, and the shard retries its batch against
    # the same, still running coordinator (seen in the chaos run that kills Postgres).
    async with pool.acquire() as conn:
        await orders.insert_new(conn, [o])

    retried = await coordinator.submit([o])
    assert [r.created for r in retried] == [False]
    await poll_until(lambda: coordinator.settle(0.05), lambda: sent(pool, [o.order_id]), timeout=30)
    await coordinator.submit([o])  # and a second retry publishes nothing more
    await coordinator.settle(0.2)
    keys = [(m.key() or b"").decode() for m in read_from(stack.kafka_bootstrap, "sweep_intent", start, expect=1,
                                                          settle=1.5)]
    assert keys.count(o.order_id) == 1
