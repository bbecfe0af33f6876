"""ISO 20022 camt.052 (intraday report), camt.053 (statement), camt.054 (notification) -> ``BalanceEvent``.

Why this module exists: the bank feed sends balances as ISO 20022 XML, the rest of the service
speaks ``BalanceEvent``. Everything a bank file can get wrong is caught here, so nothing
downstream has to second-guess an amount, a sign or a date.

Rules (each one is a decision, so each is written down):

* **Scope.** Versions ``001.02`` to ``001.13`` (every version ISO has published after ``001.01``)
  of ``urn:iso:std:iso:20022:tech:xsd:camt.052.001.NN`` (``BkToCstmrAcctRpt``/``Rpt``),
  ``camt.053.001.NN`` (``BkToCstmrStmt``/``Stmt``) and ``camt.054.001.NN``
  (``BkToCstmrDbtCdtNtfctn``/``Ntfctn``). The elements read here (``GrpHdr/MsgId``, the block's
  ``Id`` and ``Acct/Id/IBAN`` | ``Acct/Id/Othr/Id``, ``Bal/Tp/CdOrPrtry/Cd`` | ``Prtry``,
  ``Bal/Tp/SubTp``, ``Bal/Amt/@Ccy``, ``Bal/CdtDbtInd``, ``Bal/Dt/Dt`` | ``DtTm``) keep their names
  and nesting across all of them; what the versions changed (``CdtLine`` repeatable from ``.08``,
  ``DateAndDateTime2Choice`` from ``.08`` with the same ``Dt``/``DtTm`` tags, entry details) is
  elsewhere. Version ``001.01`` (2006; ``BkToCstmrAcctRptV01``, ``PrtryAcct``: another layout,
  replaced by ``.02`` in 2009) and any unpublished number are refused as unsupported formats.
* **camt.054** notifies entries (``Ntry``) and has no ``Bal`` in any version: a valid one is
  accepted and yields **no** balance event; :attr:`CamtMessage.entries` says how many entries it
  carried (they are not ingested here). A ``Bal`` inside a camt.054 ``Ntfctn`` is refused.
* **Business application header.** A message may come as delivered by SWIFT MX / CBPR+: a root
  of any name and namespace (``Envelope``, ``BusMsgEnvlp``, ``DataPDU``...) holding a head.001
  ``AppHdr`` (``urn:iso:std:iso:20022:tech:xsd:head.001.001.NN``) and the camt ``Document``, at
  any depth. Then ``AppHdr/BizMsgIdr`` identifies the message (event ids, below), and an
  ``AppHdr/MsgDefIdr`` naming another message than the ``Document`` is refused. Without an
  ``AppHdr`` the ``Document``'s ``GrpHdr/MsgId`` identifies it, as before.
* **All or nothing.** A malformed or unsupported file raises :class:`MessageRejected` naming the
  element path (XPath-like, 1-based indexes on repeating elements, e.g.
  ``Document/BkToCstmrStmt/Stmt[1]/Bal[2]/Amt``; inside an envelope the path starts at its root);
  no event of that file is returned. A partial statement would make the position silently wrong,
  a refused one is visibly missing.
* **Bounded memory.** The file is read incrementally (``iterparse``): every element the rules do
  not read (entries above all) is dropped as soon as it is complete, so memory stays flat however
  many entries a statement carries. A wrong namespace is refused at the first element.
* **One event per ``Bal``**, ``kind`` ``PRIOR_DAY`` for camt.053 and ``INTRADAY`` for camt.052.
  A camt.053 statement without any ``Bal`` is refused (the schema requires one); a camt.052
  report may legitimately carry none and then contributes no event.
* **Balance code.** ``Tp/CdOrPrtry/Cd`` is kept as :class:`BalanceCode`; an ISO code outside that
  list is refused (we would not know which field it belongs in). A *proprietary* code
  (``Tp/CdOrPrtry/Prtry``) and any balance with a sub-type (``Tp/SubTp``, a breakdown such as the
  blocked part of a balance) are mapped to ``INFO``: kept for audit, never read as available
  cash and never as the prior-day close, and not worth refusing a whole statement over. The
  proprietary/sub-type text still feeds the event id so such balances stay distinct.
* **Duplicates.** The same balance twice (same statement, account, type, currency, date, sign and
  amount) is one fact: kept once. An *informational* balance (``INFO``: ISO ``INFO``, proprietary,
  sub-typed) is also identified by its sign and amount, so two that differ are two facts and both
  are kept. Two ISO-coded balances of the same statement, type, currency and date with different
  amounts contradict each other (which is the position?) and the file is refused, naming both.
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
* **Time.** ``Bal/Dt/DtTm`` with an offset (``Z`` or ``±hh:mm``) is converted to UTC; without an
  offset it is read as UTC (ISO says "local time" but never says whose; UTC is the only reading
  that does not depend on where this service runs); ``24:00:00`` is the next day's midnight, as
  XML Schema defines it. ``Bal/Dt/Dt`` (a date alone) is read as the END of that day: in UTC,
  ``23:59:59.999999Z``, when it has no offset or ``Z``; with an offset (``2017-04-01+02:00``, XML
  Schema's date in that zone) as the end of that day in that zone, converted to UTC
  (``2017-04-01T21:59:59.999999Z``). A balance dated D holds at the latest when D is over, and an
  end-of-day stamp sorts after every intraday stamp of that day. This applies to opening balances
  too, which keep their code so consumers can tell.
* **Event id.** ``camt.05X-<sha256>`` of (message type, message identity, statement/report
  ``Id``, account, balance code [+ proprietary/sub-type] [+ sign and amount for ``INFO``],
  currency, as-of), where the message identity is ``AppHdr/BizMsgIdr`` when the message has a
  business application header and ``GrpHdr/MsgId`` otherwise (so the ids of messages without one
  are the ids they always had): re-ingesting the same file yields the same ids, and the
  downstream de-duplication drops the repeat.
* **Safety.** XML is parsed with ``defusedxml`` and DTDs are forbidden outright, so entity
  expansion ("billion laughs") and external entities (``SYSTEM "file:///..."``) never resolve.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from types import MappingProxyType
from typing import Final, Literal, NamedTuple, Protocol, overload
from xml.etree.ElementTree import Element, ParseError, XMLPullParser

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException
from pydantic import ValidationError

from schemas.balance_event import BalanceCode, BalanceEvent, BalanceKind
from schemas.errors import MessageRejected
from schemas.statement_entry import EntryDirection, EntryStatus, StatementEntry, names_nothing
from schemas.statements import prior_day_close

__all__ = [
    "AVAILABLE_CODES",
    "BALANCE_FIELD",
    "BOOKED_CODES",
    "MESSAGES",
    "SUPPORTED_VERSIONS",
    "CamtMessage",
    "Readable",
    "StatementEntries",
    "end_of_day_utc",
    "instant_utc",
    "parse_camt",
    "prior_day_close",
    "read_camt",
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

#: Every version ISO has published after 001.01, for each of the three messages.
SUPPORTED_VERSIONS: Final = range(2, 14)  # 001.02 .. 001.13

_NAMESPACE = re.compile(r"urn:iso:std:iso:20022:tech:xsd:camt\.(05[234])\.001\.([0-9]{2})")
_HEAD_NAMESPACE = re.compile(r"urn:iso:std:iso:20022:tech:xsd:head\.001\.001\.[0-9]{2}")
_MESSAGE_NAME = re.compile(r"camt\.05[0-9]\.001\.[0-9]{2}")
_AMOUNT = re.compile(r"\+?([0-9]*)(?:\.([0-9]*))?")
_CURRENCY = re.compile(r"[A-Z]{3}")
_OFFSET = r"(?:Z|[+-](?:(?:0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
_DATE = re.compile(rf"([0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}})({_OFFSET})?")
_DATETIME = re.compile(
    rf"([0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}})T([0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}}(?:\.[0-9]+)?)({_OFFSET})?"
)
_MIDNIGHT_END = re.compile(r"24:00:00(?:\.0+)?")
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
    has_balances: bool = True


_LAYOUTS: Final = {
    "052": _Layout("camt.052", BalanceKind.INTRADAY, "BkToCstmrAcctRpt", "Rpt", balance_required=False),
    "053": _Layout("camt.053", BalanceKind.PRIOR_DAY, "BkToCstmrStmt", "Stmt", balance_required=True),
    "054": _Layout("camt.054", BalanceKind.INTRADAY, "BkToCstmrDbtCdtNtfctn", "Ntfctn",
                   balance_required=False, has_balances=False),
}
#: The message types, as ``camt.05X``, in the order of the table in docs/bank-formats.md.
MESSAGES: Final = tuple(layout.message for layout in _LAYOUTS.values())

#: The children of a statement/report/notification the rules read; every other one is dropped as
#: soon as it is complete (an ``Ntry`` right after it is read).
_BLOCK_KEEPS: Final = frozenset({"Id", "Acct", "Bal"})
#: The children of an ``Ntry`` read for its ``StatementEntry``; ``NtryDtls`` is read transaction by
#: transaction (only ``TxDtls/Refs``), everything else is dropped as it completes.
_ENTRY_KEEPS: Final = frozenset({"Amt", "CdtDbtInd", "Sts", "BookgDt", "ValDt", "AcctSvcrRef", "NtryRef"})


class Readable(Protocol):
    """What the parser reads from: any binary file object (an open file, ``io.BytesIO``, a socket)."""

    def read(self, size: int = -1, /) -> bytes: ...


class _EntryRow(NamedTuple):
    """A checked entry, held as a tuple: a 50 MB statement's 51,045 entries cost about 30 MB this
    way, and over 100 MB as models (a model carries a dict and a set of its own). The dates,
    currencies and account strings are shared between rows; the fields are ``StatementEntry``'s."""

    entry_id: str
    account_id: str
    direction: EntryDirection
    status: EntryStatus
    amount_usd: Decimal
    currency: str
    booking_date: date | None
    booked_ts: datetime | None
    value_date: date | None
    end_to_end_id: str | None
    instr_id: str | None
    bank_reference: str | None
    source: str


