"""bench/pipeline: balance events through Kafka into the running shards; prints the figures.

    .venv/bin/python -m bench.pipeline [--events 200000] [--accounts 1000] [--rate 1000] [--seconds 30]
                                       [--worker-niceness N] [--nodes 2] [--linger-ms N]
                                       [--commit-interval-ms N]

Phase 1 pushes ``--events`` as fast as the broker takes them and reports the sustained rate at
which the shards applied and decided them (and the best 60 s window). Phase 2 streams at
``--rate`` events/s for ``--seconds`` (produced as the service's own producers send,
``kafka_clients.producer``; ``--linger-ms`` to send otherwise) and reports p50/p95/p99 of
produce->decision, consume->decision and produce->order-durable latency. Then the RSS of every
process. Targets on a 2-core machine: >= 3,000 events/s sustained for 60 s; consume->decision p95
<= 20 ms at 1,000 events/s (issue 21). ``--commit-interval-ms`` sets the shards'
``OFFSET_COMMIT_INTERVAL_MS`` (0: a commit per batch, as before it existed).

After phase 1, the raw baseline: one plain Python process (``--raw-from``, a child) consumes
phase 1's very records from Kafka (by offset, a group of its own), decodes each as the shards do
(``schemas.errors.decode_with_source`` into ``BalanceEvent`` / ``StatementEntry``) and COPYs one
row per event into a scratch table (``bench_raw_event``), committing each batch: no decisions,
no encryption, no signing; the table is emptied afterwards and autovacuum is off on it, so that
its rows cost phase 2 nothing. It prints ``raw baseline: N events/s``; phase 1's rate over it is
``ratio to raw baseline`` (issue 21's target: >= 0.30).

Each phase also prints, per shard, the node it ran on, its partitions, events and orders, the
mean time per batch in each phase of its loop (``phase_s``), the coordinator's mean time per submit
in each of its steps (sign, wait for the write lock, write, produce), and the CPU seconds each part of the
system used (shards, coordinator, the rest of Ray, Postgres, Kafka, OpenBao, the producing driver),
per event: what an event costs, to size a cluster with (``bench.spread``). Phase 2 also prints, for
each third of it, the consume->decision p95 and the cores the run's processes kept busy (with the
three busiest parts): whether a slow third is one where the two cores were full.

``--nodes 2`` runs the same on a Ray cluster of two nodes on this machine, started as the
multi-node rehearsal starts its own (``devstack.ray_cluster``: ``ray start --head`` and
``ray start --address`` on 127.0.0.1, one CPU each, so the cluster has the two CPUs that
``--nodes 1`` gives its single node); the shards are placed by ``treasury.placement`` (shard *i*
on node *i* mod 2, workers first). On one 2-core machine this shows the mechanism and what it costs
(a second raylet, the dashboard, cross-node object transfers), not more capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess  # nosec B404
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import ray

from actors import kafka_clients
from actors.kafka_clients import CONSUMER_GROUP
from actors.system import shard_handles, start_actors
from bench import spread
from bench.procs import print_rss, rss_table
from devstack import certs, stack
from devstack.ray_cluster import LocalCluster, start_cluster
from schemas import balance_record
from serve_app.job import simulator
from serve_app.job.bank.model import encode_report
from storage import accounts, var_results
from storage.db import create_pool
from storage.var_results import VarResult
from treasury.actor_names import COORDINATOR, NAMESPACE, shard_name
from treasury.placement import alive_nodes
from treasury.priority import RAY_WORKER_NICENESS, decisions_first
from treasury.settings import PolicyConfig, RuntimeSettings
from treasury.topics import BALANCE_EVENTS

BENCH_HOME = Path(__file__).resolve().parents[1] / ".stack" / "bench"
BENCH_TLS_HOME = BENCH_HOME.with_name("bench-tls")


async def seed(settings: RuntimeSettings, profiles: list[simulator.SimProfile]) -> None:
    pool = await create_pool(settings.database_url, max_size=2)
    try:
        await accounts.upsert(pool, [p.account for p in profiles])
        today = datetime.now(UTC).date()
        await var_results.upsert_many(pool, [
            VarResult(p.account.account_id, today, 250, Decimal("0.99"), 250, p.opening_usd / 2000, None, None)
            for p in profiles
        ])
    finally:
        await pool.close()


def processed(shards: list[Any]) -> int:
    # the feed's days end in statements: operating entries besides the balances
    return sum(spread.events_of(st) for st in ray.get([s.stats.remote() for s in shards]))


def produce(bootstrap: str, values: list[balance_record.BalanceRecord], rate: float | None,
            linger_ms: int | None = None) -> None:
    # Batch hard when pushing for throughput; when measuring latency, send as the service's own
    # producers do (the REST ingest, `treasury-orch ingest`: ``kafka_clients.producer``, linger.ms 5)
    # unless ``linger_ms`` says otherwise.
    linger = {"linger.ms": 20} if rate is None else ({} if linger_ms is None else {"linger.ms": linger_ms})
    p = kafka_clients.producer(bootstrap, **linger)
    started = time.monotonic()
    for i, (key, value, headers) in enumerate(values):
        kafka_clients.produce_waiting(p, BALANCE_EVENTS.name, key, value, wait_s=0.01, headers=headers)
        if rate is not None:
            ahead = (i + 1) / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)  # pacing to the target rate
        if i % 1000 == 0:
            p.poll(0)
    p.flush(120)


def wait_processed(shards: list[Any], target: int, timeout: float) -> list[tuple[float, int]]:
    samples = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = processed(shards)
        samples.append((time.monotonic(), n))
        if n >= target:
            break
        time.sleep(0.5)  # sampling interval
    return samples


def best_window(samples: list[tuple[float, int]], window: float) -> float | None:
    """The highest rate over any ``window`` seconds of the phase; None when the phase was shorter."""
    best: float | None = None
    for i, (t0, n0) in enumerate(samples):
        for t1, n1 in samples[i + 1:]:
            if t1 - t0 >= window:
                best = max(best or 0.0, (n1 - n0) / (t1 - t0))
                break
    return best


def shard_stats(shards: list[Any]) -> list[dict[str, Any]]:
    return list(ray.get([s.stats.remote() for s in shards]))


def phase_seconds(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    """Seconds spent in each ``phase_s`` step between two ``stats`` snapshots of one actor."""
    return {k: v - before.get("phase_s", {}).get(k, 0.0) for k, v in after.get("phase_s", {}).items()}


def print_phases(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> None:
    """Mean time per batch in each phase of the shard's loop, between two ``stats`` snapshots.

    Also per event (the phases' sum over the events): the shard's share of an event's wall time,
    the figure to carry to a cluster of another size beside the CPU seconds.
    """
    for b, a in zip(before, after, strict=True):
        batches = max(1, int(a.get("batches", 0)) - int(b.get("batches", 0)))
        events = max(1, spread.events_of(a) - spread.events_of(b))
        phases = phase_seconds(b, a)
        parts = ", ".join(f"{k} {v / batches * 1000:.1f}" for k, v in phases.items())
        print(f"  shard {a['index']}: {batches} batches, {events / batches:.0f} events/batch, ms/batch: {parts}; "
              f"{sum(phases.values()) / events * 1000:.3f} ms/event")


def print_coordinator(before: dict[str, Any], after: dict[str, Any]) -> None:
    """The coordinator's mean time per submit in each of its steps between two ``stats`` snapshots
    (a submit is one shard batch's orders): how long a batch's write waits on the coordinator, and
    how much of that is waiting for the other shard's submit to finish (the write lock)."""
    submits = int(after.get("submits", 0)) - int(before.get("submits", 0))
    phases = phase_seconds(before, after)
    steps = ", ".join(f"{k} {v / max(submits, 1) * 1000:.1f}" for k, v in phases.items() if k != "mark sent")
    print(f"  coordinator: {submits} submits, ms/submit: {steps}; "
          f"mark sent {phases.get('mark sent', 0.0):.1f} s in all")


@dataclass
class Cluster:
    """The Ray this run started: one local node (``ray.init``) or a ``LocalCluster`` of several."""

    local: LocalCluster | None

    def roots(self) -> list[int]:
        """The processes whose trees are Ray's: this driver's children, or every node's group."""
        return [os.getpid()] if self.local is None else [n.pid for n in self.local.nodes]

    def placement(self, names: list[str]) -> dict[str, str]:
        """Actor name -> node id of ``names``. One node: all on it (no dashboard to ask, none needed)."""
        if self.local is None:
            (node,) = alive_nodes()
            return dict.fromkeys(names, node)
        from ray.util.state import list_actors

        # The dashboard's address, explicitly: with other Ray instances on this machine the state
        # API refuses to guess which one is meant.
        found = list_actors(address=self.local.dashboard_url, filters=[("state", "=", "ALIVE")], limit=1000)
        return {a.name: str(a.node_id) for a in found if a.name in names}

    def stop(self) -> None:
        ray.shutdown()
        if self.local is not None:
            self.local.stop()


def start_ray(nodes: int, settings: RuntimeSettings) -> Cluster:
    """Two CPUs in all, whatever the number of nodes: the comparison is of placement, not capacity."""
    job_env = {**settings.as_env(), "LOG_LEVEL": "WARNING"}
    if nodes == 1:
        for attempt in (1, 2, 3):
            try:
                ray.init(namespace=NAMESPACE, num_cpus=2, include_dashboard=False, log_to_driver=False,
                         runtime_env={"env_vars": job_env})
                return Cluster(None)
            except Exception as exc:  # Ray raises a bare Exception when its node misses the deadline
                # Ray gives its raylet 30 s to register (as for start_cluster's nodes), which this
                # machine under other benchmarks exceeds now and then: start again, three times.
                ray.shutdown()
                if attempt == 3 or "timed out during startup" not in str(exc):
                    raise
                print(f"  Ray did not start in time (try {attempt} of 3): {exc}", flush=True)
    # As the rehearsal: token auth on every node (a joining node does not turn it on by itself), and
    # time for an agent to start on a machine busy with other work. The nodes' environment carries
    # the worker niceness (read by each raylet) and the settings, as deploy/treasury.env does.
    node_env = {**os.environ, **job_env, "RAY_AUTH_MODE": "token", "RAY_agent_register_timeout_ms": "120000"}
    local = start_cluster(node_env, nodes=nodes, num_cpus=max(1, 2 // nodes), runtime_env={"env_vars": job_env})
    return Cluster(local)


@dataclass
class Parts:
    """The processes of this run, by part: the figures count them only, not the other work here.

    Looked up again at each snapshot: Postgres backends and Ray workers come and go during a run.
    """

    cluster: Cluster
    home: Path
    shard_pids: list[int]
    coordinator_pid: int

    @classmethod
    def of(cls, cluster: Cluster, home: Path, shards: list[Any], coordinator: Any) -> Parts:
        return cls(cluster, home, [int(pid) for pid in ray.get([s.pid.remote() for s in shards])],
                   int(ray.get(coordinator.pid.remote())))

    def now(self) -> dict[str, list[int]]:
        state = stack.load_state(self.home)
        services = {"postgres": spread.tree(state.postgres.pid), "kafka": spread.tree(state.kafka.pid),
                    "openbao": spread.tree(state.openbao.pid)}
        # a stack this run started is a child of this driver too: count it once, as itself
        mine = {os.getpid(), self.coordinator_pid, *self.shard_pids, *(p for ps in services.values() for p in ps)}
        ray_rest = sorted({p for root in self.cluster.roots() for p in spread.tree(root)} - mine)
        return {
            **{f"shard {i}": [pid] for i, pid in enumerate(self.shard_pids)},
            "coordinator": [self.coordinator_pid],
            "ray (daemons, others)": ray_rest,
            **services,
            "driver (producer)": [os.getpid()],
        }

    def snapshot(self) -> dict[str, dict[int, float]]:
        return spread.cpu_snapshot(self.now())

    def rss(self) -> list[tuple[str, int, float]]:
        """``bench.procs``' table of this run's processes only: other stacks and clusters on this
        machine (other people's benchmarks) are left out."""
        ours = {pid for pids in self.now().values() for pid in pids}
        return [row for row in rss_table(os.getpid()) if row[1] in ours]


def print_spread(cluster: Cluster, stats: list[dict[str, Any]]) -> None:
    labels = spread.node_labels(ray.nodes())
    where = cluster.placement([*(shard_name(int(st["index"])) for st in stats), COORDINATOR])
    for line in spread.spread_lines(spread.shard_places(where, stats), labels):
        print(line)
    coordinator = where.get(COORDINATOR, "")
    print(f"  coordinator on {labels.get(coordinator, coordinator[:8] or 'unknown node')}")


def print_cost(parts: Parts, before: dict[str, dict[int, float]], wall_s: float,
               stats: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> None:
    events = sum(spread.events_of(a) - spread.events_of(b) for b, a in zip(*stats, strict=True))
    orders = sum(int(a.get("orders", 0)) - int(b.get("orders", 0)) for b, a in zip(*stats, strict=True))
    print(f"  CPU of this run's processes over {wall_s:.1f} s:")
    for line in spread.cpu_lines(spread.cpu_deltas(before, parts.snapshot()), wall_s, events, orders):
        print(line)


class ThirdsOfCpu(threading.Thread):
    """The CPU snapshots at a third and two thirds of phase 2 (by the clock, as the p95 thirds are
    by samples at a steady rate), so each third's cores can be printed beside its p95."""

    def __init__(self, parts: Parts, t0: float, seconds: float, first: dict[str, dict[int, float]]) -> None:
        super().__init__(daemon=True)
        self._parts, self._times = parts, [t0, t0 + seconds / 3, t0 + 2 * seconds / 3]
        self._snapshots = [first]

    def run(self) -> None:
        for at in self._times[1:]:
            time.sleep(max(0.0, at - time.monotonic()))  # until that third begins
            self._snapshots.append(self._parts.snapshot())

    def lines(self) -> list[str]:
        """One line per third; the last third ends now (the phase may outlast ``seconds``)."""
        return spread.cores_by_span([*self._snapshots, self._parts.snapshot()], [*self._times, time.monotonic()])


def pct(values: list[float]) -> str:
    if not values:
        return "no samples"
    a = np.asarray(values) * 1000
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return f"p50 {p50:7.1f} ms   p95 {p95:7.1f} ms   p99 {p99:7.1f} ms   (n={a.size})"


def p95_by_third(per_shard: list[list[float]]) -> str:
    """The p95 over each third of a phase, each shard's samples in the order it decided them (events
    arrive at a steady rate, so a third of the samples is about a third of the time): whether the
    tail is spread over the phase or gathered where the stack was still warming up."""
    thirds = []
    for i in range(3):
        part = [v for values in per_shard for v in values[i * len(values) // 3:(i + 1) * len(values) // 3]]
        thirds.append(f"{np.percentile(np.asarray(part) * 1000, 95):.1f}" if part else "-")
    return " / ".join(thirds) + " ms"


RAW_TABLE_DDL = """
    CREATE TABLE IF NOT EXISTS bench_raw_event (
        account_id varchar(64) NOT NULL, event_id varchar(128) NOT NULL, kind varchar(16) NOT NULL,
        as_of_ts timestamptz, received_ts timestamptz NOT NULL DEFAULT now()
    )
"""


async def raw_baseline(bootstrap: str, dsn: str, ranges: dict[int, tuple[int, int]]) -> tuple[int, float]:
    """Consume the records of ``ranges`` (partition: [first, end) offsets), decode, COPY: (events, seconds)."""
    import asyncpg
    from confluent_kafka import TopicPartition

    from schemas.balance_event import BalanceEvent
    from schemas.balance_record import ENTRY_SCHEMA_VERSION, VERSION_HEADER
    from schemas.errors import decode_with_source
    from schemas.statement_entry import StatementEntry

    conn = await asyncpg.connect(dsn)
    await conn.execute(RAW_TABLE_DDL)
    # A scratch table: autovacuum would vacuum and analyze its rows during phase 2, in the time
    # being measured (up to 20 s of a core on a fresh stack), and it is emptied when measured.
    await conn.execute("ALTER TABLE bench_raw_event SET (autovacuum_enabled = false)")
    await conn.execute("TRUNCATE bench_raw_event")
    c = kafka_clients.consumer(bootstrap, group=f"bench-raw-{os.getpid()}", **{"fetch.wait.max.ms": 10})
    c.assign([TopicPartition(BALANCE_EVENTS.name, p, first) for p, (first, _) in ranges.items()])
    left = {p: end - first for p, (first, end) in ranges.items() if end > first}
    entry_version = ENTRY_SCHEMA_VERSION.encode()
    done = 0
    t0 = time.perf_counter()
    try:
        while any(v > 0 for v in left.values()):
            rows: list[tuple[str, str, str, datetime | None]] = []
            for msg in c.consume(num_messages=5000, timeout=1.0):
                partition, value = msg.partition(), msg.value()
                if msg.error() is not None or partition is None or value is None or left.get(partition, 0) <= 0:
                    continue
                left[partition] -= 1
                version = dict(msg.headers() or []).get(VERSION_HEADER)
                if version == entry_version:
                    entry, _ = decode_with_source(StatementEntry, value)
                    rows.append((entry.account_id, entry.entry_id, "ENTRY", None))
                else:
                    event, _ = decode_with_source(BalanceEvent, value)
                    rows.append((event.account_id, event.event_id, str(event.kind), event.as_of_ts))
            if rows:
                await conn.copy_records_to_table("bench_raw_event", records=rows,
                                                 columns=["account_id", "event_id", "kind", "as_of_ts"])
                done += len(rows)
        seconds = time.perf_counter() - t0
        await conn.execute("TRUNCATE bench_raw_event")
        return done, seconds
    finally:
        c.close()
        await conn.close()


def raw_child(spec: str) -> None:
    """The raw baseline's process: its figure on stdout as one JSON line."""
    args = json.loads(spec)
    ranges = {int(p): (int(a), int(b)) for p, (a, b) in args["ranges"].items()}
    events, seconds = asyncio.run(raw_baseline(args["bootstrap"], args["dsn"], ranges))
    print(json.dumps({"events": events, "seconds": seconds}), flush=True)


def run_raw_baseline(settings: RuntimeSettings, start: dict[int, int], end: dict[int, int]) -> float:
    """Phase 1's records again, in a plain process of its own; returns its events/s."""
    spec = json.dumps({"bootstrap": settings.kafka_bootstrap, "dsn": settings.database_url,
                       "ranges": {p: [start.get(p, 0), end[p]] for p in end}})
    out = subprocess.run([sys.executable, "-m", "bench.pipeline", "--raw-from", spec],  # noqa: S603  # nosec B603
                         capture_output=True, text=True, check=True, env={**os.environ, **settings.as_env()})
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    rate = figures["events"] / figures["seconds"]
    print(f"  raw baseline: {rate:,.0f} events/s ({figures['events']} events consumed, decoded and COPYed "
          f"one row each in {figures['seconds']:.1f} s by one plain process)")
    return float(rate)


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average: {one:.2f}, {five:.2f}, {fifteen:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--worker-niceness", type=int, default=None,
                        help="nice level of Ray's worker processes (shards, coordinator); the service starts "
                             "them at 0, as `treasury-orch run` does; 15 is Ray's own default")
    parser.add_argument("--tls", action="store_true",
                        help="mutual TLS 1.3 on every hop: a stack of its own (.stack/bench-tls) started with "
                             "`--tls`, and Ray's gRPC with the stack's node certificate (docs/security.md)")
    parser.add_argument("--no-raw-baseline", action="store_true", help="skip the raw baseline after phase 1")
    parser.add_argument("--nodes", type=int, default=1, choices=range(1, 3),
                        help="Ray nodes on this machine: 2 starts a head and a second node as the multi-node "
                             "rehearsal does (one CPU each) and spreads the shards over them")
    parser.add_argument("--stack-home", type=Path, default=None,
                        help="the stack's folder (default .stack/bench, .stack/bench-tls with --tls): "
                             "a fresh one measures without the rows earlier runs left")
    parser.add_argument("--linger-ms", type=int, default=None,
                        help="phase 2's producer linger.ms (default: the service's producers', 5)")
    parser.add_argument("--commit-interval-ms", type=int, default=None,
                        help="the shards' OFFSET_COMMIT_INTERVAL_MS (default: the setting's, 200)")
    parser.add_argument("--raw-from", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_from is not None:
        raw_child(args.raw_from)
        return
    if args.tls and args.nodes > 1:
        parser.error("--tls with --nodes 2 is not wired: the nodes' `ray start` would need the stack's Ray TLS "
                     "settings, untested here")
    if args.worker_niceness is not None:
        os.environ[RAY_WORKER_NICENESS] = str(args.worker_niceness)
    niceness = decisions_first()

    home = args.stack_home or (BENCH_TLS_HOME if args.tls else BENCH_HOME)
    info = stack.up(home, tls=True) if args.tls else stack.up(home)
    if info.tls:  # this process's Kafka clients, and Ray's processes, which inherit this environment
        os.environ.update({**info.tls_env, **certs.ensure(info.home).ray_env()})
    print(f"transport: {'mutual TLS 1.3 on Kafka, Postgres, OpenBao and Ray gRPC' if info.tls else 'plaintext'}")
    settings = info.settings(shards=args.shards, **({} if args.commit_interval_ms is None
                                                     else {"offset_commit_interval_ms": args.commit_interval_ms}))
    profiles = simulator.make_accounts(args.accounts, prefix=f"B{time.time_ns() // 10**6 % 10**9:09d}-")
    asyncio.run(seed(settings, profiles))
    kafka_clients.skip_to_end(settings.kafka_bootstrap, CONSUMER_GROUP, BALANCE_EVENTS.name)
    cluster = start_ray(args.nodes, settings)
    try:
        system = start_actors(settings, PolicyConfig())
        shards = shard_handles(settings.shards)
        parts = Parts.of(cluster, info.home, shards, system.coordinator)
        print_rss("start", parts.rss())
        where = f"a local cluster at {cluster.local.address}" if cluster.local else "ray.init"
        print(f"Ray worker niceness: {niceness}; Ray nodes: {len(alive_nodes())} ({where})")

        feed = simulator.FeedSimulator(profiles)
        values = [encode_report(e) for e in feed.events(args.events)]
        base = processed(shards)
        print(f"\nphase 1: {len(values)} events, {args.accounts} accounts, {args.shards} shards on "
              f"{args.nodes} node(s), as fast as possible ({load()})")
        marks = kafka_clients.high_watermarks(settings.kafka_bootstrap, BALANCE_EVENTS.name)
        before, cpu0 = shard_stats(shards), parts.snapshot()
        coord0 = ray.get(system.coordinator.stats.remote())
        t0 = time.monotonic()
        producer = threading.Thread(target=produce, args=(settings.kafka_bootstrap, values, None))
        producer.start()
        samples = wait_processed(shards, base + len(values), timeout=900)
        producer.join()
        elapsed = samples[-1][0] - t0
        done = samples[-1][1] - base
        after = shard_stats(shards)
        print(f"  applied+decided {done} events in {elapsed:.1f} s: {done / elapsed:,.0f} events/s sustained")
        best = best_window(samples, 60)
        print(f"  best 60 s window: {f'{best:,.0f} events/s' if best is not None else 'none, the phase was shorter'}"
              f"   ({load()})")
        print_cost(parts, cpu0, elapsed, (before, after))
        print_spread(cluster, after)
        print_phases(before, after)
        print_coordinator(coord0, ray.get(system.coordinator.stats.remote()))
        if not args.no_raw_baseline:
            raw = run_raw_baseline(settings, marks,
                                   kafka_clients.high_watermarks(settings.kafka_bootstrap, BALANCE_EVENTS.name))
            print(f"  ratio to raw baseline: {done / elapsed / raw:.3f}   ({load()})")
        for s in shards:
            s.latencies.remote(reset=True)

        n = int(args.rate * args.seconds)
        more = [encode_report(e) for e in feed.events(n)]
        base = processed(shards)
        print(f"\nphase 2: {n} events at {args.rate:,.0f} events/s for {args.seconds:.0f} s; producer linger.ms "
              f"{args.linger_ms if args.linger_ms is not None else 'default'}, offset commits every "
              f"{settings.offset_commit_interval_ms} ms ({load()})")
        before, cpu0 = shard_stats(shards), parts.snapshot()
        coord0 = ray.get(system.coordinator.stats.remote())
        t0 = time.monotonic()
        producer = threading.Thread(target=produce, args=(settings.kafka_bootstrap, more, args.rate, args.linger_ms))
        producer.start()
        thirds = ThirdsOfCpu(parts, t0, args.seconds, cpu0)
        thirds.start()
        wait_processed(shards, base + n, timeout=args.seconds * 4 + 60)
        producer.join()
        wall = time.monotonic() - t0
        thirds.join()
        after = shard_stats(shards)
        lat: dict[str, list[float]] = {"decision_latency_s": [], "consume_latency_s": [], "durable_latency_s": []}
        per_shard = ray.get([s.latencies.remote(reset=True) for s in shards])
        for part in per_shard:
            for k, v in part.items():
                lat[k].extend(v)
        print_cost(parts, cpu0, wall, (before, after))
        print_spread(cluster, after)
        print_phases(before, after)
        print_coordinator(coord0, ray.get(system.coordinator.stats.remote()))
        print(f"  produce -> decision      {pct(lat['decision_latency_s'])}")
        print(f"  consume -> decision      {pct(lat['consume_latency_s'])}")
        print(f"  consume -> decision p95 by third of the phase: "
              f"{p95_by_third([part['consume_latency_s'] for part in per_shard])}")
        print(f"  cores busy by third of the phase: {' / '.join(thirds.lines())}")
        print(f"  produce -> order durable {pct(lat['durable_latency_s'])}   ({load()})")
        print_rss("end", parts.rss())
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
