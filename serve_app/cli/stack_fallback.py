"""Where a command finds the system it belongs to, and one line when it cannot reach a part of it.

With ``scripts/run.sh`` (or ``treasury-orch infra up``) running in one terminal, a command typed in
another has none of the addresses that run printed: the stack picks free ports and records them in
its home (``devstack/stack.py``: ``state.json``, the OpenBao token file). So when the environment
names no address, the commands that talk to the system read them there; a variable that is set
always wins. devstack is development tooling and absent from the wheel and the image: there nothing
is recorded, nothing is read, and the defaults (or the environment) apply as before.

A part that does not answer is reported as one line naming it, its address, where that address came
from and how to start it or point to it; ``main`` prints it and exits 2 instead of a traceback.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from treasury.settings import RuntimeSettings
from treasury.tls import KAFKA_SETTINGS

if TYPE_CHECKING:
    import asyncpg

# Variables filled from the stack together, and only when the environment sets none of the
# `unless` ones: a VAULT_TOKEN of the operator's own must not be paired with the stack's OpenBao.
# A stack started with `--tls` records its client certificate settings too: they go with the address.
KAFKA_TLS = tuple(KAFKA_SETTINGS)
_GROUPS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("KAFKA_BOOTSTRAP", *KAFKA_TLS), ("KAFKA_BOOTSTRAP",)),
    (("DATABASE_URL",), ("DATABASE_URL",)),
    (("VAULT_ADDR", "VAULT_TOKEN_FILE", "VAULT_CACERT", "VAULT_CLIENT_CERT", "VAULT_CLIENT_KEY"),
     ("VAULT_ADDR", "VAULT_TOKEN", "VAULT_TOKEN_FILE")),
    (("CONSUL_HTTP_ADDR", "CONSUL_CACERT", "CONSUL_CLIENT_CERT", "CONSUL_CLIENT_KEY"), ("CONSUL_HTTP_ADDR",)),
)
PROBE_TIMEOUT_S = 3.0
_REASON_CHARS = 160
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\"()\[\],]+)")


def _devstack_available() -> bool:
    """Whether the local stack's tooling is importable here (the dev venv, not the wheel or image)."""
    try:
        import devstack.stack  # noqa: F401
    except ImportError:
        return False
    return True


def stack_home(environ: Mapping[str, str]) -> Path | None:
    """The local stack's home (TREASURY_STACK_HOME, else `.stack/dev`); None without devstack."""
    try:
        from devstack import stack
    except ImportError:
        return None
    return stack.default_home(environ)


def recorded_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The addresses the local stack recorded in its home; empty without devstack or a recorded stack."""
    try:
        from devstack import stack
    except ImportError:
        return {}
    return stack.recorded_env(stack.default_home(environ))


def with_stack_fallback(environ: Mapping[str, str], recorded: Mapping[str, str]) -> dict[str, str]:
    """``environ`` plus the recorded addresses for the parts it names none of (empty counts as unset,
    as RuntimeSettings.from_env reads it)."""
    merged = dict(environ)
    for keys, unless in _GROUPS:
        if any(environ.get(key) for key in unless):
            continue
        merged.update({key: recorded[key] for key in keys if recorded.get(key)})
    return merged


@dataclass(frozen=True)
class Resolved:
    """The settings a command uses, and the environment they were read from (for error messages)."""

    settings: RuntimeSettings
    environ: Mapping[str, str]
    recorded: Mapping[str, str]
    home: Path | None


def resolve(environ: Mapping[str, str] | None = None) -> Resolved:
    """Settings from the environment, falling back to the local stack's recorded addresses."""
    env = os.environ if environ is None else environ
    recorded = recorded_env(env)
    merged = with_stack_fallback(env, recorded)
    if environ is None:  # librdkafka clients read their TLS settings from this process's environment
        os.environ.update({key: merged[key] for key in KAFKA_TLS if merged.get(key)})
    return Resolved(RuntimeSettings.from_env(merged), env, recorded, stack_home(env))


# --------------------------------------------------------------------------------------- unreachable


class Unreachable(Exception):
    """A part of the system did not answer; ``str()`` is the one line the command prints."""


@dataclass(frozen=True)
class Part:
    """A dependency as the user knows it: its name, its address and the variable that points to it."""

    name: str
    address: str
    env_key: str


