"""The VaR actor pool: N Ray actors share one copy of the flow matrix and split its rows.

The matrix is put into Ray's object store once; every task receives the same reference and
reads it zero-copy (a read-only numpy view of shared memory) instead of getting a pickled slice.
Against a multi-node cluster (RAY_ADDRESS) the workers take the nodes in turn (``treasury.placement``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import ray

from risk.kernels import VarEs, var_and_es
from treasury.actor_names import NAMESPACE, var_worker_name
from treasury.placement import alive_nodes, nth_node
from treasury.priority import run_as_batch

# Rows per task: small enough to show progress and balance two workers, large enough that a
# task's ~1 ms of Ray overhead is noise next to its numpy work.
DEFAULT_CHUNK_ROWS = 10_000


@ray.remote(num_cpus=0.5, max_restarts=3, max_task_retries=3)
class VarWorker:
    def __init__(self) -> None:
        run_as_batch()

    def compute(
        self, flows: npt.NDArray[np.float64], lo: int, hi: int, confidence: float, min_days: int
    ) -> tuple[int, npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.int64]]:
        result = var_and_es(flows[lo:hi], confidence, min_days=min_days)
        return lo, result.var, result.es, result.days


class VarPool:
    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError("a VaR pool needs at least one worker")
        # On a multi-node cluster the workers take the nodes in turn, each node with its own cores.
        nodes = alive_nodes()
        self.workers = [
            VarWorker.options(  # type: ignore[attr-defined]
                name=var_worker_name(i), namespace=NAMESPACE, get_if_exists=True, scheduling_strategy=nth_node(i, nodes)
            ).remote()
            for i in range(workers)
        ]

    def compute(
        self,
        flows: npt.NDArray[np.float64],
        confidence: float = 0.99,
        min_days: int = 1,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        progress: Callable[[int, int], None] | None = None,
    ) -> VarEs:
        """Same numbers as ``var_and_es(flows)``, computed by the pool; ``progress(done, total)`` rows."""
        matrix = np.ascontiguousarray(flows, dtype=np.float64)
        rows = matrix.shape[0]
        var, es = np.full(rows, np.nan), np.full(rows, np.nan)
        days = np.zeros(rows, dtype=np.int64)
        if rows == 0:
            return VarEs(var, es, days)
        shared = ray.put(matrix)
        # Fewer rows than a chunk per worker: split them evenly, so every worker (every node) takes a share.
        step = max(1, min(chunk_rows, -(-rows // len(self.workers))))
        bounds = [(lo, min(lo + step, rows)) for lo in range(0, rows, step)]
        pending = [
            self.workers[i % len(self.workers)].compute.remote(shared, lo, hi, confidence, min_days)
            for i, (lo, hi) in enumerate(bounds)
        ]
        done = 0
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            lo, v, e, d = ray.get(ready[0])
            var[lo : lo + len(v)], es[lo : lo + len(v)], days[lo : lo + len(v)] = v, e, d
            done += len(v)
            if progress is not None:
                progress(done, rows)
        return VarEs(var, es, days)
