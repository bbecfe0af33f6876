"""``POST /balances``: the Bank-Connector's balance webhook (native JSON, camt.052/053/054 XML, Finastra JSON).

Everything in the body is checked before anything is sent, then every statement entry and every
balance event is appended to ``balance_events`` with the one Kafka encoding
(``schemas.balance_record``) the simulator and ``ingest`` use too: the entries first, so the
account's shard has them when a balance of the same report (which already shows them) arrives.

The body is read in chunks up to ``REST_MAX_BODY_BYTES`` (``RuntimeSettings.rest_max_body_bytes``)
and refused with 413 as soon as it passes the limit (at once when its ``Content-Length`` says so),
so a caller cannot make a replica buffer more than the limit. A large bank file is parsed in a
worker thread: the parse is incremental (flat memory) but takes seconds for tens of MB, which must
not stall the replica's other requests.
"""

from __future__ import annotations

import asyncio
import io
import itertools
from collections.abc import Iterable
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from actors.account_state import refuse_future
from schemas.balance_event import BalanceEvent
from schemas.balance_record import BalanceRecord
from schemas.bank_formats import BankFile, read_bank_file
from serve_app.ingest import SWEPT_CURRENCY, booked_in_time, check_ingestible, in_send_order
from serve_app.rest.auth import scope
from serve_app.rest.backend import Backend
from serve_app.rest.errors import error, responses
from serve_app.rest.idempotency import IdempotencyKey, idempotent
from serve_app.rest.openapi import RequestBodies
from storage import accounts
from treasury.auth import Scope
from treasury.clock import utc_now
from treasury.money import MAX_ABS_USD
from treasury.settings import RuntimeSettings
from treasury.topics import BALANCE_EVENTS

#: The default body limit (``REST_MAX_BODY_BYTES``); a replica uses its settings' value.
MAX_BODY_BYTES: Final = RuntimeSettings.model_fields["rest_max_body_bytes"].default
#: Bodies above this are parsed in a worker thread rather than on the event loop.
THREAD_PARSE_BYTES: Final = 256 * 1024
XML_BODY = ("a camt.052/053/054 message, its Document alone or in a business application header envelope "
            "(AppHdr + Document): its balances (Bal) and its entries (Ntry, as StatementEntry); Finastra JSON "
            "(balances, or account statement items with transactionType) and a native StatementEntry are "
            "accepted too")


def _amount(description: str, *, signed: bool) -> dict[str, Any]:
    """An amount as the server takes it: at most 6 decimal places and at most 10**15 in size.

    A JSON number is read from its literal text (never through a float), so ``multipleOf`` states
    the decimal places; a string must be a plain decimal (the pattern is the form clients should
    send, with at most 15 integer digits, so every match is within range).
    """
    sign = "-?" if signed else ""
    return {
        "anyOf": [
            {"type": "number", "minimum": -int(MAX_ABS_USD) if signed else 0, "maximum": int(MAX_ABS_USD),
             "multipleOf": 0.000001},
            {"type": "string", "pattern": f"^{sign}[0-9]{{1,15}}(\\.[0-9]{{1,6}})?$"},
            {"type": "null"},
        ],
        "default": None,
        "description": description,
    }


# What the route states beyond the model's own schema: only USD is swept, and the amounts' exact form.
REST_ONLY: dict[str, Any] = {
    "currency": {"const": SWEPT_CURRENCY, "default": SWEPT_CURRENCY,
                 "description": "ISO 4217 code; only USD accounts are swept"},
    "available_usd": _amount("Available balance", signed=True),
    "booked_usd": _amount("Booked (ledger) balance", signed=True),
    "projected_outflows_24h_usd": _amount("Forecast outflows over the next 24 h, if the bank sends one",
                                          signed=False),
}


