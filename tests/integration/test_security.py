"""Security on the real OpenBao (Vault Transit), Kafka and Postgres: signed orders, key rotation,
JWT scopes on every endpoint, raw events encrypted at rest and read back through the API, and
BSA/AML tags travelling with each order."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from actors import kafka_clients
from serve_app.rest.api import Backend, build_app
from tests.integration.conftest import LocalShards, Pipeline, new_accounts, register
from tests.integration.kafka_tools import read_from
from tests.integration.test_api import balance
from treasury.auth import Scope, mint_token
from treasury.envelope import is_envelope
from treasury.keyring import Keyring, VaultKeyring
from treasury.signing import SignatureInvalid, sign_orders, verify_order

pytestmark = pytest.mark.integration
CLI = [sys.executable, "-m", "serve_app.cli"]


@pytest.fixture
async def app(stack, pipeline: Pipeline) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    """The REST app with no default credentials: each test says which token it presents."""
    backend = Backend(stack.settings(), LocalShards(pipeline.worker))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(backend)), base_url="http://api") as c:
        yield c
    await backend.close()


def bearer(keyring: Keyring, stack, *scopes: Scope) -> dict[str, str]:  # type: ignore[no-untyped-def]
    token = mint_token(keyring, stack.settings().token_signing_key, "bank-connector", [s.value for s in scopes])
    return {"Authorization": f"Bearer {token}"}


async def test_orders_are_signed_tagged_and_raw_events_encrypted(  # type: ignore[no-untyped-def]
        stack, app: httpx.AsyncClient, pipeline: Pipeline, keyring: Keyring, tmp_path: Path) -> None:
    [a] = new_accounts(min_balance_usd=Decimal("1000000"), aml_tags={"kyc_tier": "A", "purpose": "CASH-SWEEP"})
    await register(pipeline.pool, [a], var_usd=Decimal("8000"))
    headers = bearer(keyring, stack, Scope.BALANCES_WRITE, Scope.BALANCES_READ, Scope.ORDERS_READ)
    posted = await app.post("/balances", json=balance(a.account_id, "sec-1", available_usd="10000000.1234"),
                            headers=headers)
    assert posted.status_code == 202, posted.text
    await pipeline.drain([a.account_id], events=1)

    [row] = await pipeline.orders_for([a.account_id])
    order = dict(row["payload"])
    keys = keyring.public_keys(stack.settings().order_signing_key)
    assert order["signature"].startswith("vault:v") and verify_order(order, keys) == order["signing_key_version"]
    assert order["aml_tags"] == {"kyc_tier": "A", "purpose": "CASH-SWEEP"}
    with pytest.raises(SignatureInvalid):
        verify_order({**order, "amount_usd": str(Decimal(order["amount_usd"]) + 1)}, keys)

    # the Kafka message carries the same signed payload, and the signature in its headers
    [msg] = [m for m in read_from(pipeline.bootstrap, "sweep_intent", pipeline.intent_start, expect=1, settle=1)
             if m.key() == row["order_id"].encode()]
    published = json.loads(msg.value())
    hdrs = kafka_clients.header_map(msg.headers())
    assert verify_order(published, keys) and hdrs["signature"] == order["signature"]
    assert hdrs["signing_key_version"] == str(order["signing_key_version"])
    assert hdrs["schema_version"] == "sweep_order/1.2.0"

    # the REST pull hands out the signed order too
    page = (await app.get("/sweep-intent", params={"after": None}, headers=headers)).json()
    pulled = next((o for o in page["orders"] if o["order_id"] == row["order_id"]), None)
    if pulled is None:  # the ledger holds other tests' orders: page until ours
        cursor = None
        while pulled is None:
            page = (await app.get("/sweep-intent", params={"limit": 1000, **({"after": cursor} if cursor else {})},
                                  headers=headers)).json()
            pulled = next((o for o in page["orders"] if o["order_id"] == row["order_id"]), None)
            cursor = page["next_cursor"]
    assert pulled["status"] == "SENT" and verify_order(pulled, keys)

    # raw event: ciphertext in the database, plaintext only through the API
    stored = await pipeline.pool.fetchval(
        "SELECT raw_event FROM balance WHERE account_id = $1 AND event_id = 'sec-1'", a.account_id)
    assert is_envelope(stored) and "10000000.1234" not in json.dumps(stored)
    assert stored["wrapped_key"].startswith("vault:v")
    read = await app.get(f"/accounts/{a.account_id}/balances/sec-1", headers=headers)
    assert read.status_code == 200, read.text
    assert read.json()["raw_event"]["available_usd"] == "10000000.1234" and read.json()["decided"] is True
    missing = await app.get(f"/accounts/{a.account_id}/balances/nope", headers=headers)
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "event_id"

    # `treasury-orch verify`: valid, then a tampered copy
    env = {**stack.env(), "PATH": "/usr/bin:/bin"}
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps({"orders": [pulled], "next_cursor": "c1.x", "count": 1}))
    bad.write_text(json.dumps({**order, "source_account": "SOMEONE-ELSE"}))
    ok = subprocess.run([*CLI, "verify", str(good)], env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert all(json.loads(line)["valid"] for line in ok.stdout.splitlines())
    refused = subprocess.run([*CLI, "verify", str(bad)], env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "does not match the order's content" in refused.stdout


async def test_rotation_keeps_old_orders_verifiable(stack, keyring: Keyring, pipeline: Pipeline,  # type: ignore[no-untyped-def]
                                                    app: httpx.AsyncClient, tmp_path: Path) -> None:
    assert isinstance(keyring, VaultKeyring)
    key = stack.settings().order_signing_key
    [a] = new_accounts(min_balance_usd=Decimal("1000000"))
    await register(pipeline.pool, [a], var_usd=Decimal("8000"))
    headers = bearer(keyring, stack, Scope.BALANCES_WRITE)
    assert (await app.post("/balances", json=balance(a.account_id, "rot-1"), headers=headers)).status_code == 202
    await pipeline.drain([a.account_id], events=1)
    keyring.rotate(key)
    later = balance(a.account_id, "rot-2", available_usd="30000000", as_of_ts=datetime.now(UTC).isoformat())
    assert (await app.post("/balances", json=later, headers=headers)).status_code == 202
    await pipeline.drain([a.account_id], events=2)
    first, second = [dict(r["payload"]) for r in await pipeline.orders_for([a.account_id])]
    assert second["signing_key_version"] == first["signing_key_version"] + 1
    keys = keyring.public_keys(key)
    assert verify_order(first, keys) == first["signing_key_version"]
    assert verify_order(second, keys) == second["signing_key_version"]
    # offline verification with exported public keys (what QuantEngine can do without Vault access)
    exported = tmp_path / "keys.json"
    exported.write_text(json.dumps({str(v): base64.b64encode(k).decode() for v, k in keys.items()}))
    orders_file = tmp_path / "orders.json"
    orders_file.write_text(json.dumps([first, second]))
    done = subprocess.run([*CLI, "verify", str(orders_file), "--public-keys", str(exported)],
                          env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.count('"valid": true') == 2, done.stdout + done.stderr


@pytest.mark.parametrize("method,path,needed", [
    ("GET", "/sweep-intent", Scope.ORDERS_READ),
    ("POST", "/balances", Scope.BALANCES_WRITE),
    ("POST", "/sweep-intent/0192f0c0-0000-7000-8000-000000000001/ack", Scope.ORDERS_WRITE),
    ("POST", "/sweep-intent/0192f0c0-0000-7000-8000-000000000001/fail", Scope.ORDERS_WRITE),
    ("GET", "/accounts/ACC/position", Scope.BALANCES_READ),
    ("GET", "/accounts/ACC/balances/e1", Scope.BALANCES_READ),
    ("POST", "/risk/var/recompute", Scope.RISK),
    ("GET", "/risk/var/recompute/job-1", Scope.RISK),
])
async def test_every_endpoint_requires_its_scope(stack, app: httpx.AsyncClient, keyring: Keyring,  # type: ignore[no-untyped-def]
                                                 method: str, path: str, needed: Scope) -> None:
    anonymous = await app.request(method, path)
    assert anonymous.status_code == 401 and anonymous.json()["error"]["field"] == "Authorization"
    assert "missing Authorization" in anonymous.json()["error"]["reason"]
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    others = [s for s in Scope if s is not needed]
    denied = await app.request(method, path, headers=bearer(keyring, stack, *others))
    assert denied.status_code == 403 and f"lacks scope '{needed.value}'" in denied.json()["error"]["reason"]
    allowed = await app.request(method, path, headers=bearer(keyring, stack, needed))
    assert allowed.status_code not in (401, 403), allowed.text


async def test_public_ops_endpoints_need_no_token(app: httpx.AsyncClient) -> None:
    assert (await app.get("/healthz")).status_code == 200
    spec = (await app.get("/openapi.json")).json()
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


def test_a_large_batch_is_signed_in_several_transit_calls(stack, keyring: Keyring) -> None:  # type: ignore[no-untyped-def]
    """Vault refuses one request with too many strings; 450 orders in one coordinator batch must still sign."""
    key = stack.settings().order_signing_key
    orders = [{"order_id": f"o-{i}", "amount_usd": f"{100000 + i}.0000"} for i in range(450)]
    signed = sign_orders(keyring, key, orders)
    keys = keyring.public_keys(key)
    assert len(signed) == 450 and all(verify_order(o, keys) for o in signed)