class StatementEntries(Sequence[StatementEntry]):
    """The entries of a message, in document order: a read-only sequence of ``StatementEntry``.

    Why not a list of models: memory. Every entry was validated as a ``StatementEntry`` when it
    was read, and only its values are kept (:class:`_EntryRow`); a model is built again, without
    a second validation, each time one is taken out. Iterating holds one model at a time.
    """

    __slots__ = ("_rows",)

    def __init__(self, rows: list[_EntryRow] | None = None) -> None:
        self._rows: list[_EntryRow] = rows if rows is not None else []

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, index: int) -> StatementEntry: ...

    @overload
    def __getitem__(self, index: slice) -> list[StatementEntry]: ...

    def __getitem__(self, index: int | slice) -> StatementEntry | list[StatementEntry]:
        if isinstance(index, slice):
            return [_entry_model(row) for row in self._rows[index]]
        return _entry_model(self._rows[index])

    def __iter__(self) -> Iterator[StatementEntry]:
        return (_entry_model(row) for row in self._rows)

    def __repr__(self) -> str:
        return f"StatementEntries({len(self._rows)} entries)"


def _entry_model(row: _EntryRow) -> StatementEntry:
    # the values were validated as this very model when the entry was read (_Reader._read_entry)
    # customer_references given: its default_factory would cost a signature inspection per model
    return StatementEntry.model_construct(**row._asdict(), customer_references=[])


