"""The pull (``GET /sweep-intent``) answers the stored JSON text of each order, never decoded.

The page used to be built by decoding every payload and encoding it again; it is now assembled by
Postgres from the stored jsonb (``storage.orders.page_text_after``). What the Bank-Connector relies
on must not move: the same values under the same keys in the same order as the decoded path
(``order_view``), signatures that ``treasury-orch verify`` accepts from the very bytes served, the
order's current status, and the cursor's meaning.
"""

from __future__ import annotations

import json
import subprocess  # nosec B404
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from schemas.sweep_order import RiskChecks, SweepOrder
from serve_app.rest.api import Backend, build_app, encode_cursor
from serve_app.rest.routes.orders import order_view
from storage import orders
from storage.orders import NewOrder, insert_new
from tests.integration.conftest import LocalShards, new_accounts, register
from treasury.ids import new_order_id
from treasury.keyring import Keyring
from treasury.order_status import OrderStatus
from treasury.settings import RuntimeSettings
from treasury.signing import sign_orders, verify_order

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "serve_app.cli"]
# Strings whose JSON escaping differs between encoders (quotes, backslash, controls, non-ASCII, U+2028).
AWKWARD = {"quote": 'say "hi"', "slash": "a\\b/c", "ctl": "line\nbreak\ttab\x01", "intl": "Zürich €",
           "sep": "a\u2028b", "html": "</script>"}


@pytest.fixture
async def api(stack, auth_headers: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    """The app in-process; the pull needs Postgres only, no shard."""
    backend = Backend(stack.settings(), LocalShards(None))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(backend)), base_url="http://api",
                                 headers=auth_headers) as c:
        yield c
    await backend.close()


def pairs(raw: str | bytes) -> Any:
    """The JSON with every object as its list of (key, value) pairs: equal means same keys, same order."""
    return json.loads(raw, object_pairs_hook=list)


async def signed_orders(pool: asyncpg.Pool, keyring: Keyring, settings: RuntimeSettings, n: int) -> list[str]:
    [a] = new_accounts()
    await register(pool, [a])
    now = datetime.now(UTC)
    payloads = [SweepOrder(
        order_id=new_order_id(), source_account=a.account_id, target_product="TBILL_4W",
        amount_usd=Decimal("1234567.8900") + i, cutoff_utc=now + timedelta(hours=4),
        risk_checks=RiskChecks(var_limit_bps=Decimal(50), observed_var_bps=Decimal("12.5"), var_history_days=250),
        created_ts=now, decision_key=f"{a.account_id}:pull-text-{i}", trace_id=f"t-{i}",
        aml_tags=AWKWARD if i % 2 else {},
    ).model_dump(mode="json", exclude={"signature", "signing_key_version"}) for i in range(n)]
    signed = sign_orders(keyring, settings.order_signing_key, payloads)
    cutoff = now + timedelta(hours=4)
    new = [NewOrder(p["order_id"], p["decision_key"], a.account_id, Decimal(p["amount_usd"]), "TBILL_4W", cutoff, now,
                    p, {"action": "SWEEP"}, p["trace_id"]) for p in signed]
    async with pool.acquire() as conn:
        await insert_new(conn, new)
    return [p["order_id"] for p in signed]


