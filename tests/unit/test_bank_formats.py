"""Format sniffing: the body decides, a contradicting content type is refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from schemas.balance_event import BalanceEvent, BalanceKind
from schemas.bank_formats import sniff_and_parse
from schemas.camt import parse_camt
from schemas.errors import MessageRejected, decode
from schemas.finastra import parse_finastra

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "iso20022" / "genkgo-camt"

CAMT = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.052.001.08"><BkToCstmrAcctRpt>'
    b"<GrpHdr><MsgId>M1</MsgId></GrpHdr><Rpt><Id>R1</Id>"
    b"<Acct><Id><IBAN>DE89370400440532013000</IBAN></Id></Acct>"
    b"<Bal><Tp><CdOrPrtry><Cd>ITAV</Cd></CdOrPrtry></Tp><Amt Ccy='EUR'>10.50</Amt>"
    b"<CdtDbtInd>CRDT</CdtDbtInd><Dt><DtTm>2024-03-01T10:00:00Z</DtTm></Dt></Bal>"
    b"</Rpt></BkToCstmrAcctRpt></Document>"
)
FINASTRA_ITEM = {
    "id": "ACC-1",
    "currency": "USD",
    "type": "CURRENT",
    "availableBalance": "1,500.00",
    "balanceAsOn": "2024-03-01",
}
FINASTRA = json.dumps({"items": [FINASTRA_ITEM], "_meta": {"itemCount": 1}}).encode()
NATIVE_EVENT = BalanceEvent(
    event_id="native-1",
    account_id="ACC-9",
    as_of_ts=datetime(2024, 3, 1, 9, 30, tzinfo=UTC),
    kind=BalanceKind.INTRADAY,
    available_usd=Decimal("42.0000"),
)
NATIVE = NATIVE_EVENT.model_dump_json().encode()


def refused(data: bytes, content_type: str | None = None) -> MessageRejected:
    with pytest.raises(MessageRejected) as exc:
        sniff_and_parse(data, content_type)
    return exc.value


@pytest.mark.parametrize("content_type", [None, "application/xml", "text/xml; charset=utf-8", "text/plain"])
def test_camt_xml(content_type: str | None) -> None:
    [event] = sniff_and_parse(CAMT, content_type)
    assert event == parse_camt(CAMT)[0]
    assert event.available_usd == Decimal("10.50")


@pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"genkgo camt sample files not found at {SAMPLES}")
def test_camt_sample_file_with_bom() -> None:
    data = (SAMPLES / "camt053.v2.minimal.xml").read_bytes()
    assert sniff_and_parse(b"\xef\xbb\xbf" + data, "application/octet-stream") == parse_camt(data)
    # Whitespace before the XML declaration is malformed XML (XML 1.0, 2.8): not repaired.
    error = refused(b"\n  " + data)
    assert (error.field, error.reason.startswith("malformed XML")) == ("$", True)


@pytest.mark.parametrize("content_type", [None, "application/json", "application/vnd.finastra+json"])
def test_finastra_envelope(content_type: str | None) -> None:
    assert sniff_and_parse(FINASTRA, content_type) == parse_finastra(FINASTRA)


def test_finastra_single_object() -> None:
    [event] = sniff_and_parse(json.dumps(FINASTRA_ITEM).encode(), None)
    assert (event.account_id, event.available_usd) == ("ACC-1", Decimal("1500.00"))


def test_native_balance_event_json() -> None:
    assert sniff_and_parse(b"\xef\xbb\xbf" + NATIVE, "application/json") == [NATIVE_EVENT]


def test_native_errors_come_from_the_native_decoder() -> None:
    body = json.loads(NATIVE)
    body["kind"] = "SOMETIMES"
    assert refused(json.dumps(body).encode()).field == "kind"


@pytest.mark.parametrize(
    ("data", "content_type", "reason"),
    [
        (CAMT, "application/json", "does not match a XML body"),
        (FINASTRA, "application/xml", "does not match a JSON body"),
        (FINASTRA, "text/csv", "unsupported format: content type 'text/csv'"),
        (b"", None, "unsupported format: empty body"),
        (b"   ", None, "unsupported format: empty body"),
        (b"[1, 2]", None, "unsupported format: body starts with b'['"),
        (b"ACC-1;100.00", None, "unsupported format"),
        (b'{"foo": 1, "bar": 2}', None, "unsupported format: JSON object with fields bar, foo"),
        (b"{}", None, "unsupported format: JSON object with fields none"),
        (b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.056.001.08"/>', None, "unsupported format"),
        (b"<html><body>hi</body></html>", "text/html", "unsupported format: content type"),
        (b"{not json", None, "malformed JSON"),
        (b'{"event_id": "\xff"}', None, "not UTF-8"),
    ],
)
def test_refusals(data: bytes, content_type: str | None, reason: str) -> None:
    error = refused(data, content_type)
    assert error.field == "$"
    assert reason in error.reason


def test_parser_errors_pass_through_with_their_field() -> None:
    bad = json.dumps({"items": [FINASTRA_ITEM | {"availableBalance": "1.5,0"}]}).encode()
    assert refused(bad).field == "items[0].availableBalance"


@pytest.mark.parametrize("parse", [lambda b: sniff_and_parse(b, "application/json"), parse_finastra,
                                   lambda b: [decode(BalanceEvent, b)]])
def test_json_nested_thousands_deep_is_refused_not_a_crash(parse) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(MessageRejected, match="nested too deeply") as exc:
        parse(b'{"items": ' + b"[" * 20_000 + b"]" * 20_000 + b"}")
    assert exc.value.field == "$"
