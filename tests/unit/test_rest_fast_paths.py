"""The REST tier's cheap paths (bench/rest): the pull's page around stored text, the trace-id middleware.

Neither may change what a caller sees: the page is the JSON the decoded path gave, the trace id is
on every answer (the caller's when sent, replacing any a handler set) and in every log line.
"""

from __future__ import annotations

import io
import json
import logging
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from actors.shard import owning_shard
from serve_app.rest.api import Backend, TraceIds, build_app
from serve_app.rest.deployment import RayShards
from serve_app.rest.routes.orders import decode_cursor, encode_cursor, page_body
from storage.orders import PageText
from treasury.logs import JsonFormatter


def test_page_body_wraps_the_orders_text_with_cursor_and_count() -> None:
    text = '{"order_id": "a", "n": "1", "status": "NEW"}, {"order_id": "b", "n": "2", "status": "SENT"}'
    body = page_body(PageText(text, 2, 41), after_seq=7)
    page = json.loads(body, object_pairs_hook=list)
    assert page == [("orders", [[("order_id", "a"), ("n", "1"), ("status", "NEW")],
                                [("order_id", "b"), ("n", "2"), ("status", "SENT")]]),
                    ("next_cursor", encode_cursor(41)), ("count", 2)]  # the decoded path's keys, in its order
    assert decode_cursor(json.loads(body)["next_cursor"]) == 41


def test_an_empty_page_answers_the_cursor_asked_with() -> None:
    body = page_body(PageText("", 0, None), after_seq=7)
    assert json.loads(body) == {"orders": [], "next_cursor": encode_cursor(7), "count": 0}


def test_non_ascii_text_is_sent_as_utf8() -> None:
    body = page_body(PageText('{"aml_tags": {"city": "Zürich €"}, "status": "NEW"}', 1, 1), after_seq=0)
    assert "Zürich €".encode() in body and json.loads(body)["orders"][0]["aml_tags"]["city"] == "Zürich €"


class NoBackend:
    verifier = None


@pytest.fixture
def traced() -> FastAPI:
    app = FastAPI()
    app.add_middleware(TraceIds)

    @app.get("/seen")
    async def seen(request: Request) -> JSONResponse:
        logging.getLogger("treasury.test").warning("inside")
        # a handler that sets the header itself still answers the request's id, once
        return JSONResponse({"trace_id": request.state.trace_id}, headers={"x-trace-id": "handler's"})

    return app


async def test_trace_id_is_the_callers_or_a_new_one_on_every_answer(traced: FastAPI) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)  # formats as the line is logged, as the service's does
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("treasury.test")
    logger.addHandler(handler)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=traced), base_url="http://t") as c:
            r = await c.get("/seen", headers={"x-trace-id": "mine-1"})
    finally:
        logger.removeHandler(handler)
    assert r.headers.get_list("x-trace-id") == ["mine-1"] and r.json() == {"trace_id": "mine-1"}
    assert json.loads(stream.getvalue().splitlines()[-1])["trace_id"] == "mine-1"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=traced), base_url="http://t") as c:
        fresh = await c.get("/seen")
        assert fresh.headers["x-trace-id"] == fresh.json()["trace_id"] and fresh.json()["trace_id"] != "mine-1"
        missing = await c.get("/nowhere", headers={"x-trace-id": "mine-2"})
        assert missing.status_code == 404 and missing.headers["x-trace-id"] == "mine-2"


async def test_the_app_answers_its_errors_with_the_trace_id() -> None:
    app = build_app(cast(Backend, NoBackend()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.get("/no-such-path", headers={"x-trace-id": "err-1"})
    body: dict[str, Any] = r.json()
    assert r.status_code == 404 and r.headers["x-trace-id"] == "err-1" and body["error"]["field"] == "path"


class FakeShard:
    """A shard handle: ``position.remote`` answers what this shard holds, and counts the calls."""

    def __init__(self, held: dict[str, dict[str, Any]]) -> None:
        self.held, self.calls = held, 0
        self.position = self

    def remote(self, account_id: str) -> Any:
        self.calls += 1

        async def answer() -> dict[str, Any] | None:
            return self.held.get(account_id)

        return answer()


def test_the_owning_shard_holds_the_partitions_of_the_accounts_key() -> None:
    from confluent_kafka import murmur2

    from actors.shard import owned_partitions
    from treasury.topics import BALANCE_EVENTS

    for account in ("ACC-1", "RB00000007", "T46ff5e5db100", "Zürich-9"):
        for shards in (1, 2, 3, 5):
            partition = murmur2(account.encode(), BALANCE_EVENTS.partitions)
            assert partition in owned_partitions(owning_shard(account, shards), shards)


async def test_position_asks_the_owner_alone_when_it_holds_the_account() -> None:
    owner = owning_shard("ACC-1", 3)
    shards = [FakeShard({"ACC-1": {"account_id": "ACC-1"}} if i == owner else {}) for i in range(3)]
    lookup = RayShards(3)
    lookup._handles = list(shards)
    assert await lookup.position("ACC-1") == {"account_id": "ACC-1"}
    assert [s.calls for s in shards] == [int(i == owner) for i in range(3)]


async def test_position_asks_the_others_when_the_owner_has_not_got_it() -> None:
    owner = owning_shard("ACC-1", 3)
    elsewhere = (owner + 1) % 3  # a key partitioned some other way: still found
    shards = [FakeShard({"ACC-1": {"account_id": "ACC-1"}} if i == elsewhere else {}) for i in range(3)]
    lookup = RayShards(3)
    lookup._handles = list(shards)
    assert await lookup.position("ACC-1") == {"account_id": "ACC-1"}
    assert await lookup.position("NOBODY") is None
    assert [s.calls for s in shards] == [2, 2, 2]


def test_plain_entry_point_serves_on_the_port_asked_within_the_running_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    from serve_app.rest import plain

    served: list[tuple[str, int, str, int]] = []
    monkeypatch.setattr(plain, "serve", lambda host, port, address, workers: served.append((host, port, address,
                                                                                          workers)))
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    plain.main(["--port", "8100"])
    plain.main(["--port", "8101", "--host", "10.0.0.7", "--ray-address", "auto", "--workers", "2"])
    assert served == [("127.0.0.1", 8100, "10.0.0.5:6379", 1), ("10.0.0.7", 8101, "auto", 2)]
    with pytest.raises(SystemExit):
        plain.main(["--port", "8100", "--workers", "0"])