@dataclass(frozen=True)
class CamtMessage:
    """One camt message as read: its balances, its entries and what identifies it.

    ``entries`` counts the ``Ntry`` elements of every block (what the file carried);
    ``statement_entries`` holds them as ``StatementEntry``s, an entry stated twice under one
    ``AcctSvcrRef`` once (so the two may differ by such repeats).
    """

    message: str  # "camt.053"
    version: int  # 8 for camt.053.001.08
    message_id: str  # GrpHdr/MsgId
    business_message_id: str | None  # AppHdr/BizMsgIdr, when the message came with one
    events: list[BalanceEvent] = field(default_factory=list)
    entries: int = 0
    statement_entries: StatementEntries = field(default_factory=StatementEntries)

    @property
    def name(self) -> str:
        """The message definition, as ISO and ``AppHdr/MsgDefIdr`` spell it: ``camt.053.001.08``."""
        return f"{self.message}.001.{self.version:02d}"


# ---------------------------------------------------------------------------------------------
# Shared rules (also used by the Finastra parser, so both feeds read dates and ids the same way)
# ---------------------------------------------------------------------------------------------


def _zone(offset: str | None) -> timezone:
    if offset is None or offset == "Z":
        return UTC
    sign = -1 if offset[0] == "-" else 1
    hours, minutes = int(offset[1:3]), int(offset[4:6])
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def end_of_day_utc(text: str, field: str) -> datetime:
    """``YYYY-MM-DD`` [``Z`` | ``±hh:mm``] -> the end of that day (23:59:59.999999) in that zone, in UTC.

    No offset means UTC. A dated balance holds by the end of its day, and an end-of-day stamp
    sorts after every intraday stamp of that day.
    """
    value = text.strip()
    match = _DATE.fullmatch(value)
    if match is None:
        raise MessageRejected(field, f"{value!r} is not a date (YYYY-MM-DD, optionally with Z or ±hh:mm)")
    try:
        day = date.fromisoformat(match.group(1))
    except ValueError as exc:
        raise MessageRejected(field, f"{value!r} is not a valid date ({exc})") from exc
    return datetime.combine(day, time.max, tzinfo=_zone(match.group(2))).astimezone(UTC)


def instant_utc(text: str, field: str) -> datetime:
    """ISO date-time -> aware UTC; an offset is honoured, no offset means UTC (documented)."""
    value = text.strip()
    match = _DATETIME.fullmatch(value)
    if match is None:
        raise MessageRejected(field, f"{value!r} is not an ISO 8601 date-time")
    day_text, clock, offset = match.groups()
    next_day = _MIDNIGHT_END.fullmatch(clock) is not None  # XML Schema: 24:00:00 ends the day
    try:
        parsed = datetime.fromisoformat(f"{day_text}T{'00:00:00' if next_day else clock}")
    except ValueError as exc:
        raise MessageRejected(field, f"{value!r} is not a valid date-time ({exc})") from exc
    if next_day:
        parsed += timedelta(days=1)
    return parsed.replace(tzinfo=_zone(offset)).astimezone(UTC)


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
    block_id: str
    account_id: str
    account_path: str


@dataclass(frozen=True)
class _Code:
    code: BalanceCode
    key: str  # what feeds the event id: the code plus any proprietary / sub-type text


@dataclass(frozen=True)
class _Balance:
    """A checked balance whose id waits for the message identity (an AppHdr may come last)."""

    event: BalanceEvent
    parts: tuple[str, ...]


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


def parse_camt(source: bytes | Readable) -> list[BalanceEvent]:
    """Every balance of a camt.052/053/054 file as ``BalanceEvent``s, or ``MessageRejected``."""
    return read_camt(source).events


def read_camt(source: bytes | Readable) -> CamtMessage:
    """The message in ``source`` (bytes or a binary file object, read incrementally), or ``MessageRejected``."""
    stream: Readable = io.BytesIO(source) if isinstance(source, bytes | bytearray | memoryview) else source
    reader = _Reader()
    for kind, element in _events(stream):
        if kind == "start":
            reader.start(element)
        else:
            reader.end(element)
    return reader.finish()