async def test_page_is_the_decoded_path_and_verifies_from_its_bytes(
    api: httpx.AsyncClient, pool: asyncpg.Pool, keyring: Keyring, stack_settings: RuntimeSettings, stack,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    ids = await signed_orders(pool, keyring, stack_settings, 5)
    first = await pool.fetchval("SELECT min(release_seq) FROM sweep_order WHERE order_id = ANY($1)", ids)
    await orders.mark_sent(pool, ids[1:2])  # the page shows each order's status as it is now
    after = encode_cursor(first - 1)

    r = await api.get("/sweep-intent", params={"after": after, "limit": 5})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    rows = await orders.page_after(pool, first - 1, 5)
    decoded = {"orders": [order_view(row) for row in rows], "next_cursor": encode_cursor(rows[-1]["release_seq"]),
               "count": len(rows)}
    assert pairs(r.content) == pairs(json.dumps(decoded))  # same values, same keys, same key order
    page = r.json()
    assert [o["order_id"] for o in page["orders"]] == ids
    assert [o["status"] for o in page["orders"]] == ["NEW", "SENT", "NEW", "NEW", "NEW"]
    assert page["orders"][1]["aml_tags"] == AWKWARD
    keys = keyring.public_keys(stack_settings.order_signing_key)
    assert all(verify_order(o, keys) for o in page["orders"])

    # `treasury-orch verify` reads the very bytes the Bank-Connector received
    served = tmp_path / "page.json"
    served.write_bytes(r.content)
    env = {**stack.env(), "PATH": "/usr/bin:/bin"}
    ok = subprocess.run([*CLI, "verify", str(served)], env=env, capture_output=True, text=True, timeout=60)  # nosec B603
    assert ok.returncode == 0, ok.stderr
    assert [json.loads(line)["order_id"] for line in ok.stdout.splitlines()] == ids

    # the same cursor, the same page; the next cursor goes on from the last order
    again = await api.get("/sweep-intent", params={"after": after, "limit": 5})
    assert [o["order_id"] for o in again.json()["orders"]] == ids
    two = (await api.get("/sweep-intent", params={"after": after, "limit": 2})).json()
    rest = (await api.get("/sweep-intent", params={"after": two["next_cursor"], "limit": 3})).json()
    assert [o["order_id"] for o in two["orders"] + rest["orders"]] == ids and two["count"] == 2


async def test_an_empty_page_keeps_the_cursor(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    last = await pool.fetchval("SELECT coalesce(max(release_seq), 0) FROM sweep_order")
    cursor = encode_cursor(last + 1000)
    r = await api.get("/sweep-intent", params={"after": cursor})
    assert r.status_code == 200
    assert pairs(r.content) == pairs(json.dumps({"orders": [], "next_cursor": cursor, "count": 0}))


async def test_text_page_of_payloads_no_sweep_order_has(pool: asyncpg.Pool) -> None:
    """A payload that is empty or already holds ``status`` gets the row's status once, as ``order_view``.

    Written in a transaction that is rolled back: such rows must not stay in a ledger other tests page through.
    """
    [a] = new_accounts()
    await register(pool, [a])
    now = datetime.now(UTC)
    odd: list[dict[str, Any]] = [{}, {"status": "FORGED", "order_id": "x"}, {"order_id": "y", "n": [1, 2.50]}]
    new = [NewOrder(new_order_id(), f"{a.account_id}:odd-{i}", a.account_id, Decimal(1), "TBILL_4W", now, now, p,
                    {}, None) for i, p in enumerate(odd)]
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            await insert_new(conn, new)
            first = await conn.fetchval("SELECT min(release_seq) FROM sweep_order WHERE order_id = ANY($1)",
                                        [o.order_id for o in new])
            page = await orders.page_text_after(conn, first - 1, 3)
            rows = await orders.page_after(conn, first - 1, 3)
            # only a non-empty object without "status" gets a printed head (migration 011)
            heads = await conn.fetch("SELECT payload_head FROM sweep_order WHERE order_id = ANY($1) ORDER BY id",
                                     [o.order_id for o in new])
        finally:
            await tx.rollback()
    assert [h["payload_head"] for h in heads] == [None, None, '{"n": [1, 2.5], "order_id": "y"']
    assert page.count == 3 and page.last_seq == rows[-1]["release_seq"]
    assert json.loads(f"[{page.orders}]") == [order_view(row) for row in rows]
    assert [o["status"] for o in json.loads(f"[{page.orders}]")] == [str(OrderStatus.NEW)] * 3
