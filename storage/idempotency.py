"""Idempotency keys of the REST tier: the first answer to a keyed POST, kept 24 h.

A retried POST (a timeout on the Bank-Connector's side, a proxy replaying) must not append a
balance twice or start a second VaR job; with the same ``Idempotency-Key`` it gets the first
answer back instead. A row is *claimed* (inserted, no status yet) before the request runs, so a
concurrent duplicate sees it in flight, then *completed* with the response, or *released* when
the request failed in a way worth retrying. Times are the database's, so every replica agrees.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import timedelta

from storage.db import Executor

TTL = timedelta(hours=24)
# A claim older than this with no answer belongs to a replica that died mid-request: a retry of
# the same request may take it over rather than wait for the 24 h expiry.
ABANDONED_AFTER = timedelta(seconds=60)
MAX_KEY_LENGTH = 40
KEY_PATTERN = r"^[A-Za-z0-9._:~-]{1,40}$"
_KEY = re.compile(KEY_PATTERN)
PURGE_BATCH = 500


@dataclass(frozen=True)
class StoredKey:
    """A key someone else holds: in flight (``status_code`` None) or answered."""

    request_hash: str
    status_code: int | None
    body: bytes | None
    content_type: str | None


def valid_key(key: str) -> bool:
    return bool(_KEY.fullmatch(key))


def request_hash(method: str, path: str, content_type: str, body: bytes) -> str:
    """What makes two requests "the same": verb, path, how the body is to be read, and the body."""
    h = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), content_type.encode()):
        h.update(part)
        h.update(b"\0")
    h.update(body)
    return h.hexdigest()


async def claim(
    db: Executor, scope: str, key: str, req_hash: str, method: str, path: str,
    ttl: timedelta = TTL, abandoned_after: timedelta = ABANDONED_AFTER,
) -> StoredKey | None:
    """Take the key for this request: ``None`` when ours to run, else what holds it.

    An expired row, or an abandoned claim of the very same request, is overwritten in the same
    statement, so an expired key behaves exactly like a new one.
    """
    for _ in range(3):  # the holder may release between our insert and our read: look again
        taken = await db.fetchval(
            "INSERT INTO idempotency_key (scope, idem_key, request_hash, method, path, expires_ts)"
            " VALUES ($1, $2, $3, $4, $5, now() + $6::interval)"
            " ON CONFLICT (scope, idem_key) DO UPDATE SET request_hash = EXCLUDED.request_hash,"
            "  method = EXCLUDED.method, path = EXCLUDED.path, status_code = NULL, response_body = NULL,"
            "  content_type = NULL, created_ts = now(), completed_ts = NULL, expires_ts = EXCLUDED.expires_ts"
            " WHERE idempotency_key.expires_ts <= now()"
            "  OR (idempotency_key.status_code IS NULL AND idempotency_key.request_hash = EXCLUDED.request_hash"
            "      AND idempotency_key.created_ts <= now() - $7::interval)"
            " RETURNING true",
            scope, key, req_hash, method, path, ttl, abandoned_after,
        )
        if taken:
            return None
        row = await db.fetchrow(
            "SELECT request_hash, status_code, response_body, content_type FROM idempotency_key"
            " WHERE scope = $1 AND idem_key = $2",
            scope, key,
        )
        if row is not None:
            return StoredKey(row["request_hash"], row["status_code"], row["response_body"], row["content_type"])
    raise RuntimeError(f"idempotency key {key!r} kept changing hands")  # pragma: no cover - needs a live race


async def complete(db: Executor, scope: str, key: str, status_code: int, body: bytes, content_type: str | None) -> None:
    await db.execute(
        "UPDATE idempotency_key SET status_code = $3, response_body = $4, content_type = $5, completed_ts = now()"
        " WHERE scope = $1 AND idem_key = $2",
        scope, key, status_code, body, content_type,
    )


async def release(db: Executor, scope: str, key: str) -> None:
    """Forget an unanswered claim, so a retry of the request runs for real."""
    await db.execute(
        "DELETE FROM idempotency_key WHERE scope = $1 AND idem_key = $2 AND status_code IS NULL", scope, key
    )


async def purge_expired(db: Executor, limit: int = PURGE_BATCH) -> int:
    """Delete up to ``limit`` expired keys; called on every keyed write, so the table stays ~24 h deep."""
    status = await db.execute(
        "DELETE FROM idempotency_key WHERE ctid IN"
        " (SELECT ctid FROM idempotency_key WHERE expires_ts <= now() LIMIT $1)",
        limit,
    )
    return int(status.split()[-1])
