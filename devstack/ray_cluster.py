"""A real multi-node Ray cluster on this machine: ``ray start`` processes the caller owns.

Each node is ``ray start ... --block`` in a process group of its own, on 127.0.0.1, with every port
it would otherwise take by default chosen free, and a temp dir of its own. Stopping a node signals
exactly that group and its descendants (``stop_group``): never ``ray stop``, which would stop every
Ray cluster on the machine, other people's included.

Development tooling, like the rest of ``devstack``: the multi-node rehearsal
(``tests/integration/test_multinode.py``) and ``bench/pipeline --nodes 2`` start their clusters
here, so the benchmark's two nodes are the rehearsal's two nodes.
"""

from __future__ import annotations

import shutil
import subprocess  # nosec B404: ray's own CLI, arguments built here
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.common import choose_port, pid_alive, port_accepts, spawn_daemon, stop_group, wait_until
from treasury.actor_names import NAMESPACE

LOOPBACK = "127.0.0.1"
RAY = str(Path(sys.executable).with_name("ray"))
TOKEN_FILE = Path.home() / ".ray" / "auth_token"  # where `ray get-auth-token --generate` writes it


@dataclass
class RayNode:
    pid: int
    log: Path


@dataclass
class LocalCluster:
    """Head + extra nodes; ``address`` is what RAY_ADDRESS takes."""

    temp_dir: Path
    gcs_port: int
    dashboard_port: int
    nodes: list[RayNode] = field(default_factory=list)
    _taken: set[int] = field(default_factory=set)

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://{LOOPBACK}:{self.dashboard_port}"

    def port(self) -> int:
        chosen = choose_port(None, avoid=self._taken)
        self._taken.add(chosen)
        return chosen

    def _node_ports(self) -> list[str]:
        return [
            f"--node-manager-port={self.port()}", f"--object-manager-port={self.port()}",
            f"--dashboard-agent-listen-port={self.port()}", f"--dashboard-agent-grpc-port={self.port()}",
            f"--runtime-env-agent-port={self.port()}", f"--metrics-export-port={self.port()}",
        ]

    def _start(self, args: list[str], env: dict[str, str]) -> RayNode:
        index = len(self.nodes)
        log = self.temp_dir / f"node-{index}.log"
        argv = [RAY, "start", "--block", "--disable-usage-stats", f"--node-ip-address={LOOPBACK}",
                f"--temp-dir={self.temp_dir}", *self._node_ports(), *args]
        node = RayNode(spawn_daemon(argv, log_path=log, cwd=self.temp_dir, env=env), log)
        self.nodes.append(node)
        return node

    def start_head(self, env: dict[str, str], num_cpus: int = 1) -> RayNode:
        return self._start([
            "--head", f"--port={self.gcs_port}", f"--num-cpus={num_cpus}",
            f"--dashboard-host={LOOPBACK}", f"--dashboard-port={self.dashboard_port}",
            f"--ray-client-server-port={self.port()}",
        ], env)

    def add_node(self, env: dict[str, str], num_cpus: int = 1) -> RayNode:
        return self._start([f"--address={self.address}", f"--num-cpus={num_cpus}"], env)

    def alive_nodes(self) -> int:
        import ray

        return len([n for n in ray.nodes() if n["Alive"]])

    def failed(self) -> str | None:
        """The log of a node whose ``ray start`` exited (it should block forever)."""
        for node in self.nodes:
            if not pid_alive(node.pid):
                return node.log.read_text(errors="replace")[-3000:]
        return None

    def stop(self) -> None:
        """Workers first, then the head: only the process groups this cluster started."""
        for node in reversed(self.nodes):
            stop_group(node.pid, what="ray node", grace_s=5)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


class NodeFailed(RuntimeError):
    """A ``ray start`` exited or did not register in time."""


def new_cluster() -> LocalCluster:
    # AF_UNIX socket paths are limited to 107 bytes: keep the temp dir short.
    temp = Path(tempfile.mkdtemp(prefix="rmn", dir="/tmp"))  # nosec B108 - a new 0700 dir; /tmp keeps it short
    cluster = LocalCluster(temp, 0, 0)
    cluster.gcs_port, cluster.dashboard_port = cluster.port(), cluster.port()
    return cluster


def connect(address: str, runtime_env: dict[str, Any] | None = None) -> None:
    """``ray.init`` this process to ``address`` with the cluster's token (~/.ray/auth_token).

    ``runtime_env`` is the job's (the benchmark's settings for its actors); the nodes' own
    environment, given to ``start_cluster``, is what every worker inherits besides.

    A driver given an explicit address never turns token authentication on by itself, and the
    mode is read when Ray is imported; so switch it on the way a local ``ray.init()`` does for its
    own cluster (RAY_AUTH_MODE=token for this process and its children, then Ray's config reloaded).
    """
    import ray
    from ray._private.authentication.authentication_token_setup import _enable_token_auth

    _enable_token_auth()
    ray.init(address=address, namespace=NAMESPACE, log_to_driver=False, runtime_env=runtime_env)


def wait_for_nodes(cluster: LocalCluster, count: int, timeout_s: float,
                   runtime_env: dict[str, Any] | None = None) -> None:
    """Connects this process to the cluster and waits until ``count`` nodes are alive."""
    import ray

    def up() -> bool:
        crashed = cluster.failed()
        if crashed is not None:
            raise NodeFailed(f"a ray node exited:\n{crashed}")
        if not ray.is_initialized():
            if not port_accepts(cluster.gcs_port):
                return False
            try:
                connect(cluster.address, runtime_env)
            except ConnectionError:  # the GCS answers before the head's raylet has registered
                return False
        return cluster.alive_nodes() >= count

    if not wait_until(up, timeout_s, first_interval_s=0.5):
        raise NodeFailed(f"{count} Ray node(s) not up within {timeout_s:.0f} s; logs in {cluster.temp_dir}")


def start_cluster(env: dict[str, str], nodes: int = 2, num_cpus: int = 1, timeout_s: float = 150.0,
                  runtime_env: dict[str, Any] | None = None) -> LocalCluster:
    """Head, then each further node once the previous one registered; this process is connected.

    Ray gives a starting node 30 s to register (hard-coded), which a loaded machine can exceed:
    a cluster whose node died while starting is stopped and started again on fresh ports (three tries).
    """
    import ray

    if not TOKEN_FILE.exists():  # the CLI takes most of a minute to start on a loaded machine: only when needed
        # --generate writes the token only when there is none: other clusters here keep theirs
        subprocess.run([RAY, "get-auth-token", "--generate"], env=env, capture_output=True,  # noqa: S603  # nosec B603
                       check=True, timeout=300)
    for attempt in (1, 2, 3):
        cluster = new_cluster()
        try:
            cluster.start_head(env, num_cpus)
            wait_for_nodes(cluster, 1, timeout_s, runtime_env)
            for n in range(2, nodes + 1):
                cluster.add_node(env, num_cpus)
                wait_for_nodes(cluster, n, timeout_s, runtime_env)
            return cluster
        except BaseException as exc:
            ray.shutdown()
            cluster.stop()
            if attempt == 3 or not isinstance(exc, NodeFailed):
                raise
    raise AssertionError("unreachable")
