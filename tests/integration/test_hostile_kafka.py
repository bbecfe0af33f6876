"""Hostile input on ``balance_events`` (issue 9): every bad message is dead-lettered with its reason,
on the real Kafka and Postgres, and a valid event after them is still decided."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from actors import kafka_clients
from actors.account_state import Outcome
from actors.shard import MAX_EVENT_BYTES
from tests.integration.conftest import Pipeline, new_accounts, register
from tests.integration.kafka_tools import poll_until, read_from

pytestmark = pytest.mark.integration
AS_OF = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0).isoformat()


def event(account: str, event_id: str, **changes: object) -> dict[str, object]:
    body: dict[str, object] = {"event_id": event_id, "account_id": account, "as_of_ts": AS_OF, "kind": "INTRADAY",
                               "available_usd": "10000000", "projected_outflows_24h_usd": "2000000"}
    body.update(changes)
    return body


def js(value: object) -> bytes:
    return json.dumps(value).encode()


async def test_hostile_messages_are_dead_lettered_with_their_reason_and_the_stream_goes_on(
    pipeline: Pipeline,
) -> None:
    [a, overdrawn] = new_accounts(2)
    await register(pipeline.pool, [a, overdrawn], var_usd=Decimal("1000"))
    acct = a.account_id
    # case -> (value, extra headers, expected error_field, a piece of the expected error_reason)
    cases: dict[str, tuple[bytes, dict[str, str], str, str]] = {
        "garbage": (b"\x00\xff\xfe\x9c garbage \x01", {}, "$", "not UTF-8"),
        "not-json": (b"<xml>nope</xml>", {}, "$", "malformed JSON"),
        "wrong-major": (js(event(acct, "v2")), {"schema_version": "balance_event/2.0.0"}, "schema_version",
                        "not a version this service reads"),
        "wrong-schema": (js(event(acct, "v3")), {"schema_version": "sweep_order/1.1.0"}, "schema_version",
                         "balance_event/1.x.y"),
        "version-in-body": (js(event(acct, "v4", schema_version="2.0.0")), {}, "schema_version",
                            "Extra inputs are not permitted"),
        "nan-literal": (js(event(acct, "n1")).replace(b'"10000000"', b"NaN"), {}, "$", "NaN is not a valid"),
        "nan-string": (js(event(acct, "n2", available_usd="NaN")), {}, "available_usd", "finite"),
        "infinity": (js(event(acct, "n3", booked_usd="-Infinity")), {}, "booked_usd", "finite"),
        "negative-outflows": (js(event(acct, "n4", projected_outflows_24h_usd="-5")), {},
                              "projected_outflows_24h_usd", "greater than or equal to 0"),
        "absurd": (js(event(acct, "n5", available_usd="5000000000000000")), {}, "available_usd",
                   "less than or equal to"),
        "absurd-exponent": (js(event(acct, "n8", available_usd="1e30")), {}, "available_usd", "digits"),
        "too-many-digits": (js(event(acct, "n6")).replace(b'"10000000"', b"1" * 5000), {}, "$", "digits"),
        "too-precise": (js(event(acct, "n7", available_usd="1.0000001")), {}, "available_usd", "decimal places"),
        "unknown-account": (js(event("NOT-REGISTERED-ANYWHERE", "u1")), {}, "account_id", "unknown account"),
        "unknown-product": (js(event(acct, "p1", product="CRYPTO_MOONSHOT")), {}, "product",
                            "Extra inputs are not permitted"),
        "unknown-balance-code": (js(event(acct, "p2", balance_code="ZZZZ")), {}, "balance_code", "Input should be"),
        "deeply-nested": (b'{"event_id": ' + b"[" * 20_000 + b"]" * 20_000 + b"}", {}, "$", "nested too deeply"),
    }
    producer = kafka_clients.producer(pipeline.bootstrap)
    for name, (value, extra, _, _) in cases.items():
        key = b"NOT-REGISTERED-ANYWHERE" if name == "unknown-account" else acct.encode()
        producer.produce("balance_events", key=key, value=value, headers=kafka_clients.headers(case=name, **extra))
    oversized = js(event(acct, "big", pad="x" * (MAX_EVENT_BYTES + 10)))
    producer.produce("balance_events", key=acct.encode(), value=oversized)
    # after all of them: a newer minor version, an overdraft (negative available is a real balance)
    producer.produce("balance_events", key=acct.encode(), value=js(event(acct, "good")),
                     headers=kafka_clients.headers(schema_version="balance_event/1.7.0"))
    producer.produce("balance_events", key=overdrawn.account_id.encode(),
                     value=js(event(overdrawn.account_id, "od", available_usd="-250000.50")))
    assert producer.flush(30) == 0

    await pipeline.drain([acct, overdrawn.account_id], events=2)
    # The unknown account's message sits in another partition, which may not have been read yet.
    async def all_dead_lettered() -> bool:
        return pipeline.worker.totals[Outcome.INVALID] >= len(cases) + 1

    await poll_until(pipeline.step, all_dead_lettered)
    [order] = await pipeline.orders_for([acct])
    assert order["decision_key"] == f"{acct}:good" and order["amount_usd"] == Decimal("9400000.0000")
    assert await pipeline.orders_for([overdrawn.account_id]) == []
    position = await pipeline.worker.position(overdrawn.account_id)
    assert position is not None and position.available_usd == Decimal("-250000.50")

    dead = read_from(pipeline.bootstrap, "balance_events.dlq", pipeline.dlq_start, expect=len(cases) + 1)
    by_case: dict[str, dict[str, str]] = {}
    big: list[tuple[bytes, dict[str, str]]] = []
    for msg in dead:
        headers = kafka_clients.header_map(msg.headers())
        if "case" in headers:
            by_case[headers["case"]] = headers
        elif headers.get("original_bytes"):
            big.append((msg.value() or b"", headers))
    assert set(by_case) == set(cases)
    for name, (_, _, field, reason) in cases.items():
        got = by_case[name]
        assert (got["error_field"], reason in got["error_reason"]) == (field, True), (name, got)
        assert got["source_topic"] == "balance_events" and int(got["source_offset"]) >= 0
    [(value, headers)] = big
    assert len(value) == MAX_EVENT_BYTES and int(headers["original_bytes"]) > MAX_EVENT_BYTES
    assert headers["error_field"] == "$" and f"at most {MAX_EVENT_BYTES}" in headers["error_reason"]
    assert pipeline.worker.totals["invalid"] >= len(cases) + 1
