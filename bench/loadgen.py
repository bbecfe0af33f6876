"""Load generator: simulated balance events through REST (POST /balances) and Kafka at a set rate.

Shared by the compressed load test (36,000 events as fast as the system takes them), the 1-hour
soak (``bench/soak.py``) and the chaos tests. Accounts are split between the two ways in: a
fixed share posts over REST (each account's events in order, one request at a time, so the
shard sees them in the order they were made), the rest is produced straight to
``balance_events``. Only intraday (ITAV) balances are sent: closing statements would start VaR
recomputes whose timing changes later decisions, and the tests compare decisions against the
policy worked out offline.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
import psutil
from confluent_kafka import KafkaError, Message, Producer

from actors import kafka_clients
from schemas import balance_record
from schemas.balance_event import BalanceCode, BalanceEvent
from serve_app.job import simulator
from serve_app.job.bank.model import BankReport
from storage import accounts, var_results
from storage.var_results import VarResult
from treasury.topics import BALANCE_EVENTS

VAR_USD = Decimal("1000")  # 1 bps on a 10 million balance: every account stays within the VaR limit
PYTHON_PARTS = ("ray shard", "ray coordinator", "serve replica", "ray driver")


def feed(n_accounts: int, per_account: int, prefix: str, seed: int = 7, start: datetime | None = None
         ) -> tuple[list[simulator.SimProfile], list[BalanceEvent]]:
    """``n_accounts`` x ``per_account`` intraday balances, an hour apart, in the order a bank sends them.

    The same ``seed`` and ``start`` give the same amounts and event ids (after the ``prefix``), so
    two runs over different accounts can be compared decision for decision.
    """
    profiles = simulator.make_accounts(n_accounts, seed=seed, prefix=prefix)
    if start is None:
        start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=per_account + 2)
    sim = simulator.FeedSimulator(profiles, seed=seed, start=start)
    events = list(itav_only(sim.events(), n_accounts * per_account))
    return profiles, events


def itav_only(events: Iterator[BankReport], limit: int) -> Iterator[BalanceEvent]:
    """The intraday balances of the feed: not its closes, nor its operating entries."""
    n = 0
    for ev in events:
        if isinstance(ev, BalanceEvent) and ev.balance_code is BalanceCode.ITAV:
            yield ev
            n += 1
            if n >= limit:
                return


async def register(pool: asyncpg.Pool, profiles: Sequence[simulator.SimProfile], var_usd: Decimal = VAR_USD) -> None:
    """The accounts and a VaR figure for each, so every decision uses the same known VaR."""
    await accounts.upsert(pool, [p.account for p in profiles])
    today = datetime.now(UTC).date()
    await var_results.upsert_many(pool, [
        VarResult(p.account.account_id, today, 250, Decimal("0.99"), 250, var_usd, None, None) for p in profiles])


def rest_accounts(profiles: Sequence[simulator.SimProfile], share: float) -> set[str]:
    """Every k-th account goes through REST, so both ways in carry a steady part of the load."""
    if share <= 0:
        return set()
    step = max(1, round(1 / share))
    return {p.account.account_id for i, p in enumerate(profiles) if i % step == 0}


@dataclass
class Sent:
    kafka: int = 0
    rest: int = 0
    rest_errors: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def total(self) -> int:
        return self.kafka + self.rest


class LoadGenerator:
    """Sends a fixed list of events, paced at ``rate`` events/s (``None``: as fast as taken).

    REST accounts are served by ``rest_workers`` tasks, each owning a slice of them, so one
    account's events are posted in order while several accounts post at once.
    """

    def __init__(self, bootstrap: str, base_url: str | None, headers: dict[str, str], rest: set[str],
                 rate: float | None = None, rest_workers: int = 8) -> None:
        self._bootstrap = bootstrap
        self._base_url = base_url
        self._headers = headers
        self._rest = rest if base_url else set()
        self._rate = rate
        self._workers = rest_workers
        self.sent = Sent()
        self.sent_at: dict[tuple[str, str], float] = {}  # (account, event) -> first send, epoch seconds
        self.failed: list[str] = []  # Kafka delivery errors (none expected: the producer retries for minutes)
        self.partition_of: dict[str, int] = {}  # account -> its balance_events partition, as Kafka reported it

    async def run(self, events: Iterable[BalanceEvent], stop: asyncio.Event | None = None) -> Sent:
        stop = stop or asyncio.Event()
        producer = kafka_clients.producer(self._bootstrap)  # linger DEFAULT_LINGER_MS, as the service sends
        queues: list[asyncio.Queue[BalanceEvent | None]] = [asyncio.Queue(maxsize=2000) for _ in range(self._workers)]
        owners: dict[str, int] = {}
        async with httpx.AsyncClient(base_url=self._base_url or "http://unused", headers=self._headers,
                                     timeout=60) as client:
            workers = [asyncio.create_task(self._post_all(client, q)) for q in queues] if self._rest else []
            self.sent = Sent()
            started = self.sent.started
            for i, ev in enumerate(events, start=1):
                if stop.is_set():
                    break
                if ev.account_id in self._rest:
                    owner = owners.setdefault(ev.account_id, len(owners) % self._workers)
                    await queues[owner].put(ev)
                else:
                    record = balance_record.encode(ev)
                    self.sent_at.setdefault((ev.account_id, ev.event_id), time.time())
                    await asyncio.to_thread(self._produce, producer, record)
                    self.sent.kafka += 1
                if self._rate is not None:
                    ahead = i / self._rate - (time.monotonic() - started)
                    if ahead > 0:
                        await asyncio.sleep(ahead)  # pacing to the target rate
                elif i % 500 == 0:
                    producer.poll(0)
                    await asyncio.sleep(0)  # let the REST workers run
            for q in queues:
                await q.put(None)
            await asyncio.gather(*workers)
            left = await asyncio.to_thread(producer.flush, 120)
            if left or self.failed:
                raise RuntimeError(f"{left} events still queued, {len(self.failed)} failed: {self.failed[:3]}")
        self.sent.finished = time.monotonic()
        return self.sent

    def _produce(self, producer: Producer, record: balance_record.BalanceRecord) -> None:
        while True:
            try:
                producer.produce(BALANCE_EVENTS.name, key=record.key, value=record.value, headers=record.headers,
                                 on_delivery=self._delivered)
                return
            except BufferError:  # the local queue is full (the broker is slower, or away)
                producer.poll(0.05)

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        partition = msg.partition()
        if err is None and partition is not None:
            self.partition_of[(msg.key() or b"").decode()] = partition
        elif err is not None:
            self.failed.append(str(err))

    async def _post_all(self, client: httpx.AsyncClient, queue: asyncio.Queue[BalanceEvent | None]) -> None:
        while (ev := await queue.get()) is not None:
            await self._post(client, ev)

    async def _post(self, client: httpx.AsyncClient, ev: BalanceEvent) -> None:
        """Retry until accepted: a replica or the broker may be down for a while during chaos."""
        body = ev.model_dump(mode="json", exclude_none=True)
        self.sent_at.setdefault((ev.account_id, ev.event_id), time.time())
        deadline = time.monotonic() + 180
        while True:
            try:
                r = await client.post("/balances", json=body)
                if r.status_code == 202:
                    self.partition_of[ev.account_id] = r.json()["events"][0]["partition"]
                    self.sent.rest += 1
                    return
                # 404: Serve's proxy answers before the app is deployed again (POST /balances always exists)
                if r.status_code < 500 and r.status_code not in (404, 429):
                    raise RuntimeError(f"POST /balances refused {ev.event_id}: {r.status_code} {r.text}")
            except httpx.HTTPError:
                pass
            self.sent.rest_errors += 1
            if time.monotonic() > deadline:
                raise RuntimeError(f"POST /balances for {ev.event_id} failed for 180 s")
            await asyncio.sleep(0.2)  # back-off before retrying


# --------------------------------------------------------------------------------------------- figures


def percentiles(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99 in milliseconds (NaN without samples)."""
    if not seconds:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "n": 0}
    p50, p95, p99 = np.percentile(np.asarray(seconds) * 1000, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "n": len(seconds)}


