"""bench.spread: the node/shard spread and the CPU cost lines that bench/pipeline prints."""

from __future__ import annotations

from bench import spread
from treasury.placement import HEAD_RESOURCE

HEAD = {"NodeID": "aaaa1111headnode", "Alive": True, "Resources": {"CPU": 1.0, HEAD_RESOURCE: 1.0}}
WORKER = {"NodeID": "ffff2222workernode", "Alive": True, "Resources": {"CPU": 1.0}}
GONE = {"NodeID": "0000dead", "Alive": False, "Resources": {"CPU": 1.0}}


def stats(index: int, partitions: list[int], applied: int, entries: int, orders: int) -> dict[str, object]:
    return {"index": index, "partitions": partitions, "applied": applied, "entries_applied": entries,
            "duplicate": 1, "orders": orders, "batches": 3, "phase_s": {"decide": 0.1}}


def test_nodes_are_numbered_in_placement_order_workers_first_dead_ones_left_out() -> None:
    labels = spread.node_labels([HEAD, GONE, WORKER])
    assert labels == {"ffff2222workernode": "node 0 (worker, ffff2222)", "aaaa1111headnode": "node 1 (head, aaaa1111)"}


def test_events_count_every_event_taken_off_the_log_not_orders_or_batches() -> None:
    assert spread.events_of(stats(0, [0], applied=10, entries=4, orders=3)) == 15  # 10 + 4 + 1 duplicate


def test_the_spread_names_each_shards_node_and_each_nodes_share() -> None:
    placement = {"shard-0": WORKER["NodeID"], "shard-1": HEAD["NodeID"], "coordinator": HEAD["NodeID"]}
    places = spread.shard_places(placement, [stats(1, [1, 3], 29, 0, 2), stats(0, [0, 2], 69, 0, 5)])
    assert [(p.shard, p.node, p.partitions, p.events, p.orders) for p in places] == [
        (0, WORKER["NodeID"], (0, 2), 70, 5), (1, HEAD["NodeID"], (1, 3), 30, 2)]
    lines = spread.spread_lines(places, spread.node_labels([HEAD, WORKER]))
    assert lines == [
        "  shard 0 on node 0 (worker, ffff2222): partitions [0, 2], 70 events, 5 orders",
        "  shard 1 on node 1 (head, aaaa1111): partitions [1, 3], 30 events, 2 orders",
        "  node 0 (worker, ffff2222): shards [0], 70 events (70%)",
        "  node 1 (head, aaaa1111): shards [1], 30 events (30%)",
    ]


def test_a_shard_ray_did_not_place_is_said_so_and_a_node_without_shards_shows_none() -> None:
    places = spread.shard_places({}, [stats(0, [0], 5, 0, 0)])
    lines = spread.spread_lines(places, spread.node_labels([WORKER]))
    assert lines[0].startswith("  shard 0 on unknown node:")
    assert lines[1] == "  node 0 (worker, ffff2222): shards [], 0 events (0%)"


def test_cpu_deltas_and_lines_per_event_and_per_order() -> None:
    before = {"shard 0": {10: 1.0}, "coordinator": {11: 0.5}, "postgres": {20: 4.0, 21: 1.0, 22: 7.0}}
    after = {"shard 0": {10: 3.0}, "coordinator": {11: 1.5}, "postgres": {20: 4.25, 21: 1.25, 23: 0.5}}
    used = spread.cpu_deltas(before, after)
    # a backend opened in between (23) counts all its time; one closed (22) is gone, never negative
    assert used == {"shard 0": 2.0, "coordinator": 1.0, "postgres": 1.0}
    used["kafka"] = 0.0
    lines = spread.cpu_lines(used, wall_s=2.0, events=1000, orders=100)
    assert lines[0] == "  shard 0                    2.0 CPU-s  1.00 cores  2.000 ms/event"
    assert lines[1] == "  coordinator                1.0 CPU-s  0.50 cores  1.000 ms/event, 10.00 ms/order"
    assert lines[-1].endswith("4.000 ms/event (1000 events, 100 orders, 10.0% of events made an order)")


def test_cpu_snapshot_reads_real_processes_and_leaves_out_gone_ones() -> None:
    import os

    snap = spread.cpu_snapshot({"me": [os.getpid(), 2**22 + 12345]})
    assert list(snap["me"]) == [os.getpid()] and snap["me"][os.getpid()] > 0


def test_cores_by_span_gives_each_spans_busy_cores_and_its_three_busiest_parts() -> None:
    snaps = [
        {"shard 0": {10: 1.0}, "kafka": {20: 5.0}, "postgres": {30: 2.0}, "openbao": {40: 0.0}},
        {"shard 0": {10: 3.0}, "kafka": {20: 9.0}, "postgres": {30: 3.0, 31: 1.0}, "openbao": {40: 0.5}},
        {"shard 0": {10: 4.0}, "kafka": {20: 9.5}, "postgres": {30: 3.0, 31: 1.0}, "openbao": {40: 0.5}},
    ]
    lines = spread.cores_by_span(snaps, [100.0, 104.0, 106.0])
    # first span, 4 s: shard 2, kafka 4, postgres 2 (a backend new in it counts whole), openbao 0.5
    assert lines[0] == "2.12 cores (kafka 1.00, shard 0 0.50, postgres 0.50)"
    assert lines[1] == "0.75 cores (shard 0 0.50, kafka 0.25, postgres 0.00)"
    assert len(lines) == 2
