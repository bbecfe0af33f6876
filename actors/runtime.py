"""Ray actors hosting the shard workers and the coordinator.

The actors are thin: all behaviour lives in ``ShardWorker`` and ``Coordinator`` (tested
in-process against the real Kafka and Postgres); these wrappers give them a process, a name an
operator finds on the dashboard, and restarts. ``max_restarts=-1`` brings a crashed actor back
and ``max_task_retries=-1`` re-issues its long-running ``run`` call, so a restarted shard
rebuilds from the ledger and resumes at its committed offsets without anyone intervening.
``actors.system`` creates them and hands each the handles of the actors it calls (a shard gets
the coordinator's and the VaR scheduler's).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import Sequence
from typing import Any

import ray

from actors import kafka_clients
from actors.config_watcher import ConfigFollower, follow_if_live
from actors.coordinator import Coordinator, SubmitResult
from actors.settlement import Terms
from actors.shard import BatchStats, ShardWorker
from storage.db import create_pool
from storage.forecasts import ForecastRow
from storage.orders import NewOrder
from treasury.actor_names import COORDINATOR, shard_name
from treasury.envelope import EnvelopeCipher
from treasury.keyring import keyring_from_settings
from treasury.logs import configure_logging
from treasury.metrics import ShardMetrics
from treasury.placement import SHARD_MEMORY_BYTES
from treasury.settings import PolicyConfig, RuntimeSettings, policy_from_mapping

LATENCIES = ("decision_latency_s", "consume_latency_s", "durable_latency_s")
log = logging.getLogger("treasury.runtime")


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class CoordinatorActor:
    def __init__(self, settings: RuntimeSettings) -> None:
        configure_logging()
        self._settings = settings
        self._started = asyncio.Event()
        self._stop = asyncio.Event()
        self._stopped = asyncio.Event()
        self._core: Coordinator | None = None
        self._policy: PolicyConfig | None = None  # the live version's policy, for decisions it may check
        self._follower: ConfigFollower | None = None

    def _apply_policy(self, policy: PolicyConfig) -> None:
        self._policy = policy

    async def run(self) -> None:
        if self._core is not None:
            return  # already running: a second `run` call (e.g. from a re-attached driver) is a no-op
        self._follower = follow_if_live(self._settings, self._apply_policy, COORDINATOR)
        pool = await create_pool(self._settings.database_url, max_size=4)
        producer = kafka_clients.producer(self._settings.kafka_bootstrap, **{"linger.ms": 1})
        self._core = Coordinator(pool, producer, self._settings.kafka_bootstrap,
                                 keyring=keyring_from_settings(self._settings),
                                 signing_key=self._settings.order_signing_key,
                                 approval=self._settings.approval_rule())
        await self._core.start()
        self._started.set()
        try:
            await self._core.run(self._stop)
        finally:
            await asyncio.to_thread(producer.flush, 10)  # deliveries still in flight
            await self._core.settle(0)
            await pool.close()
            self._stopped.set()

    async def ready(self) -> bool:
        await self._started.wait()
        return True

    async def submit(self, new_orders: Sequence[NewOrder]) -> list[SubmitResult]:
        await self._started.wait()
        assert self._core is not None
        return await self._core.submit(new_orders)

    async def stats(self) -> dict[str, Any]:
        stats = await self._core.stats() if self._core else {}
        return {**stats, "config_version": _version(self._follower)}

    async def metrics(self) -> ShardMetrics:
        return ShardMetrics(config_version=_version(self._follower))

    async def pid(self) -> int:
        return os.getpid()

    @ray.method(max_task_retries=0)
    async def stop(self) -> None:
        """Drain deliveries, close connections and exit the process (not restarted)."""
        await _stop_and_exit(self._stop, self._stopped, self._started)


class _RemoteCoordinator:
    """The shard's view of the coordinator actor (same call as the in-process object)."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    async def submit(self, new_orders: Sequence[NewOrder]) -> list[SubmitResult]:
        result: list[SubmitResult] = await self._handle.submit.remote(list(new_orders))
        return result