async def ledger_counts(pool: asyncpg.Pool, account_ids: list[str]) -> dict[str, int]:
    row = await pool.fetchrow(
        """SELECT (SELECT count(*) FROM balance WHERE account_id = ANY($1::varchar[])) AS stored,
                  (SELECT count(*) FROM balance WHERE account_id = ANY($1::varchar[])
                                                  AND decided_ts IS NOT NULL) AS decided,
                  (SELECT count(*) FROM sweep_order WHERE account_id = ANY($1::varchar[])) AS orders,
                  (SELECT count(*) FROM sweep_order WHERE account_id = ANY($1::varchar[])
                                                      AND status = 'NEW') AS unsent""", account_ids)
    return dict(row)


async def decision_latencies(pool: asyncpg.Pool, sent_at: dict[tuple[str, str], float]) -> list[float]:
    """Sent (by the load generator) -> decided (the ledger's ``decided_ts``), per event, on one machine's clock."""
    rows = await pool.fetch(
        "SELECT account_id, event_id, extract(epoch FROM decided_ts)::float8 AS t FROM balance "
        "WHERE account_id = ANY($1::varchar[]) AND decided_ts IS NOT NULL", sorted({a for a, _ in sent_at}))
    return [r["t"] - sent_at[(r["account_id"], r["event_id"])] for r in rows
            if (r["account_id"], r["event_id"]) in sent_at]


