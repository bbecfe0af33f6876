"""Structured logs: one JSON object per line, so a trace id can be followed with grep or jq.

Context fields (``trace_id``, ``account_id``, ``order_id``, ``decision``) are passed with
``extra=`` on the call that knows them. ``trace_id`` is on every line: a line logged while a REST
request is served takes the request's id (``trace_context``) unless the call names another one,
and a line outside any trace says so with ``null`` rather than leaving the field out, so
``jq 'select(.trace_id == ...)'`` never needs a fallback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

CONTEXT_FIELDS = ("trace_id", "account_id", "order_id", "decision", "config_key", "reason", "config_version")
_TRACE: ContextVar[str | None] = ContextVar("treasury_trace_id", default=None)


@contextmanager
def trace_context(trace_id: str | None) -> Iterator[None]:
    """Lines logged inside carry ``trace_id`` (asyncio tasks started inside inherit it too)."""
    token = _TRACE.set(trace_id)
    try:
        yield
    finally:
        _TRACE.reset(token)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line["trace_id"] = getattr(record, "trace_id", None) or _TRACE.get()
        for name in CONTEXT_FIELDS[1:]:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(level: str | None = None) -> None:
    """Idempotent: every actor, replica and CLI calls it; only the first call adds the handler."""
    root = logging.getLogger("treasury")
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level or os.environ.get("LOG_LEVEL", "INFO"))
    root.propagate = False
