"""Where the service's keys live: Vault Transit in production, a local key file only when asked.

Orders move money, so their signing key must never be readable by this process: Transit signs
and wraps data keys on our behalf and hands out only public keys. The development keyring exists
so a laptop without Vault can run the system, and it must be chosen explicitly (``SIGNER=dev``);
it then warns on every start, because a file key can be copied.

Every call is synchronous (hvac is built on requests); async callers wrap them in a thread.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import hvac
import hvac.exceptions
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from treasury.settings import ConfigError, RuntimeSettings

log = logging.getLogger("treasury.keyring")

VAULT_TIMEOUT_S = 10
# Items per Transit sign call: Vault refuses a request body with too many JSON strings ("high
# complexity"), which a large batch of orders reached.
SIGN_BATCH = 200
# Keys the service uses, and their Transit types: two signing keys (orders out, callers' tokens in)
# and one key-encryption key for the data keys that encrypt raw events at rest.
KEY_TYPES = {"order": "ed25519", "token": "ed25519", "data": "aes256-gcm96"}


class KeyringError(RuntimeError):
    """Vault refused or could not be reached; the message says which key and why."""


@dataclass(frozen=True)
class Signature:
    """``<issuer>:v<version>:<base64>``, Transit's own format, so rotation is visible in the value."""

    value: str
    key_version: int


def parse_signature(value: str) -> tuple[str, int, bytes]:
    """(issuer, key version, raw signature); ValueError naming what is wrong."""
    parts = value.split(":", 2)
    if len(parts) != 3 or not parts[1].startswith("v") or not parts[1][1:].isdigit():
        raise ValueError("signature is not '<issuer>:v<version>:<base64>'")
    try:
        raw = base64.b64decode(parts[2], validate=True)
    except ValueError:
        raise ValueError("signature is not valid base64") from None
    return parts[0], int(parts[1][1:]), raw


class Keyring(Protocol):
    name: str

    def sign(self, key: str, messages: list[bytes]) -> list[Signature]: ...
    def public_keys(self, key: str) -> dict[int, bytes]: ...
    def new_data_key(self, key: str) -> tuple[bytes, str]: ...
    def unwrap(self, key: str, wrapped: str) -> bytes: ...


