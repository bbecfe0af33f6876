"""Fixtures shared by the whole suite: the real local stack (Kafka + PostgreSQL) for integration tests.

The stack is started once per session in its own home (`.stack/test`, never the developer's
`.stack/dev`) so tests cannot disturb a stack someone is using, and stopped at the end unless
KEEP_STACK=1 (then a re-run reuses it and skips the start-up cost).
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import stack as infra_stack
from devstack.common import pid_alive
from devstack.stack import StackInfo
from treasury.auth import Scope, mint_token
from treasury.keyring import Keyring, keyring_from_settings
from treasury.settings import RuntimeSettings

REPO_ROOT = Path(__file__).resolve().parents[1]


def stack_home_for_tests() -> Path:
    """TREASURY_TEST_STACK_HOME, else the repo's git-ignored `.stack/test`."""
    return Path(os.environ.get("TREASURY_TEST_STACK_HOME", str(REPO_ROOT / ".stack" / "test")))


def _other_live_sessions(leases: Path) -> list[int]:
    """Pids of other pytest sessions still using this stack home (their lease files)."""
    pids = [int(p.name) for p in leases.glob("*") if p.name.isdigit()]
    return [pid for pid in pids if pid != os.getpid() and pid_alive(pid)]


@pytest.fixture(scope="session")
def stack() -> Iterator[StackInfo]:
    """The running local stack; `up` is idempotent, so a kept stack is reused as is.

    Each session leaves a lease file while it runs, so a session that ends does not stop the stack
    under another session (another engineer's, or another worker) still using the same home.
    """
    home = stack_home_for_tests()
    leases = home / "leases"
    leases.mkdir(parents=True, exist_ok=True)
    lease = leases / str(os.getpid())
    lease.touch()
    try:
        yield infra_stack.up(home)
    finally:
        lease.unlink(missing_ok=True)
        if os.environ.get("KEEP_STACK") != "1" and not _other_live_sessions(leases):
            release_dropped_kafka_clients()
            infra_stack.down(home)


def release_dropped_kafka_clients() -> None:
    """Destroy the Kafka clients tests dropped but that still sit in reference cycles, while the broker answers.

    Such a client is freed only by the cycle collector, which may not run before the process ends;
    alive when the broker stops, it reconnects every second and prints librdkafka's
    `Connect to ... failed: Connection refused` to stderr (hundreds of lines per session).
    """
    gc.collect()


@pytest.fixture(scope="session")
def pg_dsn(stack: StackInfo) -> str:
    """DSN of the test database (`postgresql://treasury@127.0.0.1:PORT/treasury`)."""
    return stack.postgres_dsn


@pytest.fixture(scope="session")
def kafka_bootstrap(stack: StackInfo) -> str:
    """bootstrap.servers of the test broker (`127.0.0.1:PORT`)."""
    return stack.kafka_bootstrap


@pytest.fixture(scope="session")
def stack_settings(stack: StackInfo) -> RuntimeSettings:
    """Settings for the test stack: orders signed and raw events encrypted by its OpenBao, JWT required."""
    return stack.settings()


@pytest.fixture(scope="session")
def keyring(stack_settings: RuntimeSettings) -> Keyring:
    """The stack's OpenBao Transit (a real server, not a stand-in)."""
    return keyring_from_settings(stack_settings)


@pytest.fixture(scope="session")
def auth_headers(keyring: Keyring, stack_settings: RuntimeSettings) -> dict[str, str]:
    """A Bank-Connector JWT with every scope, signed by the stack's Transit key (as in production)."""
    token = mint_token(keyring, stack_settings.token_signing_key, "bank-connector-test", [s.value for s in Scope])
    return {"Authorization": f"Bearer {token}"}
