"""When VaR is recomputed: on demand (REST, job ids) and after prior-day closing statements.

A shard that applies a closing (CLBD) balance tells the scheduler which account closed; closes
arriving together (a bank delivers every account's statement within seconds) are gathered for
``debounce_s`` and recomputed as one job, so the next decision uses a VaR that includes
yesterday.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import asyncpg
import ray

from actors.var_job import recompute
from storage.db import create_pool
from treasury.clock import iso_z, utc_now
from treasury.ids import new_order_id
from treasury.logs import configure_logging
from treasury.priority import run_as_batch
from treasury.settings import RuntimeSettings

log = logging.getLogger("treasury.var_scheduler")
MAX_JOBS_KEPT = 1000
# Up to this many accounts a job runs in the scheduler itself (about 50 ms of numpy at a
# 250-day window); above it, on the VaR pool's workers.
INLINE_MAX_ACCOUNTS = 20_000


@ray.remote(num_cpus=0, max_restarts=-1)
class VarScheduler:
    def __init__(self, settings: RuntimeSettings, workers: int = 2, debounce_s: float = 2.0) -> None:
        configure_logging()
        run_as_batch()  # inline jobs are ~50 ms of numpy: never ahead of a shard's decision
        self._settings = settings
        self._workers = workers
        self._debounce_s = debounce_s
        self._jobs: dict[str, dict[str, Any]] = {}
        self._closed: set[str] = set()
        self._flush: asyncio.Task[None] | None = None
        self._pool: asyncpg.Pool | None = None
        self._one_at_a_time = asyncio.Lock()

    async def submit(self, accounts: Sequence[str] | None = None, window: int | None = None,
                     confidence: float = 0.99, trigger: str = "rest") -> str:
        job_id = new_order_id()
        self._jobs[job_id] = {"job_id": job_id, "status": "queued", "trigger": trigger,
                              "accounts": None if accounts is None else list(accounts),
                              "window": window or self._settings.var_window_days, "confidence": confidence,
                              "submitted_ts": iso_z(utc_now()), "counts": None, "error": None}
        while len(self._jobs) > MAX_JOBS_KEPT:
            self._jobs.pop(next(iter(self._jobs)))
        asyncio.get_running_loop().create_task(self._run(job_id))
        return job_id

    async def status(self, job_id: str) -> dict[str, Any] | None:
        return self._jobs.get(job_id)

    async def closing_statements(self, account_ids: Sequence[str]) -> None:
        self._closed.update(account_ids)
        if self._flush is None or self._flush.done():
            self._flush = asyncio.get_running_loop().create_task(self._after_closes())

    async def _after_closes(self) -> None:
        await asyncio.sleep(self._debounce_s)  # gather a statement run's closes into one job
        accounts, self._closed = sorted(self._closed), set()
        await self.submit(accounts, trigger="closing_statement")

    async def _run(self, job_id: str) -> None:
        job = self._jobs[job_id]
        async with self._one_at_a_time:
            job["status"] = "running"
            try:
                if self._pool is None:
                    self._pool = await create_pool(self._settings.database_url, max_size=2)
                summary = await recompute(self._pool, window=job["window"], confidence=job["confidence"],
                                          accounts=job["accounts"], workers=self._workers,
                                          shards=self._settings.shards, inline_max_rows=INLINE_MAX_ACCOUNTS)
            except Exception as exc:  # a job failing must not take the scheduler down
                log.exception("VaR job %s failed", job_id)
                job.update(status="failed", error=f"{type(exc).__name__}: {exc}", finished_ts=iso_z(utc_now()))
                return
            job.update(status="done", counts=summary.as_dict(), finished_ts=iso_z(utc_now()))
            log.info("VaR job %s (%s) done: %s", job_id, job["trigger"], summary.as_dict())
