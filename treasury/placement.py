"""Where Ray actors go on a multi-node cluster: one node after another, deterministically.

Ray's ``SPREAD`` strategy round-robins on one counter shared by every SPREAD request in the
cluster (Serve's replicas use it too), so actors created while anything else is being scheduled
can land on the same node: the two-node rehearsal saw both shards on one node. Instead the i-th
actor of a group is pinned *softly* to alive node ``i mod N``: soft, so that when its node is gone
Ray restarts it on any other node. On one node this places everything exactly as before.

Soft affinity alone is not enough for an actor that asks for no resources at all: Ray places a
*detached* actor with an empty resource request on any node and ignores the soft affinity (seen
on Ray 2.60 with two local nodes: 4 of 4 detached ``num_cpus=0`` probes on one node, 4 of 4 where
asked once each asked for some ``memory``). So the placed actors declare the memory they use
(``SHARD_MEMORY_BYTES``), which is also what a scheduler should know about them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

HEAD_RESOURCE = "node:__internal_head__"
# A shard holds its accounts' state, a Kafka consumer and producer and a connection pool: 140-260
# MiB seen under load (docs/performance.md). Declared so that its placement is honoured (above).
SHARD_MEMORY_BYTES = 256 * 2**20


def order_nodes(nodes: Sequence[Mapping[str, Any]]) -> list[str]:
    """Ids of the alive nodes, workers first (the head already hosts the GCS, the dashboard and
    Serve's controller), each group by id so that every caller sees the same order."""
    alive = [n for n in nodes if n.get("Alive")]
    alive.sort(key=lambda n: (HEAD_RESOURCE in n.get("Resources", {}), str(n["NodeID"])))
    return [str(n["NodeID"]) for n in alive]


def alive_nodes() -> list[str]:
    import ray

    return order_nodes(ray.nodes())


def nth_node(index: int, nodes: Sequence[str]) -> Any:
    """The scheduling strategy for the ``index``-th actor of a group over ``nodes``."""
    if not nodes:
        return "DEFAULT"
    return NodeAffinitySchedulingStrategy(node_id=nodes[index % len(nodes)], soft=True)
