"""One entry point for every bank format: look at the body, pick the parser; balances and entries out.

Why: banks and gateways label content unreliably (``application/octet-stream``, ``text/plain``),
so the body decides. The declared content type is only used to catch a contradiction: a body
labelled JSON that is XML (or the reverse) is refused rather than parsed as the other.

Dispatch:

* XML (first non-blank byte ``<``) -> :func:`schemas.camt.read_camt`, which reads the camt.052 /
  camt.053 / camt.054 message type and version from the namespace (the ``Document``'s own, or the
  one inside a business application header envelope) and refuses any other XML as
  ``unsupported format``. XML is read incrementally: a body may be given as a binary file object
  and is never held whole by the parser.
* A JSON object with ``items``, ``availableBalance``, ``ledgerBalance``, ``balanceAsOn`` or
  ``transactionType`` -> :func:`schemas.finastra.read_finastra`: an account statement when its items
  carry ``transactionType`` (entries), else balances.
* A JSON object with ``entry_id`` and ``direction`` -> a native ``StatementEntry``; one with
  ``event_id`` -> the native ``BalanceEvent`` (both via :func:`schemas.errors.decode`).
* Anything else -> ``MessageRejected("$", "unsupported format: ...")``.

Every file gives balance events (:attr:`BankFile.events`) and statement entries
(:attr:`BankFile.statement_entries`, camt ``Ntry`` and Finastra statement items); the callers send
the entries first (docs/bank-formats.md, Statement entries). A valid message may carry neither (an
empty camt.054, a camt.052 without ``Bal`` or ``Ntry``, an empty Finastra page): :func:`read_bank_file`
then says so in :attr:`BankFile.note`. That is not an error; the callers send nothing for it.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from schemas.balance_event import BalanceEvent
from schemas.camt import PrefixedStream, Readable, read_camt
from schemas.errors import MessageRejected, decode
from schemas.finastra import read_finastra
from schemas.statement_entry import StatementEntry

__all__ = ["BankFile", "read_bank_file", "sniff_and_parse"]

Syntax = Literal["xml", "json"]

_BOM: Final = b"\xef\xbb\xbf"
_FINASTRA_KEYS: Final = frozenset({"items", "availableBalance", "ledgerBalance", "balanceAsOn", "transactionType"})
_NEUTRAL_TYPES: Final = frozenset({"", "text/plain", "application/octet-stream"})
_SNIFF_CHUNK: Final = 64 * 1024
_MAX_LEADING_BLANKS: Final = 1 << 20  # a stream of blanks is not read to its end to find nothing
_XML_SPACE: Final = b" \t\r\n"


@dataclass(frozen=True)
class BankFile:
    """What a bank file held: its format, its balance events and statement entries, what identifies it.

    ``statement_entries`` is a sequence, not necessarily a list: a camt message's are built one at a
    time as they are taken (``schemas.camt.StatementEntries``), so a large statement stays small.
    ``entries`` counts the camt ``Ntry`` elements (an entry stated twice counts twice, an entry of
    amount zero is counted but not taken), or the Finastra statement items.
    """

    format: str  # "camt.053.001.08", "finastra", "finastra-statement", "balance_event", "statement_entry"
    events: list[BalanceEvent]
    entries: int = 0
    message_id: str | None = None  # camt GrpHdr/MsgId
    business_message_id: str | None = None  # camt AppHdr/BizMsgIdr
    extra: dict[str, str] = field(default_factory=dict)
    statement_entries: Sequence[StatementEntry] = ()

    @property
    def note(self) -> str | None:
        """Why a valid file sends nothing, in one sentence; ``None`` when it carries balances or entries."""
        if self.events or self.statement_entries:
            return None
        if self.format.startswith("camt.054"):
            taken = f"{self.entries} entries, none of them moving money" if self.entries else "no entry"
            return f"{self.format} notifies {taken} and carries no balance: a valid message, nothing to send"
        if self.format.startswith("camt."):
            taken = f"only {self.entries} entries of amount zero" if self.entries else "no entry (Ntry)"
            return f"{self.format} carries no balance (Bal) and {taken}: nothing to send"
        return f"{self.format} document without any balance or entry: nothing to send"


def sniff_and_parse(data: bytes | Readable, content_type: str | None) -> list[BalanceEvent]:
    """Balance events from any supported bank format; ``MessageRejected`` otherwise."""
    return read_bank_file(data, content_type).events


def read_bank_file(data: bytes | Readable, content_type: str | None) -> BankFile:
    """The bank file in ``data`` (bytes or a binary file object), or ``MessageRejected``."""
    head, stream = _head(data)
    syntax = _syntax(head)
    declared = _declared(content_type)
    if declared is not None and declared != syntax:
        raise MessageRejected("$", f"content type {content_type!r} does not match a {syntax.upper()} body")
    if syntax == "xml":
        message = read_camt(stream)
        return BankFile(message.name, message.events, message.entries, message.message_id,
                        message.business_message_id, statement_entries=message.statement_entries)
    body = stream.read()  # JSON balance documents are small: one account's balances or one page
    return _parse_json(body.removeprefix(_BOM))


def _head(data: bytes | Readable) -> tuple[bytes, Readable]:
    """The body's first bytes after a BOM and blanks (to sniff the syntax), and the whole body to parse."""
    if isinstance(data, bytes | bytearray | memoryview):
        body = bytes(data).removeprefix(_BOM)
        return body.lstrip()[:1], io.BytesIO(body)
    read = b""
    while True:
        chunk = data.read(_SNIFF_CHUNK)
        read += chunk
        if not chunk or read.removeprefix(_BOM).lstrip(_XML_SPACE):
            break
        if len(read) > _MAX_LEADING_BLANKS:
            raise MessageRejected("$", f"unsupported format: more than {_MAX_LEADING_BLANKS} blank bytes "
                                       "before any content")
    body = read.removeprefix(_BOM)
    return body.lstrip()[:1], PrefixedStream(body, data)


