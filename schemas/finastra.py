"""Finastra corporate account-balance JSON -> ``BalanceEvent`` (and back, for round-trip tests).

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
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from schemas.balance_event import BalanceEvent, BalanceKind
from schemas.camt import end_of_day_utc, instant_utc, stable_event_id
from schemas.errors import MessageRejected

__all__ = ["parse_finastra", "to_finastra_json"]

_PLAIN = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_GROUPED = re.compile(r"-?[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?")
_FIELDS = {
    "account_id": "id",
    "currency": "currency",
    "available_usd": "availableBalance",
    "booked_usd": "ledgerBalance",
    "as_of_ts": "balanceAsOn",
}


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
