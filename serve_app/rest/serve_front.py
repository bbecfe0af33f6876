"""Serve's own HTTP front: Ray Serve's proxy (``SERVE_FRONT=proxy``, the default) or Ray's HAProxy
mode (``SERVE_FRONT=haproxy``) under ``treasury-orch run``.

Why HAProxy mode: bench/rest measures Serve through its proxy at a fifth of plain uvicorn's
requests/s here, most of it the proxy's hop to the replica. In HAProxy mode each ingress replica
serves HTTP itself on a port of its own (Serve's direct ingress) and a local ``haproxy`` takes
Serve's port, forwarding to those ports as the controller adds and replaces replicas: about 0.7x
plain uvicorn, with the same app, routes and auth (docs/performance.md).

Why only on one machine, with ``SERVE_HOST`` on loopback (``RuntimeSettings`` refuses other
hosts): haproxy speaks plain HTTP to the replicas' ports, which listen on ``SERVE_HOST``. On
loopback that hop never leaves the machine, like the TLS front's hop to Serve; on a cluster
haproxy would forward to other nodes' replicas unencrypted, so a cluster keeps Serve's proxy,
whose hop is Ray's (TLS) gRPC.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from treasury.settings import ConfigError, RuntimeSettings

# Direct ingress holds a stopping replica open at least this long so an outside load balancer can
# deregister it (Ray's default is 30 s, which every stop of `run` would wait). The haproxy here
# is told by the controller within a tenth of a second and retries a refused connection on
# another replica, so a few seconds cover it.
HAPROXY_DRAIN_S = "3"
# haproxy is a child process of Ray's HAProxy manager, not an actor: when it dies the manager lives
# on, and only the controller's health checks of the front (a "show info" on haproxy's admin socket)
# see it, three failures in a row before the manager is replaced and haproxy starts again. At Ray's
# 10 s period Serve's port stayed refused for about 29 s; at 2 s it is back in 8 to 11 s.
HAPROXY_HEALTH_CHECK_PERIOD_S = "2"
SETUP_HOOK = f"{__name__}.loopback_haproxy"
LOOPBACK = "127.0.0.1"  # the hook runs in every Ray worker: devstack (not in the image) is not imported


def ray_switches(settings: RuntimeSettings, environ: Mapping[str, str] = os.environ,
                 which: Callable[[str], str | None] = shutil.which) -> dict[str, str]:
    """The environment Ray's processes need for ``settings.serve_front`` (none for the proxy).

    Ray reads these when its Serve modules are imported, in the controller, the replicas and the
    HAProxy manager: they must be in the environment before Ray starts, so only a Ray that ``run``
    starts itself can have them (not a cluster in ``RAY_ADDRESS``). The machine's ``haproxy``
    (Debian's 2.6 works) unless ``RAY_SERVE_HAPROXY_BINARY_PATH`` names another. Its files stay in
    Ray's default folder, ``/tmp/haproxy-serve``: under a stack home its admin socket's path would
    pass haproxy's limit of 97 characters."""
    if settings.serve_front != "haproxy":
        return {}
    if environ.get("RAY_ADDRESS"):
        raise ConfigError("SERVE_FRONT: haproxy runs on the local Ray `treasury-orch run` starts, and RAY_ADDRESS "
                          "names a cluster, which keeps Serve's proxy (docs/deploying.md)")
    binary = environ.get("RAY_SERVE_HAPROXY_BINARY_PATH") or which("haproxy") or which("/usr/sbin/haproxy")
    if not binary:
        raise ConfigError("SERVE_FRONT: haproxy needs the haproxy binary: apt-get install -y haproxy "
                          "(scripts/bootstrap.sh does), or name one in RAY_SERVE_HAPROXY_BINARY_PATH")
    return {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1",
            "RAY_SERVE_HAPROXY_BINARY_PATH": binary, "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": HAPROXY_DRAIN_S,
            "RAY_SERVE_PROXY_HEALTH_CHECK_PERIOD_S": HAPROXY_HEALTH_CHECK_PERIOD_S}


def haproxy_ports(settings: RuntimeSettings) -> dict[str, int]:
    """The ports haproxy opens on 127.0.0.1, by the setting that names each (none for the proxy):
    Serve's, and its stats and Prometheus frontends, as Ray reads them (its settings
    ``RAY_SERVE_HAPROXY_STATS_PORT`` and ``..._METRICS_PORT``, from the environment its workers
    inherit). haproxy exits when one is taken, and Serve's start then fails deep inside Ray:
    ``run`` checks them first."""
    if settings.serve_front != "haproxy":
        return {}
    from ray.serve._private import constants

    return {"SERVE_PORT": settings.serve_port,
            "RAY_SERVE_HAPROXY_STATS_PORT": constants.RAY_SERVE_HAPROXY_STATS_PORT,
            "RAY_SERVE_HAPROXY_METRICS_PORT": constants.RAY_SERVE_HAPROXY_METRICS_PORT}


def runtime_env(settings: RuntimeSettings, env_vars: dict[str, str]) -> dict[str, Any]:
    """Ray's runtime environment for the job: ``env_vars``, and in HAProxy mode the hook that keeps
    haproxy's own ports on loopback in every worker (the HAProxy manager is one of them)."""
    found: dict[str, Any] = {"env_vars": env_vars}
    if settings.serve_front == "haproxy":
        found["worker_process_setup_hook"] = SETUP_HOOK
    return found


def loopback_haproxy() -> None:
    """Ray's ``worker_process_setup_hook`` in HAProxy mode: Ray 2.60's haproxy template binds its
    stats (8404) and Prometheus (9101) frontends to every interface, and what this project starts
    listens on 127.0.0.1 only. The patched template is what the HAProxy manager renders; when a
    Ray release words its binds otherwise the worker fails to start, rather than leave a port open."""
    from ray.serve._private import haproxy

    template = haproxy.HAPROXY_CONFIG_TEMPLATE
    for open_bind, port in (("bind :", "{{ config.metrics_port }}"), ("bind *:", "{{ config.stats_port }}")):
        template = template.replace(open_bind + port, f"bind {LOOPBACK}:{port}")
    if re.search(r"^\s*bind (\*|0\.0\.0\.0|\[::\]|::)?:", template, re.MULTILINE):
        raise RuntimeError("Ray's haproxy template binds a port to every interface: "
                           "update serve_app.rest.serve_front.loopback_haproxy")
    haproxy.HAPROXY_CONFIG_TEMPLATE = template


def haproxy_folder() -> Path:
    """Where Ray's HAProxy managers keep their files, a folder per node id inside (config, admin
    socket, logs): ``/tmp/haproxy-serve`` unless Ray's ``RAY_SERVE_HAPROXY_CONFIG_FILE_LOC`` says."""
    from ray.serve._private.constants import RAY_SERVE_HAPROXY_CONFIG_FILE_LOC

    return Path(RAY_SERVE_HAPROXY_CONFIG_FILE_LOC).parent


def remove_haproxy_files(settings: RuntimeSettings, node_id: str) -> None:
    """After Serve has stopped: Ray's HAProxy manager leaves its node's folder behind, and a node
    id is never reused, so each run would leave one more."""
    if settings.serve_front != "haproxy":
        return
    shutil.rmtree(haproxy_folder() / node_id, ignore_errors=True)