def _events(stream: Readable) -> Iterator[tuple[str, Element]]:
    """``(start|end, element)`` pairs, with DTDs forbidden: no entity expansion, no external entity.

    A DTD (and with it every entity declaration) can only stand in the prolog, before the root
    element. When the prolog is plain ASCII-compatible text, :func:`_prolog` reads it and refuses a
    ``<!DOCTYPE``; the body is then parsed by the C ``XMLPullParser`` (three times faster than
    defusedxml's Python parser, and no entity can be declared any more). Any prolog it cannot read
    for certain (another encoding, something unexpected) goes to ``defusedxml`` with ``forbid_dtd``.
    """
    try:
        head, checked = _prolog(stream)
        if checked:
            yield from _pull(head, stream)
        else:
            yield from SafeET.iterparse(PrefixedStream(head, stream), events=("start", "end"), forbid_dtd=True)
    except DefusedXmlException as exc:
        raise MessageRejected(
            "$", f"XML with a DTD or entity declaration is refused ({type(exc).__name__})"
        ) from exc
    except ParseError as exc:
        raise MessageRejected("$", f"malformed XML: {exc}") from exc


_CHUNK: Final = 64 * 1024
_MAX_PROLOG: Final = 1 << 20
_PROLOG_SPACE: Final = b" \t\r\n"


