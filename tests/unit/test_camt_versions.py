"""Issue 19: real bank files as banks send them.

Every published camt.052/053/054 version (001.02 to 001.13) x variants (with/without the business
application header envelope, dates and date-times with offsets, proprietary balances that differ,
true duplicates), property tests that a generated statement round-trips to the balances it was
generated from, and the safety rules (no DTD, no entity) on the incremental parser.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.balance_event import BalanceCode, BalanceKind
from schemas.bank_formats import read_bank_file
from schemas.camt import SUPPORTED_VERSIONS, parse_camt, read_camt
from schemas.errors import MessageRejected

VERSIONS = [f"{v:02d}" for v in SUPPORTED_VERSIONS]
IBAN = "DE89370400440532013000"
ROOTS = {"052": ("BkToCstmrAcctRpt", "Rpt"), "053": ("BkToCstmrStmt", "Stmt"),
         "054": ("BkToCstmrDbtCdtNtfctn", "Ntfctn")}
HEAD = "urn:iso:std:iso:20022:tech:xsd:head.001.001.02"


@dataclass(frozen=True)
class Bal:
    """One balance as written in the file, and what it must become."""

    tp: str = "<CdOrPrtry><Cd>ITAV</Cd></CdOrPrtry>"
    amount: str = "100.00"
    sign: str = "CRDT"
    dt: str = "<Dt>2024-03-01</Dt>"

    def xml(self) -> str:
        return (f"<Bal><Tp>{self.tp}</Tp><Amt Ccy=\"USD\">{self.amount}</Amt>"
                f"<CdtDbtInd>{self.sign}</CdtDbtInd><Dt>{self.dt}</Dt></Bal>")


ENTRY = ("<Ntry><Amt Ccy=\"USD\">5.00</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>"
         "<BookgDt><Dt>2024-03-01</Dt></BookgDt><NtryDtls><TxDtls><Refs><EndToEndId>E2E-1</EndToEndId></Refs>"
         "</TxDtls></NtryDtls></Ntry>")


def document(message: str, version: str, bals: list[Bal], *, entries: int = 1, msg_id: str = "M1") -> str:
    root, block = ROOTS[message]
    body = "".join(b.xml() for b in bals) + ENTRY * entries
    return (f'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.{message}.001.{version}"><{root}>'
            f"<GrpHdr><MsgId>{msg_id}</MsgId><CreDtTm>2024-03-01T10:00:00+01:00</CreDtTm></GrpHdr>"
            f"<{block}><Id>B1</Id><Acct><Id><IBAN>{IBAN}</IBAN></Id></Acct>{body}</{block}></{root}></Document>")


def app_header(message: str, version: str, biz: str = "BIZ-1", definition: str | None = None) -> str:
    return (f'<AppHdr xmlns="{HEAD}"><Fr><FIId><FinInstnId><BICFI>AAAAGB2LXXX</BICFI></FinInstnId></FIId></Fr>'
            f"<To><FIId><FinInstnId><BICFI>BBBBUS33XXX</BICFI></FinInstnId></FIId></To><BizMsgIdr>{biz}</BizMsgIdr>"
            f"<MsgDefIdr>{definition or f'camt.{message}.001.{version}'}</MsgDefIdr>"
            "<CreDt>2024-03-01T10:00:00Z</CreDt>"
            "<Rltd><BizMsgIdr>OTHER</BizMsgIdr><MsgDefIdr>camt.060.001.05</MsgDefIdr>"
            "<CreDt>2024-03-01T09:00:00Z</CreDt></Rltd>"
            "</AppHdr>")


def enveloped(message: str, version: str, doc: str, *, style: str = "Envelope", biz: str = "BIZ-1") -> str:
    header = app_header(message, version, biz)
    if style == "DataPDU":  # SWIFT Alliance Access: the pair sits deeper, in a namespaced wrapper
        return (f'<Saa:DataPDU xmlns:Saa="urn:swift:saa:xsd:saa.2.0"><Saa:Revision>2.0.13</Saa:Revision>'
                f"<Saa:Header><Saa:Message><Saa:Sender>X</Saa:Sender></Saa:Message></Saa:Header>"
                f"<Saa:Body>{header}{doc}</Saa:Body></Saa:DataPDU>")
    return f'<{style} xmlns="urn:swift:xsd:envelope">{header}{doc}</{style}>'


def xml(text: str) -> bytes:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + text).encode()


def refused(data: bytes) -> MessageRejected:
    with pytest.raises(MessageRejected) as exc:
        parse_camt(data)
    return exc.value


EOD = datetime(2024, 3, 1, 23, 59, 59, 999999, tzinfo=UTC)

# variant -> (balances written, what each event must be: (code, field, amount, as_of))
VARIANTS: dict[str, tuple[list[Bal], list[tuple[BalanceCode, str, str, datetime]]]] = {
    "plain": ([Bal()], [(BalanceCode.ITAV, "available", "100.00", EOD)]),
    "date_with_offset": (
        [Bal(dt="<Dt>2024-03-01+02:00</Dt>"),
         Bal(tp="<CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry>", dt="<Dt>2024-03-01Z</Dt>")],
        [(BalanceCode.ITAV, "available", "100.00", EOD - timedelta(hours=2)),
         (BalanceCode.CLBD, "booked", "100.00", EOD)],
    ),
    "datetime_offsets": (
        [Bal(dt="<DtTm>2024-03-01T10:15:00-05:00</DtTm>"),
         Bal(tp="<CdOrPrtry><Cd>ITBD</Cd></CdOrPrtry>", dt="<DtTm>2024-03-01T10:15:00.123456789Z</DtTm>"),
         Bal(tp="<CdOrPrtry><Cd>CLAV</Cd></CdOrPrtry>", dt="<DtTm>2024-03-01T24:00:00+01:00</DtTm>")],
        [(BalanceCode.ITAV, "available", "100.00", datetime(2024, 3, 1, 15, 15, tzinfo=UTC)),
         (BalanceCode.ITBD, "booked", "100.00", datetime(2024, 3, 1, 10, 15, 0, 123456, tzinfo=UTC)),
         (BalanceCode.CLAV, "available", "100.00", datetime(2024, 3, 1, 23, tzinfo=UTC))],
    ),
    "proprietary_that_differ": (
        [Bal(), Bal(tp="<CdOrPrtry><Prtry>AVLB</Prtry></CdOrPrtry>", amount="7.00"),
         Bal(tp="<CdOrPrtry><Prtry>AVLB</Prtry></CdOrPrtry>", amount="7.00", sign="DBIT"),
         Bal(tp="<CdOrPrtry><Prtry>AVLB</Prtry></CdOrPrtry>", amount="9.50"),
         Bal(tp="<CdOrPrtry><Cd>ITAV</Cd></CdOrPrtry><SubTp><Cd>BLCK</Cd></SubTp>", amount="1.00"),
         Bal(tp="<CdOrPrtry><Cd>ITAV</Cd></CdOrPrtry><SubTp><Cd>BLCK</Cd></SubTp>", amount="2.00")],
        [(BalanceCode.ITAV, "available", "100.00", EOD),
         (BalanceCode.INFO, "booked", "7.00", EOD), (BalanceCode.INFO, "booked", "-7.00", EOD),
         (BalanceCode.INFO, "booked", "9.50", EOD),
         (BalanceCode.INFO, "booked", "1.00", EOD), (BalanceCode.INFO, "booked", "2.00", EOD)],
    ),
    "true_duplicates": (
        [Bal(), Bal(amount="100.0"), Bal(tp="<CdOrPrtry><Prtry>AVLB</Prtry></CdOrPrtry>", amount="7.00"),
         Bal(tp="<CdOrPrtry><Prtry>AVLB</Prtry></CdOrPrtry>", amount="7.00")],
        [(BalanceCode.ITAV, "available", "100.00", EOD), (BalanceCode.INFO, "booked", "7.00", EOD)],
    ),
}


def rows(events: list) -> list[tuple[BalanceCode, str, str, datetime]]:
    return [
        (e.balance_code, "available" if e.available_usd is not None else "booked",
         str(e.available_usd if e.available_usd is not None else e.booked_usd), e.as_of_ts)
        for e in events
    ]


@pytest.mark.parametrize("wrapper", ["none", "Envelope", "BusMsgEnvlp", "DataPDU"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("message", ["052", "053", "054"])
def test_version_matrix(message: str, version: str, variant: str, wrapper: str) -> None:
    written, expected = VARIANTS[variant]
    bals = [] if message == "054" else written  # camt.054 has no Bal in any version
    doc = document(message, version, bals, entries=2)
    data = xml(doc if wrapper == "none" else enveloped(message, version, doc, style=wrapper))
    parsed = read_camt(data)
    assert parsed.name == f"camt.{message}.001.{version}"
    assert parsed.entries == 2
    assert parsed.business_message_id == (None if wrapper == "none" else "BIZ-1")
    if message == "054":
        assert parsed.events == []
        return
    assert rows(parsed.events) == expected
    kind = BalanceKind.PRIOR_DAY if message == "053" else BalanceKind.INTRADAY
    assert all(e.kind is kind and e.account_id == IBAN for e in parsed.events)
    assert len({e.event_id for e in parsed.events}) == len(parsed.events)
    assert all(e.event_id.startswith(f"camt{message}-") for e in parsed.events)


# Ids computed by the parser before issue 19: a message without AppHdr keeps the ids it always had,
# so re-sending an old file is still dropped as a duplicate downstream.
PINNED = ("camt053-d75fe7e8945db2af011e63e636e8c19eb74f1cf08c8ef329e055825144efc75e")
PINNED_DOC = (
    '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt><GrpHdr><MsgId>M1</MsgId>'
    "</GrpHdr><Stmt><Id>S1</Id><Acct><Id><IBAN>DE89370400440532013000</IBAN></Id></Acct><Bal><Tp><CdOrPrtry>"
    '<Cd>CLBD</Cd></CdOrPrtry></Tp><Amt Ccy="USD">100.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2024-03-01</Dt>'
    "</Dt></Bal></Stmt></BkToCstmrStmt></Document>"
)


def test_ids_of_messages_without_app_header_are_unchanged() -> None:
    [event] = parse_camt(PINNED_DOC.encode())
    assert event.event_id == PINNED


def test_business_message_id_identifies_an_enveloped_message() -> None:
    doc = document("053", "08", [Bal()])
    plain = parse_camt(xml(doc))
    first = parse_camt(xml(enveloped("053", "08", doc, biz="BIZ-1")))
    again = parse_camt(xml(enveloped("053", "08", doc, style="DataPDU", biz="BIZ-1")))
    other = parse_camt(xml(enveloped("053", "08", doc, biz="BIZ-2")))
    assert [e.event_id for e in first] == [e.event_id for e in again]  # a re-delivery: dropped downstream
    assert first[0].event_id != other[0].event_id != plain[0].event_id
    assert first[0].model_copy(update={"event_id": "x"}) == plain[0].model_copy(update={"event_id": "x"})
    # the related header's BizMsgIdr (AppHdr/Rltd) is not the message's
    assert parse_camt(xml(enveloped("053", "08", doc, biz="OTHER")))[0].event_id != first[0].event_id


def test_app_header_after_the_document_still_identifies_it() -> None:
    doc = document("052", "13", [Bal()])
    before = parse_camt(xml(f"<Envelope>{app_header('052', '13')}{doc}</Envelope>"))
    after = parse_camt(xml(f"<Envelope>{doc}{app_header('052', '13')}</Envelope>"))
    assert [e.event_id for e in before] == [e.event_id for e in after]


@pytest.mark.parametrize(
    ("data", "field", "reason"),
    [
        (f"<Envelope>{app_header('053', '08', definition='camt.052.001.08')}"
         f"{document('053', '08', [Bal()])}</Envelope>",
         "Envelope/AppHdr/MsgDefIdr", "names 'camt.052.001.08' but the Document is camt.053.001.08"),
        (f"<Envelope>{app_header('053', '08')}</Envelope>", "$",
         "the envelope holds an AppHdr but no camt.052/053/054 Document"),
        (f"<Envelope>{app_header('053', '08')}"
         '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pacs.008.001.08"/></Envelope>', "$",
         "unsupported format: the envelope's Envelope/Document with namespace "
         "'urn:iso:std:iso:20022:tech:xsd:pacs.008.001.08' is not camt"),
        (f"<Envelope>{app_header('053', '08')}{document('053', '08', [Bal()])}{document('053', '08', [Bal()])}"
         "</Envelope>", "Envelope/Document", "second Document"),
        (f"<Envelope>{app_header('053', '08').replace('<BizMsgIdr>BIZ-1</BizMsgIdr>', '')}"
         f"{document('053', '08', [Bal()])}</Envelope>", "Envelope/AppHdr/BizMsgIdr", "required element is missing"),
        (f"<Envelope>{document('053', '08', [Bal(amount='x')])}</Envelope>",
         "Envelope/Document/BkToCstmrStmt/Stmt[1]/Bal[1]/Amt", "not an unsigned decimal amount"),
        ("<Envelope><Other/></Envelope>", "$", "XML root 'Envelope' is not a camt Document"),
        (document("053", "01", [Bal()]), "$", "unsupported format: camt.053.001.01"),
        (document("054", "14", []), "$", "unsupported format: camt.054.001.14"),
        (document("054", "08", [Bal()]), "Document/BkToCstmrDbtCdtNtfctn/Ntfctn[1]/Bal[1]", "carries no Bal"),
        (document("053", "08", [Bal(), Bal(amount="5.00", sign="DBIT")]),
         "Document/BkToCstmrStmt/Stmt[1]/Bal[2]", "contradicts Document/BkToCstmrStmt/Stmt[1]/Bal[1]"),
    ],
)
def test_envelope_and_identity_refusals_are_accurate(data: str, field: str, reason: str) -> None:
    error = refused(xml(data))
    assert error.field == field
    assert reason in error.reason


def test_camt054_is_a_valid_message_that_sends_nothing() -> None:
    # Its entries are statement entries now (tests/unit/test_statement_entries.py): only a camt.054
    # without any Ntry, or a camt.052 with neither Bal nor Ntry, has nothing to send.
    parsed = read_bank_file(xml(document("054", "08", [], entries=3)), "application/xml")
    assert parsed.events == [] and parsed.entries == 3 and parsed.format == "camt.054.001.08"
    assert len(parsed.statement_entries) == 3 and parsed.note is None
    empty = read_bank_file(xml(document("054", "08", [], entries=0)), "application/xml")
    assert empty.note is not None and "notifies no entry and carries no balance" in empty.note
    neither = read_bank_file(xml(document("052", "08", [], entries=0)), None)
    assert neither.note is not None and "no balance" in neither.note
    assert read_bank_file(xml(document("052", "08", [], entries=2)), None).note is None
    assert read_bank_file(xml(document("052", "08", [Bal()])), None).note is None


def test_a_file_object_is_read_incrementally_like_bytes() -> None:
    data = xml(enveloped("053", "10", document("053", "10", [Bal(), Bal(tp="<CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry>")])))

    class Trickle(io.BytesIO):
        """Hands the parser a few bytes per read, as a slow socket would."""

        def read(self, size: int | None = -1, /) -> bytes:
            return super().read(7)

    assert parse_camt(Trickle(data)) == parse_camt(data)
    assert read_bank_file(Trickle(b"\xef\xbb\xbf" + data), None).events == parse_camt(data)
    assert read_bank_file(Trickle(b"  \n" + data.split(b"\n", 1)[1]), None).events == parse_camt(data)


# ------------------------------------------------------------------------------------------
# No DTD, no entity, whatever comes before the root
# ------------------------------------------------------------------------------------------

DOC = document("053", "08", [Bal()])


@pytest.mark.parametrize(
    "data",
    [
        xml('<!-- a comment --><?pi x?>\n<!DOCTYPE Document [<!ENTITY a "b">]>' + DOC),
        b'<!DOCTYPE Document SYSTEM "http://attacker.invalid/x.dtd">' + DOC.encode(),
        b"\xef\xbb\xbf<?xml version='1.0'?><!DOCTYPE d [<!ENTITY a SYSTEM 'file:///etc/passwd'>]><d>&a;</d>",
        ('<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE d [<!ENTITY a "b">]><d>&a;</d>').encode("utf-16"),
        xml(f'<Envelope><!DOCTYPE x [<!ENTITY a "b">]>{DOC}</Envelope>'),  # not in the prolog: malformed
    ],
)
def test_dtds_and_entities_are_refused_wherever_they_stand(data: bytes) -> None:
    error = refused(data)
    assert error.field == "$"
    assert "DTD" in error.reason or error.reason.startswith("malformed XML")


def test_a_utf16_document_goes_through_the_defused_parser() -> None:
    text = '<?xml version="1.0" encoding="UTF-16"?>' + DOC
    assert parse_camt(text.encode("utf-16")) == parse_camt(xml(DOC))


def test_a_long_prolog_of_comments_is_read_past() -> None:
    data = ("<!-- padding -->\n" * 10_000 + DOC).encode()
    assert parse_camt(data) == parse_camt(xml(DOC))


# ------------------------------------------------------------------------------------------
# Property: a generated statement round-trips to the balances it was generated from
# ------------------------------------------------------------------------------------------

CODES = [c for c in BalanceCode if c is not BalanceCode.INFO]
AVAILABLE = {BalanceCode.OPAV, BalanceCode.ITAV, BalanceCode.CLAV}
offsets = st.sampled_from([None, "Z", "+02:00", "-05:00", "+05:30", "+14:00", "-12:00"])


@st.composite
def balances(draw: st.DrawFn) -> tuple[str, int, Bal, tuple[BalanceCode, str, Decimal, datetime]]:
    """A Bal as XML plus the (code, field, amount, as-of) it stands for."""
    proprietary = draw(st.booleans())
    code = draw(st.sampled_from(CODES))
    places = draw(st.integers(0, 5))
    amount = draw(st.decimals(min_value=0, max_value=Decimal("999999999999.99999"), places=places))
    debit = draw(st.booleans())
    offset = draw(offsets)
    zone = UTC if offset in (None, "Z") else timezone(
        (-1 if offset[0] == "-" else 1) * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
    if draw(st.booleans()):
        day = draw(st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)))
        dt = f"<Dt>{day.isoformat()}{offset or ''}</Dt>"
        as_of = datetime(day.year, day.month, day.day, 23, 59, 59, 999999, tzinfo=zone).astimezone(UTC)
    else:
        moment = draw(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)))
        dt = f"<DtTm>{moment.isoformat()}{offset or ''}</DtTm>"
        as_of = moment.replace(tzinfo=zone).astimezone(UTC)
    inner = f"<Prtry>P-{code.value}</Prtry>" if proprietary else f"<Cd>{code.value}</Cd>"
    tp = f"<CdOrPrtry>{inner}</CdOrPrtry>"
    signed = -amount if debit and amount else amount
    final = BalanceCode.INFO if proprietary else code
    field = "available" if final in AVAILABLE else "booked"
    bal = Bal(tp=tp, amount=str(amount), sign="DBIT" if debit else "CRDT", dt=dt)
    return code.value, int(proprietary), bal, (final, field, signed, as_of)


@settings(max_examples=150, deadline=None)
@given(
    drawn=st.lists(balances(), min_size=1, max_size=8, unique_by=lambda b: (b[0], b[1], b[3][3])),
    message=st.sampled_from(["052", "053"]),
    version=st.sampled_from(VERSIONS),
    wrapped=st.booleans(),
)
def test_property_generated_statements_round_trip(
    drawn: list[tuple[str, int, Bal, tuple[BalanceCode, str, Decimal, datetime]]],
    message: str, version: str, wrapped: bool,
) -> None:
    doc = document(message, version, [b for _, _, b, _ in drawn], entries=1)
    parsed = read_camt(xml(enveloped(message, version, doc) if wrapped else doc))
    got = [
        (e.balance_code, "available" if e.available_usd is not None else "booked",
         e.available_usd if e.available_usd is not None else e.booked_usd, e.as_of_ts)
        for e in parsed.events
    ]
    assert got == [want for _, _, _, want in drawn]
    for (_, _, bal, _), (_, _, amount, _) in zip(drawn, got, strict=True):
        assert amount is not None and (str(amount).lstrip("-") == bal.amount or not amount)  # digits as written
    assert len({e.event_id for e in parsed.events}) == len(parsed.events)
    assert parsed.entries == 1
