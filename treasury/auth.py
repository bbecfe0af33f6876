"""Callers prove who they are with a JWT (EdDSA) signed by a Vault Transit key.

The Bank-Connector's tokens are signed by Transit, so no service ever holds the private key; this
service checks them against Transit's public keys (cached, refreshed when a token names a key
version it has not seen, which is what a rotation looks like). Each endpoint names the scope it
needs; the errors say exactly what is missing so an integrator can fix the token, not guess.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from treasury.keyring import Keyring, parse_signature

ISSUER = "treasury-orchestrator"
MAX_TTL_S = 24 * 3600
LEEWAY_S = 30
REFRESH_MIN_INTERVAL_S = 5.0


class Scope(StrEnum):
    ORDERS_READ = "orders:read"  # pull sweep orders
    ORDERS_WRITE = "orders:write"  # ack / fail them
    BALANCES_WRITE = "balances:write"  # post balance events
    BALANCES_READ = "balances:read"  # read positions and stored raw events
    RISK = "risk:run"  # start and follow VaR jobs
    ORDERS_APPROVE = "orders:approve"  # approve or reject large orders (four-eyes, docs/approval.md)


class AuthError(Exception):
    """401 (who are you?) or 403 (you may not); ``reason`` is safe to show the caller."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Caller:
    subject: str
    scopes: frozenset[str]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint_token(keyring: Keyring, key: str, subject: str, scopes: list[str], ttl_s: int = 3600,
               audience: str = ISSUER, now: float | None = None) -> str:
    """A JWT whose signature Transit computes; for the Bank-Connector's provisioning and for tests."""
    if not 0 < ttl_s <= MAX_TTL_S:
        raise ValueError(f"ttl: must be between 1 s and {MAX_TTL_S} s")
    unknown = sorted(set(scopes) - {s.value for s in Scope})
    if unknown:
        raise ValueError(f"scopes: unknown scope {unknown[0]!r} (known: {', '.join(s.value for s in Scope)})")
    issued = int(time.time() if now is None else now)
    claims = {"iss": ISSUER, "aud": audience, "sub": subject, "scope": " ".join(scopes),
              "iat": issued, "nbf": issued, "exp": issued + ttl_s, "jti": str(uuid.uuid4())}
    version = max(keyring.public_keys(key))  # Transit signs with the latest version
    header = {"alg": "EdDSA", "typ": "JWT", "kid": f"{key}:v{version}"}
    signing_input = (_b64url(json.dumps(header, separators=(",", ":")).encode()) + "." +
                     _b64url(json.dumps(claims, separators=(",", ":")).encode()))
    [signature] = keyring.sign(key, [signing_input.encode()])
    _, signed_version, raw = parse_signature(signature.value)
    if signed_version != version:  # rotated between the two calls: sign again under the new kid
        return mint_token(keyring, key, subject, scopes, ttl_s, audience, now)
    return signing_input + "." + _b64url(raw)


class TokenVerifier:
    def __init__(self, keyring: Keyring, key: str, audience: str = ISSUER) -> None:
        self._keyring = keyring
        self._key = key
        self._audience = audience
        self._lock = threading.Lock()
        self._public: dict[int, Ed25519PublicKey] = {}
        self._refreshed = float("-inf")

    def _public_key(self, version: int) -> Ed25519PublicKey | None:
        with self._lock:
            known = self._public.get(version)
            stale = time.monotonic() - self._refreshed > REFRESH_MIN_INTERVAL_S
        if known is not None or not stale:
            return known
        fetched = {v: Ed25519PublicKey.from_public_bytes(k) for v, k in self._keyring.public_keys(self._key).items()}
        with self._lock:
            self._public, self._refreshed = fetched, time.monotonic()
            return self._public.get(version)

    def verify(self, authorization: str | None, scope: Scope) -> Caller:
        """The caller behind ``Authorization: Bearer <jwt>``, if it holds ``scope``; else AuthError."""
        if not authorization:
            raise AuthError(401, "missing Authorization header: send 'Authorization: Bearer <token>'")
        kind, _, token = authorization.partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            raise AuthError(401, "Authorization header must be 'Bearer <token>'")
        try:
            header = jwt.get_unverified_header(token.strip())
        except jwt.PyJWTError as exc:
            raise AuthError(401, f"token is not a JWT: {exc}") from None
        kid = str(header.get("kid", ""))
        name, _, version = kid.rpartition(":v")
        if header.get("alg") != "EdDSA" or name != self._key or not version.isdigit():
            raise AuthError(401, f"token must be EdDSA-signed by Transit key {self._key!r} (kid '{self._key}:v<n>')")
        public = self._public_key(int(version))
        if public is None:
            raise AuthError(401, f"token names key version {version}, which Transit key {self._key!r} does not have")
        try:
            claims: dict[str, Any] = jwt.decode(
                token.strip(), key=public, algorithms=["EdDSA"], audience=self._audience, issuer=ISSUER,
                leeway=LEEWAY_S, options={"require": ["exp", "iat", "sub", "aud", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError(401, "token expired") from None
        except jwt.PyJWTError as exc:
            raise AuthError(401, f"token refused: {exc}") from None
        if claims["exp"] - claims["iat"] > MAX_TTL_S:
            raise AuthError(401, f"token lifetime exceeds {MAX_TTL_S} s")
        scopes = frozenset(str(claims.get("scope", "")).split())
        if scope.value not in scopes:
            raise AuthError(403, f"token of {claims['sub']!r} lacks scope {scope.value!r}")
        return Caller(str(claims["sub"]), scopes)
