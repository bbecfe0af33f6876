"""Idempotency-Key on every POST, kept in the real Postgres: a retry never acts twice."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from serve_app.rest.api import Backend, build_app, encode_cursor
from storage import idempotency
from tests.integration.conftest import LocalShards, new_accounts, register
from tests.integration.kafka_tools import high_watermarks, read_from
from tests.integration.test_api import balance

pytestmark = pytest.mark.integration


class GatedJobs:
    """A VaR scheduler stand-in whose jobs start only when the test opens the gate."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.submitted: list[list[str] | None] = []

    async def submit(self, accounts: list[str] | None, window: int | None, confidence: float) -> str:
        self.submitted.append(accounts)
        await self.gate.wait()
        return f"job-{len(self.submitted)}"

    async def status(self, job_id: str) -> dict[str, Any] | None:
        return {"job_id": job_id, "status": "queued"}


@pytest.fixture
def jobs() -> GatedJobs:
    return GatedJobs()


@pytest.fixture
async def client(stack, jobs: GatedJobs,  # type: ignore[no-untyped-def]
                 auth_headers: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    backend = Backend(stack.settings(), LocalShards(None), jobs)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(backend)), base_url="http://api",
                                 headers=auth_headers) as c:
        yield c
    await backend.close()


def key() -> dict[str, str]:
    return {"Idempotency-Key": f"k-{uuid.uuid4()}"}


async def stored(pool: asyncpg.Pool, headers: dict[str, str]) -> asyncpg.Record | None:
    return await pool.fetchrow("SELECT * FROM idempotency_key WHERE scope = 'bank-connector-test' AND idem_key = $1",
                               headers["Idempotency-Key"])


async def test_same_key_same_body_replays_the_first_answer_and_appends_once(
    client: httpx.AsyncClient, pool: asyncpg.Pool, stack  # type: ignore[no-untyped-def]
) -> None:
    [a] = new_accounts()
    await register(pool, [a])
    k, body = key(), balance(a.account_id)
    first = await client.post("/balances", json=body, headers=k)
    assert first.status_code == 202 and "Idempotent-Replayed" not in first.headers
    after_first = high_watermarks(stack.kafka_bootstrap, "balance_events")
    again = await client.post("/balances", json=body, headers=k)
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content  # the same partition and offset: nothing appended
    assert high_watermarks(stack.kafka_bootstrap, "balance_events") == after_first
    [where] = first.json()["events"]
    [sent] = read_from(stack.kafka_bootstrap, "balance_events", {where["partition"]: where["offset"]}, expect=1,
                       settle=0.2)
    assert dict(sent.headers() or [])["schema_version"] == b"balance_event/1.0.0"  # what the shards check
    row = await stored(pool, k)
    assert row is not None and row["status_code"] == 202 and row["expires_ts"] - row["created_ts"] == timedelta(
        hours=24)


async def test_same_key_with_another_body_is_refused_naming_the_header(client: httpx.AsyncClient) -> None:
    k = key()
    assert (await client.post("/sweep-intent/no-such/fail", json={"reason": "a"}, headers=k)).status_code == 404
    replay = await client.post("/sweep-intent/no-such/fail", json={"reason": "a"}, headers=k)
    assert replay.status_code == 404 and replay.headers["Idempotent-Replayed"] == "true"
    other = await client.post("/sweep-intent/no-such/fail", json={"reason": "b"}, headers=k)
    assert other.status_code == 422
    assert other.json()["error"]["field"] == "Idempotency-Key"
    assert "different request" in other.json()["error"]["reason"]
    other_path = await client.post("/sweep-intent/no-such/ack", json={"reason": "a"}, headers=k)
    assert other_path.status_code == 422 and other_path.json()["error"]["field"] == "Idempotency-Key"


async def test_a_concurrent_duplicate_gets_409_then_the_answer(
    client: httpx.AsyncClient, jobs: GatedJobs, pool: asyncpg.Pool
) -> None:
    k = key()
    jobs.gate.clear()
    first = asyncio.create_task(client.post("/risk/var/recompute", json={"window": 30}, headers=k))
    deadline = time.monotonic() + 10
    while not jobs.submitted:  # the first request is inside the scheduler, its key claimed
        assert time.monotonic() < deadline, "the first request never reached the scheduler"
        await asyncio.sleep(0.01)
    row = await stored(pool, k)
    assert row is not None and row["status_code"] is None
    duplicate = await client.post("/risk/var/recompute", json={"window": 30}, headers=k)
    assert duplicate.status_code == 409
    assert duplicate.json()["error"]["field"] == "Idempotency-Key"
    assert "in progress" in duplicate.json()["error"]["reason"]
    jobs.gate.set()
    answered = await first
    assert answered.status_code == 202 and answered.json()["job_id"] == "job-1"
    replay = await client.post("/risk/var/recompute", json={"window": 30}, headers=k)
    assert replay.json() == answered.json() and replay.headers["Idempotent-Replayed"] == "true"
    assert len(jobs.submitted) == 1