def _prolog(stream: Readable) -> tuple[bytes, bool]:
    """The bytes read so far, and whether they hold the whole prolog, free of any DTD.

    Refuses a ``<!DOCTYPE`` outright. ``False`` means "not sure" (UTF-16/32, a prolog over 1 MB, a
    ``<!`` that is neither comment nor DOCTYPE): the caller then parses with defusedxml.
    """
    data = stream.read(_CHUNK)
    position = 0

    def more() -> bool:
        nonlocal data
        chunk = stream.read(_CHUNK)
        data += chunk
        return bool(chunk)

    if data.startswith(b"\xef\xbb\xbf"):
        position = 3
    elif data[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in data[:4]:
        return data, False
    while len(data) <= _MAX_PROLOG:
        while position < len(data) and data[position] in _PROLOG_SPACE:
            position += 1
        if len(data) - position < 9 and more():
            continue  # "<!DOCTYPE" needs nine bytes to be told apart
        rest = data[position:position + 9]
        if rest.startswith((b"<?", b"<!--")):
            close = b"?>" if rest.startswith(b"<?") else b"-->"
            end = data.find(close, position + 2)
            if end < 0:
                if more():
                    continue
                return data, True  # unterminated: malformed, and the parser says so
            position = end + len(close)
            continue
        if rest.startswith(b"<!"):
            if rest.startswith(b"<!DOCTYPE"):
                raise MessageRejected("$", "XML with a DTD or entity declaration is refused (DTDForbidden)")
            return data, False
        return data, True  # the root element starts here (or text, which the parser refuses)
    return data, False


class PrefixedStream:
    """``head`` then the rest of ``rest``, as one binary stream: bytes read to sniff a body are not
    lost to the parser that reads it next."""

    def __init__(self, head: bytes, rest: Readable) -> None:
        self._head = head
        self._rest = rest

    def read(self, size: int = -1, /) -> bytes:
        if not self._head:
            return self._rest.read(size)
        if size < 0:
            data, self._head = self._head + self._rest.read(), b""
            return data
        data, self._head = self._head[:size], self._head[size:]
        return data


def _pull(head: bytes, stream: Readable) -> Iterator[tuple[str, Element]]:
    parser: XMLPullParser[Element] = XMLPullParser(events=("start", "end"))
    chunk = head
    while chunk:
        parser.feed(chunk)
        yield from parser.read_events()  # type: ignore[misc]  # only start/end were asked for
        chunk = stream.read(_CHUNK)
    parser.close()
    yield from parser.read_events()  # type: ignore[misc]


def _split(tag: str) -> tuple[str, str]:
    """``{ns}local`` -> (ns, local); a tag without a namespace has ``''``."""
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return "", tag


def _unsupported(ns: str, what: str = "XML") -> MessageRejected:
    shown = f"namespace {ns!r}" if ns else "no namespace"
    return MessageRejected("$", f"unsupported format: {what} with {shown} is not camt.052/camt.053/camt.054")


# ---------------------------------------------------------------------------------------------
# The incremental reader
# ---------------------------------------------------------------------------------------------

# What an open element is to the reader; decides what happens at its end.
_Role = Literal["envelope", "document", "message", "header", "app_header", "block", "entry", "entry_details",
                "tx", "keep", "drop"]


class _Refs:
    """The references of one entry's transactions (``NtryDtls/TxDtls/Refs``), folded as they are read.

    A reference is the entry's when every ``TxDtls`` carries the same one (one transaction, or a
    batch booking whose transactions share it); when they differ, or some have none, it is nobody's
    and stays empty. A placeholder (``NOTPROVIDED``, ``NONREF``: ``names_nothing``) is no reference.
    """

    __slots__ = ("end_to_end", "instr", "paths", "transactions")

    def __init__(self) -> None:
        self.transactions = 0
        self.end_to_end: str | None = None
        self.instr: str | None = None
        self.paths: dict[str, str] = {}

    def add(self, tx: _Node) -> None:
        refs = tx.find("Refs")
        end_to_end = _reference(refs, "EndToEndId") if refs is not None else None
        instr = _reference(refs, "InstrId") if refs is not None else None
        self.transactions += 1
        if self.transactions == 1:
            self.end_to_end = end_to_end[0] if end_to_end else None
            self.instr = instr[0] if instr else None
            self.paths = {"end_to_end_id": end_to_end[1] if end_to_end else "",
                          "instr_id": instr[1] if instr else ""}
            return
        if self.end_to_end != (end_to_end[0] if end_to_end else None):
            self.end_to_end = None
        if self.instr != (instr[0] if instr else None):
            self.instr = None


def _optional_text(node: _Node, tag: str) -> tuple[str, str] | None:
    """The text and path of the optional child ``tag``; an empty one counts as absent."""
    child = node.find(tag)
    if child is None or not (child.element.text or "").strip():
        return None
    return child.text(), child.path


def _reference(node: _Node, tag: str) -> tuple[str, str] | None:
    """The optional reference ``tag``; a placeholder (``NONREF``, ``NOTPROVIDED``) counts as absent."""
    found = _optional_text(node, tag)
    return None if found is None or names_nothing(found[0]) else found


class _Reader:
    """Follows ``iterparse`` events; keeps only what the rules read, drops the rest when complete.

    The open elements form a stack of (element, role, local name). An element under a kept
    part (``GrpHdr``, ``AppHdr``, a block's ``Id``/``Acct``/``Bal``) stays attached until that
    part is read; any other element is removed from its parent at its end, so an entry with
    thousands of transaction details costs memory only while it is being read.
    """

    def __init__(self) -> None:
        self.stack: list[tuple[Element, _Role, str]] = []
        self.layout: _Layout | None = None
        self.version = 0
        self.name = ""  # camt.053.001.08: every entry's source
        self.ns = ""
        self.document_path = ""
        self.message_path = ""
        self.documents = 0
        self.messages = 0
        self.app_header: Element | None = None
        self.app_header_path = ""
        self.business_message_id: str | None = None
        self.message_definition: tuple[str, str] | None = None  # (text, path) of AppHdr/MsgDefIdr
        self.message_id: str | None = None
        self.headers = 0
        self.blocks = 0
        self.entries = 0
        self.balances: list[_Balance] = []
        self.created: tuple[str, str] | None = None  # GrpHdr/CreDtTm (text, path), read when an entry needs it
        self.created_utc: datetime | None = None
        self.rows: list[_EntryRow] = []
        self.by_reference: dict[str, _EntryRow | list[_EntryRow]] = {}  # AcctSvcrRef id -> the entries under it
        self.dates: dict[str, tuple[date, datetime | None, str]] = {}  # shared across rows (module doc)
        self.currencies: dict[str, str] = {}
        # the block being read: its Ntry count, its account (read at its first Ntry), and how many
        # identical entries without AcctSvcrRef it carried so far (their ordinal feeds their id)
        self.block_entries = 0
        self.block_account: tuple[str, str] | None = None
        self.ordinals: dict[tuple[str, ...], int] = {}
        self.refs = _Refs()
        self.seen: dict[tuple[str, ...], tuple[Decimal, str]] = {}
        # A wrong format is only reported once the XML proved well-formed (a malformed file is
        # "malformed XML", whatever its first element says); until then nothing more is read.
        self.refusal: MessageRejected | None = None

    # -- events ---------------------------------------------------------------------------------

    def start(self, element: Element) -> None:
        ns, local = _split(element.tag)
        role = self._role(ns, local)
        self.stack.append((element, role, local))

    def end(self, element: Element) -> None:
        _, role, _ = self.stack.pop()
        if role == "app_header":
            self._read_app_header(element)
        elif role == "header":
            self._read_group_header(element)
        elif role == "block":
            self._read_block(element)
        elif role == "tx":
            self.refs.add(_Node(element, self._entry_path() + "/NtryDtls/TxDtls", self.ns))
        elif role == "entry":
            self._read_entry(element)
        elif role == "message":
            self._end_message()
        elif role == "document":
            self._end_document()
        if role != "keep" and self.stack:
            self.stack[-1][0].remove(element)  # done with it: free it and all below it

    def finish(self) -> CamtMessage:
        if self.refusal is not None:
            raise self.refusal
        if self.layout is None or self.message_id is None:
            # only an envelope without a camt Document gets here; everything else failed earlier
            found = "an AppHdr but no" if self.app_header is not None else "no"
            raise MessageRejected("$", f"unsupported format: XML root {self.document_path!r} is not a camt "
                                       f"Document, and the envelope holds {found} camt.052/053/054 Document")
        if self.message_definition is not None:
            text, path = self.message_definition
            expected = f"{self.layout.message}.001.{self.version:02d}"
            if text.lower() != expected:
                raise MessageRejected(path, f"names {text!r} but the Document is {expected}")
        identity = self.business_message_id if self.business_message_id is not None else self.message_id
        prefix = self.layout.message.replace(".", "")
        events = [
            b.event.model_copy(update={"event_id": stable_event_id(prefix, self.layout.message, identity, *b.parts)})
            for b in self.balances
        ]
        return CamtMessage(self.layout.message, self.version, self.message_id, self.business_message_id,
                           events, self.entries, StatementEntries(self.rows))

    # -- roles ----------------------------------------------------------------------------------

    def _role(self, ns: str, local: str) -> _Role:
        if self.refusal is not None:
            return "drop"
        if not self.stack:
            return self._root(ns, local)
        parent_role = self.stack[-1][1]
        if parent_role == "document":
            return self._message_root(local)
        if parent_role == "message":
            if local == "GrpHdr":
                return "header"
            if self.layout is not None and local == self.layout.block:
                self.block_entries, self.block_account, self.ordinals = 0, None, {}
                return "block"
            return "drop"
        if parent_role == "block":
            if local == "Ntry":
                self.entries += 1
                self.block_entries += 1
                self.refs = _Refs()
                return "entry"
            return "keep" if local in _BLOCK_KEEPS else "drop"
        if parent_role == "entry":
            if local == "NtryDtls":
                return "entry_details"
            return "keep" if local in _ENTRY_KEEPS else "drop"
        if parent_role == "entry_details":
            return "tx" if local == "TxDtls" else "drop"
        if parent_role == "tx":
            return "keep" if local == "Refs" else "drop"
        if parent_role in ("header", "app_header", "keep"):
            return "keep"
        if parent_role == "envelope":
            return self._in_envelope(ns, local)
        return "drop"

    def _root(self, ns: str, local: str) -> _Role:
        """The root is the camt ``Document`` itself, or an envelope around it (business header)."""
        if _NAMESPACE.fullmatch(ns) is not None:
            if local != "Document":
                return self._refuse(MessageRejected(local, "root element must be Document"))
            return self._open_document(ns, "Document")
        if local == "Document":
            return self._refuse(_unsupported(ns))
        self.document_path = local
        return "envelope"

    def _in_envelope(self, ns: str, local: str) -> _Role:
        """Inside an envelope: the head.001 ``AppHdr`` and the camt ``Document`` are read, the rest is not."""
        path = "/".join(name for _, _, name in self.stack) + f"/{local}"
        if local == "AppHdr" and _HEAD_NAMESPACE.fullmatch(ns):
            if self.app_header is not None:
                raise MessageRejected(path, "the envelope carries a second AppHdr, expected one")
            self.app_header_path = path
            return "app_header"
        if local == "Document":
            if _NAMESPACE.fullmatch(ns) is None:
                return self._refuse(_unsupported(ns, f"the envelope's {path}"))
            if self.documents:
                raise MessageRejected(path, "the envelope carries a second Document, expected one")
            return self._open_document(ns, path)
        return "envelope"  # a wrapper (e.g. DataPDU/Body) or a header of its own: look inside, keep nothing

    def _refuse(self, refusal: MessageRejected) -> _Role:
        self.refusal = refusal
        return "drop"

    def _open_document(self, ns: str, path: str) -> _Role:
        match = _NAMESPACE.fullmatch(ns)
        assert match is not None
        message, version = match.group(1), int(match.group(2))
        if version not in SUPPORTED_VERSIONS:
            return self._refuse(MessageRejected(
                "$",
                f"unsupported format: camt.{message}.001.{version:02d}; supported versions are 001.02 to "
                f"001.{SUPPORTED_VERSIONS[-1]:02d}",
            ))
        self.layout, self.version, self.ns = _LAYOUTS[message], version, ns
        self.name = f"camt.{message}.001.{version:02d}"
        self.document_path = path
        self.documents += 1
        return "document"

    def _message_root(self, local: str) -> _Role:
        assert self.layout is not None
        if local != self.layout.root:
            return "drop"  # not read, as before (a schema-valid Document has nothing else)
        self.messages += 1
        self.message_path = f"{self.document_path}/{local}"
        if self.messages > 1:
            raise MessageRejected(self.message_path, f"element appears {self.messages} times, expected once")
        return "message"

    # -- reading the kept parts ---------------------------------------------------------------

    def _read_app_header(self, element: Element) -> None:
        ns, _ = _split(element.tag)
        header = _Node(element, self.app_header_path, ns)
        self.business_message_id = header.need("BizMsgIdr").text()
        definition = header.find("MsgDefIdr")
        if definition is not None and _MESSAGE_NAME.fullmatch(definition.text().lower()):
            self.message_definition = (definition.text(), definition.path)
        self.app_header = element

    def _read_group_header(self, element: Element) -> None:
        self.headers += 1
        path = f"{self.message_path}/GrpHdr"
        if self.headers > 1:
            raise MessageRejected(path, f"element appears {self.headers} times, expected once")
        header = _Node(element, path, self.ns)
        self.message_id = header.need("MsgId").text()
        created = header.find("CreDtTm")
        if created is not None:
            self.created = (created.text(), created.path)

    def _read_block(self, element: Element) -> None:
        assert self.layout is not None
        layout = self.layout
        if self.message_id is None:  # GrpHdr comes first in every version
            self._missing_header()
        self.blocks += 1
        node = _Node(element, f"{self.message_path}/{layout.block}[{self.blocks}]", self.ns)
        account_id, account_path = _account_id(node.need("Acct"))
        block = _Block(layout, node.need("Id").text(), account_id, account_path)
        balances = node.every("Bal")
        if balances and not layout.has_balances:
            raise MessageRejected(balances[0].path, f"a {layout.message} {layout.block} carries no Bal")
        if not balances and layout.balance_required:
            raise MessageRejected(f"{node.path}/Bal", f"a {layout.message} {layout.block} needs at least one Bal")
        for bal in balances:
            self._add(_balance(bal, block), bal.path)

    def _entry_path(self) -> str:
        assert self.layout is not None
        return f"{self.message_path}/{self.layout.block}[{self.blocks + 1}]/Ntry[{self.block_entries}]"

    def _read_entry(self, element: Element) -> None:
        """One ``Ntry`` -> one checked entry row (module doc: Entries); its element is dropped after."""
        assert self.layout is not None
        if self.message_id is None:  # GrpHdr comes first in every version
            self._missing_header()
        block_path = f"{self.message_path}/{self.layout.block}[{self.blocks + 1}]"
        if self.block_account is None:  # Acct comes before any Ntry in every version
            self.block_account = _account_id(_Node(self.stack[-1][0], block_path, self.ns).need("Acct"))
        node = _Node(element, self._entry_path(), self.ns)
        read = _read_entry_fields(node, self)
        row = self._identified(read) if read is not None else None
        if row is not None:
            self.rows.append(row)

    def creation_time(self) -> datetime | None:
        """``GrpHdr/CreDtTm`` in UTC, parsed the first time an entry needs it (a balance never does)."""
        if self.created is not None and self.created_utc is None:
            self.created_utc = instant_utc(*self.created)
        return self.created_utc

    def shared_date(self, dt: _Node, booking: bool) -> tuple[date, datetime | None, str]:
        """``Dt``/``DtTm`` of a ``BookgDt`` or ``ValDt`` -> (the date as written, the booking instant,
        the element's path); one object per distinct text, shared by every row that carries it."""
        day, stamp = dt.find("Dt"), dt.find("DtTm")
        if day is not None and stamp is not None:
            raise MessageRejected(dt.path, "carries both Dt and DtTm, expected one")
        chosen = stamp if stamp is not None else day
        if chosen is None:
            raise MessageRejected(dt.path, "needs Dt or DtTm")
        text = chosen.text()
        key = f"{'B' if booking else 'V'}{'T' if stamp is not None else 'D'}{text}"
        known = self.dates.get(key)
        if known is not None:
            return known[0], known[1], chosen.path
        # both parsers refuse a text that does not start with a valid YYYY-MM-DD, so [:10] is that date
        instant = instant_utc(text, chosen.path) if stamp is not None else end_of_day_utc(text, chosen.path)
        written = date.fromisoformat(text[:10])
        if stamp is None:
            created = self.creation_time() if booking else None
            if created is not None and created.date() == written:
                instant = created  # the report was made that day: the entry was booked by then
        self.dates[key] = (written, instant if booking else None, chosen.path)
        return written, instant if booking else None, chosen.path

    def currency(self, text: str) -> str:
        return self.currencies.setdefault(text, text)

    def _identified(self, read: _EntryRead) -> _EntryRow | None:
        """The entry's id (module doc: Entries), or ``None`` for an entry already read under its AcctSvcrRef."""
        row = read.row
        reference = row.bank_reference
        if reference is None:
            key = (row.account_id, row.booking_date.isoformat() if row.booking_date else "", row.direction.value,
                   _canonical(row.amount_usd), row.currency, row.end_to_end_id or "", row.instr_id or "",
                   read.entry_reference or "")
            ordinal = self.ordinals.get(key, 0)
            self.ordinals[key] = ordinal + 1
            return row._replace(entry_id=stable_event_id("entry", "content", *key, str(ordinal)))
        base = stable_event_id("entry", "AcctSvcrRef", row.account_id, reference)
        known = self.by_reference.get(base)
        if known is None:  # the usual case: one row, no list (memory: one dict slot per entry)
            self.by_reference[base] = row = row._replace(entry_id=base)
            return row
        others = [known] if isinstance(known, _EntryRow) else known
        if any(other[1:] == row[1:] for other in others):
            return None  # the same entry stated twice: one fact, kept once
        # another entry under the same AcctSvcrRef (some banks give a payment's charges its reference)
        row = row._replace(entry_id=stable_event_id("entry", "AcctSvcrRef", row.account_id, reference,
                                                    str(len(others))))
        self.by_reference[base] = [*others, row]
        return row

    def _add(self, balance: _Balance, path: str) -> None:
        """One fact once; two different amounts under one ISO identity refuse the file."""
        amount = _amount_of(balance.event)
        known = self.seen.get(balance.parts)
        if known is None:
            self.seen[balance.parts] = (amount, path)
            self.balances.append(balance)
        elif known[0] != amount:
            raise MessageRejected(
                path,
                f"contradicts {known[1]}: same account, balance type, currency and date with another amount "
                f"({amount} here, {known[0]} there)",
            )
        # else: the same balance stated twice, one fact, kept once

    def _missing_header(self) -> None:
        raise MessageRejected(f"{self.message_path}/GrpHdr", "required element is missing")

    def _end_message(self) -> None:
        assert self.layout is not None
        if self.message_id is None:
            self._missing_header()
        if not self.blocks:
            raise MessageRejected(
                f"{self.message_path}/{self.layout.block}",
                f"no {self.layout.block} element: a {self.layout.message} message carries at least one",
            )

    def _end_document(self) -> None:
        assert self.layout is not None
        if not self.messages:
            raise MessageRejected(f"{self.document_path}/{self.layout.root}", "required element is missing")


def _amount_of(event: BalanceEvent) -> Decimal:
    value = event.available_usd if event.available_usd is not None else event.booked_usd
    assert value is not None  # a BalanceEvent always carries one
    return value


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


def _balance(bal: _Node, block: _Block) -> _Balance:
    code = _balance_code(bal.need("Tp"))
    amount_node = bal.need("Amt")
    amount = _signed(_amount(amount_node), bal.need("CdtDbtInd"))
    currency = _currency(amount_node)
    as_of, as_of_path = _as_of(bal.need("Dt"))
    field_name = BALANCE_FIELD[code.code]
    # An informational balance has no ISO meaning two of them could contradict: its amount is part of
    # what it is, so two that differ stay two events.
    identity = f"{code.key}={_canonical(amount)}" if code.code is BalanceCode.INFO else code.key
    parts = (block.block_id, block.account_id, identity, currency, as_of.isoformat())
    paths = {
        "account_id": block.account_path,
        field_name: amount_node.path,
        "currency": f"{amount_node.path}/@Ccy",
        "as_of_ts": as_of_path,
    }
    try:
        event = BalanceEvent.model_validate(
            {
                "event_id": stable_event_id(block.layout.message.replace(".", ""), *parts),  # final id: finish()
                "account_id": block.account_id,
                "as_of_ts": as_of,
                "kind": block.layout.kind,
                "balance_code": code.code,
                field_name: amount,
                "currency": currency,
            }
        )
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        name = str(first["loc"][0]) if first["loc"] else ""
        raise MessageRejected(paths.get(name, bal.path), str(first["msg"])) from exc
    return _Balance(event, parts)


def _canonical(amount: Decimal) -> str:
    """``100.00`` and ``100`` are the same amount, so they give the same id; a zero has no sign."""
    return "0" if not amount else format(amount.normalize(), "f")


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


# ---------------------------------------------------------------------------------------------
# One Ntry -> one StatementEntry (validated, kept as a row)
# ---------------------------------------------------------------------------------------------


class _EntryRead(NamedTuple):
    row: _EntryRow  # entry_id still empty: it needs the entries read before (_Reader._identified)
    entry_reference: str | None  # NtryRef: only feeds the id of an entry without AcctSvcrRef


_STATUS_CODES: Final = frozenset(s.value for s in EntryStatus)


def _read_entry_fields(node: _Node, reader: _Reader) -> _EntryRead | None:
    assert reader.block_account is not None
    account_id, account_path = reader.block_account
    amount_node = node.need("Amt")
    amount = _amount(amount_node)
    if not amount:
        return None  # ISO allows it (a zero fee, a note); it moves nothing and the contract has no zero entry
    currency = reader.currency(_currency(amount_node))
    indicator = node.need("CdtDbtInd")
    direction_text = indicator.text()
    if direction_text not in ("CRDT", "DBIT"):
        raise MessageRejected(indicator.path, f"expected CRDT or DBIT, got {direction_text!r}")
    status, status_path = _status(node.need("Sts"))
    booking, value = node.find("BookgDt"), node.find("ValDt")
    booking_date: date | None
    booked_ts: datetime | None
    if booking is not None:
        booking_date, booked_ts, booking_path = reader.shared_date(booking, booking=True)
    else:
        booking_date, booked_ts, booking_path = _booked_without_date(node, status, reader)
    value_date = reader.shared_date(value, booking=False)[0] if value is not None else None
    bank_reference = _reference(node, "AcctSvcrRef")
    entry_reference = _optional_text(node, "NtryRef")
    refs = reader.refs
    row = _EntryRow(
        "", account_id, EntryDirection(direction_text), status, amount, currency, booking_date, booked_ts,
        value_date, refs.end_to_end, refs.instr, bank_reference[0] if bank_reference else None, reader.name,
    )
    paths = {
        "account_id": account_path, "amount_usd": amount_node.path, "currency": f"{amount_node.path}/@Ccy",
        "status": status_path, "booking_date": booking_path, "booked_ts": booking_path,
        "value_date": f"{node.path}/ValDt", "bank_reference": f"{node.path}/AcctSvcrRef",
        **{name: path for name, path in refs.paths.items() if path},
    }
    _validate(row, paths, node.path)
    return _EntryRead(row, entry_reference[0] if entry_reference else None)


def _booked_without_date(node: _Node, status: EntryStatus, reader: _Reader) -> tuple[None, None, str] | tuple[
        date, datetime, str]:
    """No ``BookgDt`` (optional in every version): fine for a pending entry; a booked one (seen in real
    camt.052 reports) is taken as booked by the report's creation, ``GrpHdr/CreDtTm``, else refused."""
    path = f"{node.path}/BookgDt"
    if status is not EntryStatus.BOOK:
        return None, None, path
    created = reader.creation_time()
    if created is None:
        raise MessageRejected(path, "a booked entry (Sts BOOK) needs BookgDt, or the message's GrpHdr/CreDtTm")
    return created.date(), created, path


def _status(sts: _Node) -> tuple[EntryStatus, str]:
    """``Sts``: a code as text up to ``.06`` (``<Sts>BOOK</Sts>``), ``Sts/Cd`` or ``Sts/Prtry`` from ``.07``.

    Either form is read in every version (converters mix them). A proprietary status says nothing
    ISO defines, so it is ``INFO``: kept, never taken as money that moved.
    """
    code, proprietary = sts.find("Cd"), sts.find("Prtry")
    if proprietary is not None and code is None:
        return EntryStatus.INFO, proprietary.path
    chosen = code if code is not None else sts
    text = chosen.text()
    if text not in _STATUS_CODES:
        known = ", ".join(s.value for s in EntryStatus)
        raise MessageRejected(chosen.path, f"unknown entry status {text!r} (known: {known})")
    return EntryStatus(text), chosen.path


def _validate(row: _EntryRow, paths: Mapping[str, str], entry_path: str) -> None:
    """Check the row as the contract's model would: a bad field refuses the file, naming its element."""
    try:
        StatementEntry.model_validate({**row._asdict(), "entry_id": "pending"})
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        name = str(first["loc"][0]) if first["loc"] else ""
        raise MessageRejected(paths.get(name, entry_path), str(first["msg"])) from exc
