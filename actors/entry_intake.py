"""The statement entries of a shard's batch: told apart from balances, checked, refused with a reason.

Entries share ``balance_events`` with balances (same key, so one shard applies an account's
entries and balances in one order); the ``schema_version`` header names the contract
(``schemas.balance_record``). Pure like ``actors.batch_plan``: the shard stores what is kept
(``actors.entry_ledger``) and dead-letters the rest on ``balance_events.dlq``.

Refused, each with the field and the reason: a message too large, a ``statement_entry`` major
version this service does not read, a body that is not a ``StatementEntry``, a key that is not the
entry's account, a currency other than USD, an account not registered, a booking dated in the
future (``actors.account_state.entry_future_dated``) and an entry id already received with other
content, or booked again on another day (``conflict``).
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from confluent_kafka import Message

from actors import kafka_clients
from actors.account_state import Outcome, entry_future_dated
from actors.batch_plan import Rejected, check_envelope, check_owner, header_list
from schemas.catalog import VERSIONS
from schemas.errors import MessageRejected, decode_with_source
from schemas.statement_entry import StatementEntry
from storage.entries import held_view
from treasury.ids import new_trace_id

ENTRY_SCHEMA = "statement_entry"
ENTRY_MAJOR = VERSIONS["StatementEntry"].split(".")[0]


@dataclass(frozen=True)
class IncomingEntry:
    msg: Message
    entry: StatementEntry
    source: dict[str, Any]  # as received, stored encrypted in raw_entry
    trace_id: str

    @property
    def key(self) -> tuple[str, str]:
        return self.entry.account_id, self.entry.entry_id


def is_entry(msg: Message) -> bool:
    version = kafka_clients.header_map(header_list(msg)).get("schema_version")
    return version is not None and version.startswith(f"{ENTRY_SCHEMA}/")


def split(msgs: Sequence[Message]) -> tuple[list[Message], list[IncomingEntry], list[Rejected]]:
    """Balance messages (for ``batch_plan.validate``), valid entries in batch order, refused entries."""
    balances: list[Message] = []
    entries: list[IncomingEntry] = []
    rejects: list[Rejected] = []
    for msg in msgs:
        if not is_entry(msg):
            balances.append(msg)
            continue
        try:
            entries.append(_entry(msg))
        except MessageRejected as exc:
            rejects.append(Rejected(msg, exc))
    return balances, entries, rejects


def _entry(msg: Message) -> IncomingEntry:
    check_envelope(msg, ENTRY_SCHEMA, ENTRY_MAJOR, "a statement entry")
    entry, source = decode_with_source(StatementEntry, msg.value() or b"")
    check_owner(msg, entry.account_id, entry.currency)
    trace = entry.trace_id or kafka_clients.header_map(msg.headers()).get("trace_id") or new_trace_id()
    return IncomingEntry(msg, entry, source, trace)


def admissible(entries: Sequence[IncomingEntry], known: Container[str], now: datetime,
               max_skew_s: int) -> tuple[list[IncomingEntry], list[Rejected]]:
    """Entries of registered accounts whose booking is not in the future; the rest refused."""
    keep: list[IncomingEntry] = []
    refused: list[Rejected] = []
    for item in entries:
        if item.entry.account_id not in known:
            refused.append(Rejected(item.msg, MessageRejected("account_id",
                                                              f"unknown account {item.entry.account_id!r}")))
            continue
        future = entry_future_dated(item.entry, now, max_skew_s)
        if future is not None:
            refused.append(Rejected(item.msg, future, Outcome.FUTURE))
            continue
        keep.append(item)
    return keep, refused


def conflict(item: IncomingEntry, kept: Mapping[str, Any]) -> Rejected:
    """The dead letter of an entry id re-used with other content or on another booking day: both
    figures of what differs."""
    again = {**held_view(item.entry), "refs": item.entry.order_references}
    kept = {**kept, "amount_usd": _plain(kept.get("amount_usd"))}
    again["amount_usd"] = _plain(again["amount_usd"])
    differ = [(name, kept.get(name), again.get(name)) for name in
              ("amount_usd", "direction", "refs", "booking_date")
              if str(kept.get(name)) != str(again.get(name)) and name in kept]
    was = ", ".join(f"{name} {a}" for name, a, _ in differ) or "other content"
    now = ", ".join(f"{name} {b}" for name, _, b in differ) or "different content"
    why = ("same id booked on another day, so another entry under a reference the bank reused"
           if [name for name, _, _ in differ] == ["booking_date"] else "same id, different content")
    return Rejected(item.msg, MessageRejected(
        "entry_id",
        f"entry_id {item.entry.entry_id!r} already received with {was}; this one says {now}: {why}, "
        "refused (the first stands)",
    ), Outcome.CONFLICT)


def _plain(amount: object) -> str:
    return format(Decimal(str(amount)).normalize(), "f") if amount is not None else "none"
