"""The one place that starts and stops the system's actors, and hands each the handles it needs.

The coordinator comes first (shards hand it orders), then the VaR scheduler (shards tell it which
accounts closed), then the shards with both handles in their constructors, as Ray Serve's own
composition examples pass handles, and last the config watcher. Parts started elsewhere (a Serve
replica, a benchmark driver) find these actors by the names in ``treasury.actor_names``, and so does
the VaR job (``actors.var_job.push_to_shards``): it runs in the scheduler and in the CLI's ``var
recompute`` alike, and the scheduler must exist before the shards that signal it, so it cannot be
handed theirs. Nothing looks up a name that this module did not create.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import ray

from actors.config_watcher import start_watcher
from actors.runtime import AccountShardActor, CoordinatorActor
from actors.var_scheduler import VarScheduler
from treasury.actor_names import CONFIG_WATCHER, COORDINATOR, NAMESPACE, VAR_SCHEDULER, shard_name
from treasury.placement import alive_nodes, nth_node
from treasury.settings import PolicyConfig, RuntimeSettings

log = logging.getLogger("treasury.system")

# A named actor owned by a driver is destroyed when the driver's last handle goes: the driver that
# started the system keeps them here for as long as it lives.
_DRIVER_HANDLES: list[Any] = []


@dataclass(frozen=True)
class SystemHandles:
    coordinator: Any
    shards: list[Any]
    var_scheduler: Any
    config_watcher: Any | None  # None without CONSUL_HTTP_ADDR


def start_actors(settings: RuntimeSettings, policy: PolicyConfig, *, detached: bool = False) -> SystemHandles:
    """Create (or find, if they run already) the named actors and start their loops.

    ``detached`` actors outlive the driver (``treasury-orch deploy up`` exits; the system stays).
    The shards take the cluster's nodes in turn (``treasury.placement``), so each node's cores
    serve a share of the partitions.
    """
    opts = {"namespace": NAMESPACE, "get_if_exists": True, "lifetime": "detached" if detached else None}
    coordinator = CoordinatorActor.options(name=COORDINATOR, **opts).remote(settings)  # type: ignore[attr-defined]
    coordinator.run.remote()
    ray.get(coordinator.ready.remote(), timeout=120)
    scheduler = VarScheduler.options(name=VAR_SCHEDULER, **opts).remote(settings)  # type: ignore[attr-defined]
    shards = []
    nodes = alive_nodes()
    for i in range(settings.shards):
        shard = AccountShardActor.options(  # type: ignore[attr-defined]
            name=shard_name(i), scheduling_strategy=nth_node(i, nodes), **opts
        ).remote(i, settings, policy.as_wire(), coordinator, scheduler)
        shard.run.remote()
        shards.append(shard)
    ray.get([s.ready.remote() for s in shards], timeout=120)
    watcher = start_watcher(settings, policy, detached=detached)
    _DRIVER_HANDLES[:] = [coordinator, *shards, scheduler, *([watcher] if watcher is not None else [])]
    log.info("coordinator, %d shards and the VaR scheduler running", len(shards))
    return SystemHandles(coordinator, shards, scheduler, watcher)


def stop_actors(settings: RuntimeSettings, shards: Sequence[int] | None = None) -> list[str]:
    """Shards first (their last batch may still hand orders to the coordinator), then the coordinator.

    ``shards`` defaults to ``range(SHARDS)``; an actor that is not running is skipped, so stopping
    twice is harmless. Returns the names of the actors that were stopped.
    """
    indexes = range(settings.shards) if shards is None else shards
    handles: dict[str, Any] = {}
    for name in [*(shard_name(i) for i in indexes), COORDINATOR]:
        with contextlib.suppress(ValueError):
            handles[name] = ray.get_actor(name, namespace=NAMESPACE)
    for stateless in (VAR_SCHEDULER, CONFIG_WATCHER):  # hold no durable state
        with contextlib.suppress(ValueError):
            ray.kill(ray.get_actor(stateless, namespace=NAMESPACE), no_restart=True)
    shard_group = [h for name, h in handles.items() if name != COORDINATOR]
    for group in (shard_group, [handles[COORDINATOR]] if COORDINATOR in handles else []):
        refs: list[Any] = [h.stop.remote() for h in group]
        for ref in refs:
            # the actor exiting is what stop asks for; Ray reports it as an error to the caller
            with contextlib.suppress(ray.exceptions.RayActorError):
                ray.get(ref, timeout=60)
    return list(handles)


def shard_handles(shards: int) -> list[Any]:
    """The running shards, for a process that did not start them (a Serve replica, a driver)."""
    return [ray.get_actor(shard_name(i), namespace=NAMESPACE) for i in range(shards)]
