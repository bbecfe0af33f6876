"""The chaos tests' own stack (`.stack/chaos`): they kill its broker and database, so nothing else uses it.

Its OpenBao signs the chaos system's orders and the load generator's JWT, exactly as the shared
test stack does for the other integration tests. It runs with mutual TLS 1.3 on every part
(`up --tls`, issue 18): the faults are survived by clients that reconnect through TLS handshakes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import stack as infra_stack
from devstack.stack import StackInfo
from tests.conftest import REPO_ROOT
from treasury.auth import Scope, mint_token
from treasury.keyring import keyring_from_settings


def chaos_home() -> Path:
    """TREASURY_CHAOS_STACK_HOME, else the repo's git-ignored `.stack/chaos`."""
    return Path(os.environ.get("TREASURY_CHAOS_STACK_HOME", str(REPO_ROOT / ".stack" / "chaos")))


@pytest.fixture(scope="session")
def chaos_stack() -> Iterator[StackInfo]:
    home = chaos_home()
    try:
        yield infra_stack.up(home, tls=True)
    finally:
        if os.environ.get("KEEP_STACK") != "1":
            infra_stack.down(home)


@pytest.fixture(scope="session")
def chaos_headers(chaos_stack: StackInfo) -> dict[str, str]:
    """A Bank-Connector JWT signed by the chaos stack's Transit key."""
    settings = chaos_stack.settings()
    token = mint_token(keyring_from_settings(settings), settings.token_signing_key, "chaos-test",
                       [s.value for s in Scope])
    return {"Authorization": f"Bearer {token}"}
