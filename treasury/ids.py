"""Identifiers: UUIDv7 order ids (time-ordered, so ids sort like creation) and trace ids."""

from __future__ import annotations

import secrets

import uuid_utils


def new_order_id() -> str:
    return str(uuid_utils.uuid7())


def new_trace_id() -> str:
    """32 hex chars, the W3C trace-context width, so traces can be joined with other systems."""
    return secrets.token_hex(16)
