"""Taking bank files and webhook bodies in: every event and entry checked before any is appended.

A file is all or nothing: one refused balance or entry refuses the whole file, with the element
path and the reason. Event and entry ids are deterministic (derived from the bank's message), so
sending the same file again after a partial network failure appends only duplicates, which the
shards ignore.

Statement entries are checked as balances are (USD only, known accounts) and sent before the
file's balances (:func:`in_send_order`): a balance of the same report already shows its entries, so
the shard that owns the account must have seen them when the balance arrives. Only a *booked*
entry is refused for a booking date in the future (``booked_in_time``): a ``FUTR`` (or pending)
entry dated ahead is what the bank announces, as a forward balance is, and must not refuse the
file that carries it.

A valid message that carries neither balance nor entry (an empty camt.054, an empty Finastra page)
is not an error: there is nothing to check and nothing to send, and the callers say so
(``BankFile.note``) instead of refusing a file the bank got right.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from schemas import balance_record
from schemas.balance_event import BalanceEvent
from schemas.balance_record import BalanceRecord
from schemas.errors import MessageRejected
from schemas.statement_entry import EntryStatus, StatementEntry

SWEPT_CURRENCY = "USD"


def check_ingestible(events: Iterable[BalanceEvent | StatementEntry], known_accounts: Iterable[str]) -> None:
    """Refuse the whole batch at the first event or entry the orchestrator could not act on (none: none refused)."""
    known = set(known_accounts)
    for event in events:
        if event.currency != SWEPT_CURRENCY:
            raise MessageRejected(
                "currency", f"only USD accounts are swept, got {event.currency} for account {event.account_id!r}"
            )
        if event.account_id not in known:
            raise MessageRejected("account_id", f"unknown account {event.account_id!r}")


def booked_in_time(entries: Iterable[StatementEntry], now: datetime, max_skew_s: int) -> None:
    """``refuse_future`` for the booked entries: a booking in the future is a broken clock or a wrong
    field; an entry announced for later (``FUTR``, ``PDNG``) is not refused for its date."""
    from actors.account_state import refuse_future  # the shards' own rule; imported when used (CLI start-up)

    refuse_future((e for e in entries if e.status is EntryStatus.BOOK), now, max_skew_s)


def in_send_order(events: Iterable[BalanceEvent], entries: Iterable[StatementEntry],
                  trace_id: str | None = None) -> Iterator[BalanceRecord]:
    """The Kafka records of one file: every entry first, then every balance (module doc)."""
    for entry in entries:
        yield balance_record.encode_entry(entry, trace_id)
    for event in events:
        yield balance_record.encode(event, trace_id)


def entry_dry_run_line(entry: StatementEntry) -> dict[str, Any]:
    """What ``ingest --dry-run`` prints per entry; ``record`` tells it from a balance's line."""
    dumped = entry.model_dump(mode="json")
    return {
        "record": "entry",
        "entry_id": entry.entry_id,
        "account_id": entry.account_id,
        "direction": entry.direction.value,
        "status": entry.status.value,
        "amount": str(entry.amount_usd),
        "currency": entry.currency,
        "booking_date": dumped["booking_date"],
        "booked_ts": dumped["booked_ts"],
        "end_to_end_id": entry.end_to_end_id,
        "bank_reference": entry.bank_reference,
    }


def dry_run_line(event: BalanceEvent) -> dict[str, Any]:
    """What ``ingest --dry-run`` prints per event: enough to check a file against the bank's view."""
    amount = event.available_usd if event.available_usd is not None else event.booked_usd
    return {
        "account_id": event.account_id,
        "balance_code": event.balance_code.value if event.balance_code else None,
        "amount": str(amount) if amount is not None else None,
        "field": "available" if event.available_usd is not None else "booked",
        "currency": event.currency,
        "as_of_ts": event.model_dump(mode="json")["as_of_ts"],
        "kind": event.kind.value,
        "event_id": event.event_id,
    }

