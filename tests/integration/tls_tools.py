"""Certificates and TLS client contexts for the tests of the TLS front (test_tls_front, the run command)."""

from __future__ import annotations

import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from devstack import tls_front

REPO_ROOT = Path(__file__).resolve().parents[2]
SUBJECT = "CN=bank-connector,OU=clients,O=Treasury Orchestrator dev"


@dataclass(frozen=True)
class Certs:
    """The folder dev_ca.sh wrote: ca, server, client, rogue-ca and rogue-client (.pem and .key)."""

    dir: Path

    @property
    def files(self) -> tls_front.TlsFiles:
        return tls_front.TlsFiles(self.dir / "server.pem", self.dir / "server.key", self.dir / "ca.pem")

    def front_env(self, port: int) -> dict[str, str]:
        """The settings that make `run` start its TLS front on ``port`` with these files."""
        return {"TLS_CERT_FILE": str(self.files.cert), "TLS_KEY_FILE": str(self.files.key),
                "TLS_CLIENT_CA_FILE": str(self.files.client_ca), "TLS_PORT": str(port)}


def make_certs(out: Path) -> Certs:
    """What a developer runs (docs/security.md); its stdout is the exports for the settings."""
    done = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "dev_ca.sh"), "--out", str(out)],
                          capture_output=True, text=True, timeout=60, check=True)
    assert f"TLS_CLIENT_CA_FILE={out.resolve() / 'ca.pem'}" in done.stdout
    return Certs(out)


def client_context(certs: Certs, cert: str | None = "client", *, max_version: ssl.TLSVersion | None = None
                   ) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs.dir / "ca.pem"))
    if cert is not None:
        ctx.load_cert_chain(certs.dir / f"{cert}.pem", certs.dir / f"{cert}.key")
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx
