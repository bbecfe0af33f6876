"""Actors of a group take the cluster's nodes in turn, workers before the head."""

from __future__ import annotations

from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from treasury.placement import HEAD_RESOURCE, nth_node, order_nodes


def node(node_id: str, head: bool = False, alive: bool = True) -> dict[str, object]:
    resources = {"CPU": 1.0, f"node:{node_id}": 1.0, **({HEAD_RESOURCE: 1.0} if head else {})}
    return {"NodeID": node_id, "Alive": alive, "Resources": resources}


def test_workers_come_before_the_head_and_dead_nodes_are_left_out() -> None:
    nodes = [node("aa", head=True), node("cc"), node("bb"), node("dd", alive=False)]
    assert order_nodes(nodes) == ["bb", "cc", "aa"]


def test_the_nth_actor_goes_softly_to_node_n_mod_count() -> None:
    worker, head = "ab" * 28, "cd" * 28  # node ids are 28-byte hex
    placed = [nth_node(i, [worker, head]) for i in range(3)]
    assert all(isinstance(p, NodeAffinitySchedulingStrategy) and p.soft for p in placed)
    assert [p.node_id for p in placed] == [worker, head, worker]
    assert nth_node(0, []) == "DEFAULT"  # no node known: let Ray choose
