"""Taking bank files and webhook bodies in: every event checked before any is appended.

A file is all or nothing: one refused balance refuses the whole file, with the element path and
the reason. Event ids are deterministic (derived from the bank's message), so sending the same
file again after a partial network failure appends only duplicates, which the shards ignore.

A valid message that carries no balance (a camt.054 notifies entries; a camt.052 may report only
entries; a Finastra page may be empty) is not an error: there is nothing to check and nothing to
send, and the callers say so (``BankFile.note``) instead of refusing a file the bank got right.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from schemas.balance_event import BalanceEvent
from schemas.errors import MessageRejected

SWEPT_CURRENCY = "USD"


def check_ingestible(events: Sequence[BalanceEvent], known_accounts: Iterable[str]) -> None:
    """Refuse the whole batch at the first event the orchestrator could not act on (none: nothing to refuse)."""
    known = set(known_accounts)
    for event in events:
        if event.currency != SWEPT_CURRENCY:
            raise MessageRejected(
                "currency", f"only USD accounts are swept, got {event.currency} for account {event.account_id!r}"
            )
        if event.account_id not in known:
            raise MessageRejected("account_id", f"unknown account {event.account_id!r}")


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

