"""Signed Sweep Orders: what is signed, how it is signed, and how anyone checks it.

The signature covers the order's canonical JSON (RFC 8785) without the two signature fields, so
any consumer in any language re-derives the same bytes from the JSON it received. The key
version travels beside the signature, and Transit keeps every version's public key, so rotating
the key leaves every order already sent verifiable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from treasury.keyring import Keyring, parse_signature

SIGNATURE_FIELDS = ("signature", "signing_key_version")
# Not part of the order but of its view: the REST pull adds the order's live status beside it, and
# ``GET /sweep-intent/{id}`` what became of it (serve_app/rest/routes/orders.py ``order_detail``),
# its approvers included (docs/approval.md).
VIEW_FIELDS = ("status", "status_history", "failure_reason", "settlement", "investment", "approvals_required",
               "approvals", "rejection")


class SignatureInvalid(ValueError):
    """The order does not carry a valid signature; the message says why."""


def signed_bytes(order: Mapping[str, Any]) -> bytes:
    """RFC 8785 canonical JSON of the order without its signature fields (nor the REST view's status)."""
    return rfc8785.dumps({k: v for k, v in order.items() if k not in SIGNATURE_FIELDS + VIEW_FIELDS})


def sign_orders(keyring: Keyring, key: str, orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same orders with ``signature`` and ``signing_key_version``; one Transit call per batch."""
    signatures = keyring.sign(key, [signed_bytes(o) for o in orders])
    return [
        {**o, "signature": s.value, "signing_key_version": s.key_version}
        for o, s in zip(orders, signatures, strict=True)
    ]


def verify_order(order: Mapping[str, Any], public_keys: Mapping[int, bytes]) -> int:
    """Raises SignatureInvalid unless ``order`` is signed by one of ``public_keys``; returns the version."""
    value = order.get("signature")
    if not isinstance(value, str) or not value:
        raise SignatureInvalid("signature: missing")
    try:
        _, version, raw = parse_signature(value)
    except ValueError as exc:
        raise SignatureInvalid(f"signature: {exc}") from None
    if order.get("signing_key_version") != version:
        raise SignatureInvalid(
            f"signing_key_version: {order.get('signing_key_version')!r} does not match the signature's v{version}"
        )
    public = public_keys.get(version)
    if public is None:
        raise SignatureInvalid(f"signing_key_version: no public key for version {version}")
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(raw, signed_bytes(order))
    except InvalidSignature:
        raise SignatureInvalid("signature: does not match the order's content") from None
    return version
