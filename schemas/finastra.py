"""Finastra corporate account JSON -> ``BalanceEvent`` (balances) and ``StatementEntry`` (statement items).

Why: accounts held at Finastra-based banks report balances through Finastra's corporate
account API, not ISO 20022. This module turns its JSON into the same ``BalanceEvent`` the camt
feed produces, with the same refusal rule: a bad document is refused as a whole, naming the
field.

Input: one balance object, or the list envelope ``{"items": [...], "_meta": {...}}`` (``_meta``
is pagination and is not read). A balance object::

    {"id": "ACC-1", "currency": "USD", "type": "CURRENT",
     "ledgerBalance": "1,234,567.89", "availableBalance": "1,200,000.00",
     "balanceAsOn": "2024-03-01T14:05:00Z"}

Rules:

* ``availableBalance`` -> ``available_usd``, ``ledgerBalance`` -> ``booked_usd``; at least one is
  required, ``null`` counts as absent. The fields are named ``*_usd`` by the contract but carry
  the amount in ``currency``; nothing is converted.
* Amounts are strings (or JSON integers / exact numbers). ``,`` is a thousands separator and
  must group by three (``1,234,567.89``); ``.`` is the decimal point. Anything else - ``1.234,56``,
  ``1,23``, ``(5.00)``, spaces - is refused rather than guessed. A leading ``-`` is an overdraft.
  A Python ``float`` (only possible when a dict is passed in) is refused: it is already inexact.
* ``balanceAsOn``: a date alone is the END of that day in UTC (23:59:59.999999Z), or in the zone
  of its offset (``2024-03-01+02:00``) converted to UTC; a date-time without offset is UTC, with an
  offset it is converted: the same rules as camt (:mod:`schemas.camt`), so both feeds agree on what
  a date means.
* ``kind`` is ``INTRADAY`` (the API reports the balance now, not a closed statement) and
  ``balance_code`` is ``None`` (Finastra sends no ISO code).
* ``type`` (the account type) must be a string when present; it is not carried over.
  Unknown fields are ignored: the API adds fields over time.
* ``event_id`` is ``finastra-<sha256>`` of (account, currency, as-of, available, ledger), the
  amounts in canonical form: the same balance re-polled gets the same id (dropped downstream as
  a duplicate), a corrected figure for the same moment gets a new one instead of being lost.
* Field paths: ``items[3].availableBalance`` (0-based, as in JSON) or ``availableBalance`` for a
  single object; ``$`` for the document itself.

Account statement (``GET .../accounts/{id}/statement`` of the Accounts & Balances API): the same
envelope (or one object), each item a booked transaction::

    {"accountId": "ACC-1", "postingDate": "2024-03-01", "valueDate": "2024-03-04",
     "amount": "1,250.00", "transactionType": "DEBIT", "balance": "98,750.00", "currency": "USD",
     "backOfficeReference": "BO-778", "ref1": "ORD-42", "ref2": "INV-9"}

:func:`parse_finastra_statement` makes each a ``StatementEntry`` (status ``BOOK``, source
``finastra``); a document is a statement when its items carry ``transactionType``
(:func:`read_finastra` decides, for ``schemas.bank_formats``). Rules:

* ``transactionType`` ``CREDIT`` | ``DEBIT`` is the direction. ``amount`` follows the balance amount
  rules above and must not be zero; it is unsigned in the contract, so a bank that signs its
  debits (``-1,250.00`` with ``DEBIT``) is read as the absolute value, but a sign that contradicts
  ``transactionType`` (``-5.00`` with ``CREDIT``) is refused: which one is right cannot be told.
* ``postingDate`` -> ``booking_date`` (the date as written) and ``booked_ts``: a date-time is that
  instant; a date alone is the end of that day (UTC, or the zone of its offset), the same reading
  as balances. Required: a statement item is booked. ``valueDate`` (optional) -> ``value_date``.
* ``balance`` (the running balance after the item) -> ``balance_after_usd``, signed;
  ``backOfficeReference`` -> ``bank_reference`` (a placeholder such as ``NONREF`` is none:
  ``schemas.statement_entry.names_nothing``); ``ref1``, ``ref2`` -> ``customer_references`` (the
  payer's references, where an order id comes back); ``currency`` when present, else ``USD``.
* The account: the item's ``accountId`` (or ``id``); else the ``account_id`` the caller passes
  (the statement endpoint is per account, and its ``_meta`` does not name it); else the item is
  refused naming ``items[i].accountId``. A file or a ``POST /balances`` body cannot say which
  account a bare statement is for, so it must name it in its items.
* ``entry_id`` is ``finastra-entry-<sha256>`` of (account, ``backOfficeReference``) when there is
  one: the same item polled again has the same id. Without one, of (account, posting date,
  direction, amount, currency, value date, ref1, ref2) plus an ordinal among identical items of
  the document, so two equal payments on one day stay two entries. An item repeated in one
  document with the same ``backOfficeReference`` and the same content is kept once; with other
  content it gets the next ordinal (``(account, reference, n)``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from schemas.balance_event import BalanceEvent, BalanceKind
from schemas.camt import end_of_day_utc, instant_utc, stable_event_id
from schemas.errors import MessageRejected
from schemas.statement_entry import EntryDirection, EntryStatus, StatementEntry, names_nothing

__all__ = ["FinastraDocument", "is_statement", "parse_finastra", "parse_finastra_statement", "read_finastra",
           "to_finastra_json"]

_PLAIN = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_GROUPED = re.compile(r"-?[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?")
_FIELDS = {
    "account_id": "id",
    "currency": "currency",
    "available_usd": "availableBalance",
    "booked_usd": "ledgerBalance",
    "as_of_ts": "balanceAsOn",
}


@dataclass(frozen=True)
class FinastraDocument:
    """A Finastra document as read: balances, or the entries of an account statement (never both)."""

    kind: str  # "balances" or "statement"
    events: list[BalanceEvent] = field(default_factory=list)
    entries: list[StatementEntry] = field(default_factory=list)


def read_finastra(data: bytes | str | dict[str, Any], account_id: str | None = None) -> FinastraDocument:
    """Balances or statement entries, whichever the document is (:func:`is_statement`)."""
    body = _load(data)
    if is_statement(body):
        return FinastraDocument("statement", entries=parse_finastra_statement(body, account_id))
    return FinastraDocument("balances", events=parse_finastra(body))


def is_statement(body: dict[str, Any]) -> bool:
    """A statement item carries ``transactionType``; a balance object never does. Decided by the
    single object, or by any item of the envelope (the others are then read, and refused, as items)."""
    items = body.get("items")
    if isinstance(items, list):
        return any(isinstance(item, dict) and "transactionType" in item for item in items)
    return "transactionType" in body


def parse_finastra_statement(data: bytes | str | dict[str, Any], account_id: str | None = None
                             ) -> list[StatementEntry]:
    """Every item of a Finastra account statement as a ``StatementEntry``, or ``MessageRejected``."""
    body = _load(data)
    if "items" not in body:
        pairs = [(body, "")]
    else:
        items = body["items"]
        if not isinstance(items, list):
            raise MessageRejected("items", f"expected a list, got {type(items).__name__}")
        pairs = [(item, f"items[{i}]") for i, item in enumerate(items)]
    reader = _StatementReader(account_id)
    return [entry for item, prefix in pairs if (entry := reader.read(item, prefix)) is not None]


def parse_finastra(data: bytes | str | dict[str, Any]) -> list[BalanceEvent]:
    """Every balance in a Finastra document, or ``MessageRejected`` naming the bad field."""
    body = _load(data)
    if "items" not in body:
        return [_item_event(body, "")]
    items = body["items"]
    if not isinstance(items, list):
        raise MessageRejected("items", f"expected a list, got {type(items).__name__}")
    return [_item_event(item, f"items[{i}]") for i, item in enumerate(items)]


def to_finastra_json(events: Iterable[BalanceEvent], account_type: str = "CURRENT") -> dict[str, Any]:
    """The list envelope Finastra would send for ``events``, amounts with thousands separators.

    Lossy by design: ``kind``, ``balance_code``, ``trace_id``, the forecast and the event id are
    not part of Finastra's format. Account, currency, as-of and both amounts survive exactly.
    """
    items = [_to_item(event, account_type) for event in events]
    return {"items": items, "_meta": {"itemCount": len(items)}}


# ---------------------------------------------------------------------------------------------


def _load(data: bytes | str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(data, dict):
        return data
    try:
        text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise MessageRejected("$", f"body is not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    try:
        # Exact numbers: a JSON 1234.5 becomes Decimal("1234.5"), never a binary float.
        loaded = json.loads(text, parse_float=Decimal, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise MessageRejected(
            "$", f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    except ValueError as exc:
        raise MessageRejected("$", str(exc)) from exc
    except RecursionError as exc:
        raise MessageRejected("$", "JSON nested too deeply") from exc
    if not isinstance(loaded, dict):
        raise MessageRejected("$", f"expected a JSON object, got {type(loaded).__name__}")
    return loaded


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not a valid JSON number")


def _path(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _item_event(item: object, prefix: str) -> BalanceEvent:
    if not isinstance(item, dict):
        raise MessageRejected(prefix or "$", f"expected an object, got {type(item).__name__}")
    account = _string(item, prefix, "id")
    currency = _string(item, prefix, "currency")
    if "type" in item and not isinstance(item["type"], str):
        raise MessageRejected(_path(prefix, "type"), f"expected a string, got {type(item['type']).__name__}")
    available = _amount(item.get("availableBalance"), _path(prefix, "availableBalance"))
    ledger = _amount(item.get("ledgerBalance"), _path(prefix, "ledgerBalance"))
    if available is None and ledger is None:
        raise MessageRejected(prefix or "$", "needs availableBalance or ledgerBalance")
    as_of = _as_of(_string(item, prefix, "balanceAsOn"), _path(prefix, "balanceAsOn"))
    event_id = stable_event_id(
        "finastra", account, currency, as_of.isoformat(), _canonical(available), _canonical(ledger)
    )
    try:
        return BalanceEvent(
            event_id=event_id,
            account_id=account,
            as_of_ts=as_of,
            kind=BalanceKind.INTRADAY,
            available_usd=available,
            booked_usd=ledger,
            currency=currency,
        )
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        name = _FIELDS.get(str(first["loc"][0]) if first["loc"] else "")
        raise MessageRejected(_path(prefix, name) if name else prefix or "$", str(first["msg"])) from exc


def _string(item: dict[str, Any], prefix: str, name: str) -> str:
    value = item.get(name)
    if value is None:
        raise MessageRejected(_path(prefix, name), "required field is missing")
    if not isinstance(value, str):
        raise MessageRejected(_path(prefix, name), f"expected a string, got {type(value).__name__}")
    return value.strip()


def _amount(value: object, field: str) -> Decimal | None:
    """Exact Decimal from a string with optional thousands separators, an int or a Decimal."""
    if value is None:
        return None
    if isinstance(value, bool | float):
        raise MessageRejected(field, f"expected a decimal string, got {type(value).__name__}")
    if isinstance(value, int | Decimal):
        return _finite(Decimal(value), field)
    if not isinstance(value, str):
        raise MessageRejected(field, f"expected a decimal string, got {type(value).__name__}")
    text = value.strip()
    if _PLAIN.fullmatch(text) or _GROUPED.fullmatch(text):
        return Decimal(text.replace(",", ""))
    raise MessageRejected(
        field, f"{value!r} is not an amount (digits, optional '-', ',' grouping by three, '.' decimals)"
    )


def _finite(value: Decimal, field: str) -> Decimal:
    if not value.is_finite():
        raise MessageRejected(field, f"{value} is not a finite amount")
    return value


def _as_of(text: str, field: str) -> datetime:
    return instant_utc(text, field) if "T" in text else end_of_day_utc(text, field)


def _canonical(amount: Decimal | None) -> str:
    """``1,000.00`` and ``1000`` are the same balance, so they must give the same id."""
    return "" if amount is None else format(amount.normalize(), "f")


def _to_item(event: BalanceEvent, account_type: str) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": event.account_id,
        "currency": event.currency,
        "type": account_type,
        "balanceAsOn": event.as_of_ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    if event.available_usd is not None:
        item["availableBalance"] = _grouped(event.available_usd)
    if event.booked_usd is not None:
        item["ledgerBalance"] = _grouped(event.booked_usd)
    return item


def _grouped(amount: Decimal) -> str:
    """``-1234567.891`` -> ``-1,234,567.891``: every digit kept, as Finastra writes amounts."""
    text = format(amount, ",f")
    return text[1:] if text.startswith("-") and not amount else text  # no "-0.00"


# ---------------------------------------------------------------------------------------------
# Account statement items
# ---------------------------------------------------------------------------------------------

_ENTRY_FIELDS = {
    "account_id": "accountId",
    "amount_usd": "amount",
    "currency": "currency",
    "booking_date": "postingDate",
    "booked_ts": "postingDate",
    "value_date": "valueDate",
    "bank_reference": "backOfficeReference",
    "customer_references": "ref1",  # the index in the error says which (_statement_item)
    "balance_after_usd": "balance",
}
_DIRECTIONS = {"CREDIT": EntryDirection.CRDT, "DEBIT": EntryDirection.DBIT}


class _StatementReader:
    """Reads the items of one document, so that ids can count the identical items before."""

    def __init__(self, account_id: str | None) -> None:
        self.account_id = account_id
        self.ordinals: dict[tuple[str, ...], int] = {}
        self.by_reference: dict[tuple[str, str], list[StatementEntry]] = {}

    def read(self, item: object, prefix: str) -> StatementEntry | None:
        """The item's entry; ``None`` for one already read (same backOfficeReference, same content)."""
        entry, key = _statement_item(item, prefix, self.account_id)
        if entry.bank_reference is None:
            ordinal = self.ordinals.get(key, 0)
            self.ordinals[key] = ordinal + 1
            return entry.model_copy(update={"entry_id": stable_event_id("finastra-entry", *key, str(ordinal))})
        known = self.by_reference.setdefault((entry.account_id, entry.bank_reference), [])
        if any(other.model_copy(update={"entry_id": entry.entry_id}) == entry for other in known):
            return None  # the same item twice: one fact, kept once
        extra = (str(len(known)),) if known else ()
        entry = entry.model_copy(update={
            "entry_id": stable_event_id("finastra-entry", entry.account_id, entry.bank_reference, *extra)})
        known.append(entry)
        return entry


