"""What the service knows of one account: its live position (from its shard) and a stored balance event."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse

from schemas.types import AccountId, EventId
from serve_app.rest.auth import scope
from serve_app.rest.backend import Backend
from serve_app.rest.errors import error, responses
from serve_app.rest.openapi import constraints
from storage import balances
from treasury.auth import Scope
from treasury.clock import iso_z
from treasury.envelope import EnvelopeError, is_envelope, row_context

log = logging.getLogger("treasury.api")
# Ids as accounts and events are registered; any other id is simply not found (404).
ACCOUNT_ID = Path(description="a registered account", json_schema_extra=constraints(AccountId))
EVENT_ID = Path(description="a balance event's event_id", json_schema_extra=constraints(EventId))


def router(backend: Backend) -> APIRouter:
    api = APIRouter(tags=["accounts"], dependencies=[scope(backend, Scope.BALANCES_READ)])

    @api.get("/accounts/{account_id}/position", responses=responses(401, 403, 404, 503))
    async def position(account_id: str = ACCOUNT_ID) -> JSONResponse:
        pos = await backend.shards.position(account_id)
        if pos is None:
            return error(404, "account_id", f"no live position for {account_id!r}")
        return JSONResponse(pos)

    @api.get("/accounts/{account_id}/balances/{event_id}", responses=responses(401, 403, 404, 422, 500, 503))
    async def stored_balance(account_id: str = ACCOUNT_ID, event_id: str = EVENT_ID) -> JSONResponse:
        """A stored balance event with its raw message decrypted (stored encrypted under a Vault data key)."""
        row = await balances.get_one(await backend.pool(), account_id, event_id)
        if row is None:
            return error(404, "event_id", f"no balance event {event_id!r} for account {account_id!r}")
        raw = row["raw_event"]
        if is_envelope(raw):
            try:
                raw = await asyncio.to_thread(backend.cipher.decrypt, raw, row_context(account_id, event_id))
            except EnvelopeError as exc:
                log.error("stored raw event cannot be decrypted: %s", exc, extra={"account_id": account_id})
                return error(500, "raw_event", str(exc))
        return JSONResponse({
            "account_id": account_id,
            "event_id": event_id,
            "as_of_ts": iso_z(row["as_of_ts"]),
            "applied": row["applied"],
            "decided": row["decided_ts"] is not None,
            "raw_event": raw,
        })

    return api