def router(backend: Backend, bodies: RequestBodies) -> APIRouter:
    api = APIRouter(tags=["balances"])

    @api.post("/balances", status_code=202, dependencies=[scope(backend, Scope.BALANCES_WRITE)],
              openapi_extra=bodies(BalanceEvent, xml=XML_BODY, properties=REST_ONLY),
              responses=responses(401, 403, 409, 413, 422, 503))
    async def post_balances(request: Request, idempotency_key: IdempotencyKey = None) -> Response:
        """A native ``BalanceEvent`` or ``StatementEntry`` (JSON), a camt.052/053/054 message (XML) or
        Finastra balances or statement items (JSON).

        Everything in the body is checked first; only then is every entry, then every event, appended
        to ``balance_events``, where the shards apply them in order. Accounts must be registered. The
        202 gives the balances (``count``, ``events``) and the entries (``entries``,
        ``entry_records``); a valid message with neither is answered with ``count`` 0 and a ``note``;
        a body over ``REST_MAX_BODY_BYTES`` is answered 413.
        """
        too_large = await read_limited(request, backend.settings.rest_max_body_bytes)
        if too_large is not None:
            return too_large
        return await idempotent(backend.pool, request, idempotency_key, lambda: append(request))

    async def append(request: Request) -> JSONResponse:
        body = await request.body()  # already read, within the limit, by read_limited
        content_type = request.headers.get("content-type")
        if len(body) > THREAD_PARSE_BYTES:
            parsed = await asyncio.to_thread(read_bank_file, body, content_type)
        else:
            parsed = read_bank_file(body, content_type)
        events, entries = parsed.events, parsed.statement_entries
        if not events and not entries:  # a valid message with neither (an empty camt.054): nothing to send
            return accepted(request, parsed, [])
        wanted = {e.account_id for e in events} | {e.account_id for e in entries}
        known = await accounts.get_many(await backend.pool(), sorted(wanted))
        check_ingestible(itertools.chain(entries, events), known)  # entries one at a time: flat memory
        # Dated too far ahead (MAX_CLOCK_SKEW_S): 422 on as_of_ts (booked_ts/booking_date) here; the shards too.
        now = utc_now()
        booked_in_time(entries, now, backend.settings.max_clock_skew_s)
        refuse_future(events, now, backend.settings.max_clock_skew_s)
        records = in_send_order(events, entries, request.state.trace_id)  # the entries first
        sent = iter(await send_all(backend.producer(), records))
        entry_where = [{"entry_id": e.entry_id, "account_id": e.account_id, **_at(next(sent))} for e in entries]
        where = [{"event_id": e.event_id, "account_id": e.account_id, **_at(next(sent))} for e in events]
        return accepted(request, parsed, where, entry_where)

    return api


#: Records in flight at once: a statement of 50,000 entries is sent in order without holding them all.
SEND_BATCH: Final = 1000


async def send_all(producer: Any, records: Iterable[BalanceRecord]) -> list[Any]:
    """Every record, in order, ``SEND_BATCH`` at a time; where each landed (partition and offset)."""
    delivered: list[Any] = []
    for batch in _batched(records):
        delivered += await asyncio.gather(*[producer.send(BALANCE_EVENTS.name, r.key, r.value, r.headers)
                                            for r in batch])
    return delivered


def _batched(records: Iterable[BalanceRecord]) -> Iterable[list[BalanceRecord]]:
    """``itertools.batched`` (Python 3.12; this runs on 3.11)."""
    it = iter(records)
    while batch := list(itertools.islice(it, SEND_BATCH)):
        yield batch


def _at(delivered: Any) -> dict[str, int]:
    return {"partition": delivered.partition(), "offset": delivered.offset()}


def accepted(request: Request, parsed: BankFile, where: list[dict[str, Any]],
             entry_where: list[dict[str, Any]] | None = None) -> JSONResponse:
    """The 202 answer: what was appended where (balances in ``count``/``events``, as before; entries in
    ``entries``/``entry_records``); a message that carried neither says why nothing was."""
    entry_where = entry_where or []
    body: dict[str, Any] = {"accepted": True, "count": len(where), "topic": BALANCE_EVENTS.name,
                            "trace_id": request.state.trace_id, "events": where,
                            "entries": len(entry_where), "entry_records": entry_where}
    if parsed.note is not None:
        body["note"] = parsed.note
    return JSONResponse(body, status_code=202)


async def read_limited(request: Request, limit: int) -> Response | None:
    """Read the body in chunks, at most ``limit`` bytes; a 413 as soon as it is longer, else ``None``.

    A declared ``Content-Length`` above the limit is refused before a byte is read. The body read is
    kept on the request (Starlette's own cache, ``Request._body``), so ``request.body()`` after this
    returns it without reading again (the idempotency check hashes it, the handler parses it).
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return error(413, "$", f"body is {int(declared)} bytes; the limit is {limit} (REST_MAX_BODY_BYTES)")
    received = io.BytesIO()  # getvalue() hands over its buffer: the body is held once, not copied
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return error(413, "$", f"body is over {limit} bytes; the limit is {limit} (REST_MAX_BODY_BYTES)")
        received.write(chunk)
    request._body = received.getvalue()  # Starlette's cache of the body, read by request.body()
    return None
