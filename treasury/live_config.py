"""Live policy configuration from Consul KV: reading a KV listing and deciding what a change means.

Pure logic, kept apart from the watcher actor (``actors/config_watcher.py``) so every rule is unit
tested without an agent: how a recursive KV answer maps to the spec's keys, how the blocking-query
index moves, and when a change becomes a new version, is ignored, or is refused.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from treasury.settings import ConfigError, PolicyConfig, policy_from_mapping


class KvFormatError(ValueError):
    """Consul answered something that is not a KV listing (a proxy's error page, say)."""


def parse_kv(body: bytes | str, prefix: str) -> dict[str, str]:
    """The keys under ``prefix`` (prefix stripped) and their values, from ``GET /v1/kv/<prefix>?recurse``.

    Folder entries (keys ending in ``/``, what the Consul UI creates) and the prefix itself are
    skipped; a key whose value is null (created without a body) reads as an empty string, which the
    validation then refuses by name. Nested keys keep their sub-path, so a stray
    ``treasury/config/x/LIQ_BUFFER_PCT`` is refused as an unknown key rather than silently read.
    """
    try:
        entries = json.loads(body or b"[]")
    except ValueError as exc:
        raise KvFormatError(f"not JSON: {exc}") from exc
    if not isinstance(entries, list):
        raise KvFormatError("expected a JSON list of KV entries")
    values: dict[str, str] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("Key"), str):
            raise KvFormatError("a KV entry without a Key")
        key: str = entry["Key"]
        if not key.startswith(prefix) or key.endswith("/"):
            continue
        raw = entry.get("Value")
        try:
            text = "" if raw is None else base64.b64decode(raw, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, TypeError) as exc:
            raise KvFormatError(f"{key}: value is not base64-encoded UTF-8") from exc
        values[key[len(prefix):]] = text.strip()
    return values


def next_index(previous: int, header: str | None) -> int:
    """The index for the next blocking query, following Consul's rules for X-Consul-Index.

    An index that went backwards (the agent restarted, its raft log was reset) or is not a
    positive number restarts from 0: a fresh full read, never a wait on an index that will not come.
    """
    try:
        index = int(header or "0")
    except ValueError:
        return 0
    if index <= 0 or index < previous:
        return 0
    return index


def refusal_parts(exc: ConfigError) -> tuple[str, str]:
    """(key, reason) out of a ConfigError, whose message is ``KEY: reason``."""
    key, sep, reason = str(exc).partition(": ")
    return (key, reason) if sep else ("config", str(exc))


@dataclass(frozen=True)
class Verdict:
    """What a KV snapshot means: a new version, no change, or a refusal naming the key and reason."""

    kind: str  # "accepted", "unchanged" or "rejected"
    config: PolicyConfig
    version: int
    key: str | None = None
    reason: str | None = None


class LiveConfig:
    """The last good configuration and its version; every KV snapshot is judged against it.

    A snapshot overlays the base (defaults and environment) as a whole, so deleting a key in
    Consul returns it to its base value. A refused snapshot changes nothing: the last good
    configuration and its version stay until a valid snapshot arrives.
    """

    def __init__(self, base: PolicyConfig, active: PolicyConfig | None = None, version: int = 0) -> None:
        self.base = base
        self.active = active or base
        self.version = version
        self.rejected = 0

    def consider(self, values: Mapping[str, Any]) -> Verdict:
        try:
            candidate = policy_from_mapping(values, base=self.base)
        except ConfigError as exc:
            self.rejected += 1
            key, reason = refusal_parts(exc)
            return Verdict("rejected", self.active, self.version, key, reason)
        if candidate == self.active and self.version > 0:
            return Verdict("unchanged", self.active, self.version)
        self.active, self.version = candidate, self.version + 1
        return Verdict("accepted", candidate, self.version)
