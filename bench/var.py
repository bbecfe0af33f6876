"""VaR kernel benchmark: ``.venv/bin/python -m bench.var``.

Figures (no asserts on time, only on correctness):

1. ``historical_var`` on 100,000 accounts x 250 days, best of 3, pinned to one core.
2. The naive reference, a per-account ``np.quantile(..., method="inverted_cdf")`` loop, timed on a
   5,000-account subset and extrapolated linearly to 100,000 (it is a plain loop, so linear).
3. ``rolling_var`` (250-day window) on 1,000 accounts x 1,000 days against pandas'
   ``DataFrame.rolling(250).quantile(p, interpolation=...)``. For n = 250 and p = 1 - 0.99 the
   inverted-CDF index ceil(n*p - 1) = 2 equals pandas' 'lower' index floor(p*(n-1)) = floor(2.49) = 2,
   while 'higher' would be 3; both are measured to show which one coincides.
4. Peak RSS of the process.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from risk.kernels import historical_var, rolling_var

CONFIDENCE = 0.99
ACCOUNTS, DAYS = 100_000, 250
LOOP_SUBSET = 5_000
ROLL_ACCOUNTS, ROLL_DAYS, ROLL_WINDOW = 1_000, 1_000, 250


def best_of(repeats: int, func: Callable[[], object]) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = func()
        best = min(best, time.perf_counter() - start)
    return best, result


def pin_one_core() -> str:
    try:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    except (AttributeError, OSError) as exc:  # not Linux, or not permitted
        return f"not pinned ({exc})"
    return f"pinned to CPU {sorted(os.sched_getaffinity(0))}"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # ru_maxrss is KiB on Linux


def max_relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    both = ~np.isnan(a) & ~np.isnan(b)
    if not np.array_equal(np.isnan(a), np.isnan(b)):
        return float("inf")
    scale = np.maximum(np.abs(b[both]), 1e-300)
    return float(np.max(np.abs(a[both] - b[both]) / scale)) if both.any() else 0.0


def loop_var(flows: np.ndarray) -> np.ndarray:
    p = 1 - CONFIDENCE
    return np.array([max(0.0, -np.quantile(row, p, method="inverted_cdf")) for row in flows])


def bench_cross_section(rng: np.random.Generator) -> None:
    flows = rng.normal(0.0, 1e6, (ACCOUNTS, DAYS))
    seconds, var = best_of(3, lambda: historical_var(flows, CONFIDENCE))
    assert isinstance(var, np.ndarray)
    loop_seconds, loop_result = best_of(1, lambda: loop_var(flows[:LOOP_SUBSET]))
    assert isinstance(loop_result, np.ndarray)
    extrapolated = loop_seconds * ACCOUNTS / LOOP_SUBSET
    difference = max_relative_difference(var[:LOOP_SUBSET], loop_result)
    print(f"historical_var {ACCOUNTS:,} x {DAYS} @ {CONFIDENCE}: {seconds:.3f} s (best of 3, one core)")
    print(
        f"  np.quantile loop: {loop_seconds:.3f} s for {LOOP_SUBSET:,} accounts -> "
        f"{extrapolated:.2f} s extrapolated to {ACCOUNTS:,} (x{ACCOUNTS // LOOP_SUBSET}, linear)"
    )
    print(f"  speed-up vs loop: {extrapolated / seconds:.1f}x; max relative difference {difference:.3g}")
    print(f"  peak RSS so far: {peak_rss_mib():.0f} MiB (the input matrix alone is {flows.nbytes / 2**20:.0f} MiB)")

    holes = flows.copy()
    holes[rng.random(holes.shape) < 0.01] = np.nan  # ~1 % missing days forces the sort path
    nan_seconds, nan_var = best_of(3, lambda: historical_var(holes, CONFIDENCE))
    assert isinstance(nan_var, np.ndarray)
    nan_loop = np.array(
        [max(0.0, -np.quantile(r[~np.isnan(r)], 1 - CONFIDENCE, method="inverted_cdf")) for r in holes[:LOOP_SUBSET]]
    )
    print(
        f"  with ~1 % missing days (sort path): {nan_seconds:.3f} s; "
        f"max relative difference vs loop {max_relative_difference(nan_var[:LOOP_SUBSET], nan_loop):.3g}"
    )


def pandas_rolling(series: np.ndarray, interpolation: str) -> np.ndarray:
    frame = pd.DataFrame(series.T)
    quantile = frame.rolling(ROLL_WINDOW).quantile(1 - CONFIDENCE, interpolation=interpolation).to_numpy().T
    return np.maximum(0.0, -quantile)


def bench_rolling(rng: np.random.Generator) -> None:
    series = rng.normal(0.0, 1e6, (ROLL_ACCOUNTS, ROLL_DAYS))
    seconds, ours = best_of(3, lambda: rolling_var(series, ROLL_WINDOW, CONFIDENCE))
    assert isinstance(ours, np.ndarray)
    pandas_seconds, lower = best_of(3, lambda: pandas_rolling(series, "lower"))
    assert isinstance(lower, np.ndarray)
    higher = pandas_rolling(series, "higher")
    spot = [ROLL_WINDOW - 1, ROLL_DAYS // 2, ROLL_DAYS - 1]
    reference = np.array(
        [
            [
                max(0.0, -np.quantile(row[t - ROLL_WINDOW + 1 : t + 1], 1 - CONFIDENCE, method="inverted_cdf"))
                for t in spot
            ]
            for row in series
        ]
    )
    print(f"rolling_var {ROLL_ACCOUNTS:,} x {ROLL_DAYS:,}, window {ROLL_WINDOW}: {seconds:.3f} s (best of 3)")
    print(
        f"  pandas rolling quantile (interpolation='lower'): {pandas_seconds:.3f} s -> {pandas_seconds / seconds:.1f}x"
    )
    print(f"  max relative difference vs pandas 'lower':  {max_relative_difference(ours, lower):.3g}")
    print(f"  max relative difference vs pandas 'higher': {max_relative_difference(ours, higher):.3g} (expected > 0)")
    print(
        f"  max relative difference vs np.quantile at t={spot}: {max_relative_difference(ours[:, spot], reference):.3g}"
    )


def main() -> None:
    print(f"cpu: {pin_one_core()}; numpy {np.__version__}, pandas {pd.__version__}")
    rng = np.random.default_rng(20240601)
    bench_cross_section(rng)
    bench_rolling(rng)
    print(f"peak RSS (whole run, incl. the benchmark's own copies and pandas): {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
