"""serve_app.rest.auth remembers a verified token for a minute at most, and never past its exp."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI

from serve_app.rest import auth, errors
from treasury.auth import AuthError, Caller, Scope


class CountingVerifier:
    """Accepts any bearer token for the scopes it was made with, counting its calls."""

    def __init__(self, scopes: set[str]) -> None:
        self.scopes = frozenset(scopes)
        self.calls = 0

    def verify(self, authorization: str | None, scope: Scope) -> Caller:
        self.calls += 1
        if not authorization:
            raise AuthError(401, "missing Authorization header")
        if scope.value not in self.scopes:
            raise AuthError(403, f"token of 'bank' lacks scope {scope.value!r}")
        return Caller("bank", self.scopes)


class FakeBackend:
    def __init__(self, verifier: CountingVerifier) -> None:
        self.verifier = verifier


def app_for(verifier: CountingVerifier) -> FastAPI:
    app = FastAPI()
    errors.install(app)
    backend: Any = FakeBackend(verifier)

    @app.get("/orders", dependencies=[auth.scope(backend, Scope.ORDERS_READ)])
    async def orders() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/balances", dependencies=[auth.scope(backend, Scope.BALANCES_READ)])
    async def balances() -> dict[str, str]:
        return {"ok": "yes"}

    return app


def token(exp: float) -> str:
    """A distinct token each call (its ``jti``): two made in the same second must not be the same bytes."""
    claims = {"sub": "bank", "exp": int(exp), "jti": uuid.uuid4().hex}
    return jwt.encode(claims, "not-checked-here-" * 3, algorithm="HS256")


async def call(app: FastAPI, path: str, bearer: str | None) -> int:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        return (await client.get(path, headers=headers)).status_code


async def test_a_token_is_verified_once_and_its_scope_checked_on_every_request() -> None:
    verifier = CountingVerifier({Scope.ORDERS_READ.value})
    app = app_for(verifier)
    bearer = token(time.time() + 3600)
    assert [await call(app, "/orders", bearer) for _ in range(5)] == [200] * 5
    assert verifier.calls == 1
    assert await call(app, "/balances", bearer) == 403  # the remembered caller lacks the scope
    assert verifier.calls == 1
    assert await call(app, "/orders", None) == 401
    assert await call(app, "/orders", token(time.time() + 3600)) == 200  # another token: verified
    assert verifier.calls == 3


async def test_not_remembered_past_its_expiry_nor_past_a_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = CountingVerifier({Scope.ORDERS_READ.value})
    app = app_for(verifier)
    soon = token(time.time() + 2)
    assert await call(app, "/orders", soon) == 200
    later = time.time() + 3
    monkeypatch.setattr(auth.time, "time", lambda: later)
    assert await call(app, "/orders", soon) == 200 and verifier.calls == 2  # expired here: asked again
    long = token(time.time() + 3600)
    assert await call(app, "/orders", long) == 200 and verifier.calls == 3
    monkeypatch.setattr(auth.time, "time", lambda: later + auth.VERIFIED_FOR_S + 1)
    assert await call(app, "/orders", long) == 200 and verifier.calls == 4


async def test_a_refused_token_is_not_remembered() -> None:
    verifier = CountingVerifier(set())
    app = app_for(verifier)
    bearer = token(time.time() + 3600)
    assert await call(app, "/orders", bearer) == 403
    assert await call(app, "/orders", bearer) == 403
    assert verifier.calls == 2