async def ledger_latencies(pool: asyncpg.Pool, account_ids: list[str]) -> list[float]:
    """Stored by the shard -> decided, per balance row: the shard's own share of the latency."""
    rows = await pool.fetch(
        "SELECT extract(epoch FROM decided_ts - received_ts)::float8 AS s FROM balance "
        "WHERE account_id = ANY($1::varchar[]) AND decided_ts IS NOT NULL", account_ids)
    return [float(r["s"]) for r in rows]


def system_pids(stack_home: Path, roots: Sequence[int]) -> set[int]:
    """This system's processes only: the ``roots`` (the Ray driver, ...) with their descendants and
    the stack home's services with theirs.

    Other people's brokers and Ray clusters on the same machine look alike by command line, so
    processes are chosen by ancestry and by the stack's own state, never by name alone.
    """
    from devstack.stack import load_state

    state = load_state(stack_home.resolve())
    pids: set[int] = set()
    for pid in (*roots, state.kafka.pid, state.postgres.pid, state.openbao.pid):
        if pid is None:
            continue
        try:
            proc = psutil.Process(pid)
            pids |= {proc.pid, *(c.pid for c in proc.children(recursive=True))}
        except psutil.NoSuchProcess:
            continue
    return pids


def rss_snapshot(stack_home: Path, roots: Sequence[int], names: dict[int, str] | None = None
                 ) -> list[tuple[str, int, float]]:
    """(part, pid, RSS MiB) for every process of this system; ``names`` labels the roots."""
    from bench.procs import classify

    names = names or {}
    rows = []
    for pid in system_pids(stack_home, roots):
        try:
            proc = psutil.Process(pid)
            cmd = " ".join(proc.cmdline())
            label = names.get(pid) or classify(cmd) or _service_label(cmd)
            rows.append((label, pid, proc.memory_info().rss / 2**20))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return sorted(rows)


def _service_label(cmd: str) -> str:
    return "openbao" if "bao" in cmd else "other"


