"""``POST /balances`` reads its body in chunks up to ``REST_MAX_BODY_BYTES`` (issue 19).

In-process, with a stand-in backend (no Kafka, no Postgres: nothing here reaches them): a declared
length over the limit is refused before a byte is read; a chunked body is refused as soon as it
passes the limit, without the rest being read; a valid camt.054 without entries (and, as always,
without balances) is accepted with nothing sent and a note saying why.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from serve_app.rest import errors
from serve_app.rest.openapi import RequestBodies
from serve_app.rest.routes import balances
from treasury.settings import RuntimeSettings

LIMIT = 4096
CAMT054 = (
    b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.08"><BkToCstmrDbtCdtNtfctn>'
    b"<GrpHdr><MsgId>N1</MsgId></GrpHdr><Ntfctn><Id>N1</Id><Acct><Id><IBAN>DE89370400440532013000</IBAN>"
    b"</Id></Acct></Ntfctn>"
    b"</BkToCstmrDbtCdtNtfctn></Document>"
)


class _Untouchable:
    """Kafka and Postgres must not be reached by any request in this file."""

    async def pool(self) -> Any:
        raise AssertionError("the database was asked")

    def producer(self) -> Any:
        raise AssertionError("Kafka was asked")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    settings = RuntimeSettings(rest_max_body_bytes=LIMIT, auth="off")
    backend = SimpleNamespace(settings=settings, verifier=None, pool=_Untouchable().pool,
                              producer=_Untouchable().producer)
    app = FastAPI()
    errors.install(app)

    @app.middleware("http")
    async def trace(request: Any, call_next: Any) -> Any:
        request.state.trace_id = "t-1"
        return await call_next(request)

    app.include_router(balances.router(backend, RequestBodies()))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c:
        yield c


def test_the_default_limit_fits_real_statements() -> None:
    assert RuntimeSettings().rest_max_body_bytes == balances.MAX_BODY_BYTES == 50_000_000
    assert RuntimeSettings.from_env({"REST_MAX_BODY_BYTES": "2000000"}).rest_max_body_bytes == 2_000_000


async def test_a_declared_length_over_the_limit_is_refused_at_once(client: httpx.AsyncClient) -> None:
    r = await client.post("/balances", content=b" " * (LIMIT + 1))
    assert r.status_code == 413
    assert r.json()["error"] == {"field": "$", "reason": f"body is {LIMIT + 1} bytes; the limit is {LIMIT} "
                                                          "(REST_MAX_BODY_BYTES)"}


async def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(client: httpx.AsyncClient) -> None:
    sent = []

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):  # 100 KiB offered, 4 KiB allowed
            sent.append(1)
            yield b"<" * 1024

    r = await client.post("/balances", content=chunks(), headers={"content-type": "application/xml"})
    assert r.status_code == 413 and "limit" in r.json()["error"]["reason"]
    assert len(sent) <= LIMIT // 1024 + 2  # the rest of the body was never read


async def test_a_body_within_the_limit_is_parsed(client: httpx.AsyncClient) -> None:
    r = await client.post("/balances", content=b"<nope", headers={"content-type": "application/xml"})
    assert r.status_code == 422 and r.json()["error"]["reason"].startswith("malformed XML")


async def test_a_camt054_is_accepted_with_nothing_sent(client: httpx.AsyncClient) -> None:
    r = await client.post("/balances", content=CAMT054, headers={"content-type": "application/xml"})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["count"] == 0 and body["events"] == [] and body["entries"] == 0 and body["entry_records"] == []
    assert "camt.054.001.08 notifies no entry and carries no balance" in body["note"]
