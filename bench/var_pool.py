"""bench/var_pool: the VaR actor pool on 100,000 accounts x 250 days with 1 and 2 workers.

    .venv/bin/python -m bench.var_pool [--accounts 100000] [--days 250]

Prints seconds per run (best of 3, after a warm-up that creates the actors and ships the
matrix once) against the single-process kernel, and checks the numbers are identical.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable

import numpy as np
import ray

from risk.kernels import var_and_es
from risk.pool import VarPool
from treasury.actor_names import NAMESPACE


def best_of(runs: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=250)
    args = parser.parse_args()
    flows = np.random.default_rng(1).normal(0, 1e6, size=(args.accounts, args.days))
    direct = var_and_es(flows)
    print(f"single process: {best_of(3, lambda: var_and_es(flows)):.3f} s for {args.accounts:,} x {args.days}")
    ray.init(namespace=NAMESPACE, num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        for workers in (1, 2):
            pool = VarPool(workers)
            pooled = pool.compute(flows)  # warm-up: actors start
            same = np.array_equal(pooled.var, direct.var) and np.array_equal(pooled.es, direct.es)
            seconds = best_of(3, functools.partial(pool.compute, flows))
            print(f"pool, {workers} worker(s): {seconds:.3f} s (includes putting the matrix in the object store); "
                  f"identical to single process: {same}")
            for w in pool.workers:
                ray.kill(w)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
