"""The ``Idempotency-Key`` header on every POST: a retry gets the first answer, never a second action.

Semantics (docs/rest-api.md):

- no header: the request runs as before;
- a new key: the request runs; its answer (status and body) is kept 24 h unless it was a 5xx
  (a dependency was down: nothing happened, the retry should run for real) or the body was
  refused before anything happened (422 from validation: the same request is refused again);
- the same key, the same request (method, path, content type and body): the first answer,
  byte for byte, with ``Idempotent-Replayed: true``;
- the same key, another request: ``422`` naming the header;
- the same key while the first request is still running: ``409``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import asyncpg
from fastapi import Header, Request
from fastapi.responses import JSONResponse, Response

from storage import idempotency

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=HEADER,
        min_length=1,
        max_length=idempotency.MAX_KEY_LENGTH,
        pattern=idempotency.KEY_PATTERN,
        description="Optional. 1-40 characters of A-Z a-z 0-9 . _ : ~ -; a retry with the same key and the "
        "same request gets the first answer (header Idempotent-Replayed: true) for 24 h.",
    ),
]


def caller_scope(request: Request) -> str:
    """Whose keys these are: the JWT subject the route's scope check set (``''`` with AUTH=off)."""
    return str(getattr(request.state, "principal", "") or "")


def _refused(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": {"field": HEADER, "reason": reason}}, status_code=status)


async def idempotent(
    pools: Callable[[], Awaitable[asyncpg.Pool]], request: Request, key: str | None,
    handler: Callable[[], Awaitable[Response]],
) -> Response:
    """Run ``handler`` at most once per (caller, key) within 24 h."""
    if key is None:
        return await handler()
    pool = await pools()
    scope = caller_scope(request)
    body = await request.body()
    path = request.url.path
    digest = idempotency.request_hash(request.method, path, request.headers.get("content-type", ""), body)
    await idempotency.purge_expired(pool)
    # the path is kept for people reading the table; Postgres text cannot hold a NUL
    held = await idempotency.claim(pool, scope, key, digest, request.method, path.replace("\x00", "%00"))
    if held is not None:
        if held.request_hash != digest:
            return _refused(422, "this key was already used with a different request (method, path or body);"
                                 " use a new key for a new request")
        if held.status_code is None:
            return _refused(409, "a request with this key is still in progress; retry once it has answered")
        return Response(held.body, status_code=held.status_code, media_type=held.content_type,
                        headers={REPLAYED_HEADER: "true"})
    try:
        response = await handler()
    except BaseException:
        await idempotency.release(pool, scope, key)
        raise
    if response.status_code >= 500:
        await idempotency.release(pool, scope, key)
    else:
        await idempotency.complete(pool, scope, key, response.status_code, bytes(response.body),
                                   response.headers.get("content-type"))
    return response