async def test_an_expired_key_is_new_again_and_expired_rows_are_purged(
    client: httpx.AsyncClient, jobs: GatedJobs, pool: asyncpg.Pool
) -> None:
    k, old = key(), key()
    assert (await client.post("/risk/var/recompute", json={"window": 30}, headers=old)).status_code == 202
    assert (await client.post("/risk/var/recompute", json={"window": 30}, headers=k)).status_code == 202
    await pool.execute("UPDATE idempotency_key SET expires_ts = now() - interval '1 second'"
                       " WHERE idem_key = ANY($1::varchar[])", [k["Idempotency-Key"], old["Idempotency-Key"]])
    fresh = await client.post("/risk/var/recompute", json={"window": 40}, headers=k)  # another body: fine now
    assert fresh.status_code == 202 and "Idempotent-Replayed" not in fresh.headers
    assert fresh.json()["job_id"] == "job-3" and len(jobs.submitted) == 3
    assert await stored(pool, old) is None  # purged on that write
    assert (await stored(pool, k) or {})["status_code"] == 202


@pytest.mark.parametrize("bad", ["x" * 41, "has space", "ümlaut".encode(), "a/b", ""])
async def test_a_malformed_key_is_refused(client: httpx.AsyncClient, bad: str | bytes) -> None:
    r = await client.post("/risk/var/recompute", headers={"Idempotency-Key": bad})
    assert r.status_code == 422 and r.json()["error"]["field"] == "Idempotency-Key"


async def test_refused_bodies_and_unavailable_dependencies_keep_no_key(
    client: httpx.AsyncClient, pool: asyncpg.Pool, stack  # type: ignore[no-untyped-def]
) -> None:
    k = key()
    refused = await client.post("/balances", content=b"{", headers=k)
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "$"
    assert await stored(pool, k) is None  # nothing happened: the corrected request may reuse the key
    [a] = new_accounts()
    await register(pool, [a])
    assert (await client.post("/balances", json=balance(a.account_id), headers=k)).status_code == 202

    backend = Backend(stack.settings(), LocalShards(None))  # no VaR scheduler: 503
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(backend)), base_url="http://api",
                                 headers=client.headers) as c:
        k2 = key()
        assert (await c.post("/risk/var/recompute", headers=k2)).status_code == 503
        assert await stored(pool, k2) is None  # a retry runs for real once the scheduler is back
    await backend.close()


async def test_keys_are_per_scope_and_an_abandoned_claim_can_be_taken_over(pool: asyncpg.Pool) -> None:
    k = f"k-{uuid.uuid4()}"
    h = idempotency.request_hash("POST", "/balances", "application/json", b"{}")
    assert await idempotency.claim(pool, "alice", k, h, "POST", "/balances") is None
    assert await idempotency.claim(pool, "bob", k, h, "POST", "/balances") is None  # another caller's key
    held = await idempotency.claim(pool, "alice", k, h, "POST", "/balances")
    assert held is not None and held.status_code is None
    await pool.execute("UPDATE idempotency_key SET created_ts = now() - interval '2 minutes' WHERE idem_key = $1", k)
    other = idempotency.request_hash("POST", "/balances", "application/json", b"{ }")
    assert (await idempotency.claim(pool, "alice", k, other, "POST", "/balances")) is not None
    assert await idempotency.claim(pool, "alice", k, h, "POST", "/balances") is None  # the replica died mid-request
    assert idempotency.valid_key("0190-abc_DEF.1:~") and not idempotency.valid_key("x" * 41)


async def test_what_the_fuzzer_found_is_refused_cleanly(client: httpx.AsyncClient) -> None:
    """Each of these answered 5xx or a non-JSON 4xx before schemathesis found it."""
    nul_reason = await client.post("/sweep-intent/x/fail", json={"reason": "bad\u0000"})
    assert nul_reason.status_code == 422 and nul_reason.json()["error"]["field"] == "reason"
    nul_id = await client.post("/sweep-intent/x%00y/ack", headers=key())
    assert nul_id.status_code == 404 and nul_id.json()["error"]["field"] == "order_id"
    assert (await client.post("/sweep-intent/" + "x" * 65 + "/ack")).json()["error"]["field"] == "order_id"
    nowhere = await client.get("/no/such/path")
    assert nowhere.status_code == 404 and nowhere.json()["error"]["field"] == "path"
    wrong_verb = await client.delete("/balances")
    assert wrong_verb.status_code == 405 and wrong_verb.json()["error"]["field"] == "method"
    assert wrong_verb.headers["allow"] == "POST"  # RFC 9110: a 405 lists the verbs the resource takes
    deep = await client.post("/balances", content=b'{"event_id": ' + b"[" * 5000 + b"]" * 5000 + b"}",
                             headers={"content-type": "application/json"})
    assert deep.status_code == 422 and "nested too deeply" in deep.json()["error"]["reason"]


async def test_a_forged_huge_cursor_and_unstorable_values_are_422_not_retry(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    huge = encode_cursor(2**64)
    r = await client.get("/sweep-intent", params={"after": huge})
    assert r.status_code == 422 and r.json()["error"]["field"] == "after"

    async def refuse(*_: object) -> None:
        raise asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence")

    monkeypatch.setattr("storage.orders.transition", refuse)  # a value some future check forgets
    unstorable = await client.post("/sweep-intent/x/ack")
    assert unstorable.status_code == 422 and "cannot be stored" in unstorable.json()["error"]["reason"]