def rss_growth(start: Sequence[tuple[str, int, float]], end: Sequence[tuple[str, int, float]],
               parts: Sequence[str] = PYTHON_PARTS,
               before: Collection[int] | None = None) -> dict[str, tuple[float, float, float]]:
    """Per part (summed over the pids alive at both ends): (start MiB, end MiB, growth %).

    ``before``: only the pids that already ran before the load began. A process started during
    the run (a replica the autoscaler adds) may be sampled at "start" while it is still loading
    its modules, and its loading would then read as growth: the compressed run once reported
    +60 % for a replica pair that was one loaded replica (245 MiB) and one starting (59 MiB).
    """
    begin = {pid: (label, mib) for label, pid, mib in start}
    out: dict[str, tuple[float, float, float]] = {}
    for label, pid, mib in end:
        if pid not in begin or label not in parts or (before is not None and pid not in before):
            continue
        s, e, _ = out.get(label, (0.0, 0.0, 0.0))
        out[label] = (s + begin[pid][1], e + mib, 0.0)
    return {k: (s, e, (e - s) / s * 100 if s else 0.0) for k, (s, e, _) in out.items()}


def format_rss(start: Sequence[tuple[str, int, float]], end: Sequence[tuple[str, int, float]]) -> str:
    """One line per part (its processes summed): RSS at start and end, the growth, with the total."""
    def by_part(rows: Sequence[tuple[str, int, float]]) -> dict[str, tuple[int, float]]:
        out: dict[str, tuple[int, float]] = {}
        for label, _, mib in rows:
            n, total = out.get(label, (0, 0.0))
            out[label] = (n + 1, total + mib)
        return out

    s_parts, e_parts = by_part(start), by_part(end)
    lines = [f"  {'part':<24} {'procs':>5} {'start MiB':>10} {'end MiB':>10} {'growth':>8}"]
    for label in sorted(set(s_parts) | set(e_parts)):
        n, e = e_parts.get(label, (0, 0.0))
        s = s_parts.get(label, (0, 0.0))[1]
        growth = f"{(e - s) / s * 100:+7.1f}%" if s else "     new"
        lines.append(f"  {label:<24} {n:>5} {s:>10.1f} {e:>10.1f} {growth}")
    total_s, total_e = sum(r[2] for r in start), sum(r[2] for r in end)
    lines.append(f"  {'total':<24} {len(end):>5} {total_s:>10.1f} {total_e:>10.1f} "
                 f"{(total_e - total_s) / total_s * 100 if total_s else 0:+7.1f}%")
    return "\n".join(lines)


@dataclass
class Report:
    events: int
    rest: int
    kafka: int
    seconds: float
    decided: int
    orders: int
    latency: dict[str, float]
    ledger_latency: dict[str, float]
    rss_start: list[tuple[str, int, float]]
    rss_end: list[tuple[str, int, float]]
    pids_before: frozenset[int] = frozenset()  # the system's processes before the first event was sent

    @property
    def rate(self) -> float:
        return self.decided / self.seconds if self.seconds else 0.0

    def growth(self) -> dict[str, tuple[float, float, float]]:
        return rss_growth(self.rss_start, self.rss_end, before=self.pids_before or None)

    def started_during_run(self) -> list[tuple[str, int, float]]:
        """Our processes that did not exist before the load (replicas the autoscaler added), at the end."""
        return [row for row in self.rss_end
                if self.pids_before and row[1] not in self.pids_before and row[0] in PYTHON_PARTS]

    def text(self) -> str:
        lat, led = self.latency, self.ledger_latency
        lines = [
            f"events sent          {self.events} ({self.kafka} Kafka, {self.rest} REST)",
            f"decided              {self.decided} in {self.seconds:.1f} s: {self.rate:,.1f} events/s",
            f"orders written       {self.orders}",
            f"sent -> decided      p50 {lat['p50']:.1f} ms  p95 {lat['p95']:.1f} ms  p99 {lat['p99']:.1f} ms "
            f"(n={lat['n']:.0f})",
            f"ledger: stored -> decided  p50 {led['p50']:.1f} ms  p95 {led['p95']:.1f} ms  p99 {led['p99']:.1f} ms "
            "(0 when decided in the storing transaction; the rest wait for their order to be durable)",
            "RSS per process:",
            format_rss(self.rss_start, self.rss_end),
            "Python processes, growth (pids alive before the load and at both ends):",
        ]
        lines += [f"  {k:<24} {s:8.1f} -> {e:8.1f} MiB  {g:+6.1f}%" for k, (s, e, g) in sorted(self.growth().items())]
        lines += [f"  started during the run: {label} (pid {pid}) {mib:.1f} MiB at the end"
                  for label, pid, mib in self.started_during_run()]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {"events": self.events, "rest": self.rest, "kafka": self.kafka, "seconds": round(self.seconds, 1),
                "events_per_s": round(self.rate, 1), "decided": self.decided, "orders": self.orders,
                "latency_ms": self.latency, "ledger_latency_ms": self.ledger_latency,
                "rss_growth": {k: list(v) for k, v in self.growth().items()}}