def _syntax(head: bytes) -> Syntax:
    if head == b"<":
        return "xml"
    if head == b"{":
        return "json"
    if not head:
        raise MessageRejected("$", "unsupported format: empty body")
    raise MessageRejected(
        "$", f"unsupported format: body starts with {head!r}, expected XML or a JSON object"
    )


def _declared(content_type: str | None) -> Syntax | None:
    """``application/xml``, ``text/xml``, ``*+xml`` -> xml; ``*json`` -> json; neutral -> None."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in _NEUTRAL_TYPES:
        return None
    if media in ("application/xml", "text/xml") or media.endswith("+xml"):
        return "xml"
    if media == "application/json" or media.endswith("+json"):
        return "json"
    raise MessageRejected("$", f"unsupported format: content type {content_type!r}")


def _parse_json(body: bytes) -> BankFile:
    try:
        keys = _top_level_keys(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        # Let the native decoder produce its precise message (bad UTF-8, line and column, nesting).
        return BankFile("balance_event", [decode(BalanceEvent, body)])
    if keys & _FINASTRA_KEYS:
        document = read_finastra(body)
        if document.kind == "statement":
            return BankFile("finastra-statement", [], len(document.entries), statement_entries=document.entries)
        return BankFile("finastra", document.events)
    if {"entry_id", "direction"} <= keys:
        return BankFile("statement_entry", [], 1, statement_entries=[decode(StatementEntry, body)])
    if "event_id" in keys:
        return BankFile("balance_event", [decode(BalanceEvent, body)])
    shown = ", ".join(sorted(keys)[:8]) or "none"
    raise MessageRejected("$", f"unsupported format: JSON object with fields {shown}")


def _top_level_keys(body: bytes) -> frozenset[str]:
    loaded = json.loads(body.decode("utf-8"))
    return frozenset(loaded) if isinstance(loaded, dict) else frozenset()
