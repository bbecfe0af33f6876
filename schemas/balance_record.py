"""The one Kafka encoding of what goes on ``balance_events``: a ``BalanceEvent`` or a ``StatementEntry``.

Every producer of balance events (the REST ``POST /balances``, the feed simulator, ``ingest``,
the load generator and the pipeline benchmark) calls ``encode``, and every producer of statement
entries ``encode_entry``, so the shards see the same record whoever sent it: keyed by account (one
account, one partition: its balances and entries in one order), the message as JSON with its
trace id, and the ``trace_id`` and ``schema_version`` headers the shards read. The version header
is what tells an entry from a balance; a record without one is a balance event.
"""

from __future__ import annotations

from typing import NamedTuple

from schemas.balance_event import BalanceEvent
from schemas.catalog import VERSIONS
from schemas.statement_entry import StatementEntry
from treasury.ids import new_trace_id

# The header the shards check: a major version they do not know goes to the dead-letter topic.
SCHEMA_VERSION = f"balance_event/{VERSIONS['BalanceEvent']}"
ENTRY_SCHEMA_VERSION = f"statement_entry/{VERSIONS['StatementEntry']}"
TRACE_HEADER = "trace_id"
VERSION_HEADER = "schema_version"


# As confluent_kafka takes them (and ``actors.kafka_clients.Headers`` spells them).
KafkaHeaders = list[tuple[str, str | bytes | None]]


class BalanceRecord(NamedTuple):
    key: bytes
    value: bytes
    headers: KafkaHeaders


def encode(event: BalanceEvent, trace_id: str | None = None) -> BalanceRecord:
    """The record for ``event``; its own trace id wins, then ``trace_id`` (the request's), else a new one.

    The trace id goes into both the value and the header, so a reader of either can follow the
    event to the order it leads to.
    """
    trace = event.trace_id or trace_id or new_trace_id()
    stamped = event if event.trace_id == trace else event.model_copy(update={"trace_id": trace})
    return BalanceRecord(
        key=event.account_id.encode(),
        value=stamped.model_dump_json(exclude_none=True).encode(),
        headers=[(TRACE_HEADER, trace.encode()), (VERSION_HEADER, SCHEMA_VERSION.encode())],
    )


def encode_entry(entry: StatementEntry, trace_id: str | None = None) -> BalanceRecord:
    """The record for a statement entry: the same key as the account's balances, its own version header."""
    trace = entry.trace_id or trace_id or new_trace_id()
    stamped = entry if entry.trace_id == trace else entry.model_copy(update={"trace_id": trace})
    return BalanceRecord(
        key=entry.account_id.encode(),
        value=stamped.model_dump_json(exclude_none=True).encode(),
        headers=[(TRACE_HEADER, trace.encode()), (VERSION_HEADER, ENTRY_SCHEMA_VERSION.encode())],
    )
