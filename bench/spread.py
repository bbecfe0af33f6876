"""Where the pipeline's shards ran and what each part of the system cost per event.

``bench/pipeline`` prints these so that a run on two Ray nodes shows the spread it claims (which
node each shard ran on, the partitions and events it took) and so that the cost of an event can be
carried to a cluster of another size: CPU seconds per event of the shards, the coordinator, Postgres,
Kafka and OpenBao, measured on the processes of this run only (the machine is shared, so the load
average says nothing about who used the cores). The summaries are pure functions of what Ray, the
shards' ``stats`` and ``psutil`` report, and are unit-tested; reading those is the caller's part.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import psutil

from devstack.common import descendants
from treasury.actor_names import shard_name
from treasury.placement import HEAD_RESOURCE, order_nodes

# The shard's counters of events taken off the log (applied or not), as bench/pipeline counts them.
EVENT_KEYS = ("applied", "stale", "duplicate", "invalid", "entries_applied", "entries_duplicate")


def events_of(stats: Mapping[str, Any]) -> int:
    return sum(int(stats.get(k, 0)) for k in EVENT_KEYS)


def node_labels(nodes: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Node id -> ``node <i> (head|worker, <id prefix>)``, numbered in placement order.

    The numbering is ``treasury.placement``'s (workers first), so shard *i* is expected on node
    ``i mod N``; a reader sees at once whether placement did what it says.
    """
    heads = {str(n["NodeID"]) for n in nodes if HEAD_RESOURCE in n.get("Resources", {})}
    return {node: f"node {i} ({'head' if node in heads else 'worker'}, {node[:8]})"
            for i, node in enumerate(order_nodes(nodes))}


@dataclass(frozen=True)
class ShardPlace:
    shard: int
    node: str  # node id; "" when Ray did not say
    partitions: tuple[int, ...]
    events: int
    orders: int


def shard_places(placement: Mapping[str, str], stats: Iterable[Mapping[str, Any]]) -> list[ShardPlace]:
    """One row per shard from the state API's actor name -> node id and the shards' ``stats``."""
    return sorted(
        (ShardPlace(int(st["index"]), placement.get(shard_name(int(st["index"])), ""),
                    tuple(int(p) for p in st.get("partitions", ())), events_of(st), int(st.get("orders", 0)))
         for st in stats),
        key=lambda p: p.shard,
    )


def spread_lines(places: Sequence[ShardPlace], labels: Mapping[str, str]) -> list[str]:
    """A line per shard, then one per node with its share of the events: the spread, in words."""
    lines = [f"  shard {p.shard} on {labels.get(p.node, p.node[:8] or 'unknown node')}: partitions "
             f"{list(p.partitions)}, {p.events} events, {p.orders} orders" for p in places]
    total = sum(p.events for p in places) or 1
    for node, label in labels.items():
        mine = [p for p in places if p.node == node]
        events = sum(p.events for p in mine)
        lines.append(f"  {label}: shards {[p.shard for p in mine]}, {events} events ({events / total:.0%})")
    return lines


# ------------------------------------------------------------------------------------------------ CPU


def tree(pid: int | None) -> list[int]:
    """A process and all its descendants (a Postgres server and its backends, a node's workers)."""
    return [] if pid is None else [pid, *descendants(pid)]


def cpu_seconds(pids: Iterable[int]) -> dict[int, float]:
    """User + system CPU seconds of each of these processes now (gone ones are left out)."""
    out: dict[int, float] = {}
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        out[pid] = t.user + t.system
    return out


def cpu_snapshot(parts: Mapping[str, Sequence[int]]) -> dict[str, dict[int, float]]:
    """Per part, per process: CPU seconds so far. By process, so that one started in between (a
    Postgres backend a pool opened, a Ray worker) counts from zero and none is counted twice."""
    return {part: cpu_seconds(pids) for part, pids in parts.items()}


def cpu_deltas(before: Mapping[str, Mapping[int, float]], after: Mapping[str, Mapping[int, float]]) -> dict[str, float]:
    """CPU seconds each part used between two snapshots. A process new since ``before`` counts
    all its time; one gone by ``after`` is lost (a short undercount, never a double count)."""
    return {part: sum(max(0.0, sec - before.get(part, {}).get(pid, 0.0)) for pid, sec in pids.items())
            for part, pids in after.items()}


def cores_by_span(snapshots: Sequence[Mapping[str, Mapping[int, float]]], times: Sequence[float]) -> list[str]:
    """Between each two consecutive snapshots (taken at ``times``, seconds): the cores the run's
    processes kept busy in all, then the three busiest parts. Beside the p95 of each third of a
    phase, it shows whether a slow third is one where the two cores were full, and with what."""
    lines = []
    for (before, after), (t0, t1) in zip(pairwise(snapshots), pairwise(times), strict=True):
        wall = max(t1 - t0, 1e-9)
        used = cpu_deltas(before, after)
        busiest = sorted(used.items(), key=lambda kv: -kv[1])[:3]
        lines.append(f"{sum(used.values()) / wall:.2f} cores ("
                     + ", ".join(f"{part} {sec / wall:.2f}" for part, sec in busiest) + ")")
    return lines


def cpu_lines(used: Mapping[str, float], wall_s: float, events: int, orders: int) -> list[str]:
    """Per part: CPU seconds, cores busy on average, ms of CPU per event (and per order)."""
    lines = []
    per = max(events, 1)
    for part, sec in used.items():
        each = f"{sec / per * 1000:.3f} ms/event"
        if orders and part in {"coordinator", "openbao"}:
            each += f", {sec / orders * 1000:.2f} ms/order"
        lines.append(f"  {part:<22} {sec:7.1f} CPU-s  {sec / max(wall_s, 1e-9):4.2f} cores  {each}")
    total = sum(used.values())
    lines.append(f"  {'all of the above':<22} {total:7.1f} CPU-s  {total / max(wall_s, 1e-9):4.2f} cores  "
                 f"{total / per * 1000:.3f} ms/event ({events} events, {orders} orders, "
                 f"{orders / per:.1%} of events made an order)")
    return lines
