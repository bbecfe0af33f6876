"""Running a replay: the ledger read once, each policy variant replayed (a Ray task each on a grid),
the figures, and a plot comparing the policies. ``actors.replay`` is the pure part.

Used by ``treasury-orch replay`` and by ``POST /risk/replay`` (``ReplayJobs``: a job outlives the
request; in the deployment the jobs live in the named ``replay-jobs`` actor, ``ReplayJobsActor``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import ray

from actors.replay import Variant, VariantResult, run_variant
from actors.settlement import Terms
from storage import replay_source
from storage.db import Executor
from storage.replay_source import ReplaySource
from treasury import business_calendar
from treasury.ids import new_order_id

log = logging.getLogger("treasury.replay")
REPLAY_JOBS = "replay-jobs"  # the named actor of POST /risk/replay's jobs
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ReplaySpec:
    """What to replay: the period (as-of dates, inclusive), the accounts (None: all), the variants
    (``actors.replay.variants``) and the yearly rates in percent per product."""

    start: date
    end: date
    accounts: list[str] | None
    variants: list[Variant]
    rates: dict[str, Decimal]
    terms: Terms = field(default_factory=Terms)


def _replay_task(source: ReplaySource, variant: Variant, rates: Mapping[str, Decimal], terms: Terms) -> VariantResult:
    return run_variant(source, variant, rates, terms)


def run_variants(source: ReplaySource, spec: ReplaySpec, *, on_ray: bool,
                 progress: Progress | None = None) -> list[VariantResult]:
    """Every variant over ``source``: one Ray task each when ``on_ray`` (Ray initialised; the source
    is put in the object store once), else one after the other here. Results in the variants' order."""
    total = len(spec.variants)
    if not on_ray:
        out = []
        for i, variant in enumerate(spec.variants):
            out.append(run_variant(source, variant, spec.rates, spec.terms))
            if progress is not None:
                progress(i + 1, total)
        return out
    env = {"env_vars": {"BUSINESS_CALENDAR": business_calendar.active().name}}
    task = ray.remote(num_cpus=1)(_replay_task).options(runtime_env=env)
    ref = ray.put(source)
    refs = [task.remote(ref, v, spec.rates, spec.terms) for v in spec.variants]
    pending = list(refs)
    while pending:
        _, pending = ray.wait(pending, num_returns=1, timeout=None)
        if progress is not None:
            progress(total - len(pending), total)
    return list(ray.get(refs))


async def run(db: Executor, spec: ReplaySpec, *, on_ray: bool, progress: Progress | None = None,
              png: str | Path | None = None) -> list[VariantResult]:
    """Read the ledger, replay every variant, and plot them when ``png`` is given."""
    source = await replay_source.load(db, spec.start, spec.end, spec.accounts)
    results = await asyncio.to_thread(run_variants, source, spec, on_ray=on_ray, progress=progress)
    if png is not None:
        await asyncio.to_thread(plot, results, png)
    return results


def summary(results: Sequence[VariantResult], spec: ReplaySpec) -> dict[str, Any]:
    return {"from": spec.start.isoformat(), "to": spec.end.isoformat(),
            "rates_pct": {k: str(v) for k, v in spec.rates.items()},
            "variants": [r.as_dict() for r in results]}


def plot(results: Sequence[VariantResult], path: str | Path) -> Path:
    """A PNG comparing the policies: USD swept by product, USD-days invested, yield and breaches.

    matplotlib's object API on the Agg canvas (no pyplot, no display), like ``risk.backtest``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = [r.variant.name for r in results]
    rows = [r.as_dict() for r in results]
    figure = Figure(figsize=(max(8.0, 1.6 * len(names) + 4), 7), dpi=100)
    FigureCanvasAgg(figure)
    swept, days, earned, breached = (figure.add_subplot(2, 2, i) for i in range(1, 5))
    x = list(range(len(names)))
    bottom = [0.0] * len(names)
    for product in ("FED_RRP", "TBILL_4W", "CARBON_NOTE"):
        usd = [float(row["orders"].get(product, {}).get("usd", 0)) / 1e6 for row in rows]  # type: ignore[attr-defined]
        swept.bar(x, usd, bottom=bottom, label=product)
        bottom = [b + u for b, u in zip(bottom, usd, strict=True)]
    swept.set_title("swept (USD m)")
    swept.legend(loc="best", fontsize=7)
    days.bar(x, [float(str(row["usd_days"])) / 1e6 for row in rows], color="tab:green")
    days.set_title("USD-days invested (m)")
    earned.bar(x, [float(str(row["yield_usd"])) for row in rows], color="tab:olive")
    earned.set_title("yield (USD, act/360)")
    breached.bar(x, [int(str(row["buffer_breaches"])) for row in rows], color="tab:red")
    breached.set_title("buffer breaches (account-days)")
    for axes in (swept, days, earned, breached):
        axes.set_xticks(x, names, rotation=20, ha="right", fontsize=7)
    figure.suptitle("Replay: policies compared")
    figure.tight_layout()
    target = Path(path)
    figure.savefig(target, format="png")
    return target


# -- jobs (POST /risk/replay) -------------------------------------------------------------------
class ReplayJobs:
    """Replay jobs run one at a time beside the caller, polled by id: queued | running | done (with
    the figures) | failed (with the error). ``pool`` gives the database; ``on_ray``: the variants as
    Ray tasks (in the ``replay-jobs`` actor), else here."""

    def __init__(self, pool: Callable[[], Awaitable[Executor]], *, on_ray: bool = False, keep: int = 100) -> None:
        self._pool = pool
        self._on_ray = on_ray
        self._keep = keep
        self._jobs: dict[str, dict[str, Any]] = {}
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, spec: ReplaySpec) -> str:
        job_id = new_order_id()
        self._jobs[job_id] = {"job_id": job_id, "status": "queued", "from": spec.start.isoformat(),
                              "to": spec.end.isoformat(), "variants": len(spec.variants)}
        for old in list(self._jobs)[:-self._keep]:
            if self._jobs[old]["status"] in {"done", "failed"}:
                del self._jobs[old]
        task = asyncio.ensure_future(self._run(job_id, spec))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job_id

    async def status(self, job_id: str) -> dict[str, Any] | None:
        return self._jobs.get(job_id)

    async def _run(self, job_id: str, spec: ReplaySpec) -> None:
        job = self._jobs[job_id]
        async with self._lock:
            job["status"] = "running"

            def progress(done: int, total: int) -> None:
                job["progress"] = {"done": done, "total": total}

            try:
                results = await run(await self._pool(), spec, on_ray=self._on_ray, progress=progress)
            except Exception as exc:  # reported on the job, not raised into nobody's loop
                log.exception("replay job %s failed", job_id)
                job.update(status="failed", error=f"{type(exc).__name__}: {exc}")
                return
            job.update(status="done", result=summary(results, spec))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class ReplayJobsActor:
    """The Ray actor (``REPLAY_JOBS``) hosting the deployment's replay jobs, so a job outlives the
    request and the replica; it reads the ledger at ``DATABASE_URL`` of its runtime environment."""

    def __init__(self) -> None:
        from storage.db import create_pool

        self._db: Any = None

        async def pool() -> Executor:
            if self._db is None:
                self._db = await create_pool(os.environ["DATABASE_URL"], max_size=2)
            return self._db

        self._jobs = ReplayJobs(pool, on_ray=True)

    async def submit(self, spec: ReplaySpec) -> str:
        return await self._jobs.submit(spec)

    async def status(self, job_id: str) -> dict[str, Any] | None:
        return await self._jobs.status(job_id)
