"""Contracts: checked-in schemas match the models, the spec's example validates, bad input is refused."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import BalanceEvent, CashPosition, ConfigUpdate, MessageRejected, SweepOrder, decode
from schemas.catalog import CONTRACTS, stale
from treasury.settings import PolicyConfig

SPEC = Path(__file__).resolve().parents[3] / "shared" / "spec" / "treasury-orchestrator.md"
SPEC_EXAMPLE = """
{
  "order_id": "SWP-2025-06-10-0001",           // ULID or UUIDv7
  "source_account": "0123456789",              // Finastra DDA
  "target_product": "FED_RRP",                // enum: FED_RRP | TBILL_4W | CARBON_NOTE | ...
  "amount_usd": 750000.00,                     // decimal(20,4)
  "cutoff_utc": "2025-06-11T00:00:00Z",       // ISO-8601
  "risk_checks": {
    "var_limit_bps": 10,                       // max allowed VaR
    "observed_var_bps": 8                     // actual
  },
  "created_ts": "2025-06-10T19:42:11.818Z"
}
"""


def strip_comments(jsonc: str) -> str:
    return re.sub(r"//[^\n]*", "", jsonc)


def test_checked_in_schemas_match_their_models() -> None:
    assert stale() == []
    for contract in CONTRACTS:
        doc = json.loads(contract.path.read_text())
        assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert doc["version"] == contract.version and doc["$id"].endswith(contract.version)
        jsonschema.Draft202012Validator.check_schema(doc)


def test_a_changed_model_is_detected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import schemas.catalog as catalog

    monkeypatch.setattr(catalog, "SCHEMA_DIR", tmp_path)
    assert set(stale()) == {c.name for c in CONTRACTS}
    catalog.write_all()
    assert stale() == []
    path = tmp_path / "sweep_order.schema.json"
    path.write_text(path.read_text().replace('"TBILL_4W"', '"TBILL_8W"'))
    assert stale() == ["sweep_order"]


def test_the_spec_example_validates_against_model_and_file() -> None:
    text = strip_comments(SPEC.read_text().split("```jsonc")[1].split("```")[0]) if SPEC.exists() else None
    body = strip_comments(SPEC_EXAMPLE)
    if text is not None:
        assert json.loads(text) == json.loads(body)
    order = decode(SweepOrder, body)
    assert order.amount_usd == Decimal("750000.00") and order.risk_checks.observed_var_bps == 8
    assert order.cutoff_utc == datetime(2025, 6, 11, tzinfo=UTC)
    schema = json.loads(CONTRACTS[0].path.read_text())
    jsonschema.validate(json.loads(body), schema)
    wire = json.loads(order.model_dump_json(exclude_none=True))
    assert wire["amount_usd"] == "750000.00" and wire["created_ts"] == "2025-06-10T19:42:11.818Z"
    jsonschema.validate(wire, schema)


GOOD_EVENT = {"event_id": "e1", "account_id": "0123456789", "as_of_ts": "2025-06-10T19:42:11Z",
              "kind": "INTRADAY", "available_usd": "1000.50"}


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"available_usd": "abc"}, "available_usd", "decimal"),
        ({"available_usd": "1e20"}, "available_usd", "digits before the decimal point"),
        ({"available_usd": "1000000000000001"}, "available_usd", "less than or equal"),
        ({"available_usd": "1.1234567"}, "available_usd", "decimal places"),
        ({"projected_outflows_24h_usd": "-5"}, "projected_outflows_24h_usd", "greater than or equal"),
        ({"as_of_ts": "2025-06-10T19:42:11"}, "as_of_ts", "timezone"),
        ({"as_of_ts": "yesterday"}, "as_of_ts", "datetime"),
        ({"kind": "WEEKLY"}, "kind", "PRIOR_DAY"),
        ({"account_id": "has space"}, "account_id", "pattern"),
        ({"currency": "usd"}, "currency", "pattern"),
        ({"surprise": 1}, "surprise", "Extra inputs"),
        ({"available_usd": None}, "$", "one of available_usd or booked_usd"),
        ({"available_usd": True}, "available_usd", "Decimal input"),
    ],
)
def test_bad_balance_events_name_the_field(change: dict[str, object], field: str, reason: str) -> None:
    body = {**GOOD_EVENT, **change}
    with pytest.raises(MessageRejected) as info:
        decode(BalanceEvent, json.dumps(body))
    assert info.value.field == field and reason in info.value.reason
    assert info.value.as_dict() == {"field": field, "reason": info.value.reason}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [(b"\xff\xfe", "UTF-8"), (b"{", "malformed JSON"), (b"[]", "JSON object"),
     (b'{"available_usd": NaN}', "NaN"), (b'{"available_usd": Infinity}', "Infinity")],
)
def test_malformed_bodies_are_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(MessageRejected, match=reason):
        decode(BalanceEvent, raw)


def test_sweep_order_amount_rules() -> None:
    body = json.loads(strip_comments(SPEC_EXAMPLE))
    for amount, reason in [("0", "greater than 0"), ("-5", "greater than 0"), ("1.12345", "decimal places")]:
        with pytest.raises(MessageRejected, match=reason):
            decode(SweepOrder, json.dumps({**body, "amount_usd": amount}))
    with pytest.raises(MessageRejected) as info:
        decode(SweepOrder, json.dumps({**body, "target_product": "BITCOIN"}))
    assert info.value.field == "target_product"


amounts = st.decimals(min_value=Decimal("-1e12"), max_value=Decimal("1e12"), places=4, allow_nan=False)
stamps = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)


@given(event_id=ids, account_id=ids, at=stamps, available=amounts, booked=st.one_of(st.none(), amounts))
def test_balance_event_round_trip(event_id: str, account_id: str, at: datetime, available: Decimal,
                                  booked: Decimal | None) -> None:
    at = at.replace(microsecond=at.microsecond // 1000 * 1000)  # the wire keeps milliseconds
    ev = BalanceEvent(event_id=event_id, account_id=account_id, as_of_ts=at, kind="PRIOR_DAY",
                      available_usd=available, booked_usd=booked)
    again = decode(BalanceEvent, ev.model_dump_json())
    assert again == ev


@given(amount=st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("1e15"), places=4), at=stamps)
def test_sweep_order_round_trip(amount: Decimal, at: datetime) -> None:
    at = at.replace(microsecond=at.microsecond // 1000 * 1000)
    order = SweepOrder(order_id="0190b0c4-1c6e-7a31-9d2c-4f7d3c1b2a10", source_account="A1", target_product="TBILL_4W",
                       amount_usd=amount, cutoff_utc=at, risk_checks={"var_limit_bps": 10, "observed_var_bps": 1.5},
                       created_ts=at)
    assert decode(SweepOrder, order.model_dump_json()) == order


def test_other_contracts_round_trip() -> None:
    now = datetime(2025, 6, 10, tzinfo=UTC)
    pos = CashPosition(account_id="A1", as_of_ts=now, available_usd=Decimal("5"), pending_sweeps_usd=Decimal("1"),
                       min_balance_usd=Decimal("0"), excess_usd=Decimal("4"), source_event_id="e1", updated_ts=now)
    assert decode(CashPosition, pos.model_dump_json()) == pos
    upd = ConfigUpdate(version=3, source="consul", issued_ts=now, config=PolicyConfig(LIQ_BUFFER_PCT=Decimal("0.4")))
    assert Decimal("0.4") == decode(ConfigUpdate, upd.model_dump_json()).config.LIQ_BUFFER_PCT
