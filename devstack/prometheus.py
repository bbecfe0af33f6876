"""A Prometheus server for the running system: one scrape target list, 127.0.0.1 only, stopped exactly.

The server is Debian's ``prometheus`` binary (``scripts/bootstrap.sh`` installs it); its config,
data and log live in one folder (``<stack home>/prometheus`` under ``treasury-orch run``, so
git-ignored with the rest of the stack). Nothing of the system-wide service is used: the package's
own unit stays stopped and ``:9090`` is only the preferred port.

**The scrape target list** is ``<folder>/targets.json``, in Prometheus's file-based discovery
format, and it is the only one: one scrape job (``treasury``) reads it, so an operator who moves
a part only edits that file (Prometheus re-reads it within seconds)::

    [{"targets": ["127.0.0.1:8000"], "labels": {"component": "treasury-api"}},
     {"targets": ["10.0.0.5:43121", ...], "labels": {"component": "ray"}}]

``treasury-api`` is the Serve ingress's ``GET /metrics`` (the spec's metrics, gathered from the
shards and the ledger at each scrape); ``ray`` is each Ray node's metrics export port (Ray's own
``ray_*`` series, among them Ray Serve's replicas and HTTP latency that the Grafana dashboard
reads). Both answer on ``/metrics``, so one job covers both.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from devstack.common import (
    InfraError,
    atomic_write_text,
    choose_port,
    log,
    pid_matches,
    pids_matching,
    spawn_daemon,
    stop_group,
    tail,
    wait_until,
)

JOB = "treasury"
READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 15.0


@dataclass(frozen=True)
class Targets:
    """Where the service's metrics answer: the REST ingress and every Ray node's export port."""

    api: str
    ray_nodes: tuple[str, ...] = ()

    def file_sd(self) -> list[dict[str, Any]]:
        groups: list[dict[str, Any]] = [{"targets": [self.api], "labels": {"component": "treasury-api"}}]
        if self.ray_nodes:
            groups.append({"targets": list(self.ray_nodes), "labels": {"component": "ray"}})
        return groups


def ray_node_targets() -> tuple[str, ...]:
    """``host:port`` of the metrics export of every live node of the connected Ray cluster."""
    import ray

    return tuple(sorted(f"{n['NodeManagerAddress']}:{n['MetricsExportPort']}"
                        for n in ray.nodes() if n.get("Alive") and n.get("MetricsExportPort")))


@dataclass(frozen=True)
class Paths:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "prometheus.yml"

    @property
    def targets(self) -> Path:
        return self.root / "targets.json"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "prometheus.log"

    @property
    def pid_file(self) -> Path:
        return self.root / "prometheus.pid"


def render_config(paths: Paths, scrape_interval_s: float) -> str:
    """JSON is YAML: the config is written with ``json`` rather than a YAML dependency."""
    interval = f"{int(scrape_interval_s * 1000)}ms"
    config = {
        # a scrape may take the whole interval: /metrics asks every shard for its figures
        "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
        "scrape_configs": [{
            "job_name": JOB,
            "metrics_path": "/metrics",
            "file_sd_configs": [{"files": [str(paths.targets)], "refresh_interval": "5s"}],
        }],
    }
    return json.dumps(config, indent=2) + "\n"


def write_targets(paths: Paths, targets: Targets) -> None:
    atomic_write_text(paths.targets, json.dumps(targets.file_sd(), indent=2) + "\n")


def binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        raise InfraError("prometheus is not installed: run `bash scripts/bootstrap.sh` (apt-get install prometheus)")
    return found


@dataclass(frozen=True)
class Server:
    pid: int
    port: int
    paths: Paths
    started_in_s: float

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query over the HTTP API; the result vector (empty when no series matches)."""
        r = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        r.raise_for_status()
        body = r.json()
        if body.get("status") != "success":
            raise InfraError(f"prometheus query {expr!r} failed: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/-/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def start(root: Path, targets: Targets, port: int | None = None, scrape_interval_s: float = 5.0) -> Server:
    """Write the config and target list under ``root``, start the server, return once it is ready.

    ``port`` is the preferred port (a free one is taken when it is busy, or when it is None or 0).
    A server left running from ``root`` by an earlier process is stopped first: one data dir, one server.
    """
    exe = binary()
    paths = Paths(root.resolve())
    paths.data.mkdir(parents=True, exist_ok=True)
    _stop_strays(paths)
    write_targets(paths, targets)
    atomic_write_text(paths.config, render_config(paths, scrape_interval_s))
    chosen = choose_port(port or None)
    began = time.monotonic()
    pid = spawn_daemon(
        [exe, f"--config.file={paths.config}", f"--storage.tsdb.path={paths.data}",
         f"--web.listen-address=127.0.0.1:{chosen}", "--storage.tsdb.retention.time=7d"],
        log_path=paths.log, cwd=paths.root,
    )
    atomic_write_text(paths.pid_file, f"{pid}\n")
    if not wait_until(lambda: _ready(chosen) or not pid_matches(pid, str(paths.config)), READY_TIMEOUT_S) \
            or not pid_matches(pid, str(paths.config)):
        stop_group(pid, what="prometheus", grace_s=STOP_GRACE_S)
        raise InfraError(f"prometheus did not become ready on 127.0.0.1:{chosen}; its log:\n{tail(paths.log)}")
    server = Server(pid, chosen, paths, time.monotonic() - began)
    log(f"prometheus ready on {server.url} in {server.started_in_s:.1f} s (targets: {paths.targets})")
    return server


def stop_left_running(root: Path) -> None:
    """Stop a server an earlier process left running from ``root`` (a ``run`` killed before its
    cleanup): ``infra down`` calls it, so no scraper outlives its stack."""
    _stop_strays(Paths(root.resolve()))


def _stop_strays(paths: Paths) -> None:
    for pid in pids_matching("prometheus", f"--config.file={paths.config}"):
        log(f"stopping a prometheus left running from {paths.root} (pid {pid})")
        stop_group(pid, what="prometheus", grace_s=STOP_GRACE_S)


def stop(server: Server) -> None:
    """Stop exactly this server (its pid, checked against its config path) and wait until it is gone."""
    if pid_matches(server.pid, str(server.paths.config)):
        stop_group(server.pid, what="prometheus", grace_s=STOP_GRACE_S)
    server.paths.pid_file.unlink(missing_ok=True)
