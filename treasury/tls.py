"""TLS client contexts for the services' HTTPS APIs (OpenBao, Consul), built one way.

httpx takes an ``ssl.SSLContext`` as ``verify``; a CA path there silently drops a ``cert`` given
beside it (httpx 0.28), so a client certificate must be loaded into the context itself. TLS 1.3 is
the floor: every service of ours refuses older versions, and a client should not offer them.
"""

from __future__ import annotations

import ssl
from pathlib import Path


def client_context(ca: Path | None, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """Trust ``ca`` only (the system's CAs when None), present ``cert``/``key`` when given, TLS 1.3 only."""
    context = ssl.create_default_context(cafile=str(ca) if ca is not None else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    if cert is not None:
        context.load_cert_chain(str(cert), str(key) if key is not None else None)
    return context
