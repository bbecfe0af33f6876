"""Envelope encryption of raw events at rest.

A raw bank message names accounts and amounts; the ledger keeps it for audit, so it is stored
encrypted. Each process asks Transit for a data key (plaintext + wrapped), encrypts rows locally
with AES-256-GCM, and stores the wrapped key beside each ciphertext: one Transit call per key
lifetime instead of one per row, and the plaintext key never reaches the database. The row's
identity (account and event id) is bound as associated data, so a ciphertext moved to another
row does not decrypt.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections import OrderedDict
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from treasury.keyring import Keyring

ALGORITHM = "A256GCM"
DATA_KEY_LIFETIME_S = 3600.0
DATA_KEY_MAX_USES = 1_000_000  # far below GCM's 2^32 random-nonce bound per key
# Unwrapped keys kept for reading: a key is made per writing process and hour, so a replica that
# serves a year of old events would otherwise keep thousands; the least recently used go first
# (unwrapping one again is a single Transit call).
UNWRAPPED_KEYS_KEPT = 256


class EnvelopeError(ValueError):
    """A stored envelope cannot be opened; the message says why."""


def is_envelope(value: Any) -> bool:
    return isinstance(value, dict) and value.get("alg") == ALGORITHM and "ciphertext" in value


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class EnvelopeCipher:
    """Thread-safe: the shard encrypts from its event loop, readers decrypt from request handlers."""

    def __init__(self, keyring: Keyring, key: str, *, clock: Any = time.monotonic) -> None:
        self._keyring = keyring
        self._key = key
        self._clock = clock
        self._lock = threading.Lock()
        self._current: tuple[AESGCM, str, float, int] | None = None
        self._unwrapped: OrderedDict[str, AESGCM] = OrderedDict()

    def _data_key(self) -> tuple[AESGCM, str]:
        with self._lock:
            now = self._clock()
            if (self._current is None or now - self._current[2] > DATA_KEY_LIFETIME_S
                    or self._current[3] >= DATA_KEY_MAX_USES):
                plaintext, wrapped = self._keyring.new_data_key(self._key)
                self._current = (AESGCM(plaintext), wrapped, now, 0)
                self._remember(wrapped, self._current[0])
            aead, wrapped, born, uses = self._current
            self._current = (aead, wrapped, born, uses + 1)
            return aead, wrapped

    def _remember(self, wrapped: str, aead: AESGCM) -> None:
        """Caller holds the lock."""
        self._unwrapped[wrapped] = aead
        self._unwrapped.move_to_end(wrapped)
        while len(self._unwrapped) > UNWRAPPED_KEYS_KEPT:
            self._unwrapped.popitem(last=False)

    def encrypt(self, value: dict[str, Any], context: str) -> dict[str, Any]:
        aead, wrapped = self._data_key()
        nonce = secrets.token_bytes(12)
        plaintext = json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
        return {
            "alg": ALGORITHM,
            "kek": self._key,
            "wrapped_key": wrapped,
            "nonce": _b64(nonce),
            "ciphertext": _b64(aead.encrypt(nonce, plaintext, context.encode())),
        }

    def decrypt(self, envelope: dict[str, Any], context: str) -> dict[str, Any]:
        if not is_envelope(envelope):
            raise EnvelopeError("raw_event: not an encrypted envelope")
        wrapped = str(envelope["wrapped_key"])
        with self._lock:
            aead = self._unwrapped.get(wrapped)
            if aead is not None:
                self._unwrapped.move_to_end(wrapped)
        if aead is None:
            aead = AESGCM(self._keyring.unwrap(str(envelope.get("kek", self._key)), wrapped))
            with self._lock:
                self._remember(wrapped, aead)
        try:
            plaintext = aead.decrypt(base64.b64decode(envelope["nonce"]), base64.b64decode(envelope["ciphertext"]),
                                     context.encode())
        except (InvalidTag, ValueError):
            raise EnvelopeError("raw_event: ciphertext does not open under its key and row (tampered or moved)") \
                from None
        value: dict[str, Any] = json.loads(plaintext)
        return value


def row_context(account_id: str, event_id: str) -> str:
    return f"balance:{account_id}:{event_id}"
