"""The coordinator's exactly-once rules, in-process on the real Kafka and Postgres."""

from __future__ import annotations

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


@pytest.fixture
def reply_lost_once(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The next write commits on the real Postgres, then its caller sees the connection drop,
    as when Postgres is killed between the commit and its reply (the chaos run found this)."""
    real, lost = orders.insert_new, []

    async def commit_then_lose_reply(conn, new_orders):  # type: ignore[no-untyped-def]
        result = await real(conn, new_orders)
        if not lost:
            lost.extend(o.decision_key for o in new_orders)
            raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
        return result

    monkeypatch.setattr(orders, "insert_new", commit_then_lose_reply)
    return lost


def intent_keys_after(stack, start: dict[int, int], expect: int) -> list[str]:  # type: ignore[no-untyped-def]
    return [(m.key() or b"").decode() for m in read_from(stack.kafka_bootstrap, "sweep_intent", start,
                                                          expect=expect, settle=1.5)]


async def submit_losing_the_reply(  # type: ignore[no-untyped-def]
        stack, pool: asyncpg.Pool, keyring: Keyring) -> tuple[Coordinator, dict[int, int], NewOrder]:
    """A running coordinator whose submit of one order committed, then raised to its caller;
    returns it, where ``sweep_intent`` stood before, and the order."""
    [a] = new_accounts()
    await register(pool, [a])
    coordinator = make_coordinator(stack, pool, keyring)
    await coordinator.start()
    start = high_watermarks(stack.kafka_bootstrap, "sweep_intent")
    o = order(a.account_id, 1)  # submit signs it
    with pytest.raises(asyncpg.ConnectionDoesNotExistError):
        await coordinator.submit([o])
    return coordinator, start, o


async def test_a_retried_submit_publishes_an_order_whose_reply_was_lost_once(  # type: ignore[no-untyped-def]
        stack, pool: asyncpg.Pool, keyring: Keyring, reply_lost_once: list[str]) -> None:
    coordinator, start, o = await submit_losing_the_reply(stack, pool, keyring)
    assert reply_lost_once == [o.decision_key] and await pool.fetchval(
        "SELECT status FROM sweep_order WHERE order_id = $1", o.order_id) == "NEW"

    retried = await coordinator.submit([o])  # the shard retries its batch against the same coordinator
    assert [r.created for r in retried] == [False]
    await poll_until(lambda: coordinator.settle(0.05), lambda: sent(pool, [o.order_id]), timeout=30)
    await coordinator.submit([o])  # and a second retry publishes nothing more
    await coordinator.settle(0.2)
    assert intent_keys_after(stack, start, expect=1).count(o.order_id) == 1


async def test_an_order_whose_reply_was_lost_is_published_even_if_never_submitted_again(  # type: ignore[no-untyped-def]
        stack, pool: asyncpg.Pool, keyring: Keyring, reply_lost_once: list[str]) -> None:
    coordinator, start, o = await submit_losing_the_reply(stack, pool, keyring)

    async def settle_and_recheck() -> None:
        await coordinator.settle(0.05)
        await coordinator.recheck_in_doubt()

    await poll_until(settle_and_recheck, lambda: sent(pool, [o.order_id]), timeout=30)
    assert intent_keys_after(stack, start, expect=1).count(o.order_id) == 1


async def test_an_order_another_coordinator_inserted_is_not_published_again(  # type: ignore[no-untyped-def]
        stack, pool: asyncpg.Pool, keyring: Keyring) -> None:
    """Two pipelines on one ledger (the test suite runs an in-process one beside the Ray system)
    decide the same event: only the coordinator whose write inserted the order publishes it."""
    [a] = new_accounts()
    await register(pool, [a])
    first, second = make_coordinator(stack, pool, keyring), make_coordinator(stack, pool, keyring)
    start = high_watermarks(stack.kafka_bootstrap, "sweep_intent")
    o = order(a.account_id, 1)  # submit signs it
    assert [r.created for r in await first.submit([o])] == [True]
    assert [r.created for r in await second.submit([o])] == [False]
    await poll_until(lambda: first.settle(0.05), lambda: sent(pool, [o.order_id]), timeout=30)
    await second.settle(0.2)
    assert intent_keys_after(stack, start, expect=1).count(o.order_id) == 1
