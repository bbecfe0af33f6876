"""``treasury-orch deploy up|down``: the actors and the Serve app on an existing Ray cluster.

The cluster (``ray up cluster.yaml``, KubeRay, or ``ray start`` by hand) already runs; Kafka and
Postgres are the customer's (KAFKA_BOOTSTRAP, DATABASE_URL). ``up`` connects to RAY_ADDRESS,
creates the named coordinator, shards and VaR scheduler as *detached* actors (they outlive this
command) and deploys the app. Both commands can be repeated: ``up`` finds running actors by name
and leaves them alone, Serve rolls the replicas to the new code; ``down`` stops what is there.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import ray
from ray import serve

from actors.system import start_actors, stop_actors
from serve_app.rest.deployment import APP_NAME, deploy
from treasury.actor_names import NAMESPACE
from treasury.settings import ConfigError, PolicyConfig, RuntimeSettings

_SHARD = re.compile(r"shard-(\d+)")


def _connect(address: str, settings: RuntimeSettings | None = None) -> None:
    env = {"env_vars": settings.as_env()} if settings is not None else None
    ray.init(address=address, namespace=NAMESPACE, runtime_env=env, log_to_driver=False)


def running_shards() -> list[int]:
    """Indexes of the shard actors alive in the namespace, sorted."""
    names = ray.util.list_named_actors(all_namespaces=False)
    return sorted(int(m.group(1)) for m in map(_SHARD.fullmatch, names) if m)


def placement() -> dict[str, str]:
    """Actor name -> node id of every live actor of ours (the dashboard's state API)."""
    from ray.util.state import list_actors

    actors = list_actors(filters=[("state", "=", "ALIVE"), ("ray_namespace", "=", NAMESPACE)], limit=1000)
    return {a.name: str(a.node_id) for a in actors if a.name}


def up(address: str, settings: RuntimeSettings, policy: PolicyConfig, app: bool = True) -> dict[str, Any]:
    """Start (or find) the actors and deploy the app; returns where everything runs.

    ``app=False`` leaves Serve alone: where the app is deployed declaratively (``serve deploy``,
    KubeRay's serveConfigV2), deploying it from here too would make two owners of one app.
    """
    if settings.serve_front == "haproxy":
        raise ConfigError("SERVE_FRONT: haproxy runs only under `treasury-orch run` on one machine: a cluster keeps "
                          "Serve's proxy, whose hop to the replicas is Ray's own (docs/deploying.md)")
    _connect(address, settings)
    try:
        found = running_shards()
        if found and found != list(range(settings.shards)):
            # Shard i owns partitions p % SHARDS == i: two shard counts at once would share partitions.
            raise ConfigError(f"SHARDS: {len(found)} shards are running and {settings.shards} were asked for; "
                              "run `treasury-orch deploy down` first, then `up` with the new SHARDS")
        start_actors(settings, policy, detached=True)
        if app:
            deploy(settings)
        return {"ray_address": address, "app": APP_NAME if app else None, "shards": settings.shards,
                "url": f"http://{settings.serve_host}:{settings.serve_port}", "actors": placement(),
                "nodes": len([n for n in ray.nodes() if n["Alive"]])}
    finally:
        ray.shutdown()


def down(address: str) -> dict[str, Any]:
    """Delete the app, then stop the shards and the coordinator (the outbox keeps unsent orders)."""
    _connect(address)
    try:
        deleted = False
        with contextlib.suppress(serve.exceptions.RayServeException):
            deleted = APP_NAME in serve.status().applications
            serve.delete(APP_NAME)
        stopped = stop_actors(RuntimeSettings(), shards=running_shards())
        return {"app_deleted": deleted, "stopped": stopped}
    finally:
        ray.shutdown()
