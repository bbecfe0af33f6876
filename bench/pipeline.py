"""bench/pipeline: balance events through Kafka into the running shards; prints the figures.

    .venv/bin/python -m bench.pipeline [--events 200000] [--accounts 1000] [--rate 1000] [--seconds 30]
                                       [--worker-niceness N]

Phase 1 pushes ``--events`` as fast as the broker takes them and reports the sustained rate at
which the shards applied and decided them (and the best 60 s window). Phase 2 streams at
``--rate`` events/s for ``--seconds`` and reports p50/p95/p99 of produce->decision,
consume->decision and produce->order-durable latency. Then the RSS of every process.
Targets on a 2-core machine: >= 3,000 events/s sustained for 60 s; p95 decision latency
<= 50 ms at 1,000 events/s.

After phase 1, the raw baseline: one plain Python process (``--raw-from``, a child) consumes
phase 1's very records from Kafka (by offset, a group of its own), decodes each as the shards do
(``schemas.errors.decode_with_source`` into ``BalanceEvent`` / ``StatementEntry``) and COPYs one
row per event into a scratch table (``bench_raw_event``), committing each batch: no decisions,
no encryption, no signing. It prints ``raw baseline: N events/s``; phase 1's rate over it is
``ratio to raw baseline`` (issue 21's target: >= 0.30).
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
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import ray

from actors import kafka_clients
from actors.kafka_clients import CONSUMER_GROUP
from actors.system import shard_handles, start_actors
from bench.procs import print_rss, rss_table
from devstack import certs, stack
from schemas import balance_record
from serve_app.job import simulator
from serve_app.job.bank.model import encode_report
from storage import accounts, var_results
from storage.db import create_pool
from storage.var_results import VarResult
from treasury.actor_names import NAMESPACE
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
    stats = ray.get([s.stats.remote() for s in shards])
    # the feed's days end in statements: operating entries besides the balances
    keys = ("applied", "stale", "duplicate", "invalid", "entries_applied", "entries_duplicate")
    return sum(int(st.get(k, 0)) for st in stats for k in keys)


def produce(bootstrap: str, values: list[balance_record.BalanceRecord], rate: float | None) -> None:
    # Batch hard when pushing for throughput; send at once when measuring latency.
    p = kafka_clients.producer(bootstrap, **{"linger.ms": 20 if rate is None else 1})
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


def best_window(samples: list[tuple[float, int]], window: float) -> float:
    best = 0.0
    for i, (t0, n0) in enumerate(samples):
        for t1, n1 in samples[i + 1:]:
            if t1 - t0 >= window:
                best = max(best, (n1 - n0) / (t1 - t0))
                break
    return best


def print_phases(shards: list[Any]) -> None:
    """Mean time per batch in each phase of the shard's loop, over the whole run."""
    for st in ray.get([s.stats.remote() for s in shards]):
        batches = max(1, int(st.get("batches", 0)))
        parts = ", ".join(f"{k} {v / batches * 1000:.1f}" for k, v in st.get("phase_s", {}).items())
        print(f"  shard {st['index']}: {batches} batches, ms/batch: {parts}")


def pct(values: list[float]) -> str:
    if not values:
        return "no samples"
    a = np.asarray(values) * 1000
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return f"p50 {p50:7.1f} ms   p95 {p95:7.1f} ms   p99 {p99:7.1f} ms   (n={a.size})"


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
        return done, time.perf_counter() - t0
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
    parser.add_argument("--raw-from", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_from is not None:
        raw_child(args.raw_from)
        return
    if args.worker_niceness is not None:
        os.environ[RAY_WORKER_NICENESS] = str(args.worker_niceness)
    niceness = decisions_first()

    info = stack.up(BENCH_TLS_HOME, tls=True) if args.tls else stack.up(BENCH_HOME)
    if info.tls:  # this process's Kafka clients, and Ray's processes, which inherit this environment
        os.environ.update({**info.tls_env, **certs.ensure(info.home).ray_env()})
    print(f"transport: {'mutual TLS 1.3 on Kafka, Postgres, OpenBao and Ray gRPC' if info.tls else 'plaintext'}")
    settings = info.settings(shards=args.shards)
    profiles = simulator.make_accounts(args.accounts, prefix=f"B{time.time_ns() // 10**6 % 10**9:09d}-")
    asyncio.run(seed(settings, profiles))
    kafka_clients.skip_to_end(settings.kafka_bootstrap, CONSUMER_GROUP, BALANCE_EVENTS.name)
    ray.init(namespace=NAMESPACE, num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {**settings.as_env(), "LOG_LEVEL": "WARNING"}})
    try:
        start_actors(settings, PolicyConfig())
        shards = shard_handles(settings.shards)
        print_rss("start", rss_table(os.getpid()))
        print(f"Ray worker niceness: {niceness}")

        feed = simulator.FeedSimulator(profiles)
        values = [encode_report(e) for e in feed.events(args.events)]
        base = processed(shards)
        print(f"\nphase 1: {len(values)} events, {args.accounts} accounts, {args.shards} shards, as fast as possible"
              f" ({load()})")
        marks = kafka_clients.high_watermarks(settings.kafka_bootstrap, BALANCE_EVENTS.name)
        t0 = time.monotonic()
        producer = threading.Thread(target=produce, args=(settings.kafka_bootstrap, values, None))
        producer.start()
        samples = wait_processed(shards, base + len(values), timeout=900)
        producer.join()
        elapsed = samples[-1][0] - t0
        done = samples[-1][1] - base
        print(f"  applied+decided {done} events in {elapsed:.1f} s: {done / elapsed:,.0f} events/s sustained")
        print(f"  best 60 s window: {best_window(samples, 60):,.0f} events/s")
        if not args.no_raw_baseline:
            raw = run_raw_baseline(settings, marks,
                                   kafka_clients.high_watermarks(settings.kafka_bootstrap, BALANCE_EVENTS.name))
            print(f"  ratio to raw baseline: {done / elapsed / raw:.3f}   ({load()})")
        for s in shards:
            s.latencies.remote(reset=True)

        n = int(args.rate * args.seconds)
        more = [encode_report(e) for e in feed.events(n)]
        base = processed(shards)
        print(f"\nphase 2: {n} events at {args.rate:,.0f} events/s for {args.seconds:.0f} s ({load()})")
        producer = threading.Thread(target=produce, args=(settings.kafka_bootstrap, more, args.rate))
        producer.start()
        wait_processed(shards, base + n, timeout=args.seconds * 4 + 60)
        producer.join()
        lat: dict[str, list[float]] = {"decision_latency_s": [], "consume_latency_s": [], "durable_latency_s": []}
        for part in ray.get([s.latencies.remote(reset=True) for s in shards]):
            for k, v in part.items():
                lat[k].extend(v)
        print_phases(shards)
        print(f"  produce -> decision      {pct(lat['decision_latency_s'])}")
        print(f"  consume -> decision      {pct(lat['consume_latency_s'])}")
        print(f"  produce -> order durable {pct(lat['durable_latency_s'])}")
        print_rss("end", rss_table(os.getpid()))
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
