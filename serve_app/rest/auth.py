"""The scope check every protected route declares: who is calling, and may they.

Declared as a FastAPI security dependency so the OpenAPI document shows the bearer scheme on
each operation it guards (and generated clients send the token); the check itself runs in a
thread because verifying a token may ask Vault for the key.

A token verified once is remembered for at most ``VERIFIED_FOR_S`` (and never past its ``exp``),
so a Bank-Connector that pulls with the same token many times a second pays the thread hop and
the Ed25519 verification once a minute, not per request (bench/rest: a tenth of the pull's time
at one client). Every request still checks its scope against the token's; an expired token, a
new token or one the verifier refused is verified again. The verifier itself keeps a Transit key
version it has fetched for its whole life, so remembering a verdict for a minute trusts nothing
it would not.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from serve_app.rest.backend import Backend
from treasury.auth import AuthError, Caller, Scope, TokenVerifier

BEARER = HTTPBearer(auto_error=False, description="JWT (EdDSA) signed by the Vault Transit key TOKEN_SIGNING_KEY")
VERIFIED_FOR_S = 60.0
MAX_REMEMBERED = 4096


class VerifiedTokens:
    """Authorization header -> (valid until, caller), for tokens the verifier accepted."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, Caller]] = {}

    def get(self, authorization: str) -> Caller | None:
        entry = self._entries.get(authorization)
        if entry is None:
            return None
        if time.time() >= entry[0]:
            del self._entries[authorization]
            return None
        return entry[1]

    def remember(self, authorization: str, caller: Caller) -> None:
        token = authorization.partition(" ")[2].strip()
        # Already verified (signature, issuer, audience, lifetime): read only its expiry here.
        expires = float(jwt.decode(token, options={"verify_signature": False})["exp"])
        if len(self._entries) >= MAX_REMEMBERED:
            self._entries.clear()  # many distinct tokens: start over rather than grow
        self._entries[authorization] = (min(expires, time.time() + VERIFIED_FOR_S), caller)


_REMEMBERED: weakref.WeakKeyDictionary[TokenVerifier, VerifiedTokens] = weakref.WeakKeyDictionary()


def remembered(verifier: TokenVerifier) -> VerifiedTokens:
    if verifier not in _REMEMBERED:
        _REMEMBERED[verifier] = VerifiedTokens()
    return _REMEMBERED[verifier]


def scope(backend: Backend, needed: Scope) -> Any:
    """A route's required scope; the caller is checked before the handler runs."""

    async def check(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None
    ) -> Caller | None:
        del credentials  # declared for the OpenAPI document; the verifier reads the raw header
        if backend.verifier is None:
            return None
        authorization = request.headers.get("authorization")
        verified = remembered(backend.verifier)
        caller = verified.get(authorization) if authorization else None
        if caller is None:
            caller = await asyncio.to_thread(backend.verifier.verify, authorization, needed)
            assert authorization is not None  # verify refuses a request without one
            verified.remember(authorization, caller)
        elif needed.value not in caller.scopes:
            raise AuthError(403, f"token of {caller.subject!r} lacks scope {needed.value!r}")
        request.state.caller = caller
        request.state.principal = caller.subject  # idempotency keys are per caller
        return caller

    return Depends(check)
