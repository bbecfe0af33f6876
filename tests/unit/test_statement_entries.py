"""Statement entries (issue 16 point 1): camt ``Ntry`` and Finastra statement items -> ``StatementEntry``.

camt.052/053/054 across versions (``Sts`` as text up to ``.06``, ``Sts/Cd`` from ``.07``), booking
``Dt`` vs ``DtTm`` and the ``GrpHdr/CreDtTm`` rule for ``booked_ts``, references of single and batch
bookings, ids that stay the same when an entry is re-sent (another file, a camt.052 then its
camt.053), refusals naming the element or JSON path; Finastra's account statement; the dispatch;
the Kafka encoding; and the ingestion order (entries before balances) of ``ingest`` and
``POST /balances``. The samples come from ``tests/integration/camt_samples.py``.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.balance_record import ENTRY_SCHEMA_VERSION, TRACE_HEADER, VERSION_HEADER, encode_entry
from schemas.bank_formats import read_bank_file
from schemas.camt import StatementEntries, read_camt
from schemas.errors import MessageRejected
from schemas.finastra import parse_finastra_statement, read_finastra
from schemas.statement_entry import EntryDirection, EntryStatus, StatementEntry, names_nothing
from serve_app.cli import main
from serve_app.ingest import booked_in_time
from tests.integration.camt_samples import camt_with_entries, closing_balance, finastra_statement, ntry, tx

ACCOUNT = "ACC-OPS-1"
EOD = datetime(2025, 6, 9, 23, 59, 59, 999999, tzinfo=UTC)
BLOCK = {"052": "Document/BkToCstmrAcctRpt/Rpt", "053": "Document/BkToCstmrStmt/Stmt",
         "054": "Document/BkToCstmrDbtCdtNtfctn/Ntfctn"}


def entries_of(message: str, version: str, *entries: str, **kwargs: Any) -> list[StatementEntry]:
    balances = closing_balance() if message == "053" else ""
    parsed = read_camt(camt_with_entries(message, version, ACCOUNT, list(entries), balances=balances, **kwargs))
    assert parsed.entries == len(entries)
    return list(parsed.statement_entries)


def refused(data: bytes) -> MessageRejected:
    with pytest.raises(MessageRejected) as exc:
        read_camt(data)
    return exc.value


# ------------------------------------------------------------------------------------------
# camt: fields across messages and versions
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["02", "06", "07", "08", "13"])
@pytest.mark.parametrize("message", ["052", "053", "054"])
def test_an_entry_in_every_message_and_version(message: str, version: str) -> None:
    written = ntry(version, amount="1250000.50", sign="DBIT", booking="<DtTm>2025-06-09T14:05:00+02:00</DtTm>",
                   value="<Dt>2025-06-10</Dt>", acct_svcr_ref="BANK-REF-1", ntry_ref="7",
                   txs=[tx(end_to_end="ORD-42", instr="INSTR-9")])
    [entry] = entries_of(message, version, written)
    assert entry == StatementEntry(
        entry_id=entry.entry_id, account_id=ACCOUNT, direction=EntryDirection.DBIT, status=EntryStatus.BOOK,
        amount_usd=Decimal("1250000.50"), currency="USD", booking_date=date(2025, 6, 9),
        booked_ts=datetime(2025, 6, 9, 12, 5, tzinfo=UTC), value_date=date(2025, 6, 10), end_to_end_id="ORD-42",
        instr_id="INSTR-9", bank_reference="BANK-REF-1", source=f"camt.{message}.001.{version}",
    )
    assert str(entry.amount_usd) == "1250000.50" and entry.signed_usd == Decimal("-1250000.50")
    assert entry.order_references == ["ORD-42", "INSTR-9"]


@pytest.mark.parametrize("version", ["02", "06", "07", "08", "13"])
@pytest.mark.parametrize(("form", "status", "expected"), [
    ("text", "BOOK", EntryStatus.BOOK), ("code", "BOOK", EntryStatus.BOOK), ("text", "PDNG", EntryStatus.PDNG),
    ("code", "INFO", EntryStatus.INFO), ("code", "FUTR", EntryStatus.FUTR), ("prtry", "XBOOKED", EntryStatus.INFO),
])
def test_sts_as_text_or_code_in_any_version(version: str, form: str, status: str, expected: EntryStatus) -> None:
    """``.02``-``.06`` write ``<Sts>BOOK</Sts>``, ``.07`` on ``<Sts><Cd>BOOK</Cd></Sts>``; converters mix them,
    so both are read in every version; a proprietary status is INFO (nothing ISO says moved money)."""
    [entry] = entries_of("052", version, ntry(version, status=status, status_form=form))
    assert entry.status is expected


def test_the_version_decides_the_sts_form_the_samples_write() -> None:
    assert "<Sts>BOOK</Sts>" in ntry("06") and "<Sts><Cd>BOOK</Cd></Sts>" in ntry("07")


@pytest.mark.parametrize(("sts", "path"), [
    ("<Sts>BOOKED</Sts>", "/Ntry[1]/Sts"), ("<Sts><Cd>DONE</Cd></Sts>", "/Ntry[1]/Sts/Cd"),
    ("<Sts></Sts>", "/Ntry[1]/Sts"), ("", "/Ntry[1]/Sts"),
])
def test_an_unknown_or_missing_status_is_refused(sts: str, path: str) -> None:
    written = ntry("08").replace("<Sts><Cd>BOOK</Cd></Sts>", sts)
    error = refused(camt_with_entries("054", "08", ACCOUNT, [written]))
    assert error.field == BLOCK["054"] + "[1]" + path


# ------------------------------------------------------------------------------------------
# booked_ts: DtTm as given; a date alone by GrpHdr/CreDtTm or the end of the day
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("booking", "created", "booking_date", "booked_ts"), [
    # a date-time is the instant, whatever the report's creation
    ("<DtTm>2025-06-09T10:15:00Z</DtTm>", "2025-06-09T18:00:00Z", date(2025, 6, 9), datetime(2025, 6, 9, 10, 15,
                                                                                            tzinfo=UTC)),
    ("<DtTm>2025-06-09T23:30:00-05:00</DtTm>", None, date(2025, 6, 9), datetime(2025, 6, 10, 4, 30, tzinfo=UTC)),
    # a date alone, the report made that day (UTC): booked by the report's creation
    ("<Dt>2025-06-09</Dt>", "2025-06-09T15:30:00Z", date(2025, 6, 9), datetime(2025, 6, 9, 15, 30, tzinfo=UTC)),
    ("<Dt>2025-06-09</Dt>", "2025-06-09T17:30:00+02:00", date(2025, 6, 9), datetime(2025, 6, 9, 15, 30, tzinfo=UTC)),
    # a date alone, the report made another day (a camt.053 the morning after) or not said: end of the day
    ("<Dt>2025-06-09</Dt>", "2025-06-10T06:00:00Z", date(2025, 6, 9), EOD),
    ("<Dt>2025-06-09</Dt>", "2025-06-10T01:00:00+02:00", date(2025, 6, 9), datetime(2025, 6, 9, 23, tzinfo=UTC)),
    ("<Dt>2025-06-09</Dt>", None, date(2025, 6, 9), EOD),
    ("<Dt>2025-06-09+02:00</Dt>", "2025-06-10T06:00:00Z", date(2025, 6, 9), EOD - timedelta(hours=2)),
])
def test_booked_ts_rule(booking: str, created: str | None, booking_date: date, booked_ts: datetime) -> None:
    [entry] = entries_of("052", "08", ntry("08", booking=booking), created=created)
    assert (entry.booking_date, entry.booked_ts) == (booking_date, booked_ts)


def test_value_date_may_be_a_date_time_and_is_optional() -> None:
    with_time, without = entries_of("053", "13", ntry("13", value="<DtTm>2025-06-11T08:00:00+02:00</DtTm>"),
                                    ntry("13", value=None))
    assert with_time.value_date == date(2025, 6, 11) and without.value_date is None


def test_a_pending_entry_needs_no_booking_date_a_booked_one_falls_back_to_the_report() -> None:
    pending, booked = entries_of("052", "02", ntry("02", status="PDNG", booking=None), ntry("02", booking=None),
                                 created="2025-06-09T11:00:00+01:00")
    assert (pending.booking_date, pending.booked_ts) == (None, None)
    assert (booked.booking_date, booked.booked_ts) == (date(2025, 6, 9), datetime(2025, 6, 9, 10, tzinfo=UTC))
    error = refused(camt_with_entries("052", "02", ACCOUNT, [ntry("02", booking=None)], created=None))
    assert error.field == BLOCK["052"] + "[1]/Ntry[1]/BookgDt" and "needs BookgDt" in error.reason


def test_a_bad_creation_time_is_refused_only_when_an_entry_needs_it() -> None:
    data = camt_with_entries("052", "08", ACCOUNT, [ntry("08")], created="yesterday")
    assert refused(data).field == "Document/BkToCstmrAcctRpt/GrpHdr/CreDtTm"
    stamped = camt_with_entries("052", "08", ACCOUNT, [ntry("08", booking="<DtTm>2025-06-09T10:00:00Z</DtTm>")],
                                created="yesterday")
    assert len(read_camt(stamped).statement_entries) == 1


# ------------------------------------------------------------------------------------------
# References: EndToEndId, InstrId, NOTPROVIDED, batch bookings
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("txs", "end_to_end", "instr"), [
    ([], None, None),  # no NtryDtls
    ([tx()], None, None),  # a TxDtls without Refs
    ([tx(end_to_end="ORD-1")], "ORD-1", None),
    ([tx(end_to_end="NOTPROVIDED", instr="I-1")], None, "I-1"),
    ([tx(end_to_end="ORD-1", instr="I-1", amount="1.00")] * 3, "ORD-1", "I-1"),  # a batch sharing its refs
    ([tx(end_to_end="ORD-1", instr="I-1"), tx(end_to_end="ORD-2", instr="I-1")], None, "I-1"),
    ([tx(end_to_end="ORD-1"), tx()], None, None),  # one transaction without: the batch has none
    ([tx(end_to_end="NOTPROVIDED"), tx(end_to_end="NOTPROVIDED")], None, None),
])
def test_references_of_single_and_batch_bookings(txs: list[str], end_to_end: str | None, instr: str | None) -> None:
    [entry] = entries_of("053", "08", ntry("08", txs=txs))
    assert (entry.end_to_end_id, entry.instr_id) == (end_to_end, instr)


def test_batch_bookings_in_several_ntrydtls_are_one_batch() -> None:
    written = ntry("08", txs=[tx(end_to_end="ORD-1")]).replace(
        "</NtryDtls>", "</NtryDtls><NtryDtls><TxDtls>" + tx(end_to_end="ORD-2") + "</TxDtls></NtryDtls>")
    [entry] = entries_of("053", "08", written)
    assert entry.end_to_end_id is None


def test_a_reference_over_the_contract_limit_is_refused_naming_it() -> None:
    error = refused(camt_with_entries("054", "08", ACCOUNT, [ntry("08", txs=[tx(end_to_end="E" * 141)])]))
    assert error.field == BLOCK["054"] + "[1]/Ntry[1]/NtryDtls/TxDtls/Refs/EndToEndId"


# ------------------------------------------------------------------------------------------
# Ids: stable across files and report types
# ------------------------------------------------------------------------------------------


def test_the_same_acctsvcrref_gives_the_same_id_in_a_052_and_the_053() -> None:
    intraday = entries_of("052", "08", ntry("08", acct_svcr_ref="BR-77", status="PDNG"),
                          msg_id="INTRADAY-1", created="2025-06-09T12:00:00Z", block_id="RPT-1")
    statement = entries_of("053", "02", ntry("02", acct_svcr_ref="BR-77"),
                           msg_id="STMT-1", created="2025-06-10T06:00:00Z", block_id="STMT-1")
    assert intraday[0].entry_id == statement[0].entry_id
    assert intraday[0].entry_id.startswith("entry-")
    other_account = read_camt(camt_with_entries("054", "08", "ACC-OTHER", [ntry("08", acct_svcr_ref="BR-77")]))
    assert other_account.statement_entries[0].entry_id != intraday[0].entry_id


def test_a_re_sent_file_gives_the_same_ids() -> None:
    written = [ntry("08"), ntry("08"), ntry("08", amount="5.00"), ntry("08", acct_svcr_ref="R-1")]
    first = entries_of("053", "08", *written, msg_id="M-1")
    again = entries_of("053", "08", *written, msg_id="M-1-RESENT", created="2025-06-10T09:00:00Z")
    assert [e.entry_id for e in first] == [e.entry_id for e in again]
    assert len({e.entry_id for e in first}) == 4  # two identical entries without AcctSvcrRef stay two


def test_without_acctsvcrref_the_id_is_the_content_and_its_ordinal_in_the_block() -> None:
    base = entries_of("053", "08", ntry("08"))[0].entry_id
    assert entries_of("053", "08", ntry("08", ntry_ref="9"))[0].entry_id != base
    assert entries_of("053", "08", ntry("08", txs=[tx(end_to_end="X")]))[0].entry_id != base
    assert entries_of("053", "08", ntry("08", sign="CRDT"))[0].entry_id != base
    assert entries_of("053", "08", ntry("08", amount="250000.0"))[0].entry_id == base  # the same amount
    assert entries_of("053", "08", ntry("08", status="PDNG", status_form="code"))[0].entry_id == base


def test_an_entry_stated_twice_under_one_acctsvcrref_is_kept_once_another_gets_the_next_ordinal() -> None:
    same, charge = ntry("08", acct_svcr_ref="R-1"), ntry("08", acct_svcr_ref="R-1", amount="2.50")
    parsed = read_camt(camt_with_entries("052", "08", ACCOUNT, [same, same, charge]))
    assert parsed.entries == 3
    payment, fee = parsed.statement_entries
    assert payment.entry_id == entries_of("052", "08", same)[0].entry_id != fee.entry_id
    assert fee.amount_usd == Decimal("2.50")


@pytest.mark.parametrize(("reference", "nothing"), [
    ("NONREF", True), (" nonref ", True), ("NOTPROVIDED", True), ("Not Provided", True), ("NONE", True),
    ("n/a", True), ("-", True), ("//", True), ("0000", True),
    ("0101", False), ("R-1", False), ("A", False), ("NONREF-7", False), ("10", False),
])
def test_names_nothing(reference: str, nothing: bool) -> None:
    assert names_nothing(reference) is nothing


def test_entries_under_a_placeholder_acctsvcrref_are_told_apart_by_content() -> None:
    """German banks and DBS write NONREF as AcctSvcrRef on many entries: taken as the entry's
    reference, every NONREF entry after the first (that day or any later day) had the first one's
    id and was dropped as a repeat of it."""
    debit, fee, debit_again = (ntry("08", acct_svcr_ref="NONREF"), ntry("08", acct_svcr_ref="NONREF", amount="53.00"),
                               ntry("08", acct_svcr_ref="NONREF"))
    parsed = entries_of("053", "08", debit, fee, debit_again)
    assert len({e.entry_id for e in parsed}) == 3  # two equal debits on one day stay two
    assert [e.bank_reference for e in parsed] == [None] * 3
    assert [e.entry_id for e in parsed] == [e.entry_id for e in entries_of("053", "08", ntry("08"), ntry(
        "08", amount="53.00"), ntry("08"))]  # the ids of entries without AcctSvcrRef
    next_day = entries_of("053", "08", ntry("08", acct_svcr_ref="NONREF", booking="<Dt>2025-06-10</Dt>"),
                          created="2025-06-11T06:00:00Z")
    assert next_day[0].entry_id not in {e.entry_id for e in parsed}  # the same standing order, the next day


@pytest.mark.parametrize("placeholder", ["NONREF", "NOTPROVIDED", "-"])
def test_a_placeholder_end_to_end_or_instruction_id_is_no_reference(placeholder: str) -> None:
    [entry] = entries_of("053", "08", ntry("08", txs=[tx(end_to_end=placeholder, instr=placeholder)]))
    assert (entry.end_to_end_id, entry.instr_id, entry.order_references) == (None, None, [])


def test_finastra_items_under_a_placeholder_back_office_reference_are_told_apart_by_content() -> None:
    placeholder = ITEM | {"backOfficeReference": "NONREF"}
    items = parse_finastra_statement(finastra_statement(ACCOUNT, [placeholder, placeholder | {"amount": "53.00"},
                                                                  placeholder]))
    assert len({e.entry_id for e in items}) == 3 and {e.bank_reference for e in items} == {None}
    without = parse_finastra_statement(finastra_statement(ACCOUNT, [ITEM | {"backOfficeReference": None}]))
    assert items[0].entry_id == without[0].entry_id


# ------------------------------------------------------------------------------------------
# Amounts, currencies, refusals
# ------------------------------------------------------------------------------------------


def test_non_usd_entries_are_parsed_with_their_currency_and_five_decimals_kept() -> None:
    [entry] = entries_of("053", "06", ntry("06", ccy="EUR", amount="18.15000"))
    assert (entry.currency, str(entry.amount_usd)) == ("EUR", "18.15000")


def test_a_zero_entry_is_counted_not_taken() -> None:
    parsed = read_camt(camt_with_entries("054", "08", ACCOUNT, [ntry("08", amount="0.00"), ntry("08")]))
    assert parsed.entries == 2 and len(parsed.statement_entries) == 1


@pytest.mark.parametrize(("written", "where", "reason"), [
    (ntry("08", amount="-5.00"), "Ntry[1]/Amt", "not an unsigned decimal amount"),
    (ntry("08", amount="1.234567"), "Ntry[1]/Amt", "more than 5 decimals"),
    (ntry("08", amount="1000000000000001.00"), "Ntry[1]/Amt", "less than or equal"),
    (ntry("08", ccy="usd"), "Ntry[1]/Amt/@Ccy", "not an ISO 4217"),
    (ntry("08", sign="CR"), "Ntry[1]/CdtDbtInd", "expected CRDT or DBIT"),
    (ntry("08", booking="<Dt>2025-02-30</Dt>"), "Ntry[1]/BookgDt/Dt", "not a valid date"),
    (ntry("08", booking="<Dt>2025-06-09</Dt><DtTm>2025-06-09T10:00:00Z</DtTm>"), "Ntry[1]/BookgDt", "both"),
    (ntry("08", value="<DtTm>soon</DtTm>"), "Ntry[1]/ValDt/DtTm", "not an ISO 8601 date-time"),
    (ntry("08").replace("<CdtDbtInd>DBIT</CdtDbtInd>", ""), "Ntry[1]/CdtDbtInd", "required element is missing"),
])
def test_bad_entries_are_refused_naming_the_element(written: str, where: str, reason: str) -> None:
    error = refused(camt_with_entries("053", "08", ACCOUNT, [ntry("08"), ntry("08")], balances=closing_balance())
                    .replace(b"</Stmt>", b"</Stmt><Stmt><Id>S2</Id><Acct><Id><Othr><Id>A2</Id></Othr></Id></Acct>"
                             + closing_balance().encode() + written.encode() + b"</Stmt>"))
    assert error.field == f"{BLOCK['053']}[2]/{where}"
    assert reason in error.reason


def test_each_block_gives_its_own_account_and_ordinals() -> None:
    data = camt_with_entries("052", "08", ACCOUNT, [ntry("08")]).replace(
        b"</Rpt>", b"</Rpt><Rpt><Id>R2</Id><Acct><Id><IBAN>DE89370400440532013000</IBAN></Id></Acct>"
        + ntry("08").encode() + b"</Rpt>")
    first, second = read_camt(data).statement_entries
    assert (first.account_id, second.account_id) == (ACCOUNT, "DE89370400440532013000")


def test_statement_entries_is_a_lazy_read_only_sequence() -> None:
    parsed = read_camt(camt_with_entries("054", "08", ACCOUNT, [ntry("08", amount=f"{n}.00") for n in (1, 2, 3)]))
    entries = parsed.statement_entries
    assert isinstance(entries, StatementEntries) and len(entries) == 3
    assert repr(entries) == "StatementEntries(3 entries)"
    assert [e.amount_usd for e in entries[1:]] == [Decimal("2.00"), Decimal("3.00")]
    assert entries[-1] == list(entries)[2] and entries[0] is not entries[0]  # built when taken
    assert StatementEntry.model_validate(entries[0].model_dump()) == entries[0]  # what was validated


# ------------------------------------------------------------------------------------------
# Finastra account statement
# ------------------------------------------------------------------------------------------

ITEM = {"postingDate": "2025-06-09", "valueDate": "2025-06-10", "amount": "1,250,000.00", "transactionType": "DEBIT",
        "balance": "-3,750.25", "currency": "USD", "backOfficeReference": "BO-1", "ref1": "ORD-42", "ref2": "INV-9"}


def test_finastra_statement_items() -> None:
    debit, credit = parse_finastra_statement(finastra_statement(ACCOUNT, [
        ITEM, {"postingDate": "2025-06-09T15:00:00+02:00", "amount": "12.5", "transactionType": "CREDIT"}]))
    assert debit == StatementEntry(
        entry_id=debit.entry_id, account_id=ACCOUNT, direction=EntryDirection.DBIT, amount_usd=Decimal("1250000.00"),
        booking_date=date(2025, 6, 9), booked_ts=EOD, value_date=date(2025, 6, 10), bank_reference="BO-1",
        customer_references=["ORD-42", "INV-9"], balance_after_usd=Decimal("-3750.25"), source="finastra",
    )
    assert debit.order_references == ["ORD-42", "INV-9"] and debit.entry_id.startswith("finastra-entry-")
    assert (credit.direction, credit.amount_usd, credit.currency) == (EntryDirection.CRDT, Decimal("12.5"), "USD")
    assert (credit.booking_date, credit.booked_ts) == (date(2025, 6, 9), datetime(2025, 6, 9, 13, tzinfo=UTC))
    assert credit.bank_reference is None and credit.customer_references == []


def test_finastra_ids_are_stable_across_polls() -> None:
    first = parse_finastra_statement(finastra_statement(ACCOUNT, [ITEM, ITEM | {"backOfficeReference": ""}] * 2))
    again = parse_finastra_statement(finastra_statement(ACCOUNT, [ITEM | {"amount": "1250000"},
                                                                  ITEM | {"backOfficeReference": None}] * 2))
    assert len(first) == 3  # the same item under one backOfficeReference twice: kept once
    assert [e.entry_id for e in first] == [e.entry_id for e in again]
    assert len({e.entry_id for e in first}) == 3  # two identical items without a reference stay two


def test_finastra_signed_debits_and_accounts() -> None:
    [signed] = parse_finastra_statement(finastra_statement(ACCOUNT, [ITEM | {"amount": "-1,250,000.00"}]))
    assert signed.amount_usd == Decimal("1250000.00") and signed.direction is EntryDirection.DBIT
    [by_id] = parse_finastra_statement({"items": [ITEM | {"id": "ACC-9"}]})
    [given_account] = parse_finastra_statement({"items": [ITEM]}, account_id="ACC-7")
    [single] = parse_finastra_statement(ITEM | {"accountId": "ACC-5"})
    assert (by_id.account_id, given_account.account_id, single.account_id) == ("ACC-9", "ACC-7", "ACC-5")


@pytest.mark.parametrize(("item", "field", "reason"), [
    (ITEM | {"amount": "1.234,56"}, "items[1].amount", "not an amount"),
    (ITEM | {"amount": "-5.00", "transactionType": "CREDIT"}, "items[1].amount", "contradicts"),
    (ITEM | {"amount": "0.00"}, "items[1].amount", "must not be zero"),
    (ITEM | {"amount": None}, "items[1].amount", "required"),
    (ITEM | {"amount": 12.5}, "items[1].amount", "expected a decimal string"),
    (ITEM | {"transactionType": "REVERSAL"}, "items[1].transactionType", "expected CREDIT or DEBIT"),
    ({k: v for k, v in ITEM.items() if k != "postingDate"}, "items[1].postingDate", "required"),
    (ITEM | {"postingDate": "09/06/2025"}, "items[1].postingDate", "not a date"),
    (ITEM | {"valueDate": "2025-13-01"}, "items[1].valueDate", "not a valid date"),
    (ITEM | {"balance": "1,2"}, "items[1].balance", "not an amount"),
    (ITEM | {"currency": "usd"}, "items[1].currency", "pattern"),
    (ITEM | {"ref1": "R" * 141}, "items[1].ref1", "at most 140"),
    (ITEM | {"ref1": None, "ref2": "R" * 141}, "items[1].ref2", "at most 140"),
    (ITEM | {"ref1": "A", "ref2": "R" * 141}, "items[1].ref2", "at most 140"),
])
def test_finastra_refusals_name_the_path(item: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(MessageRejected) as exc:
        parse_finastra_statement({"items": [ITEM | {"accountId": ACCOUNT}, {"accountId": ACCOUNT} | item]})
    assert (exc.value.field, reason in exc.value.reason) == (field, True), exc.value


def test_finastra_statement_without_an_account_is_refused() -> None:
    with pytest.raises(MessageRejected) as exc:
        read_bank_file(finastra_statement(None, [ITEM]), "application/json")
    assert exc.value.field == "items[0].accountId" and "must name its account" in exc.value.reason


# ------------------------------------------------------------------------------------------
# Dispatch
# ------------------------------------------------------------------------------------------


def test_dispatch_of_every_source_of_entries() -> None:
    statement = read_bank_file(finastra_statement(ACCOUNT, [ITEM]), None)
    assert (statement.format, statement.events, statement.entries, statement.note) == ("finastra-statement", [], 1,
                                                                                        None)
    assert list(statement.statement_entries) == parse_finastra_statement(finastra_statement(ACCOUNT, [ITEM]))
    assert read_finastra(finastra_statement(ACCOUNT, [ITEM])).kind == "statement"
    balances = read_bank_file(json.dumps({"items": [{"id": ACCOUNT, "currency": "USD", "availableBalance": "1.00",
                                                     "balanceAsOn": "2025-06-09"}]}).encode(), None)
    assert balances.format == "finastra" and len(balances.events) == 1 and not balances.statement_entries
    native = statement.statement_entries[0]
    parsed = read_bank_file(native.model_dump_json().encode(), "application/json")
    assert (parsed.format, parsed.events, len(parsed.statement_entries)) == ("statement_entry", [], 1)
    assert parsed.statement_entries[0].model_dump(mode="json") == native.model_dump(mode="json")
    camt = read_bank_file(camt_with_entries("053", "08", ACCOUNT, [ntry("08")], balances=closing_balance()), None)
    assert camt.format == "camt.053.001.08" and len(camt.events) == 1 and len(camt.statement_entries) == 1
    empty = read_bank_file(b'{"items": [], "_meta": {}}', None)
    assert empty.note == "finastra document without any balance or entry: nothing to send"


def test_a_native_entry_is_checked_by_its_contract() -> None:
    body = json.loads(read_bank_file(finastra_statement(ACCOUNT, [ITEM]), None).statement_entries[0]
                      .model_dump_json()) | {"amount_usd": "0"}
    with pytest.raises(MessageRejected) as exc:
        read_bank_file(json.dumps(body).encode(), None)
    assert exc.value.field == "amount_usd"


# ------------------------------------------------------------------------------------------
# Kafka encoding
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["camt", "finastra"])
def test_encode_entry_round_trip(source: str) -> None:
    if source == "camt":
        [entry] = entries_of("054", "08", ntry("08", txs=[tx(end_to_end="ORD-1")], acct_svcr_ref="R"))
    else:
        [entry] = parse_finastra_statement(finastra_statement(ACCOUNT, [ITEM]))
    record = encode_entry(entry, "trace-1")
    headers = {name: value.decode() if isinstance(value, bytes) else value for name, value in record.headers}
    assert record.key == ACCOUNT.encode() and headers[TRACE_HEADER] == "trace-1"
    assert str(headers[VERSION_HEADER]).startswith("statement_entry/1.")
    assert headers[VERSION_HEADER] == ENTRY_SCHEMA_VERSION
    decoded = StatementEntry.model_validate_json(record.value)
    stamped = entry.model_copy(update={"trace_id": "trace-1"})
    # the contract writes times to the millisecond (UtcDatetime): an end-of-day 23:59:59.999999 comes back .999
    assert decoded.model_dump(mode="json") == stamped.model_dump(mode="json")
    assert decoded.model_copy(update={"booked_ts": stamped.booked_ts}) == stamped
    assert stamped.booked_ts is not None and decoded.booked_ts == stamped.booked_ts.replace(
        microsecond=stamped.booked_ts.microsecond // 1000 * 1000)


# ------------------------------------------------------------------------------------------
# Property: generated entries round-trip through camt XML
# ------------------------------------------------------------------------------------------


@st.composite
def generated(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    version = draw(st.sampled_from(["02", "06", "07", "08", "13"]))
    amount = draw(st.decimals(min_value=Decimal("0.00001"), max_value=Decimal("999999999.99999"),
                              places=draw(st.integers(0, 5))))
    sign = draw(st.sampled_from(["CRDT", "DBIT"]))
    day = draw(st.dates(min_value=date(2001, 1, 1), max_value=date(2030, 12, 31)))
    end_to_end = draw(st.none() | st.from_regex(r"[A-Z0-9][A-Z0-9/-]{0,34}", fullmatch=True))
    written = ntry(version, amount=str(amount), sign=sign, booking=f"<Dt>{day.isoformat()}</Dt>",
                   txs=[tx(end_to_end=end_to_end)] if end_to_end else [])
    return written, {"amount_usd": amount, "direction": EntryDirection(sign), "booking_date": day,
                     "booked_ts": datetime.combine(day, datetime.max.time(), tzinfo=UTC),
                     "end_to_end_id": None if end_to_end and names_nothing(end_to_end) else end_to_end}


@settings(max_examples=60, deadline=None)
@given(drawn=st.lists(generated(), min_size=1, max_size=6), message=st.sampled_from(["052", "053", "054"]))
def test_property_generated_entries_round_trip(drawn: list[tuple[str, dict[str, Any]]], message: str) -> None:
    balances = closing_balance() if message == "053" else ""
    data = camt_with_entries(message, "08", ACCOUNT, [w for w, _ in drawn], balances=balances, created=None)
    parsed = read_camt(data).statement_entries
    got = [{k: getattr(e, k) for k in drawn[0][1]} for e in parsed]
    assert got == [want for _, want in drawn]
    assert all(str(e.amount_usd) == str(want["amount_usd"]) for e, (_, want) in zip(parsed, drawn, strict=True))
    assert len({e.entry_id for e in parsed}) == len(parsed)
    assert [e.entry_id for e in read_camt(data).statement_entries] == [e.entry_id for e in parsed]


# ------------------------------------------------------------------------------------------
# Ingestion: entries before balances, checked like balances
# ------------------------------------------------------------------------------------------


def test_ingest_dry_run_prints_entries_first(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    statement = tmp_path / "s.xml"
    statement.write_bytes(camt_with_entries("053", "08", ACCOUNT, [ntry("08", txs=[tx(end_to_end="ORD-1")])],
                                            balances=closing_balance()))
    page = tmp_path / "p.json"
    page.write_bytes(finastra_statement(ACCOUNT, [ITEM]))
    assert main(["ingest", "--dry-run", str(statement), str(page)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line.get("record", "balance") for line in lines] == ["entry", "balance", "entry"]
    assert lines[0] == {**lines[0], "account_id": ACCOUNT, "direction": "DBIT", "amount": "250000.00",
                        "booking_date": "2025-06-09", "end_to_end_id": "ORD-1", "status": "BOOK"}
    assert lines[2]["amount"] == "1250000.00" and lines[2]["bank_reference"] == "BO-1"


def test_only_booked_entries_are_refused_for_a_future_booking() -> None:
    future = (datetime.now(UTC) + timedelta(days=3)).date().isoformat()
    booked, announced = entries_of("052", "08", ntry("08", booking=f"<Dt>{future}</Dt>"),
                                   ntry("08", status="FUTR", booking=f"<Dt>{future}</Dt>"), created=None)
    booked_in_time([announced], datetime.now(UTC), 300)
    with pytest.raises(MessageRejected) as exc:
        booked_in_time([announced, booked], datetime.now(UTC), 300)
    assert exc.value.field == "booking_date"


class _Delivered:
    def __init__(self, offset: int) -> None:
        self._offset = offset

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset


async def _post(monkeypatch: pytest.MonkeyPatch, body: bytes, known: set[str]) -> tuple[httpx.Response, list[Any]]:
    from serve_app.rest import errors
    from serve_app.rest.openapi import RequestBodies
    from serve_app.rest.routes import balances
    from treasury.settings import RuntimeSettings

    sent: list[tuple[bytes, dict[str, Any]]] = []

    class Producer:
        async def send(self, topic: str, key: bytes, value: bytes, headers: Any) -> _Delivered:
            sent.append((key, dict(headers)))
            return _Delivered(len(sent) - 1)

    async def get_many(_pool: Any, ids: list[str]) -> dict[str, None]:
        return {i: None for i in ids if i in known}

    async def pool() -> None:
        return None

    monkeypatch.setattr(balances.accounts, "get_many", get_many)
    backend = SimpleNamespace(settings=RuntimeSettings(auth="off"), verifier=None, pool=pool, producer=Producer)
    app = FastAPI()
    errors.install(app)

    @app.middleware("http")
    async def trace(request: Any, call_next: Any) -> Any:
        request.state.trace_id = "t-1"
        return await call_next(request)

    app.include_router(balances.router(backend, RequestBodies()))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        return await client.post("/balances", content=body, headers={"content-type": "application/xml"}), sent


async def test_post_balances_sends_entries_before_balances(monkeypatch: pytest.MonkeyPatch) -> None:
    today = datetime.now(UTC).date().isoformat()
    data = camt_with_entries("053", "08", ACCOUNT, [ntry("08", booking=f"<Dt>{today}</Dt>", acct_svcr_ref=f"R{n}")
                                                    for n in range(3)],
                             balances=closing_balance(day=today), created=None)
    response, sent = await _post(monkeypatch, data, {ACCOUNT})
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["count"], body["entries"], body["accepted"], body["topic"]) == (1, 3, True, "balance_events")
    assert [r["offset"] for r in body["entry_records"]] == [0, 1, 2] and body["events"][0]["offset"] == 3
    assert [h["schema_version"].decode().split("/")[0] for _, h in sent] == ["statement_entry"] * 3 + [
        "balance_event"]
    assert "note" not in body


async def test_post_balances_refuses_entries_of_unknown_accounts_or_other_currencies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = camt_with_entries("054", "08", ACCOUNT, [ntry("08")])
    response, sent = await _post(monkeypatch, data, set())
    assert response.status_code == 422 and response.json()["error"]["field"] == "account_id" and sent == []
    euro = camt_with_entries("054", "08", ACCOUNT, [ntry("08", ccy="EUR")])
    response, sent = await _post(monkeypatch, euro, {ACCOUNT})
    assert response.status_code == 422 and response.json()["error"]["field"] == "currency" and sent == []