@ray.remote(num_cpus=0, memory=SHARD_MEMORY_BYTES, max_restarts=-1, max_task_retries=-1)
class AccountShardActor:
    def __init__(self, index: int, settings: RuntimeSettings, policy: dict[str, Any], coordinator: Any,
                 var_scheduler: Any) -> None:
        """``coordinator`` and ``var_scheduler`` are actor handles: a restart re-runs this constructor with
        the same handles, which stay valid while their actors restart."""
        configure_logging()
        self._index = index
        self._coordinator = coordinator
        self._var_scheduler = var_scheduler
        self._settings = settings
        self._policy: PolicyConfig = policy_from_mapping(policy)
        self._started = asyncio.Event()
        self._stop = asyncio.Event()
        self._stopped = asyncio.Event()
        self._worker: ShardWorker | None = None
        self._follower: ConfigFollower | None = None
        self._latencies: dict[str, deque[float]] = {name: deque(maxlen=500_000) for name in LATENCIES}

    async def run(self) -> None:
        if self._worker is not None:
            return
        s = self._settings
        pool = await create_pool(s.database_url, max_size=3)
        self._worker = ShardWorker(
            self._index,
            s.shards,
            pool,
            kafka_clients.batched_consumer(s.kafka_bootstrap),
            kafka_clients.shard_producer(s.kafka_bootstrap, s.offset_commit_interval_ms),
            _RemoteCoordinator(self._coordinator),
            self._policy,
            on_closing=self._notify_scheduler,
            cipher=EnvelopeCipher(keyring_from_settings(s), s.data_key),
            max_clock_skew_s=s.max_clock_skew_s,
            terms=Terms(carbon_note_tenor_days=s.carbon_note_tenor_days),
            commit_interval_s=s.offset_commit_interval_ms / 1000,
        )
        self._follower = follow_if_live(s, self._apply_policy, shard_name(self._index))
        await self._worker.start()
        self._started.set()
        try:
            await self._worker.run(self._stop, on_batch=self._record)
        finally:
            await self._worker.close()
            await pool.close()
            self._stopped.set()

    def _notify_scheduler(self, account_ids: list[str]) -> None:
        """Fire and forget: a scheduler that is restarting only delays a VaR refresh."""
        try:
            self._var_scheduler.closing_statements.remote(account_ids)
        except ray.exceptions.RayActorError:
            log.warning("VaR scheduler unavailable; closes of %d accounts not signalled", len(account_ids))

    def _record(self, stats: BatchStats) -> None:
        for name in LATENCIES:
            self._latencies[name].extend(getattr(stats, name))

    async def latencies(self, reset: bool = False) -> dict[str, list[float]]:
        """Recent per-event latencies (bounded), for benchmarks and the metrics exporter."""
        out = {name: list(samples) for name, samples in self._latencies.items()}
        if reset:
            for samples in self._latencies.values():
                samples.clear()
        return out

    async def ready(self) -> bool:
        await self._started.wait()
        return True

    async def position(self, account_id: str) -> dict[str, Any] | None:
        await self._started.wait()
        assert self._worker is not None
        pos = await self._worker.position(account_id)
        return None if pos is None else pos.model_dump(mode="json", exclude_none=True)

    async def set_var(self, account_id: str, var_usd: float | None, days: int | None) -> bool:
        await self._started.wait()
        assert self._worker is not None
        return self._worker.set_var(account_id, var_usd, days)

    async def metrics(self) -> ShardMetrics | None:
        if self._worker is None:
            return None
        metrics = self._worker.metrics()
        metrics.config_version = _version(self._follower)
        return metrics

    async def set_vars(self, items: list[tuple[str, float | None, int | None]]) -> int:
        """VaR results from a recompute; returns how many accounts this shard holds and updated."""
        await self._started.wait()
        assert self._worker is not None
        return sum(self._worker.set_var(account, var_usd, days) for account, var_usd, days in items)

    async def set_forecasts(self, items: list[ForecastRow]) -> int:
        """Outflow forecasts from a recompute; returns how many accounts this shard holds and updated."""
        await self._started.wait()
        assert self._worker is not None
        return sum(self._worker.set_forecast(row) for row in items)

    async def apply_config(self, policy: dict[str, Any]) -> None:
        self._apply_policy(policy_from_mapping(policy))

    def _apply_policy(self, policy: PolicyConfig) -> None:
        """Called from the follower's thread too: two reference assignments, no await in between."""
        self._policy = policy
        if self._worker is not None:
            self._worker.apply_config(policy)

    async def stats(self) -> dict[str, Any]:
        return self._worker.stats() if self._worker else {"index": self._index, "starting": True}

    async def pid(self) -> int:
        return os.getpid()

    @ray.method(max_task_retries=0)
    async def stop(self) -> None:
        """Finish the current batch, close connections and exit the process (not restarted)."""
        await _stop_and_exit(self._stop, self._stopped, self._started)


def _version(follower: ConfigFollower | None) -> int:
    return follower.version if follower is not None else 0


async def _stop_and_exit(stop: asyncio.Event, stopped: asyncio.Event, started: asyncio.Event) -> None:
    stop.set()
    if started.is_set():
        await asyncio.wait_for(stopped.wait(), 30)
    ray.actor.exit_actor()  # a clean exit: atexit hooks run and Ray does not restart the actor


