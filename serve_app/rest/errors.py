"""One error body for every refusal, in the app and in the OpenAPI document alike.

Every 4xx/5xx the service answers is ``{"error": {"field", "reason"}}``: the handlers here turn
exceptions into that shape, and ``responses(...)`` documents it for each status an operation
can answer, so clients generated from the document know every answer they can get.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from confluent_kafka import KafkaException
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from schemas.errors import MessageRejected, field_path
from treasury.auth import AuthError
from treasury.keyring import KeyringError

log = logging.getLogger("treasury.api")


class ErrorDetail(BaseModel):
    """Which part of the request was refused (a dotted path, ``$`` for the whole) and why."""

    model_config = ConfigDict(title="ErrorDetail")

    field: str = Field(min_length=1, description="dotted path of the refused part; '$' for the whole request")
    reason: str = Field(min_length=1, description="one sentence, safe to show the caller")


class ErrorBody(BaseModel):
    """The body of every 4xx and 5xx answer."""

    model_config = ConfigDict(title="ErrorBody")

    error: ErrorDetail
    trace_id: str | None = Field(default=None, description="the request's trace id, when one was known")


# Why each status is answered, as the OpenAPI document says it.
DESCRIPTIONS: dict[int, str] = {
    401: "no valid bearer token (header WWW-Authenticate says why)",
    403: "the token lacks the operation's scope",
    404: "no such resource",
    409: "a request with this Idempotency-Key is still in progress, or the order's status forbids the change",
    413: "the body is larger than the limit",
    422: "the request was refused: the error names the field and why; retrying it unchanged will not help",
    500: "a stored value cannot be read back",
    503: "a dependency (Postgres, Kafka, Vault or a scheduler) is unavailable; nothing was done, retry",
}
WWW_AUTHENTICATE = {"WWW-Authenticate": {"description": "Bearer challenge naming the error",
                                         "schema": {"type": "string"}}}


def schemas() -> dict[str, Any]:
    """The error body's component schemas (``ErrorBody`` and the ``ErrorDetail`` it holds)."""
    schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    return {**schema.pop("$defs", {}), "ErrorBody": schema}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for these error statuses, each with the error body's schema.

    Spelled out as JSON (not FastAPI's ``model``, which takes the route's media type: a text/plain
    route's errors are JSON all the same); the document's components get ``schemas()``.
    """
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {"description": DESCRIPTIONS[status], "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
        if status == 401:
            entry["headers"] = WWW_AUTHENTICATE
        out[status] = entry
    return out


def error(status: int, field: str, reason: str, trace_id: str | None = None,
          headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": {"field": field, "reason": reason}}
    if trace_id:
        body["trace_id"] = trace_id
    return JSONResponse(body, status_code=status, headers=headers)


async def _invalid(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0]
    loc = tuple(p for p in first.get("loc", ()) if p not in ("query", "path", "body", "header"))
    return error(422, field_path(loc), str(first.get("msg")))


async def _unavailable(_: Request, exc: Exception) -> JSONResponse:
    # Nothing was accepted: the caller may retry the same request safely.
    log.warning("dependency unavailable: %s", exc)
    return error(503, "$", f"temporarily unavailable, retry: {type(exc).__name__}: {exc}")


async def _auth(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AuthError)
    response = error(exc.status, "Authorization", exc.reason)
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = f'Bearer error="invalid_token", error_description="{exc.reason}"'
    return response


async def _keyring(_: Request, exc: Exception) -> JSONResponse:
    log.warning("vault unavailable: %s", exc)
    return error(503, "$", "temporarily unavailable, retry: the key service did not answer")


async def _unstorable(_: Request, exc: Exception) -> JSONResponse:
    # A value our checks let through but the ledger cannot hold: retrying will not help.
    log.error("value refused by Postgres: %s", exc)
    return error(422, "$", f"a value cannot be stored: {exc}")


async def _http(request: Request, exc: Exception) -> JSONResponse:
    # The router's own answers (no such path, wrong verb) in the same shape as ours; its headers
    # (``Allow`` on a 405, as RFC 9110 requires) pass through.
    assert isinstance(exc, StarletteHTTPException)
    field = {404: "path", 405: "method"}.get(exc.status_code, "$")
    return error(exc.status_code, field, f"{exc.detail}: {request.method} {request.url.path[:200]}",
                 headers=dict(exc.headers) if exc.headers else None)


async def _rejected(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, MessageRejected)
    return error(422, exc.field, exc.reason)


def install(app: FastAPI) -> None:
    """Every exception a route can raise becomes the error body with its status (never a bare 500)."""
    app.add_exception_handler(RequestValidationError, _invalid)
    for kind in (OSError, TimeoutError, asyncpg.PostgresError, KafkaException):
        app.add_exception_handler(kind, _unavailable)
    app.add_exception_handler(AuthError, _auth)
    app.add_exception_handler(KeyringError, _keyring)
    app.add_exception_handler(asyncpg.DataError, _unstorable)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(MessageRejected, _rejected)