def postgres_part(dsn: str) -> Part:
    """Postgres by host:port only: a DSN may carry a password, which must not reach a terminal."""
    try:
        url = urlsplit(dsn)
        address = f"{url.hostname or 'localhost'}:{url.port or 5432}"
    except ValueError:
        address = "an unparsable DATABASE_URL"
    return Part("Postgres", address, "DATABASE_URL")


def kafka_part(bootstrap: str) -> Part:
    return Part("Kafka", bootstrap, "KAFKA_BOOTSTRAP")


def openbao_part(addr: str | None) -> Part:
    return Part("OpenBao", addr or "-", "VAULT_ADDR")


def ray_part(environ: Mapping[str, str]) -> Part:
    return Part("Ray", environ.get("RAY_ADDRESS") or "this machine", "RAY_ADDRESS")


def _one_line(exc: BaseException) -> str:
    """Why, short: the OS's words (``Connection refused``) rather than a client library's wrapping of them."""
    strerror = getattr(exc, "strerror", None)
    text = " ".join((strerror if isinstance(strerror, str) else str(exc) or type(exc).__name__).split())
    os_words = _ERRNO.search(text)
    if os_words is not None:
        text = os_words.group(1).strip()
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 1] + "…"


def unreachable(part: Part, where: Resolved, exc: BaseException) -> Unreachable:
    """The one line: which part, at which address (and whence), why, and how to start or point to it."""
    if where.environ.get(part.env_key):
        source = f"from {part.env_key}"
    elif where.recorded.get(part.env_key):
        source = f"recorded by the local stack in {where.home}"
    elif part.name == "Ray":
        source = "RAY_ADDRESS unset"
    else:
        source = f"the default: {part.env_key} is unset" + (
            f" and no local stack is recorded in {where.home}" if where.home is not None else "")
    if part.name == "Ray":
        start = "start the system with `bash scripts/run.sh`, or set RAY_ADDRESS to a running cluster"
    elif _devstack_available():
        start = (f"start the local stack with `treasury-orch infra up` (or `bash scripts/run.sh`), "
                 f"or set {part.env_key} to where it runs")
    else:
        start = f"set {part.env_key} to where it runs"
    return Unreachable(f"{part.name} at {part.address} is not reachable ({source}): {_one_line(exc)}; {start}")


# Errors that mean "nobody answered there": refused, unknown host, timed out, still starting up.
_POSTGRES_DOWN: tuple[type[BaseException], ...] = (OSError, asyncio.TimeoutError)


@contextmanager
def reaching_postgres(where: Resolved) -> Iterator[None]:
    """Turn a connection failure inside the block into the one-line Unreachable for Postgres."""
    import asyncpg

    try:
        yield
    except (*_POSTGRES_DOWN, asyncpg.CannotConnectNowError) as exc:
        raise unreachable(postgres_part(where.settings.database_url), where, exc) from exc


async def open_pool(where: Resolved, max_size: int) -> asyncpg.Pool:
    """The ledger's pool (migrated, as create_pool does), or Unreachable naming Postgres."""
    from storage.db import create_pool

    with reaching_postgres(where):
        return await create_pool(where.settings.database_url, max_size=max_size)


def _host_port(entry: str) -> tuple[str, int] | None:
    """``host:port`` of one bootstrap entry (``PLAINTEXT://h:p`` and ``[v6]:p`` included)."""
    entry = entry.strip().rsplit("://", 1)[-1]
    host, sep, port = entry.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]") or "localhost", int(port)


def require_kafka(where: Resolved, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Raise Unreachable unless one bootstrap broker accepts a connection.

    A TCP probe rather than a Kafka client: a client to a dead broker would print librdkafka's
    reconnect errors to stderr for as long as it lives, which is the noise this line replaces.
    """
    bootstrap = where.settings.kafka_bootstrap
    last: OSError = ConnectionRefusedError("no broker address in KAFKA_BOOTSTRAP")
    for entry in bootstrap.split(","):
        target = _host_port(entry)
        if target is None:
            continue
        try:
            with socket.create_connection(target, timeout=timeout_s):
                return
        except OSError as exc:
            last = exc
    raise unreachable(kafka_part(bootstrap), where, last)


def vault_unreachable(where: Resolved, exc: BaseException) -> Unreachable | None:
    """The OpenBao line when ``exc`` (a KeyringError) stands for a server that did not answer."""
    cause = exc.__cause__
    if isinstance(cause, OSError):
        return unreachable(openbao_part(where.settings.vault_addr), where, cause)
    return None
