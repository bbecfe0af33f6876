"""A shard's batch tells statement entries from balances and refuses bad entries with the field and reason."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from confluent_kafka import Message

from actors.account_state import Outcome
from actors.batch_plan import MAX_EVENT_BYTES
from actors.entry_intake import admissible, conflict, split
from schemas.balance_record import encode, encode_entry
from schemas.statement_entry import EntryDirection, EntryStatus, StatementEntry
from storage.entries import booked_on_another_day, held_view
from tests.unit.test_batch_plan import event

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def entry(entry_id: str = "E1", account: str = "A1", amount: str = "250000", **kw: object) -> StatementEntry:
    fields: dict[str, object] = {"entry_id": entry_id, "account_id": account, "direction": EntryDirection.DBIT,
                                 "amount_usd": Decimal(amount), "booking_date": date(2026, 11, 30),
                                 "booked_ts": datetime(2026, 11, 30, 9, tzinfo=UTC), **kw}
    return StatementEntry.model_validate(fields)


def as_message(key: bytes, value: bytes, headers: list[tuple[str, str | bytes | None]], offset: int = 0) -> Message:
    return Message(topic="balance_events", partition=0, offset=offset, key=key, value=value, headers=headers,
                   timestamp=(1, 1_000))


def entry_message(e: StatementEntry, offset: int = 0, **change: bytes) -> Message:
    record = encode_entry(e)
    return as_message(change.get("key", record.key), change.get("value", record.value), record.headers, offset)


def test_entries_and_balances_are_told_apart_by_the_version_header() -> None:
    balance = encode(event("b1"))
    msgs = [as_message(balance.key, balance.value, balance.headers, 0), entry_message(entry(), 1)]
    balances, entries, refused = split(msgs)
    assert [m.offset() for m in balances] == [0]
    assert [e.entry.entry_id for e in entries] == ["E1"] and refused == []
    assert entries[0].trace_id  # the header's, or a new one


@pytest.mark.parametrize(("message", "field", "reason"), [
    (lambda: entry_message(entry(), key=b"OTHER"), "account_id", "does not match the message key"),
    (lambda: entry_message(entry(currency="EUR")), "currency", "only USD accounts are swept"),
    (lambda: entry_message(entry(), value=b'{"entry_id": "E1"}'), "account_id", ""),
    (lambda: entry_message(entry(), value=b"x" * (MAX_EVENT_BYTES + 1)), "$", "a statement entry may be at most"),
    (lambda: as_message(b"A1", encode_entry(entry()).value, [("schema_version", b"statement_entry/2.0.0")]),
     "schema_version", "is not a version this service reads (statement_entry/1.x.y)"),
])
def test_a_bad_entry_is_refused_naming_the_field(message: object, field: str, reason: str) -> None:
    assert callable(message)
    balances, entries, refused = split([message()])
    assert balances == [] and entries == []
    [rejected] = refused
    assert rejected.error.field == field and reason in rejected.error.reason


def test_unknown_accounts_and_future_bookings_are_refused_the_rest_kept() -> None:
    _, entries, _ = split([entry_message(entry("E1")), entry_message(entry("E2", account="ZZ"), 1),
                           entry_message(entry("E3", booking_date=date(2027, 1, 4),
                                               booked_ts=datetime(2027, 1, 4, 9, tzinfo=UTC)), 2)])
    kept, refused = admissible(entries, {"A1"}, NOW, 300)
    assert [k.entry.entry_id for k in kept] == ["E1"]
    assert [(r.error.field, r.outcome) for r in refused] == [("account_id", Outcome.INVALID),
                                                             ("booked_ts", Outcome.FUTURE)]


def test_a_conflict_names_both_figures() -> None:
    _, [item], _ = split([entry_message(entry(amount="90000000"))])
    rejected = conflict(item, {"amount_usd": "50000.00", "direction": "DBIT", "refs": []})
    assert rejected.outcome is Outcome.CONFLICT and rejected.error.field == "entry_id"
    assert "already received with amount_usd 50000" in rejected.error.reason
    assert "this one says amount_usd 90000000" in rejected.error.reason


@pytest.mark.parametrize(("held", "again", "another_day"), [
    ({"status": "BOOK", "booking_date": "2026-11-27"}, {}, True),  # a reference the bank reused
    ({"status": "BOOK", "booking_date": "2026-11-30"}, {}, False),  # the same entry re-sent
    ({"status": "PDNG", "booking_date": None}, {}, False),  # pending, now booked: the same entry moving on
    ({"status": "PDNG", "booking_date": "2026-11-27"}, {}, False),
    ({"status": "BOOK", "booking_date": None}, {}, False),
    ({"status": "BOOK", "booking_date": "2026-11-27"}, {"status": EntryStatus.PDNG}, False),
])
def test_booked_on_another_day(held: dict[str, object], again: dict[str, object], another_day: bool) -> None:
    assert booked_on_another_day(held, entry(**again)) is another_day


def test_a_conflict_of_booking_days_names_both_and_why() -> None:
    _, [item], _ = split([entry_message(entry())])
    earlier = held_view(entry(booking_date=date(2026, 11, 27), booked_ts=datetime(2026, 11, 27, 9, tzinfo=UTC)))
    rejected = conflict(item, earlier)
    assert rejected.outcome is Outcome.CONFLICT and rejected.error.field == "entry_id"
    assert ("already received with booking_date 2026-11-27; this one says booking_date 2026-11-30: same id booked "
            "on another day, so another entry under a reference the bank reused") in rejected.error.reason
