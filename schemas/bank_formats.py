"""One entry point for every bank balance format: look at the body, pick the parser.

Why: banks and gateways label content unreliably (``application/octet-stream``, ``text/plain``),
so the body decides. The declared content type is only used to catch a contradiction: a body
labelled JSON that is XML (or the reverse) is refused rather than parsed as the other.

Dispatch:

* XML (first non-blank byte ``<``) -> :func:`schemas.camt.parse_camt`, which reads the camt.052 /
  camt.053 message type and version from the namespace and refuses any other XML as
  ``unsupported format``.
* A JSON object with ``items``, ``availableBalance``, ``ledgerBalance`` or ``balanceAsOn`` ->
  :func:`schemas.finastra.parse_finastra`.
* A JSON object with ``event_id`` -> the native ``BalanceEvent`` via :func:`schemas.errors.decode`.
* Anything else -> ``MessageRejected("$", "unsupported format: ...")``.
"""

from __future__ import annotations

import json
from typing import Final, Literal

from schemas.balance_event import BalanceEvent
from schemas.camt import parse_camt
from schemas.errors import MessageRejected, decode
from schemas.finastra import parse_finastra

__all__ = ["sniff_and_parse"]

Syntax = Literal["xml", "json"]

_BOM: Final = b"\xef\xbb\xbf"
_FINASTRA_KEYS: Final = frozenset({"items", "availableBalance", "ledgerBalance", "balanceAsOn"})
_NEUTRAL_TYPES: Final = frozenset({"", "text/plain", "application/octet-stream"})


def sniff_and_parse(data: bytes, content_type: str | None) -> list[BalanceEvent]:
    """Balance events from any supported bank format; ``MessageRejected`` otherwise."""
    body = data.removeprefix(_BOM)
    syntax = _syntax(body)
    declared = _declared(content_type)
    if declared is not None and declared != syntax:
        raise MessageRejected("$", f"content type {content_type!r} does not match a {syntax.upper()} body")
    if syntax == "xml":
        return parse_camt(body)
    return _parse_json(body)


def _syntax(body: bytes) -> Syntax:
    head = body.lstrip()[:1]
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


def _parse_json(body: bytes) -> list[BalanceEvent]:
    try:
        keys = _top_level_keys(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        # Let the native decoder produce its precise message (bad UTF-8, line and column, nesting).
        return [decode(BalanceEvent, body)]
    if keys & _FINASTRA_KEYS:
        return parse_finastra(body)
    if "event_id" in keys:
        return [decode(BalanceEvent, body)]
    shown = ", ".join(sorted(keys)[:8]) or "none"
    raise MessageRejected("$", f"unsupported format: JSON object with fields {shown}")


def _top_level_keys(body: bytes) -> frozenset[str]:
    loaded = json.loads(body.decode("utf-8"))
    return frozenset(loaded) if isinstance(loaded, dict) else frozenset()
