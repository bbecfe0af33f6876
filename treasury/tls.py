"""Our clients' side of mutual TLS (issue 18, docs/security.md), built one way.

httpx takes an ``ssl.SSLContext`` as ``verify``; a CA path there silently drops a ``cert`` given
beside it (httpx 0.28), so a client certificate must be loaded into the context itself. TLS 1.3 is
the floor: every service of ours refuses older versions, and a client should not offer them.
librdkafka takes its TLS as configuration keys, mapped here from the settings' names.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from pathlib import Path

KAFKA_SETTINGS = {
    "KAFKA_SECURITY_PROTOCOL": "security.protocol",
    "KAFKA_SSL_CA_LOCATION": "ssl.ca.location",
    "KAFKA_SSL_CERTIFICATE_LOCATION": "ssl.certificate.location",
    "KAFKA_SSL_KEY_LOCATION": "ssl.key.location",
}
"""The settings (RuntimeSettings, docs/configuration.md) that become librdkafka's TLS configuration."""


def kafka_security(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """librdkafka's TLS configuration from ``environ`` (default: this process's, where
    RuntimeSettings.as_env puts the settings for every actor and replica)."""
    env = os.environ if environ is None else environ
    return {conf: env[key] for key, conf in KAFKA_SETTINGS.items() if env.get(key)}


def client_context(ca: Path | None, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """Trust ``ca`` only (the system's CAs when None), present ``cert``/``key`` when given, TLS 1.3 only."""
    context = ssl.create_default_context(cafile=str(ca) if ca is not None else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    if cert is not None:
        context.load_cert_chain(str(cert), str(key) if key is not None else None)
    return context
