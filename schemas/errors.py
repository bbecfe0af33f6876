"""Turning a refused message into one clear sentence: which field, and why."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class MessageRejected(ValueError):
    """An inbound message failed validation. ``field`` is a dotted path, ``$`` for the whole body."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "reason": self.reason}


def field_path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "$"


def rejected(exc: ValidationError) -> MessageRejected:
    """The first error decides the message; pydantic lists them in field order."""
    first = exc.errors(include_url=False)[0]
    return MessageRejected(field_path(tuple(first["loc"])), str(first["msg"]))


def decode(model: type[M], raw: bytes | str) -> M:
    """Parse UTF-8 JSON into ``model``; every failure becomes a MessageRejected."""
    return decode_with_source(model, raw)[0]


def decode_with_source(model: type[M], raw: bytes | str) -> tuple[M, dict[str, Any]]:
    """Like ``decode``, also returning the parsed JSON object (kept verbatim for audit)."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        raise MessageRejected("$", f"body is not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    try:
        data = json.loads(text, parse_float=str, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise MessageRejected("$", f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except ValueError as exc:
        raise MessageRejected("$", str(exc)) from exc
    except RecursionError as exc:  # a few KB of "[[[[..." would otherwise crash the caller
        raise MessageRejected("$", "JSON nested too deeply") from exc
    if not isinstance(data, dict):
        raise MessageRejected("$", f"expected a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(data), data
    except ValidationError as exc:
        raise rejected(exc) from exc


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not a valid JSON number")