def _statement_item(item: object, prefix: str, default_account: str | None
                    ) -> tuple[StatementEntry, tuple[str, ...]]:
    """One item, checked; its id is set by the caller (``_StatementReader.read``), from the key returned."""
    if not isinstance(item, dict):
        raise MessageRejected(prefix or "$", f"expected an object, got {type(item).__name__}")
    account = _item_account(item, prefix, default_account)
    currency = _string(item, prefix, "currency") if item.get("currency") is not None else "USD"
    kind = _string(item, prefix, "transactionType")
    direction = _DIRECTIONS.get(kind)
    if direction is None:
        raise MessageRejected(_path(prefix, "transactionType"), f"expected CREDIT or DEBIT, got {kind!r}")
    amount = _entry_amount(item.get("amount"), _path(prefix, "amount"), kind)
    posting = _string(item, prefix, "postingDate")
    booked_ts = _as_of(posting, _path(prefix, "postingDate"))
    value = _string(item, prefix, "valueDate") if item.get("valueDate") is not None else None
    if value is not None:
        _as_of(value, _path(prefix, "valueDate"))  # checked as a date or date-time; its date is kept
    reference = _optional_string(item, prefix, "backOfficeReference")
    if reference is not None and names_nothing(reference):
        reference = None  # a placeholder, not the bank's reference: the id comes from the content
    given = [(name, r) for name in ("ref1", "ref2") if (r := _optional_string(item, prefix, name))]
    refs = [r for _, r in given]
    fields: dict[str, Any] = {
        "entry_id": "pending", "account_id": account, "direction": direction, "status": EntryStatus.BOOK,
        "amount_usd": amount, "currency": currency, "booking_date": date.fromisoformat(posting[:10]),
        "booked_ts": booked_ts, "value_date": date.fromisoformat(value[:10]) if value else None,
        "bank_reference": reference, "customer_references": refs,
        "balance_after_usd": _amount(item.get("balance"), _path(prefix, "balance")), "source": "finastra",
    }
    try:
        entry = StatementEntry.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = first["loc"]
        name = _ENTRY_FIELDS.get(str(loc[0]) if loc else "")
        if loc and loc[0] == "customer_references" and len(loc) > 1 and isinstance(loc[1], int):
            name = given[loc[1]][0]  # the n-th reference given: ref1 or ref2
        raise MessageRejected(_path(prefix, name) if name else prefix or "$", str(first["msg"])) from exc
    key = (account, entry.booking_date.isoformat() if entry.booking_date else "", booked_ts.isoformat(),
           direction.value, _canonical(amount), currency, value or "", *refs)
    return entry, key


def _item_account(item: dict[str, Any], prefix: str, default: str | None) -> str:
    for name in ("accountId", "id"):
        if item.get(name) is not None:
            return _string(item, prefix, name)
    if default is not None:
        return default
    raise MessageRejected(_path(prefix, "accountId"), "required field is missing: a statement item must name "
                                                      "its account (accountId or id)")


def _optional_string(item: dict[str, Any], prefix: str, name: str) -> str | None:
    """A reference: absent, ``null`` and blank all mean none."""
    if item.get(name) is None:
        return None
    return _string(item, prefix, name) or None


def _entry_amount(value: object, field: str, kind: str) -> Decimal:
    """Unsigned, not zero; a ``-`` is accepted on a DEBIT only (a signed debit), never on a CREDIT."""
    amount = _amount(value, field)
    if amount is None:
        raise MessageRejected(field, "required field is missing")
    if not amount:
        raise MessageRejected(field, "an entry's amount must not be zero")
    if amount < 0:
        if kind != "DEBIT":
            raise MessageRejected(field, f"{value!r} is negative but transactionType is {kind}: the sign "
                                         "contradicts the direction")
        return -amount
    return amount
