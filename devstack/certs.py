"""The certificates of a stack started with `--tls`: one development CA, one certificate per service.

Every service of the local stack (Kafka, PostgreSQL, OpenBao, Consul, Ray) presents a certificate of
its own from the stack's CA and requires one from its clients; our components present
``treasury-app``. They are made by scripts/dev_ca.sh (openssl) into ``<home>/certs``, a git-ignored
folder readable by its owner alone, once: a later `up --tls` reuses them. Production never uses
this CA: it names its own files in the settings (docs/security.md, "Mutual TLS inside the cluster").
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from devstack.common import InfraError

REPO_ROOT = Path(__file__).resolve().parents[1]
DEV_CA = REPO_ROOT / "scripts" / "dev_ca.sh"
SERVICES = ("kafka", "postgres", "openbao", "consul", "ray")
APP = "treasury-app"
"""The client certificate every component of ours presents (CN=treasury-app)."""


@dataclass(frozen=True)
class StackCerts:
    """Where one stack's CA and leaf certificates are (``<home>/certs``)."""

    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    def cert(self, name: str) -> Path:
        return self.folder / f"{name}.pem"

    def key(self, name: str) -> Path:
        return self.folder / f"{name}.key"

    @property
    def rogue_cert(self) -> Path:
        """A client certificate from another CA: what every service must refuse (the refusal tests)."""
        return self.folder / "rogue-client.pem"

    @property
    def rogue_key(self) -> Path:
        return self.folder / "rogue-client.key"

    def client_env(self) -> dict[str, str]:
        """The settings that make our Kafka, Vault and Consul clients present ``treasury-app`` and trust
        only this CA (the Postgres ones travel in the DSN, ``postgres.dsn``)."""
        cert, key, ca = str(self.cert(APP)), str(self.key(APP)), str(self.ca)
        return {
            "KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CA_LOCATION": ca,
            "KAFKA_SSL_CERTIFICATE_LOCATION": cert, "KAFKA_SSL_KEY_LOCATION": key,
            "VAULT_CACERT": ca, "VAULT_CLIENT_CERT": cert, "VAULT_CLIENT_KEY": key,
            "CONSUL_CACERT": ca, "CONSUL_CLIENT_CERT": cert, "CONSUL_CLIENT_KEY": key,
        }

    def ray_env(self) -> dict[str, str]:
        """Ray's own switches for TLS on its gRPC (set before Ray starts; every node and driver needs them)."""
        return {"RAY_USE_TLS": "1", "RAY_TLS_SERVER_CERT": str(self.cert("ray")),
                "RAY_TLS_SERVER_KEY": str(self.key("ray")), "RAY_TLS_CA_CERT": str(self.ca)}


def node_ip() -> str | None:
    """The address Ray advertises for this node when it is not loopback (its certificate must name it)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.255.255.255", 1))  # no packet is sent: this only picks the outgoing interface
        address = str(probe.getsockname()[0])
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") else address


def ensure(home: Path) -> StackCerts:
    """The stack's CA and certificates, made on first use (kept afterwards, like its data)."""
    certs = StackCerts(home / "certs")
    if all(certs.cert(name).is_file() for name in (*SERVICES, APP)) and certs.ca.is_file():
        return certs
    bash = shutil.which("bash")
    if bash is None:
        raise InfraError("bash not found: it runs scripts/dev_ca.sh, which makes the stack's certificates")
    argv = [bash, str(DEV_CA), "--out", str(certs.folder), "--client", APP]
    for name in SERVICES:
        argv += ["--service", name]
    ip = node_ip()
    if ip:
        argv += ["--ip", ip]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)  # noqa: S603
    if done.returncode != 0:
        raise InfraError(f"scripts/dev_ca.sh failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return certs
