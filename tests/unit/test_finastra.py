"""Finastra account-balance JSON: round trips, exact amounts, and refusals that name the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.balance_event import BalanceEvent, BalanceKind
from schemas.errors import MessageRejected
from schemas.finastra import parse_finastra, to_finastra_json
from treasury.money import MAX_ABS_USD


def item(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "ACC-0001",
        "currency": "USD",
        "type": "CURRENT",
        "ledgerBalance": "1,234,567.89",
        "availableBalance": "1,200,000.00",
        "balanceAsOn": "2024-03-01T14:05:00Z",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def envelope(*items: dict[str, Any]) -> dict[str, Any]:
    return {"items": list(items), "_meta": {"limit": 10, "pageCount": 1, "itemCount": len(items)}}


def refused(data: Any) -> MessageRejected:
    with pytest.raises(MessageRejected) as exc:
        parse_finastra(data)
    return exc.value


# ------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------


def test_single_object_with_thousands_separators() -> None:
    [event] = parse_finastra(json.dumps(item()).encode())
    assert event.account_id == "ACC-0001"
    assert event.available_usd == Decimal("1200000.00")
    assert event.booked_usd == Decimal("1234567.89")
    assert event.currency == "USD"
    assert event.as_of_ts == datetime(2024, 3, 1, 14, 5, tzinfo=UTC)
    assert event.kind is BalanceKind.INTRADAY
    assert event.balance_code is None
    assert event.event_id.startswith("finastra-")


def test_envelope_bytes_str_and_dict_agree() -> None:
    doc = envelope(item(), item(id="ACC-0002", availableBalance="-1,000", ledgerBalance=None))
    as_bytes = parse_finastra(b"\xef\xbb\xbf" + json.dumps(doc).encode())
    assert as_bytes == parse_finastra(json.dumps(doc)) == parse_finastra(doc)
    assert [e.account_id for e in as_bytes] == ["ACC-0001", "ACC-0002"]
    assert as_bytes[1].available_usd == Decimal("-1000")
    assert as_bytes[1].booked_usd is None


def test_empty_envelope() -> None:
    assert parse_finastra({"items": [], "_meta": {}}) == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('"1,234,567.89"', "1234567.89"),
        ('"-1,234.5"', "-1234.5"),
        ('"999"', "999"),
        ('"0.000001"', "0.000001"),
        ('" 12.50 "', "12.50"),
        ("1234.56789", "1234.56789"),  # a JSON number is read exactly, never as a float
        ("1000000", "1000000"),
    ],
)
def test_amount_forms(raw: str, expected: str) -> None:
    body = f'{{"id": "A1", "currency": "EUR", "balanceAsOn": "2024-03-01", "availableBalance": {raw}}}'
    [event] = parse_finastra(body)
    assert str(event.available_usd) == expected


@pytest.mark.parametrize(
    ("as_on", "expected"),
    [
        ("2024-03-01", datetime(2024, 3, 1, 23, 59, 59, 999999, tzinfo=UTC)),  # end of day, UTC
        ("2024-03-01T09:00:00", datetime(2024, 3, 1, 9, tzinfo=UTC)),  # no offset: UTC
        ("2024-03-01T09:00:00+05:30", datetime(2024, 3, 1, 3, 30, tzinfo=UTC)),
        ("2024-03-01T09:00:00.250-04:00", datetime(2024, 3, 1, 13, 0, 0, 250000, tzinfo=UTC)),
        # a date with an offset (issue 19, the camt rule): the end of that day in that zone
        ("2024-03-01+02:00", datetime(2024, 3, 1, 21, 59, 59, 999999, tzinfo=UTC)),
        ("2024-03-01Z", datetime(2024, 3, 1, 23, 59, 59, 999999, tzinfo=UTC)),
    ],
)
def test_balance_as_on(as_on: str, expected: datetime) -> None:
    [event] = parse_finastra(item(balanceAsOn=as_on))
    assert event.as_of_ts == expected


def test_unknown_fields_and_meta_are_ignored() -> None:
    [event] = parse_finastra(envelope(item(accountNumber="123", status="ACTIVE")) | {"_links": {}})
    assert event.account_id == "ACC-0001"


def test_event_id_same_balance_same_id_new_figure_new_id() -> None:
    [a] = parse_finastra(item(ledgerBalance="1,000.00", availableBalance="2000"))
    [b] = parse_finastra(item(ledgerBalance="1000", availableBalance="2,000.0"))
    [c] = parse_finastra(item(ledgerBalance="1000.01", availableBalance="2000"))
    [d] = parse_finastra(item(ledgerBalance="1000", availableBalance=None))
    assert a.event_id == b.event_id
    assert len({a.event_id, c.event_id, d.event_id}) == 3


# ------------------------------------------------------------------------------------------
# Refusals name the field
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "amount",
    ["1.234,56", "1,23", "12,3456", "1,234,56", "(5.00)", "1 000", "", "abc", "+5", "1e3", ".5", "5."],
)
def test_bad_amount_strings(amount: str) -> None:
    error = refused(envelope(item(), item(), item(), item(availableBalance=amount)))
    assert error.field == "items[3].availableBalance"
    assert repr(amount) in error.reason


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (1.5, "float"),
        (True, "bool"),
        (["1"], "list"),
        ({"amount": "1"}, "dict"),
        (Decimal("NaN"), "not a finite amount"),
        (Decimal("Infinity"), "not a finite amount"),
    ],
)
def test_bad_amount_types(value: object, reason: str) -> None:
    error = refused(item(ledgerBalance=value))
    assert error.field == "ledgerBalance"
    assert reason in error.reason


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        ({"id": ...}, "items[0].id", "missing"),
        ({"id": 12345}, "items[0].id", "expected a string"),
        ({"id": "ACC 1"}, "items[0].id", "pattern"),
        ({"currency": "usd"}, "items[0].currency", "pattern"),
        ({"currency": ...}, "items[0].currency", "missing"),
        ({"type": 7}, "items[0].type", "expected a string"),
        ({"balanceAsOn": ...}, "items[0].balanceAsOn", "missing"),
        ({"balanceAsOn": "01/03/2024"}, "items[0].balanceAsOn", "not a date"),
        ({"balanceAsOn": "2024-03-01T10:00"}, "items[0].balanceAsOn", "date-time"),
        ({"availableBalance": "1.1234567"}, "items[0].availableBalance", "decimal places"),
        ({"ledgerBalance": str(MAX_ABS_USD + 1)}, "items[0].ledgerBalance", "less than or equal"),
        (
            {"availableBalance": None, "ledgerBalance": ...},
            "items[0]",
            "needs availableBalance or ledgerBalance",
        ),
    ],
)
def test_bad_fields(overrides: dict[str, Any], field: str, reason: str) -> None:
    error = refused(envelope(item(**overrides)))
    assert error.field == field
    assert reason in error.reason


def test_refused_as_a_whole() -> None:
    with pytest.raises(MessageRejected):
        parse_finastra(envelope(item(), item(id="ACC-2"), item(currency="X")))


@pytest.mark.parametrize(
    ("data", "field", "reason"),
    [
        (b"[1, 2]", "$", "expected a JSON object, got list"),
        (b'{"items": ', "$", "malformed JSON"),
        (b'{"items": [], "x": NaN}', "$", "NaN is not a valid JSON number"),
        (b"\xff\xfe{}", "$", "not UTF-8"),
        ({"items": {"id": "A"}}, "items", "expected a list, got dict"),
        ({"items": [item(), "A1"]}, "items[1]", "expected an object, got str"),
        ({"availableBalance": "1"}, "id", "missing"),
    ],
)
def test_bad_documents(data: Any, field: str, reason: str) -> None:
    error = refused(data)
    assert error.field == field
    assert reason in error.reason


def test_single_object_without_balances_names_the_document() -> None:
    error = refused(item(availableBalance=..., ledgerBalance=...))
    assert (error.field, error.reason) == ("$", "needs availableBalance or ledgerBalance")


# ------------------------------------------------------------------------------------------
# Writing, and round trips
# ------------------------------------------------------------------------------------------


def _event(**kw: Any) -> BalanceEvent:
    base: dict[str, Any] = {
        "event_id": "e-1",
        "account_id": "ACC-1",
        "as_of_ts": datetime(2024, 3, 1, 12, tzinfo=UTC),
        "kind": BalanceKind.PRIOR_DAY,
        "currency": "EUR",
    }
    return BalanceEvent(**(base | kw))


def test_to_finastra_json_shape() -> None:
    doc = to_finastra_json(
        [_event(available_usd=Decimal("-1234567.891"), booked_usd=Decimal("-0.00"))], account_type="SAVINGS"
    )
    assert doc == {
        "items": [
            {
                "id": "ACC-1",
                "currency": "EUR",
                "type": "SAVINGS",
                "balanceAsOn": "2024-03-01T12:00:00.000000Z",
                "availableBalance": "-1,234,567.891",
                "ledgerBalance": "0.00",
            }
        ],
        "_meta": {"itemCount": 1},
    }


ACCOUNT = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:/-]{0,40}\Z")
CURRENCY = st.from_regex(r"\A[A-Z]{3}\Z")
AMOUNT = st.integers(min_value=0, max_value=6).flatmap(
    lambda places: st.decimals(
        min_value=-MAX_ABS_USD, max_value=MAX_ABS_USD, places=places, allow_nan=False, allow_infinity=False
    )
)
ZONES = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))])
INSTANT = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2099, 12, 31), timezones=ZONES)


@st.composite
def events(draw: st.DrawFn) -> BalanceEvent:
    available = draw(st.none() | AMOUNT)
    booked = draw(AMOUNT) if available is None else draw(st.none() | AMOUNT)
    return BalanceEvent(
        event_id="gen-1",
        account_id=draw(ACCOUNT),
        as_of_ts=draw(INSTANT),
        kind=draw(st.sampled_from(BalanceKind)),
        available_usd=available,
        booked_usd=booked,
        currency=draw(CURRENCY),
    )


def _facts(event: BalanceEvent) -> tuple[Any, ...]:
    return (event.account_id, event.currency, event.as_of_ts, event.available_usd, event.booked_usd)


@given(st.lists(events(), max_size=8))
def test_round_trip_through_json_bytes(original: list[BalanceEvent]) -> None:
    wire = json.dumps(to_finastra_json(original)).encode("utf-8")
    parsed = parse_finastra(wire)
    assert [_facts(e) for e in parsed] == [_facts(e) for e in original]
    # Amounts are exact to the digit, not merely numerically equal.
    for before, after in zip(original, parsed, strict=True):
        for name in ("available_usd", "booked_usd"):
            a, b = getattr(before, name), getattr(after, name)
            assert a is None or a.as_tuple().exponent == b.as_tuple().exponent


@given(st.lists(events(), max_size=5))
def test_thousands_separators_are_on_the_wire(original: list[BalanceEvent]) -> None:
    for wire_item, event in zip(to_finastra_json(original)["items"], original, strict=True):
        for key, amount in (("availableBalance", event.available_usd), ("ledgerBalance", event.booked_usd)):
            if amount is not None and abs(amount) >= 1000:
                assert "," in wire_item[key]


@given(st.lists(events(), max_size=5))
def test_parsing_is_idempotent_and_ids_are_stable(original: list[BalanceEvent]) -> None:
    once = parse_finastra(to_finastra_json(original))
    assert parse_finastra(to_finastra_json(once)) == once
    assert parse_finastra(json.dumps(to_finastra_json(original))) == once
