"""Signing, envelope encryption and JWT checks on the development keyring (pure, no Vault).

The same functions run against the real OpenBao in tests/integration/test_security.py; here the
edge cases: tampering, moved ciphertexts, wrong versions, expired or under-scoped tokens.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from pathlib import Path

import jwt
import pytest

from treasury import envelope
from treasury.auth import AuthError, Scope, TokenVerifier, mint_token
from treasury.envelope import EnvelopeCipher, EnvelopeError, is_envelope, row_context
from treasury.keyring import DevKeyring, keyring_from_settings, parse_signature
from treasury.settings import ConfigError, RuntimeSettings
from treasury.signing import SignatureInvalid, sign_orders, signed_bytes, verify_order

ORDER = {"order_id": "0192f0c0-0000-7000-8000-000000000001", "source_account": "ACC-1",
         "target_product": "TBILL_4W", "amount_usd": "750000.0000", "cutoff_utc": "2026-11-24T15:30:00Z",
         "risk_checks": {"var_limit_bps": 10.0, "observed_var_bps": 4.5, "var_history_days": 250},
         "created_ts": "2026-11-24T09:00:00Z", "aml_tags": {"kyc_tier": "A"}}


@pytest.fixture
def keyring(tmp_path: Path) -> DevKeyring:
    return DevKeyring.from_file(tmp_path / "seed")


def test_canonical_bytes_ignore_key_order_and_signature_fields() -> None:
    shuffled = dict(reversed(list(ORDER.items())))
    assert signed_bytes(ORDER) == signed_bytes(shuffled)
    assert signed_bytes({**ORDER, "signature": "x", "signing_key_version": 3}) == signed_bytes(ORDER)
    assert signed_bytes(ORDER).startswith(b'{"aml_tags":{"kyc_tier":"A"},"amount_usd":"750000.0000"')


def test_signed_order_verifies_and_any_change_breaks_it(keyring: DevKeyring) -> None:
    [signed] = sign_orders(keyring, "orders", [ORDER])
    keys = keyring.public_keys("orders")
    assert verify_order(signed, keys) == 1 and signed["signature"].startswith("dev:v1:")
    for field, value in (("amount_usd", "750001.0000"), ("source_account", "ACC-2"), ("aml_tags", {})):
        with pytest.raises(SignatureInvalid, match="does not match the order's content"):
            verify_order({**signed, field: value}, keys)
    with pytest.raises(SignatureInvalid, match="signing_key_version"):
        verify_order({**signed, "signing_key_version": 2}, keys)
    with pytest.raises(SignatureInvalid, match="missing"):
        verify_order(ORDER, keys)
    with pytest.raises(SignatureInvalid, match="no public key for version 1"):
        verify_order(signed, {2: keys[1]})
    with pytest.raises(SignatureInvalid, match="does not match"):
        verify_order(signed, keyring.public_keys("another-key"))


@pytest.mark.parametrize("value,reason", [("nope", "is not"), ("vault:vX:AAAA", "is not"),
                                          ("vault:v1:@@@", "base64")])
def test_malformed_signatures_are_named(keyring: DevKeyring, value: str, reason: str) -> None:
    with pytest.raises(SignatureInvalid, match=reason):
        verify_order({**ORDER, "signature": value, "signing_key_version": 1}, keyring.public_keys("orders"))


def test_dev_seed_persists_and_must_be_32_bytes(tmp_path: Path) -> None:
    a = DevKeyring.from_file(tmp_path / "k")
    b = DevKeyring.from_file(tmp_path / "k")
    assert a.public_keys("x") == b.public_keys("x")
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600
    (tmp_path / "short").write_bytes(b"123")
    with pytest.raises(ConfigError, match="DEV_KEY_FILE"):
        DevKeyring.from_file(tmp_path / "short")


def test_envelope_round_trip_and_binding(keyring: DevKeyring) -> None:
    cipher = EnvelopeCipher(keyring, "raw")
    raw = {"event_id": "e1", "available_usd": "123.45", "nested": {"iban": "DE89370400440532013000"}}
    sealed = cipher.encrypt(raw, row_context("A", "e1"))
    assert is_envelope(sealed) and "DE89" not in str(sealed) and sealed["wrapped_key"].startswith("dev:v1:")
    assert EnvelopeCipher(keyring, "raw").decrypt(sealed, row_context("A", "e1")) == raw  # a new process
    with pytest.raises(EnvelopeError, match="moved"):
        cipher.decrypt(sealed, row_context("A", "e2"))
    tampered = {**sealed, "ciphertext": base64.b64encode(b"x" * 40).decode()}
    with pytest.raises(EnvelopeError, match="tampered"):
        cipher.decrypt(tampered, row_context("A", "e1"))
    with pytest.raises(EnvelopeError, match="not an encrypted envelope"):
        cipher.decrypt(raw, row_context("A", "e1"))


def test_data_key_is_reused_then_renewed(keyring: DevKeyring) -> None:
    now = [0.0]
    cipher = EnvelopeCipher(keyring, "raw", clock=lambda: now[0])
    first = cipher.encrypt({"a": 1}, "c")["wrapped_key"]
    assert cipher.encrypt({"a": 2}, "c")["wrapped_key"] == first
    now[0] = 3601.0
    renewed = cipher.encrypt({"a": 3}, "c")
    assert renewed["wrapped_key"] != first and cipher.decrypt(renewed, "c") == {"a": 3}


def test_unwrapped_keys_kept_are_bounded_and_old_rows_still_open(keyring: DevKeyring,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(envelope, "UNWRAPPED_KEYS_KEPT", 3)
    now = [0.0]
    writer = EnvelopeCipher(keyring, "raw", clock=lambda: now[0])
    sealed = []
    for hour in range(6):  # six data keys, one per hour
        now[0] = hour * 3601.0
        sealed.append(writer.encrypt({"hour": hour}, "c"))
    reader = EnvelopeCipher(keyring, "raw")
    assert [reader.decrypt(e, "c") for e in sealed] == [{"hour": h} for h in range(6)]
    assert len(reader._unwrapped) == 3 and len(writer._unwrapped) == 3  # the newest three
    assert reader.decrypt(sealed[0], "c") == {"hour": 0}  # evicted, unwrapped again through the keyring


def _with_claims(token: str, **changes: str) -> str:
    """The same token with its claims edited and the original signature kept: a forgery."""
    header, claims, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    edited = base64.urlsafe_b64encode(json.dumps({**decoded, **changes}).encode()).rstrip(b"=").decode()
    return f"{header}.{edited}.{signature}"


def test_token_scopes_and_refusals(keyring: DevKeyring) -> None:
    verifier = TokenVerifier(keyring, "callers")
    token = mint_token(keyring, "callers", "bank-connector", ["orders:read"])
    caller = verifier.verify(f"Bearer {token}", Scope.ORDERS_READ)
    assert caller.subject == "bank-connector" and caller.scopes == {"orders:read"}
    cases = [
        (None, 401, "missing Authorization"),
        ("Basic abc", 401, "must be 'Bearer"),
        ("Bearer not-a-jwt", 401, "not a JWT"),
        (f"Bearer {_with_claims(token, scope='orders:read orders:write')}", 401, "Signature verification failed"),
        (f"Bearer {mint_token(keyring, 'other-key', 'x', ['orders:read'])}", 401, "kid"),
        (f"Bearer {mint_token(keyring, 'callers', 'x', ['orders:read'], audience='elsewhere')}", 401,
         "Audience doesn't match"),
        (f"Bearer {mint_token(keyring, 'callers', 'x', ['orders:read'], ttl_s=60, now=time.time() - 600)}",
         401, "expired"),
    ]
    for header, status, reason in cases:
        with pytest.raises(AuthError, match=reason) as info:
            verifier.verify(header, Scope.ORDERS_READ)
        assert info.value.status == status
    with pytest.raises(AuthError, match="lacks scope 'balances:write'") as denied:
        verifier.verify(f"Bearer {token}", Scope.BALANCES_WRITE)
    assert denied.value.status == 403


def test_token_with_another_algorithm_is_refused(keyring: DevKeyring) -> None:
    forged = jwt.encode({"sub": "x", "scope": "orders:read"}, "s" * 32, algorithm="HS256",
                        headers={"kid": "callers:v1"})
    with pytest.raises(AuthError, match="EdDSA"):
        TokenVerifier(keyring, "callers").verify(f"Bearer {forged}", Scope.ORDERS_READ)


def test_minting_refuses_unknown_scopes_and_long_lives(keyring: DevKeyring) -> None:
    with pytest.raises(ValueError, match="unknown scope 'admin'"):
        mint_token(keyring, "callers", "x", ["admin"])
    with pytest.raises(ValueError, match="ttl"):
        mint_token(keyring, "callers", "x", ["orders:read"], ttl_s=10**6)


def test_no_vault_refuses_to_start_unless_dev_signer_is_chosen(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ConfigError, match=r"VAULT_ADDR: not set.*SIGNER=dev"):
        keyring_from_settings(RuntimeSettings())
    with pytest.raises(ConfigError, match="VAULT_TOKEN"):
        keyring_from_settings(RuntimeSettings(vault_addr="http://127.0.0.1:1"))
    with pytest.raises(ConfigError, match="VAULT_TOKEN_FILE: cannot read"):
        keyring_from_settings(RuntimeSettings(vault_addr="http://127.0.0.1:1", vault_token_file=str(tmp_path / "no")))
    with caplog.at_level(logging.WARNING, logger="treasury.keyring"):
        dev = keyring_from_settings(RuntimeSettings(signer="dev", dev_key_file=str(tmp_path / "dev.key")))
    assert dev.name == "dev" and "DEVELOPMENT SIGNER IN USE" in caplog.text
    env = RuntimeSettings.from_env({"SIGNER": "dev", "AUTH": "off", "VAULT_TOKEN_FILE": "/x"}).as_env()
    assert env["SIGNER"] == "dev" and env["AUTH"] == "off" and "VAULT_ADDR" not in env


def test_parse_signature() -> None:
    assert parse_signature("vault:v12:" + base64.b64encode(b"sig").decode()) == ("vault", 12, b"sig")
