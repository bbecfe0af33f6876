"""The scope check every protected route declares: who is calling, and may they.

Declared as a FastAPI security dependency so the OpenAPI document shows the bearer scheme on
each operation it guards (and generated clients send the token); the check itself runs in a
thread because verifying a token may ask Vault for the key.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from serve_app.rest.backend import Backend
from treasury.auth import Caller, Scope

BEARER = HTTPBearer(auto_error=False, description="JWT (EdDSA) signed by the Vault Transit key TOKEN_SIGNING_KEY")


def scope(backend: Backend, needed: Scope) -> Any:
    """A route's required scope; the caller is checked before the handler runs."""

    async def check(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None
    ) -> Caller | None:
        del credentials  # declared for the OpenAPI document; the verifier reads the raw header
        if backend.verifier is None:
            return None
        caller = await asyncio.to_thread(backend.verifier.verify, request.headers.get("authorization"), needed)
        request.state.caller = caller
        request.state.principal = caller.subject  # idempotency keys are per caller
        return caller

    return Depends(check)