async def wait_until_decided(pool: asyncpg.Pool, account_ids: list[str], events: int, timeout: float,
                             progress: Any = None) -> dict[str, int]:
    """Poll the ledger until every event is decided and no order waits to be published."""
    deadline = time.monotonic() + timeout
    while True:
        counts = await ledger_counts(pool, account_ids)
        if progress is not None:
            progress(counts)
        if counts["decided"] >= events and counts["unsent"] == 0:
            return counts
        if time.monotonic() > deadline:
            raise TimeoutError(f"not all decided within {timeout:.0f} s: {counts} of {events} events")
        await asyncio.sleep(0.5)  # polling interval under a deadline


async def drive(pool: asyncpg.Pool, gen: LoadGenerator, events: Sequence[BalanceEvent], stack_home: Path,
                driver_pid: int, timeout: float, progress_every: float | None = None) -> Report:
    """Send ``events``, wait until all are decided and published, and gather the figures.

    RSS is sampled once the first tenth of the events is decided (imports done, pools and
    caches filled: the steady state the growth is measured from) and again at the end.
    """
    account_ids = sorted({e.account_id for e in events})
    names = {driver_pid: "ray driver", os.getpid(): "load generator"}
    roots = [driver_pid, os.getpid()]
    before = await ledger_counts(pool, account_ids)
    rss_start: list[tuple[str, int, float]] = []
    pids_before = frozenset(pid for _, pid, _ in rss_snapshot(stack_home, roots, names))
    t0 = time.monotonic()

    async def watch() -> None:
        nonlocal rss_start
        last = time.monotonic()
        while True:
            counts = await ledger_counts(pool, account_ids)
            if not rss_start and counts["decided"] - before["decided"] >= len(events) // 10:
                rss_start = rss_snapshot(stack_home, roots, names)
            if progress_every is not None and time.monotonic() - last >= progress_every:
                last = time.monotonic()
                total = sum(r[2] for r in rss_snapshot(stack_home, roots, names))
                print(f"[{datetime.now(UTC):%H:%M:%S}Z] {time.monotonic() - t0:7.0f} s  sent {gen.sent.total}"
                      f"  decided {counts['decided']}  orders {counts['orders']}  RSS total {total:.0f} MiB",
                      flush=True)
            await asyncio.sleep(1.0)  # sampling interval

    watcher = asyncio.create_task(watch())
    try:
        sent = await gen.run(events)
        counts = await wait_until_decided(pool, account_ids, before["decided"] + len(events), timeout)
    finally:
        watcher.cancel()
    seconds = time.monotonic() - t0
    rss_end = rss_snapshot(stack_home, roots, names)
    return Report(len(events), sent.rest, sent.kafka, seconds, counts["decided"] - before["decided"],
                  counts["orders"] - before["orders"], percentiles(await decision_latencies(pool, gen.sent_at)),
                  percentiles(await ledger_latencies(pool, account_ids)), rss_start or rss_end, rss_end,
                  pids_before)