class VaultKeyring:
    """Vault (or OpenBao) Transit through hvac: private keys never leave the server."""

    name = "vault"

    def __init__(self, client: hvac.Client, mount: str = "transit") -> None:
        self._client = client
        self._mount = mount

    @classmethod
    def connect(cls, addr: str, token: str, mount: str = "transit", *, cacert: Path | None = None,
                client_cert: tuple[Path, Path] | None = None) -> VaultKeyring:
        """``cacert``: the only CA the server's certificate may come from (else the system's);
        ``client_cert``: (certificate, key) presented to a server that requires one (mutual TLS)."""
        verify: bool | str = str(cacert) if cacert is not None else True
        cert = (str(client_cert[0]), str(client_cert[1])) if client_cert is not None else None
        return cls(hvac.Client(url=addr, token=token, timeout=VAULT_TIMEOUT_S, verify=verify, cert=cert), mount)

    def _call(self, what: str, key: str, fn, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return fn(name=key, mount_point=self._mount, **kwargs)
        except hvac.exceptions.VaultError as exc:
            raise KeyringError(f"vault transit {what} with key {key!r} refused: {exc}") from exc
        except OSError as exc:  # requests' ConnectionError is an OSError
            raise KeyringError(f"vault unreachable for {what} with key {key!r}: {exc}") from exc

    def sign(self, key: str, messages: list[bytes]) -> list[Signature]:
        if not messages:
            return []
        results: list[dict[str, Any]] = []
        for start in range(0, len(messages), SIGN_BATCH):  # Vault refuses very large JSON bodies
            batch = [{"input": base64.b64encode(m).decode()} for m in messages[start:start + SIGN_BATCH]]
            reply = self._call("sign", key, self._client.secrets.transit.sign_data, batch_input=batch)
            results += reply["data"]["batch_results"]
        failed = [r["error"] for r in results if r.get("error")]
        if failed:
            raise KeyringError(f"vault transit sign with key {key!r} refused: {failed[0]}")
        return [Signature(r["signature"], int(r["key_version"])) for r in results]

    def public_keys(self, key: str) -> dict[int, bytes]:
        reply = self._call("read", key, self._client.secrets.transit.read_key)
        return {int(v): base64.b64decode(k["public_key"]) for v, k in reply["data"]["keys"].items()}

    def new_data_key(self, key: str) -> tuple[bytes, str]:
        reply = self._call("datakey", key, self._client.secrets.transit.generate_data_key, key_type="plaintext")
        return base64.b64decode(reply["data"]["plaintext"]), str(reply["data"]["ciphertext"])

    def unwrap(self, key: str, wrapped: str) -> bytes:
        reply = self._call("decrypt", key, self._client.secrets.transit.decrypt_data, ciphertext=wrapped)
        return base64.b64decode(reply["data"]["plaintext"])

    def rotate(self, key: str) -> None:
        self._call("rotate", key, self._client.secrets.transit.rotate_key)

    def provision(self, names: dict[str, str]) -> None:
        """Mount Transit and create the keys when missing; what an operator does once per Vault."""
        try:
            if f"{self._mount}/" not in self._client.sys.list_mounted_secrets_engines()["data"]:
                self._client.sys.enable_secrets_engine("transit", path=self._mount)
            for role, key in names.items():
                self._client.secrets.transit.create_key(name=key, key_type=KEY_TYPES[role], mount_point=self._mount)
        except hvac.exceptions.VaultError as exc:
            raise KeyringError(f"vault transit provisioning refused: {exc}") from exc


class DevKeyring:
    """Keys derived from one local seed file. For development only: anyone with the file can sign."""

    name = "dev"

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise ConfigError("DEV_KEY_FILE: must hold exactly 32 bytes")
        self._seed = seed

    @classmethod
    def from_file(cls, path: Path) -> DevKeyring:
        """Created (mode 0600) on first use, so a restart keeps orders verifiable."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(secrets.token_bytes(32))
        return cls(path.read_bytes())

    def _derive(self, purpose: str) -> bytes:
        return HKDF(algorithm=SHA256(), length=32, salt=None, info=purpose.encode()).derive(self._seed)

    def _private(self, key: str) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self._derive(f"sign:{key}"))

    def sign(self, key: str, messages: list[bytes]) -> list[Signature]:
        private = self._private(key)
        return [Signature("dev:v1:" + base64.b64encode(private.sign(m)).decode(), 1) for m in messages]

    def public_keys(self, key: str) -> dict[int, bytes]:
        return {1: self._private(key).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)}

    def new_data_key(self, key: str) -> tuple[bytes, str]:
        plaintext = secrets.token_bytes(32)
        nonce = secrets.token_bytes(12)
        wrapped = AESGCM(self._derive(f"wrap:{key}")).encrypt(nonce, plaintext, key.encode())
        return plaintext, "dev:v1:" + base64.b64encode(nonce + wrapped).decode()

    def unwrap(self, key: str, wrapped: str) -> bytes:
        _, _, raw = parse_signature(wrapped)
        return AESGCM(self._derive(f"wrap:{key}")).decrypt(raw[:12], raw[12:], key.encode())


def vault_token(settings: RuntimeSettings) -> str:
    """VAULT_TOKEN_FILE is preferred: a path in the actors' environment leaks no secret to the dashboard."""
    if settings.vault_token_file:
        try:
            return Path(settings.vault_token_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"VAULT_TOKEN_FILE: cannot read {settings.vault_token_file}: {exc.strerror}") from None
    if settings.vault_token:
        return settings.vault_token
    raise ConfigError("VAULT_TOKEN: not set (nor VAULT_TOKEN_FILE); the service cannot reach Vault Transit")


def keyring_from_settings(settings: RuntimeSettings) -> Keyring:
    """The configured keyring; refuses to run unsigned: no Vault means SIGNER=dev, said explicitly."""
    if settings.signer == "dev":
        log.warning(
            "DEVELOPMENT SIGNER IN USE: orders are signed and raw events encrypted with the local key file %s, "
            "not Vault Transit. Anyone who can read that file can forge orders. Never run this in production.",
            settings.dev_key_file,
        )
        return DevKeyring.from_file(Path(settings.dev_key_file))
    if not settings.vault_addr:
        raise ConfigError(
            "VAULT_ADDR: not set. Orders must be signed through Vault Transit; to run without Vault, choose the "
            "development signer explicitly with SIGNER=dev"
        )
    client_cert = ((settings.vault_client_cert, settings.vault_client_key)
                   if settings.vault_client_cert is not None and settings.vault_client_key is not None else None)
    return VaultKeyring.connect(settings.vault_addr, vault_token(settings), settings.transit_mount,
                                cacert=settings.vault_cacert, client_cert=client_cert)
