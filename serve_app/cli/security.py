"""`treasury-orch verify` and `treasury-orch token`: the signing and authentication commands.

``verify`` is what a Bank-Connector or QuantEngine operator runs on an order they received;
``token`` is how a Bank-Connector gets its JWT (Transit signs it, so no one holds the key).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path
from typing import Any

from serve_app.cli.stack_fallback import resolve, vault_unreachable
from treasury.auth import MAX_TTL_S, Scope, mint_token
from treasury.keyring import KeyringError, keyring_from_settings
from treasury.settings import RuntimeSettings
from treasury.signing import SignatureInvalid, verify_order


def add_parsers(sub: Any) -> None:
    verify = sub.add_parser("verify", help="check the Vault Transit signature of sweep orders (file or stdin)")
    verify.add_argument("file", nargs="?", default="-",
                        help="an order, a list of orders or a GET /sweep-intent page, as JSON; '-' for stdin")
    verify.add_argument("--public-keys", default=None, metavar="JSON",
                        help='{"<version>": "<base64 ed25519 key>"} instead of asking Vault (offline check)')
    verify.set_defaults(handler=_verify)

    token = sub.add_parser("token", help="mint a caller's JWT, signed by the Transit key TOKEN_SIGNING_KEY")
    token.add_argument("--subject", required=True, help="who the caller is, e.g. bank-connector")
    token.add_argument("--scopes", nargs="+", required=True, choices=[s.value for s in Scope])
    token.add_argument("--ttl", type=int, default=3600, help=f"seconds, at most {MAX_TTL_S}")
    token.set_defaults(handler=_token)


def _orders(document: Any) -> list[dict[str, Any]]:
    if isinstance(document, dict) and isinstance(document.get("orders"), list):
        document = document["orders"]
    items = document if isinstance(document, list) else [document]
    if not all(isinstance(o, dict) for o in items):
        raise ValueError("expected an order object, a list of them, or a page with 'orders'")
    return items


def _public_keys(path: str | None, settings: RuntimeSettings) -> dict[int, bytes]:
    if path is None:
        return keyring_from_settings(settings).public_keys(settings.order_signing_key)
    raw = json.loads(Path(path).read_text())
    return {int(version): base64.b64decode(key) for version, key in raw.items()}


def _verify(args: argparse.Namespace) -> int:
    """Exit 0 when every order verifies, 1 when one does not, 2 when the input cannot be read."""
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
        orders = _orders(json.loads(text))
        where = resolve()
        keys = _public_keys(args.public_keys, where.settings)
    except (OSError, ValueError, KeyringError) as exc:
        if isinstance(exc, KeyringError) and (down := vault_unreachable(where, exc)) is not None:
            raise down from exc
        print(f"treasury-orch verify: {exc}", file=sys.stderr)
        return 2
    bad = 0
    for order in orders:
        try:
            version = verify_order(order, keys)
            print(json.dumps({"order_id": order.get("order_id"), "valid": True, "key_version": version}))
        except SignatureInvalid as exc:
            bad += 1
            print(json.dumps({"order_id": order.get("order_id"), "valid": False, "reason": str(exc)}))
    return 1 if bad else 0


def _token(args: argparse.Namespace) -> int:
    where = resolve()
    settings = where.settings
    try:
        token = mint_token(keyring_from_settings(settings), settings.token_signing_key, args.subject, args.scopes,
                           args.ttl, settings.jwt_audience)
    except (ValueError, KeyringError) as exc:
        if isinstance(exc, KeyringError) and (down := vault_unreachable(where, exc)) is not None:
            raise down from exc
        print(f"treasury-orch token: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0
