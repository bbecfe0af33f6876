"""The CLI in a fresh terminal beside a running stack: no exported addresses, and it still finds the system.

Each command runs as a newcomer would run it, in its own process with an environment naming no
part of the system, only the stack home (what `TREASURY_STACK_HOME` or the default `.stack/dev`
gives a developer's terminal).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

from devstack.stack import StackInfo
from tests.integration.conftest import free_port
from treasury.settings import RuntimeSettings

CLI_TIMEOUT_S = 120.0


def cli(stack: StackInfo, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m serve_app.cli ARGV`` with the addresses stripped from the environment."""
    names = set(RuntimeSettings.env_keys()) | {"TREASURY_STACK_HOME", "RAY_ADDRESS"}
    clean = {k: v for k, v in os.environ.items() if k not in names}
    return subprocess.run([sys.executable, "-m", "serve_app.cli", *argv], capture_output=True, text=True,
                          timeout=CLI_TIMEOUT_S, env={**clean, "TREASURY_STACK_HOME": str(stack.home), **env},
                          check=False)


def test_accounts_and_token_find_the_running_stack(stack: StackInfo) -> None:
    account = f"CLI{uuid.uuid4().hex[:10]}"
    added = cli(stack, "accounts", "add", account, "--min-balance", "5")
    assert added.returncode == 0, added.stderr
    listed = cli(stack, "accounts", "list")
    assert listed.returncode == 0, listed.stderr
    assert f'"account_id": "{account}"' in listed.stdout
    token = cli(stack, "token", "--subject", "newcomer", "--scopes", "orders:read")
    assert token.returncode == 0, token.stderr
    assert token.stdout.count(".") == 2  # a JWT, signed by the stack's OpenBao


def test_an_unreachable_postgres_is_one_line_exit_2(stack: StackInfo) -> None:
    port = free_port()  # free now: nobody listens there
    done = cli(stack, "accounts", "list", DATABASE_URL=f"postgresql://treasury@127.0.0.1:{port}/treasury")
    assert done.returncode == 2 and done.stdout == ""
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr
    assert f"Postgres at 127.0.0.1:{port} is not reachable" in done.stderr and "DATABASE_URL" in done.stderr
