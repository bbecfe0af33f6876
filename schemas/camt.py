"""ISO 20022 camt.052 (intraday report) and camt.053 (statement) -> ``BalanceEvent``.

Why this module exists: the bank feed sends balances as ISO 20022 XML, the rest of the service
speaks ``BalanceEvent``. Everything a bank file can get wrong is caught here, so nothing
downstream has to second-guess an amount, a sign or a date.

Rules (each one is a decision, so each is written down):

* **Scope.** ``urn:iso:std:iso:20022:tech:xsd:camt.052.001.02`` to ``.08`` (``BkToCstmrAcctRpt``/
  ``Rpt``) and ``camt.053.001.02`` to ``.08`` (``BkToCstmrStmt``/``Stmt``). Anything else, including
  version ``001.01`` (a different element layout, ``BkToCstmrAcctRptV01``), is refused as an
  unsupported format. Only balances (``Bal``) are read; entries (``Ntry``) are not.
* **All or nothing.** A malformed or unsupported file raises :class:`MessageRejected` naming the
  element path (XPath-like, 1-based indexes on repeating elements, e.g.
  ``Document/BkToCstmrStmt/Stmt[1]/Bal[2]/Amt``); no event of that file is returned. A partial
  statement would make the position silently wrong, a refused one is visibly missing.
* **One event per ``Bal``**, ``kind`` ``PRIOR_DAY`` for camt.053 and ``INTRADAY`` for camt.052.
  A camt.053 statement without any ``Bal`` is refused (the schema requires one); a camt.052
  report may legitimately carry none and then contributes no event.
* **Balance code.** ``Tp/CdOrPrtry/Cd`` is kept as :class:`BalanceCode`; an ISO code outside that
  list is refused (we would not know which field it belongs in). A *proprietary* code
  (``Tp/CdOrPrtry/Prtry``) and any balance with a sub-type (``Tp/SubTp``, a breakdown such as the
  blocked part of a balance) are mapped to ``INFO``: kept for audit, never read as available
  cash and never as the prior-day close, and not worth refusing a whole statement over. The
  proprietary/sub-type text still feeds the event id so such balances stay distinct.
* **Which field.** :data:`BALANCE_FIELD` below: codes meaning "cash the owner can use"
  now (``OPAV``, ``ITAV``, ``CLAV``) fill ``available_usd``; every other code fills
  ``booked_usd`` and keeps its code, so a consumer can tell a ledger balance (``OPBD``, ``ITBD``,
  ``CLBD``, ``PRCD``) from a projection (``XPCD``, ``FWAV``) or a note (``INFO``). ``FWAV`` is a
  *forward* available balance dated in the future of the report: read as available it would move
  the live position into the future and make every current report look stale, so it is kept
  with the booked/projected figures and never drives a sweep. The amount fields are
  named ``*_usd`` by the contract but hold the amount in ``currency``; nothing is converted.
* **Prior-day close.** ``CLBD`` is the prior-day closing (booked) balance; see
  :func:`schemas.statements.prior_day_close` (re-exported here).
* **Sign and amount.** ``CdtDbtInd`` ``DBIT`` makes the amount negative, ``CRDT`` keeps it;
  a zero stays ``0`` (never ``-0``). The amount is read as written, ``Decimal`` only: ``18.150``
  stays ``18.150``, five decimals stay five. The ISO limits (at most 5 fraction digits,
  18 digits in all, unsigned) are enforced.
* **Time.** ``Bal/Dt/DtTm`` with an offset is converted to UTC; without an offset it is read as
  UTC (ISO says "local time" but never says whose; UTC is the only reading that does not depend
  on where this service runs). ``Bal/Dt/Dt`` (a date alone) is read as the END of that day in
  UTC, ``23:59:59.999999Z``: a balance dated D holds at the latest when D is over, and an
  end-of-day stamp sorts after every intraday stamp of that day. Note this applies to opening
  balances too, which keep their code so consumers can tell.
* **Event id.** ``camt.05X-<sha256>`` of (message type, ``GrpHdr/MsgId``, statement/report
  ``Id``, account, balance code [+ proprietary/sub-type], currency, as-of): re-ingesting the
  same file yields the same ids, so the downstream de-duplication drops the repeat. Two
  ``Bal`` with the same id in one file are contradictory and the file is refused.
* **Safety.** XML is parsed with ``defusedxml`` and DTDs are forbidden outright, so entity
  expansion ("billion laughs") and external entities (``SYSTEM "file:///..."``) never resolve.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from types import MappingProxyType
from typing import Final, Literal
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException
from pydantic import ValidationError

from schemas.balance_event import BalanceCode, BalanceEvent, BalanceKind
from schemas.errors import MessageRejected
from schemas.statements import prior_day_close

__all__ = [
    "AVAILABLE_CODES",
    "BALANCE_FIELD",
    "BOOKED_CODES",
    "SUPPORTED_VERSIONS",
    "end_of_day_utc",
    "instant_utc",
    "parse_camt",
    "prior_day_close",
    "stable_event_id",
]

BalanceField = Literal["available_usd", "booked_usd"]

#: Which ``BalanceEvent`` field each ISO balance code fills. Only codes that mean "usable now or
#: on the stated date" go to ``available_usd``: that field moves the live position the sweep uses,
#: so a ledger or projected figure must never land there.
BALANCE_FIELD: Final[Mapping[BalanceCode, BalanceField]] = MappingProxyType(
    {
        BalanceCode.OPAV: "available_usd",  # opening available
        BalanceCode.ITAV: "available_usd",  # interim (intraday) available
        BalanceCode.CLAV: "available_usd",  # closing available
        BalanceCode.FWAV: "booked_usd",  # forward available, dated in the future: never live cash
        BalanceCode.OPBD: "booked_usd",  # opening booked
        BalanceCode.ITBD: "booked_usd",  # interim booked
        BalanceCode.CLBD: "booked_usd",  # closing booked = the prior-day close
        BalanceCode.PRCD: "booked_usd",  # previously closed booked
        BalanceCode.XPCD: "booked_usd",  # expected: booked + pending, a projection
        BalanceCode.INFO: "booked_usd",  # informative only (also proprietary / sub-typed codes)
    }
)
AVAILABLE_CODES: Final = frozenset(c for c, f in BALANCE_FIELD.items() if f == "available_usd")
BOOKED_CODES: Final = frozenset(c for c, f in BALANCE_FIELD.items() if f == "booked_usd")

SUPPORTED_VERSIONS: Final = range(2, 9)  # 001.02 .. 001.08

_NAMESPACE = re.compile(r"urn:iso:std:iso:20022:tech:xsd:camt\.(052|053)\.001\.([0-9]{2})")
_AMOUNT = re.compile(r"\+?([0-9]*)(?:\.([0-9]*))?")
_CURRENCY = re.compile(r"[A-Z]{3}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATETIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:Z|[+-][0-9]{2}:[0-9]{2})?"
)
_MAX_FRACTION_DIGITS = 5
_MAX_TOTAL_DIGITS = 18


@dataclass(frozen=True)
class _Layout:
    """Where the balances sit in each message type, and what kind of event they make."""

    message: str
    kind: BalanceKind
    root: str
    block: str
    balance_required: bool


_LAYOUTS: Final = {
    "052": _Layout("camt.052", BalanceKind.INTRADAY, "BkToCstmrAcctRpt", "Rpt", balance_required=False),
    "053": _Layout("camt.053", BalanceKind.PRIOR_DAY, "BkToCstmrStmt", "Stmt", balance_required=True),
}


# ---------------------------------------------------------------------------------------------
# Shared rules (also used by the Finastra parser, so both feeds read dates and ids the same way)
# ---------------------------------------------------------------------------------------------


def end_of_day_utc(text: str, field: str) -> datetime:
    """``YYYY-MM-DD`` -> that day at 23:59:59.999999 UTC (a dated balance holds by day end)."""
    value = text.strip()
    if not _DATE.fullmatch(value):
        raise MessageRejected(field, f"{value!r} is not a date (YYYY-MM-DD)")
    try:
        day = date.fromisoformat(value)
    except ValueError as exc:
        raise MessageRejected(field, f"{value!r} is not a valid date ({exc})") from exc
    return datetime.combine(day, time.max, tzinfo=UTC)


def instant_utc(text: str, field: str) -> datetime:
    """ISO date-time -> aware UTC; an offset is honoured, no offset means UTC (documented)."""
    value = text.strip()
    if not _DATETIME.fullmatch(value):
        raise MessageRejected(field, f"{value!r} is not an ISO 8601 date-time")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise MessageRejected(field, f"{value!r} is not a valid date-time ({exc})") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def stable_event_id(prefix: str, *parts: str) -> str:
    """A deterministic id from the facts that identify a balance; hashed to fit ``EventId``.

    JSON-encoding the parts keeps ("a", "bc") and ("ab", "c") apart.
    """
    digest = hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode("utf-8")).hexdigest()
    return f"{prefix}-{digest}"


# ---------------------------------------------------------------------------------------------
# XML navigation that always knows where it is, so every refusal names the element
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Node:
    element: Element
    path: str
    ns: str

    def _matches(self, tag: str) -> list[Element]:
        return self.element.findall(f"{{{self.ns}}}{tag}")

    def find(self, tag: str) -> _Node | None:
        """The single child ``tag``; a repeated one is refused rather than half-read."""
        found = self._matches(tag)
        if len(found) > 1:
            raise MessageRejected(f"{self.path}/{tag}", f"element appears {len(found)} times, expected once")
        return _Node(found[0], f"{self.path}/{tag}", self.ns) if found else None

    def need(self, tag: str) -> _Node:
        node = self.find(tag)
        if node is None:
            raise MessageRejected(f"{self.path}/{tag}", "required element is missing")
        return node

    def every(self, tag: str) -> list[_Node]:
        return [
            _Node(el, f"{self.path}/{tag}[{i}]", self.ns) for i, el in enumerate(self._matches(tag), start=1)
        ]

    def text(self) -> str:
        value = (self.element.text or "").strip()
        if not value:
            raise MessageRejected(self.path, "element is empty")
        return value


@dataclass(frozen=True)
class _Block:
    """One statement (camt.053) or report (camt.052): the context every balance inherits."""

    layout: _Layout
    message_id: str
    block_id: str
    account_id: str
    account_path: str


@dataclass(frozen=True)
class _Code:
    code: BalanceCode
    key: str  # what feeds the event id: the code plus any proprietary / sub-type text


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def parse_camt(data: bytes) -> list[BalanceEvent]:
    """Every balance of a camt.052/053 file as ``BalanceEvent``s, or ``MessageRejected``."""
    root = _parse_xml(data)
    layout, ns = _message_type(root)
    document = _Node(root, "Document", ns)
    message = document.need(layout.root)
    message_id = message.need("GrpHdr").need("MsgId").text()
    blocks = message.every(layout.block)
    if not blocks:
        raise MessageRejected(
            f"{message.path}/{layout.block}",
            f"no {layout.block} element: a {layout.message} message carries at least one",
        )
    events: list[BalanceEvent] = []
    first_seen: dict[str, str] = {}
    for block in blocks:
        for event, path in _block_events(block, layout, message_id):
            if event.event_id in first_seen:
                raise MessageRejected(
                    path,
                    "duplicate balance: same account, code, currency and date as "
                    f"{first_seen[event.event_id]}",
                )
            first_seen[event.event_id] = path
            events.append(event)
    return events


def _parse_xml(data: bytes) -> Element:
    """Parse with DTDs forbidden: no entity expansion, no external entity, no network."""
    try:
        root: Element = SafeET.fromstring(data, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise MessageRejected(
            "$", f"XML with a DTD or entity declaration is refused ({type(exc).__name__})"
        ) from exc
    except ParseError as exc:
        raise MessageRejected("$", f"malformed XML: {exc}") from exc
    return root


def _message_type(root: Element) -> tuple[_Layout, str]:
    """Read message type and version from the namespace; the only place either is stated."""
    ns, _, local = root.tag[1:].partition("}") if root.tag.startswith("{") else ("", "", root.tag)
    match = _NAMESPACE.fullmatch(ns)
    if match is None:
        shown = f"namespace {ns!r}" if ns else "no namespace"
        raise MessageRejected("$", f"unsupported format: XML with {shown} is not camt.052/camt.053")
    message, version = match.group(1), int(match.group(2))
    if version not in SUPPORTED_VERSIONS:
        raise MessageRejected(
            "$",
            f"unsupported format: camt.{message}.001.{version:02d}; supported versions are 001.02 to 001.08",
        )
    if local != "Document":
        raise MessageRejected(local, "root element must be Document")
    return _LAYOUTS[message], ns


def _block_events(node: _Node, layout: _Layout, message_id: str) -> list[tuple[BalanceEvent, str]]:
    account_id, account_path = _account_id(node.need("Acct"))
    block = _Block(layout, message_id, node.need("Id").text(), account_id, account_path)
    balances = node.every("Bal")
    if not balances and layout.balance_required:
        raise MessageRejected(f"{node.path}/Bal", f"a {layout.message} {layout.block} needs at least one Bal")
    return [(_balance_event(bal, block), bal.path) for bal in balances]


def _account_id(acct: _Node) -> tuple[str, str]:
    """``Acct/Id/IBAN`` or else ``Acct/Id/Othr/Id``: the two identifiers the schema allows."""
    ident = acct.need("Id")
    iban = ident.find("IBAN")
    if iban is not None:
        return iban.text(), iban.path
    other = ident.find("Othr")
    if other is None:
        raise MessageRejected(ident.path, "account has neither IBAN nor Othr/Id")
    other_id = other.need("Id")
    return other_id.text(), other_id.path


# ---------------------------------------------------------------------------------------------
# One Bal -> one BalanceEvent
# ---------------------------------------------------------------------------------------------


def _balance_event(bal: _Node, block: _Block) -> BalanceEvent:
    code = _balance_code(bal.need("Tp"))
    amount_node = bal.need("Amt")
    amount = _signed(_amount(amount_node), bal.need("CdtDbtInd"))
    currency = _currency(amount_node)
    as_of, as_of_path = _as_of(bal.need("Dt"))
    field = BALANCE_FIELD[code.code]
    event_id = stable_event_id(
        block.layout.message.replace(".", ""),
        block.layout.message,
        block.message_id,
        block.block_id,
        block.account_id,
        code.key,
        currency,
        as_of.isoformat(),
    )
    paths = {
        "account_id": block.account_path,
        field: amount_node.path,
        "currency": f"{amount_node.path}/@Ccy",
        "as_of_ts": as_of_path,
    }
    try:
        return BalanceEvent.model_validate(
            {
                "event_id": event_id,
                "account_id": block.account_id,
                "as_of_ts": as_of,
                "kind": block.layout.kind,
                "balance_code": code.code,
                field: amount,
                "currency": currency,
            }
        )
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        name = str(first["loc"][0]) if first["loc"] else ""
        raise MessageRejected(paths.get(name, bal.path), str(first["msg"])) from exc


def _balance_code(tp: _Node) -> _Code:
    choice = tp.need("CdOrPrtry")
    code_node = choice.find("Cd")
    if code_node is not None:
        text = code_node.text()
        try:
            result = _Code(BalanceCode(text), text)
        except ValueError as exc:
            known = ", ".join(c.value for c in BalanceCode)
            raise MessageRejected(
                code_node.path, f"unknown balance type code {text!r} (known: {known})"
            ) from exc
    else:
        proprietary = choice.find("Prtry")
        if proprietary is None:
            raise MessageRejected(choice.path, "balance type needs Cd or Prtry")
        result = _Code(BalanceCode.INFO, f"Prtry:{proprietary.text()}")
    sub_type = tp.find("SubTp")
    if sub_type is None:
        return result
    return _Code(BalanceCode.INFO, f"{result.key}/SubTp:{_sub_type_text(sub_type)}")


def _sub_type_text(sub_type: _Node) -> str:
    for tag in ("Cd", "Prtry"):
        node = sub_type.find(tag)
        if node is not None:
            return node.text()
    raise MessageRejected(sub_type.path, "balance sub-type needs Cd or Prtry")


def _amount(node: _Node) -> Decimal:
    """Exact, unsigned, within the ISO limits; the text is kept as written (no rounding)."""
    text = node.text()
    match = _AMOUNT.fullmatch(text)
    if match is None or not (match.group(1) or match.group(2)):
        raise MessageRejected(
            node.path, f"{text!r} is not an unsigned decimal amount (sign goes in CdtDbtInd)"
        )
    integer, fraction = match.group(1), match.group(2) or ""
    if len(fraction) > _MAX_FRACTION_DIGITS:
        raise MessageRejected(node.path, f"{text!r} has more than {_MAX_FRACTION_DIGITS} decimals")
    if len(integer.lstrip("0")) + len(fraction) > _MAX_TOTAL_DIGITS:
        raise MessageRejected(node.path, f"{text!r} has more than {_MAX_TOTAL_DIGITS} digits")
    return Decimal(f"{integer or '0'}.{fraction}" if fraction else integer)


def _signed(amount: Decimal, indicator: _Node) -> Decimal:
    value = indicator.text()
    if value == "CRDT":
        return amount
    if value == "DBIT":
        return -amount if amount else amount  # no "-0" for a zero balance
    raise MessageRejected(indicator.path, f"expected CRDT or DBIT, got {value!r}")


def _currency(amount: _Node) -> str:
    value = (amount.element.get("Ccy") or "").strip()
    if not _CURRENCY.fullmatch(value):
        raise MessageRejected(f"{amount.path}/@Ccy", f"{value!r} is not an ISO 4217 currency code")
    return value


def _as_of(dt: _Node) -> tuple[datetime, str]:
    day, stamp = dt.find("Dt"), dt.find("DtTm")
    if day is not None and stamp is not None:
        raise MessageRejected(dt.path, "carries both Dt and DtTm, expected one")
    if stamp is not None:
        return instant_utc(stamp.text(), stamp.path), stamp.path
    if day is not None:
        return end_of_day_utc(day.text(), day.path), day.path
    raise MessageRejected(dt.path, "needs Dt or DtTm")
