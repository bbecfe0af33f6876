"""Historical VaR / expected-shortfall kernels over (accounts x days) float64 matrices.

Convention (DESIGN.md section 3): ``VaR = max(0, -q)`` where ``q`` is the empirical
``p = 1 - confidence`` quantile of the daily net flows with numpy's ``method="inverted_cdf"``.
That quantile is an *order statistic*: the ``k``-th smallest observation (0-based) with
``k = max(0, ceil(n * p - 1))``, evaluated in float64 exactly as numpy does. Selecting one order
statistic per row (``np.partition``) is O(days) instead of the per-account ``np.quantile`` call,
and it gives bit-identical numbers, which is what lets the risk check be audited against numpy.

Note the float arithmetic is part of the definition: ``1 - 0.99`` is ``0.010000000000000009``, so
with 250 days ``n * p - 1 = 1.5000000000000022`` (k = 2, the 3rd-worst day, as DESIGN.md says), but
with exactly 100 days ``n * p - 1 = 8.9e-16`` and numpy picks k = 1 (the 2nd-worst day), not the
worst. We reproduce numpy, not the real-number formula, because numpy is the reference.

Missing days are NaN and are skipped: each row uses its own count ``n_i`` of observed days. Rows with
fewer than ``min_days`` observations get NaN, and the counts are returned so callers can say
"VaR from only N days". Money is Decimal elsewhere; risk measures are float64 by design.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

FloatMatrix = npt.NDArray[np.float64]
FloatVector = npt.NDArray[np.float64]
IntVector = npt.NDArray[np.int64]

# Rows are processed in chunks of about this many bytes of input, so the partition / sort
# scratch space stays in cache-friendly, bounded memory whatever the number of accounts.
_CHUNK_BYTES = 8 * 1024 * 1024
# The rolling kernel keeps (m smallest) prefix and suffix tables; bound their size per chunk.
_ROLLING_CHUNK_BYTES = 64 * 1024 * 1024


class VarEs(NamedTuple):
    """VaR and ES per account plus the number of observed (non-NaN) days behind them."""

    var: FloatVector
    es: FloatVector
    days: IntVector


def tail_probability(confidence: float) -> float:
    """``p = 1 - confidence``, computed the same way as a caller of ``np.quantile`` would.

    Confidence must lie in (0, 1]; 1.0 means "the worst day".
    """
    if not 0.0 < confidence <= 1.0:  # also rejects NaN
        raise ValueError(f"confidence must be in (0, 1], got {confidence!r}")
    return 1.0 - float(confidence)


def order_statistic_index(n: npt.ArrayLike, p: float) -> npt.NDArray[np.intp]:
    """0-based index of the inverted-CDF ``p``-quantile among ``n`` sorted observations.

    Mirrors numpy's ``_inverted_cdf``: virtual index ``n * p - 1`` in float64, rounded *up* unless
    it is integral, then clipped at 0. Using the same float expression (not ``ceil(n*p) - 1`` or
    exact rationals) is what makes the result identical to ``np.quantile`` when ``n * p`` lands a
    rounding error away from an integer.
    """
    virtual = np.asarray(n, dtype=np.float64) * p - 1.0
    return np.maximum(np.ceil(virtual), 0.0).astype(np.intp)


def historical_var(flows: npt.ArrayLike, confidence: float = 0.99, min_days: int = 1) -> FloatVector:
    """Historical VaR per row of an (accounts x days) matrix; NaN days skipped.

    Equal to ``max(0, -np.quantile(row[~isnan(row)], 1 - confidence, method="inverted_cdf"))``
    for each row; NaN for rows with fewer than ``min_days`` observations.
    """
    return var_and_es(flows, confidence, min_days).var


def expected_shortfall(flows: npt.ArrayLike, confidence: float = 0.99, min_days: int = 1) -> FloatVector:
    """Historical expected shortfall per row: see :func:`var_and_es` for the exact definition."""
    return var_and_es(flows, confidence, min_days).es


def var_and_es(flows: npt.ArrayLike, confidence: float = 0.99, min_days: int = 1) -> VarEs:
    """VaR, ES and observed-day counts per row from one selection pass.

    ES definition: with ``k`` the VaR order-statistic index of the row, ES is the mean loss
    (``-flow``) of the ``k + 1`` worst days, i.e. the VaR day and every day at least as bad,
    floored at 0: ``ES = max(0, -mean(x_(0), ..., x_(k)))``. Every averaged day is <= the VaR day,
    so ES >= VaR mathematically; ``np.maximum(es, var)`` guards the last ulp of summation rounding
    so the invariant holds in float64 too. This discrete tail mean (no fractional weight on the
    boundary day) is chosen because it is reproducible by hand from the sorted history.
    """
    x = _as_matrix(flows, "flows")
    p = tail_probability(confidence)
    _check_min_days(min_days)
    accounts = x.shape[0]
    var = np.full(accounts, np.nan)
    es = np.full(accounts, np.nan)
    days = np.zeros(accounts, dtype=np.int64)
    if x.shape[1] == 0:
        return VarEs(var, es, days)
    for rows in _row_chunks(accounts, x.shape[1] * 8, _CHUNK_BYTES):
        var[rows], es[rows], days[rows] = _var_es_chunk(x[rows], p)
    thin = days < min_days
    var[thin] = np.nan
    es[thin] = np.nan
    return VarEs(var, es, days)


def rolling_var(
    series: npt.ArrayLike, window: int | np.integer[Any], confidence: float = 0.99, min_days: int = 1
) -> FloatMatrix:
    """VaR over each trailing ``window`` of an (accounts x T) matrix; column t uses days t-window+1..t.

    The first ``window - 1`` columns are NaN (no full window yet); NaN days inside a window are
    skipped and windows with fewer than ``min_days`` observations are NaN. Each value equals
    :func:`historical_var` of that window exactly.

    Why not partition every window: that is O(window) per output and 4x slower than pandas. Instead
    (a van Herk / Gil-Werman style scheme) the time axis is cut into blocks of ``window`` days; for
    each position we keep the ``m`` smallest values of the block's prefix and suffix (``m`` = the
    order-statistic rank for a full window, 3 at 250 days / 99 %), maintained by a branch-free
    sorted insertion. A window is a block suffix plus the next block's prefix, so its k-th smallest
    is a k-th-of-union of two sorted m-lists. Cost O(accounts * T * m), memory bounded by chunking
    over accounts. That suits VaR tails (m = 3 at 99 %, 13 at 95 %: 1,000 x 1,000 days in ~0.1-0.25 s,
    2-4x faster than pandas' skip list); for central quantiles (confidence 0.5, m = 125) it is ~4x
    *slower* than pandas, an accepted trade-off since this kernel exists for tail risk.
    """
    x = _as_matrix(series, "series")
    p = tail_probability(confidence)
    _check_min_days(min_days)
    if isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 1:
        raise ValueError(f"window must be a positive integer, got {window!r}")
    window = int(window)
    accounts, horizon = x.shape
    out = np.full((accounts, horizon), np.nan)
    if horizon < window:
        return out
    rank = int(order_statistic_index(window, p)) + 1  # k is non-decreasing in n: enough for any window
    row_bytes = (2 * rank + 4) * (horizon // window + 1) * window * 8
    for rows in _row_chunks(accounts, row_bytes, _ROLLING_CHUNK_BYTES):
        out[rows, window - 1 :] = _rolling_chunk(x[rows], window, p, rank, min_days)
    return out


def _as_matrix(values: npt.ArrayLike, name: str) -> FloatMatrix:
    """A 2-D float64 view of the input (no copy when it already is one)."""
    matrix = np.asarray(values, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (accounts x days) array, got shape {matrix.shape}")
    return matrix


def _check_min_days(min_days: int) -> None:
    if isinstance(min_days, bool) or not isinstance(min_days, int | np.integer) or min_days < 1:
        raise ValueError(f"min_days must be an integer >= 1, got {min_days!r}")


def _row_chunks(rows: int, bytes_per_row: int, budget: int) -> Iterator[slice]:
    step = max(1, budget // max(1, bytes_per_row))
    for start in range(0, rows, step):
        yield slice(start, min(rows, start + step))


def _var_es_chunk(x: FloatMatrix, p: float) -> tuple[FloatVector, FloatVector, IntVector]:
    """Select the order statistic for a block of rows: partition if complete, else sort."""
    missing = np.isnan(x)
    if not missing.any():
        n = x.shape[1]
        k = int(order_statistic_index(n, p))
        # After partitioning at k, columns 0..k hold the k+1 smallest values (unordered).
        tail = np.sort(np.partition(x, k, axis=1)[:, : k + 1], axis=1)
        ks = np.full(x.shape[0], k, dtype=np.intp)
        days = np.full(x.shape[0], n, dtype=np.int64)
    else:
        days = (~missing).sum(axis=1, dtype=np.int64)
        ks = order_statistic_index(days, p)
        tail = np.sort(x, axis=1)[:, : int(ks.max()) + 1]  # NaN sorts last: tail holds observed days
    quantile = np.take_along_axis(tail, ks[:, None], axis=1)[:, 0]
    var = np.maximum(0.0, -quantile)
    es = np.maximum(_tail_loss_mean(tail, ks), var)
    return var, es, days


def _tail_loss_mean(tail: FloatMatrix, ks: npt.NDArray[np.intp]) -> FloatVector:
    """``max(0, -mean(tail[i, :ks[i]+1]))`` per row; tail is sorted ascending."""
    keep = np.arange(tail.shape[1]) <= ks[:, None]
    total = np.where(keep, tail, 0.0).sum(axis=1)
    return np.maximum(0.0, -total / (ks + 1))


def _rolling_chunk(x: FloatMatrix, window: int, p: float, rank: int, min_days: int) -> FloatMatrix:
    """VaR for every full window of a block of rows: shape (rows, T - window + 1)."""
    rows, horizon = x.shape
    observed = ~np.isnan(x)
    cumulative = np.zeros((rows, horizon + 1), dtype=np.int64)
    np.cumsum(observed, axis=1, out=cumulative[:, 1:])
    days = cumulative[:, window:] - cumulative[:, :-window]
    windows = days.shape[1]
    prefix, suffix = _block_smallest(np.where(observed, x, np.inf), window, rank)
    # Window s = b * window + r is block b's suffix from r plus block b+1's prefix before r.
    full_blocks = suffix.shape[3] - 1
    ranks = np.full((rows, full_blocks * window), rank, dtype=np.intp)
    ranks[:, :windows] = order_statistic_index(days, p) + 1
    ranks_by_pos = ranks.reshape(rows, full_blocks, window).transpose(2, 0, 1)
    quantile = _kth_of_union(suffix[..., :-1], prefix[..., 1:], ranks_by_pos)
    quantile = quantile.transpose(1, 2, 0).reshape(rows, -1)[:, :windows]
    var = np.maximum(0.0, -quantile)
    var[days < min_days] = np.nan
    return var


def _block_smallest(x: FloatMatrix, window: int, m: int) -> tuple[FloatMatrix, FloatMatrix]:
    """Per block position, the m smallest (ascending, +inf padded) of the block's prefix / suffix.

    Blocks are ``window`` long and aligned at column 0, with one extra all-+inf block so every
    window start has a "next block". Layout (position, j, row, block), so each step of the scan
    works on contiguous (row, block) planes: ``prefix[r, j]`` is the (j+1)-th smallest of the
    block's days strictly before position r, ``suffix[r, j]`` of its days from r to the end.
    """
    rows, horizon = x.shape
    blocks = horizon // window + 1
    padded = np.full((rows, blocks * window), np.inf)
    padded[:, :horizon] = x
    cells = np.ascontiguousarray(padded.reshape(rows, blocks, window).transpose(2, 0, 1))
    prefix = np.empty((window, m, rows, blocks))
    suffix = np.empty((window, m, rows, blocks))
    prefix[0] = np.inf
    for pos in range(window - 1):
        _insert_sorted(prefix[pos], cells[pos], prefix[pos + 1])
    _insert_sorted(np.full((m, rows, blocks), np.inf), cells[window - 1], suffix[window - 1])
    for pos in range(window - 2, -1, -1):
        _insert_sorted(suffix[pos + 1], cells[pos], suffix[pos])
    return prefix, suffix


def _insert_sorted(smallest: FloatMatrix, value: FloatMatrix, out: FloatMatrix) -> None:
    """Insert ``value`` into ascending lists (axis 0) keeping the m smallest.

    Branch-free: ``new[j] = min(s[j], max(s[j-1], v))`` with ``new[0] = min(s[0], v)``.
    """
    np.minimum(smallest[0], value, out=out[0])
    np.minimum(smallest[1:], np.maximum(smallest[:-1], value), out=out[1:])


def _kth_of_union(a: FloatMatrix, b: FloatMatrix, ranks: npt.NDArray[np.intp]) -> FloatMatrix:
    """The ``ranks``-th smallest (1-based) of the union of ascending lists a and b (list axis 1).

    Classic identity: r-th smallest of A u B = min over i+j=r of max(A_(i), B_(j)), with A_(0) =
    B_(0) = -inf (taking i from A and j from B bounds the r-th smallest; the true split attains
    it). Without missing days every window has the same rank and the B_(j) are plain slices.
    """
    m = a.shape[1]
    result = np.full(ranks.shape, np.inf)
    if ranks.size and (ranks == ranks.flat[0]).all():
        rank = int(ranks.flat[0])
        for i in range(rank + 1):
            a_i = a[:, i - 1] if i > 0 else -np.inf
            b_j = b[:, rank - i - 1] if i < rank else -np.inf
            np.minimum(result, np.maximum(a_i, b_j), out=result)
        return result
    for i in range(m + 1):
        a_i = a[:, i - 1] if i > 0 else -np.inf
        from_b = ranks - i
        picked = np.take_along_axis(b, np.clip(from_b - 1, 0, m - 1)[:, None], axis=1)[:, 0]
        b_j = np.where(from_b > 0, picked, -np.inf)
        np.minimum(result, np.where(from_b >= 0, np.maximum(a_i, b_j), np.inf), out=result)
    return result


def describe_days(days: int, window: int) -> str:
    """Human wording for short histories, e.g. for an order's ``risk_checks``."""
    if days >= window:
        return f"VaR from {days} days"
    return f"VaR from only {days} days (window {window})"


__all__ = [
    "VarEs",
    "describe_days",
    "expected_shortfall",
    "historical_var",
    "order_statistic_index",
    "rolling_var",
    "tail_probability",
    "var_and_es",
]
