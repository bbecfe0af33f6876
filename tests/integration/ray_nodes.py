"""The multi-node rehearsal's cluster: ``devstack.ray_cluster`` (shared with ``bench/pipeline --nodes``),
plus the operator's CLI as the rehearsal runs it."""

from __future__ import annotations

import subprocess
import sys

from devstack.ray_cluster import RAY, LocalCluster, NodeFailed, RayNode, connect, start_cluster, wait_for_nodes

__all__ = ["RAY", "LocalCluster", "NodeFailed", "RayNode", "connect", "run_cli", "start_cluster", "wait_for_nodes"]


def run_cli(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "serve_app.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
