"""One Kafka encoding of a balance event: ``POST /balances`` and the simulator send the same record shape.

The shards read ``trace_id`` and ``schema_version`` from the headers; before there was one
encoder the REST path sent both and the simulator (and ``ingest``) neither.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import httpx

from schemas.balance_event import BalanceEvent, BalanceKind
from schemas.balance_record import SCHEMA_VERSION, encode
from serve_app.job.simulator import FeedSimulator, make_accounts, produce_all
from serve_app.rest.api import Backend, build_app
from treasury.settings import RuntimeSettings


class Sent:
    """What a producer was asked to send: (topic, key, value, headers) per record."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes, list[tuple[str, Any]]]] = []


class RecordingProducer(Sent):
    """confluent_kafka.Producer's produce/poll/flush, keeping each record instead of sending it."""

    def produce(self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, Any]] | None = None,
                **_: Any) -> None:
        self.records.append((topic, key, value, list(headers or [])))

    def poll(self, _: float = 0) -> int:
        return 0

    def flush(self, _: float = 0) -> int:
        return 0


class Delivered:
    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 0


class RecordingAsyncProducer(Sent):
    """kafka_clients.AsyncProducer's send, keeping each record."""

    async def send(self, topic: str, key: bytes, value: bytes, hdrs: list[tuple[str, Any]] | None = None) -> Delivered:
        self.records.append((topic, key, value, list(hdrs or [])))
        return Delivered()


class KnownAccounts:
    """The one query the route makes (``accounts.get_many``): every asked-for account is registered."""

    async def fetch(self, _: str, ids: list[str]) -> list[dict[str, Any]]:
        return [{"account_id": i, "esg_pref": False, "min_balance_usd": Decimal(0), "aml_tags": {}} for i in ids]


class RestBackend:
    """Just what ``POST /balances`` touches with AUTH=off and no Idempotency-Key."""

    verifier = None
    settings = RuntimeSettings()  # MAX_CLOCK_SKEW_S: the route refuses a balance dated in the future

    def __init__(self) -> None:
        self.sent = RecordingAsyncProducer()

    async def pool(self) -> KnownAccounts:
        return KnownAccounts()

    def producer(self) -> RecordingAsyncProducer:
        return self.sent


def event(**changes: Any) -> BalanceEvent:
    fields: dict[str, Any] = {"event_id": "e1", "account_id": "A1", "as_of_ts": datetime(2025, 6, 2, tzinfo=UTC),
                              "kind": BalanceKind.INTRADAY, "available_usd": Decimal("5")}
    return BalanceEvent(**{**fields, **changes})


async def test_rest_and_simulator_records_carry_the_same_headers() -> None:
    backend = RestBackend()
    app = build_app(cast(Backend, backend))
    [profile] = make_accounts(1)
    body = next(FeedSimulator([profile]).events(1)).model_dump(mode="json", exclude_none=True)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        answer = await client.post("/balances", json=body, headers={"x-trace-id": "rest-trace"})
    assert answer.status_code == 202, answer.text
    [(rest_topic, rest_key, rest_value, rest_headers)] = backend.sent.records

    producer = RecordingProducer()
    assert produce_all(producer, [BalanceEvent.model_validate(body)]) == 0  # type: ignore[arg-type]
    [(sim_topic, sim_key, sim_value, sim_headers)] = producer.records

    assert [name for name, _ in rest_headers] == [name for name, _ in sim_headers] == ["trace_id", "schema_version"]
    assert dict(rest_headers)["schema_version"] == dict(sim_headers)["schema_version"] == SCHEMA_VERSION.encode()
    assert dict(rest_headers)["trace_id"] == b"rest-trace" and json.loads(rest_value)["trace_id"] == "rest-trace"
    assert (rest_topic, rest_key) == (sim_topic, sim_key) == ("balance_events", profile.account.account_id.encode())
    assert {k: v for k, v in json.loads(rest_value).items() if k != "trace_id"} == {
        k: v for k, v in json.loads(sim_value).items() if k != "trace_id"}


def test_the_trace_id_is_the_events_own_then_the_callers_then_a_new_one() -> None:
    own = encode(event(trace_id="own"), "request")
    assert dict(own.headers)["trace_id"] == b"own" and json.loads(own.value)["trace_id"] == "own"
    given = encode(event(), "request")
    assert dict(given.headers)["trace_id"] == b"request" and json.loads(given.value)["trace_id"] == "request"
    fresh = encode(event())
    trace = json.loads(fresh.value)["trace_id"]
    assert len(trace) == 32 and dict(fresh.headers)["trace_id"] == trace.encode()
    assert fresh.key == b"A1" and BalanceEvent.model_validate_json(fresh.value).available_usd == Decimal("5")
