"""The ledger on the real Postgres: migrations, orders, the constraints that stop double effects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest

from storage import accounts, balances, batch_read, forecasts, investments, orders, var_results
from storage.balances import BalanceRow
from storage.migrate import migrate
from storage.orders import IllegalTransition, NewOrder, OrderNotFound
from tests.integration.conftest import new_accounts, register
from treasury.ids import new_order_id
from treasury.order_status import OrderStatus

pytestmark = pytest.mark.integration
NOW = datetime(2025, 6, 10, 19, 42, 11, tzinfo=UTC)


def order(account: str, key: str, amount: str = "100000") -> NewOrder:
    oid = new_order_id()
    return NewOrder(oid, key, account, Decimal(amount), "TBILL_4W", NOW, NOW, {"order_id": oid}, {"reason": "t"}, "t1")


async def test_migrations_apply_once_and_are_idempotent(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        assert await migrate(conn) == []  # the pool already migrated
        assert await migrate(conn) == []
        versions = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
    assert next(r["version"] for r in versions) == 1
    cols = {r["column_name"]: (r["data_type"], r["numeric_precision"], r["numeric_scale"]) for r in await pool.fetch(
        "SELECT column_name, data_type, numeric_precision, numeric_scale FROM information_schema.columns"
        " WHERE table_name = 'sweep_order'")}
    assert cols["amount_usd"] == ("numeric", 20, 4) and cols["cutoff_utc"][0] == "timestamp with time zone"


async def test_write_and_read_an_order_and_its_lifecycle(pool: asyncpg.Pool) -> None:
    [a] = new_accounts()
    await register(pool, [a])
    o = order(a.account_id, f"{a.account_id}:e1", "750000.1234")
    async with pool.acquire() as conn:
        [row], inserted = await orders.insert_new(conn, [o])
        assert inserted == {o.order_id}
        # the same call again (a retry) finds the order written and inserts nothing
        again, inserted = await orders.insert_new(conn, [o])
        assert [r["order_id"] for r in again] == [o.order_id] and inserted == set()
    assert row["status"] == "NEW" and row["amount_usd"] == Decimal("750000.1234") and row["payload"] == o.payload
    assert [r["order_id"] for r in await orders.unsent(pool)].count(o.order_id) == 1
    assert await orders.mark_sent(pool, [o.order_id]) == 1
    acked, changed = await orders.transition(pool, o.order_id, "ACK")
    assert changed and acked["status"] == "ACK" and acked["acked_ts"] is not None
    again, changed = await orders.transition(pool, o.order_id, "ACK")
    assert not changed and again["status"] == "ACK"
    with pytest.raises(IllegalTransition, match="ACK -> FAILED"):
        await orders.transition(pool, o.order_id, "FAILED")
    with pytest.raises(OrderNotFound):
        await orders.transition(pool, "nope", "ACK")
    page = await orders.page_after(pool, row["release_seq"] - 1, 10)  # pulled by release sequence
    assert page[0]["order_id"] == o.order_id


async def test_unique_constraints_refuse_duplicates(pool: asyncpg.Pool) -> None:
    [a] = new_accounts()
    await register(pool, [a])
    first = order(a.account_id, f"{a.account_id}:e1")
    async with pool.acquire() as conn:
        await orders.insert_new(conn, [first])
        # the same decision again (a replay) is not written twice ...
        rows, inserted = await orders.insert_new(conn, [order(a.account_id, f"{a.account_id}:e1")])
        assert [r["order_id"] for r in rows] == [first.order_id] and inserted == set()
        # ... and the database itself refuses a second row for a decision key or an order id
        with pytest.raises(asyncpg.UniqueViolationError, match="sweep_order_decision_key_uq"):
            await conn.execute(
                "INSERT INTO sweep_order (order_id, decision_key, account_id, amount_usd, product, cutoff_utc,"
                " payload, decision) VALUES ($1, $2, $3, 1, 'FED_RRP', now(), '{}', '{}')",
                new_order_id(), first.decision_key, a.account_id)
        with pytest.raises(asyncpg.UniqueViolationError, match="sweep_order_order_id_uq"):
            await conn.execute(
                "INSERT INTO sweep_order (order_id, decision_key, account_id, amount_usd, product, cutoff_utc,"
                " payload, decision) VALUES ($1, 'other', $2, 1, 'FED_RRP', now(), '{}', '{}')",
                first.order_id, a.account_id)
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO sweep_order (order_id, decision_key, account_id, amount_usd, product, cutoff_utc,"
                " payload, decision, status) VALUES ($1, 'k2', $2, 1, 'FED_RRP', now(), '{}', '{}', 'LOST')",
                new_order_id(), a.account_id)
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await orders.insert_new(conn, [order("no-such-account", "k3")])


async def test_balance_rows_are_idempotent_per_account_and_event(pool: asyncpg.Pool) -> None:
    [a] = new_accounts()
    await register(pool, [a])
    row = BalanceRow(a.account_id, "e1", NOW, "INTRADAY", "ITAV", Decimal("1.23456"), None, "USD", None, True,
                     {"event_id": "e1"})
    first = await balances.insert_batch(pool, [row])
    assert list(first) == [(a.account_id, "e1")]
    assert await balances.insert_batch(pool, [row]) == {}
    [row_id] = first.values()
    assert await balances.existing(pool, [(a.account_id, "e1")]) == {(a.account_id, "e1"): (row_id, False)}
    await balances.mark_decided(pool, list(first.values()))
    assert await balances.existing(pool, [(a.account_id, "e1")]) == {(a.account_id, "e1"): (row_id, True)}
    latest = await balances.latest_positions(pool, [a.account_id])
    assert latest[a.account_id]["avail_usd"] == Decimal("1.2346")  # numeric(20,4) as spec section 6
    with pytest.raises(asyncpg.UniqueViolationError, match="balance_account_event_uq"):
        await pool.execute(
            "INSERT INTO balance (account_id, event_id, as_of_ts, kind, currency, applied, raw_event)"
            " VALUES ($1, 'e1', now(), 'INTRADAY', 'USD', true, '{}')", a.account_id)


async def test_analyze_samples_the_columns_queries_use_and_skips_the_opaque_documents(pool: asyncpg.Pool) -> None:
    """Migration 012: autovacuum's ANALYZE after a burst spent most of its time sorting jsonb
    documents no query filters on; the columns the planner needs keep their statistics."""
    [a] = new_accounts()
    await register(pool, [a])
    await balances.insert_batch(pool, [BalanceRow(a.account_id, "e1", NOW, "INTRADAY", "ITAV", Decimal("5"), None,
                                                  "USD", None, True, {"event_id": "e1"})])
    async with pool.acquire() as conn:
        await orders.insert_new(conn, [order(a.account_id, f"{a.account_id}:stats")])
        await conn.execute("ANALYZE balance, sweep_order")
        sampled = {(r["tablename"], r["attname"]) for r in await conn.fetch(
            "SELECT tablename, attname FROM pg_stats WHERE tablename IN ('balance', 'sweep_order')")}
    assert {("balance", "account_id"), ("balance", "as_of_ts"), ("sweep_order", "status"),
            ("sweep_order", "account_id")} <= sampled
    opaque = {("balance", "raw_event"), ("sweep_order", "payload"), ("sweep_order", "payload_head"),
              ("sweep_order", "decision"), ("sweep_order", "settlement")}
    assert sampled & opaque == set()


async def test_a_batch_reads_in_one_statement_what_the_three_reads_give(pool: asyncpg.Pool) -> None:
    """storage.batch_read runs the very SELECTs of balances.stored, orders.open_orders and
    investments.invested in one statement: on a ledger with every kind of row they return, the
    answers are the same, an account with nothing counts as nothing, and an empty batch reads empty."""
    a, b, idle = new_accounts(3)
    await register(pool, [a, b, idle])
    rows = [BalanceRow(acct.account_id, f"e{n}", NOW, "INTRADAY", "ITAV", Decimal("10.5"), None, "USD", None, True,
                       {"event_id": f"e{n}"}, decided=n == 1) for n, acct in enumerate([a, a, b])]
    await balances.insert_batch(pool, rows)
    made = [order(a.account_id, f"{a.account_id}:new", "100"), order(a.account_id, f"{a.account_id}:sent", "200"),
            order(b.account_id, f"{b.account_id}:settled", "300"), order(b.account_id, f"{b.account_id}:ack", "400.5")]
    async with pool.acquire() as conn:
        await orders.insert_new(conn, made)
    await orders.mark_sent(pool, [o.order_id for o in made[1:]])
    await orders.transition(pool, made[3].order_id, OrderStatus.ACK)
    await pool.execute("UPDATE sweep_order SET status = 'SETTLED', booked_ts = $2 WHERE order_id = $1",
                       made[2].order_id, NOW)
    await pool.execute(
        "INSERT INTO investment (order_id, account_id, product, principal_usd, value_date, maturity_date)"
        " VALUES ($1, $2, 'TBILL_4W', 300, current_date, current_date + 28)", made[2].order_id, b.account_id)

    keys = [(a.account_id, "e0"), (a.account_id, "e1"), (b.account_id, "e2"), (b.account_id, "unseen")]
    account_ids = [a.account_id, b.account_id, idle.account_id]
    booked_after = NOW - timedelta(hours=1)
    read = await batch_read.read(pool, keys, account_ids, booked_after, NOW)

    assert read.stored == await balances.stored(pool, keys)
    assert sorted(read.stored) == keys[:3] and [read.stored[k].decided for k in keys[:3]] == [False, True, False]
    assert read.stored[keys[0]].content == rows[0].content
    alone = await orders.open_orders(pool, account_ids, booked_after, NOW)
    assert sorted(read.open_orders, key=repr) == sorted(alone, key=repr)
    assert {(o.account_id, o.status, o.amount_usd) for o in read.open_orders} == {
        (a.account_id, OrderStatus.NEW, Decimal("100")), (a.account_id, OrderStatus.SENT, Decimal("200")),
        (b.account_id, OrderStatus.ACK, Decimal("400.5")), (b.account_id, OrderStatus.SETTLED, Decimal("300"))}
    assert read.invested == await investments.invested(pool, account_ids) == {b.account_id: Decimal("300")}
    assert await batch_read.read(pool, [], [], booked_after, None) == batch_read.BatchRead({}, [], {})


@pytest.mark.parametrize("write", [
    lambda conn: accounts.upsert(conn, []),
    lambda conn: forecasts.upsert_many(conn, []),
    lambda conn: var_results.upsert_many(conn, []),
], ids=["accounts", "forecasts", "var_results"])
async def test_a_write_of_no_rows_leaves_the_session_outside_any_transaction(  # type: ignore[no-untyped-def]
        stack, pool: asyncpg.Pool, write) -> None:
    # No statement cache: every call prepares afresh, as the first use of a statement on a pooled
    # connection does. A bare executemany of no rows left the Parse's implicit transaction open here.
    conn = await asyncpg.connect(stack.postgres_dsn, statement_cache_size=0)
    try:
        await write(conn)
        # seen from another session: no transaction open on this one
        assert await pool.fetchval("SELECT xact_start FROM pg_stat_activity WHERE pid = $1",
                                   conn.get_server_pid()) is None
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            assert await conn.fetchval("SHOW transaction_isolation") == "repeatable read"
    finally:
        await conn.close()
