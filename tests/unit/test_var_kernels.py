"""Properties of the VaR / ES kernels against numpy's inverted-CDF quantile, the audit reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from risk import kernels
from risk.kernels import (
    describe_days,
    expected_shortfall,
    historical_var,
    order_statistic_index,
    rolling_var,
    tail_probability,
    var_and_es,
)

CONFIDENCES = st.one_of(
    st.sampled_from([0.99, 0.975, 0.95, 0.9, 0.999, 0.5, 1.0]),
    st.floats(min_value=0.01, max_value=1.0, exclude_min=True),
)
FINITE = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)


@st.composite
def flow_matrices(draw: st.DrawFn, max_rows: int = 6, max_days: int = 80) -> np.ndarray:
    """Float matrices with ties (small integers) or continuous values, and sometimes NaN days."""
    rows = draw(st.integers(1, max_rows))
    days = draw(st.integers(1, max_days))
    elements = draw(st.sampled_from([FINITE, st.integers(-3, 3).map(float)]))
    matrix = draw(hnp.arrays(np.float64, (rows, days), elements=elements))
    if draw(st.booleans()):
        mask = draw(hnp.arrays(np.bool_, (rows, days)))
        matrix = np.where(mask, np.nan, matrix)
    return matrix


def reference_var(row: np.ndarray, confidence: float) -> float:
    """The DESIGN.md definition, literally: max(0, -np.quantile(observed, 1 - c, inverted_cdf))."""
    observed = row[~np.isnan(row)]
    if observed.size == 0:
        return math.nan
    return max(0.0, -float(np.quantile(observed, 1 - confidence, method="inverted_cdf")))


def reference_es(row: np.ndarray, confidence: float) -> float:
    """Mean loss of the k+1 worst days, k = max(0, ceil(n*p - 1)) in plain Python float arithmetic."""
    observed = np.sort(row[~np.isnan(row)])
    if observed.size == 0:
        return math.nan
    k = max(0, math.ceil(observed.size * (1 - confidence) - 1))
    return max(0.0, -float(np.mean(observed[: k + 1])))


def assert_same(actual: np.ndarray, expected: list[float]) -> None:
    np.testing.assert_array_equal(actual, np.array(expected, dtype=np.float64))


@settings(deadline=None)
@given(flow_matrices(), CONFIDENCES)
def test_var_is_numpy_inverted_cdf_quantile_exactly(flows: np.ndarray, confidence: float) -> None:
    assert_same(historical_var(flows, confidence), [reference_var(row, confidence) for row in flows])


@settings(deadline=None)
@given(flow_matrices(), CONFIDENCES, CONFIDENCES)
def test_var_is_non_decreasing_in_confidence(flows: np.ndarray, c1: float, c2: float) -> None:
    low, high = sorted((c1, c2))
    v_low, v_high = historical_var(flows, low), historical_var(flows, high)
    observed = ~np.isnan(v_low)
    assert (v_low[observed] <= v_high[observed]).all()


@settings(deadline=None)
@given(flow_matrices(), CONFIDENCES, st.floats(min_value=1e-3, max_value=1e3))
def test_var_is_positively_homogeneous(flows: np.ndarray, confidence: float, scale: float) -> None:
    scaled = scale * flows
    # Exact against the definition applied to the scaled data ...
    assert_same(historical_var(scaled, confidence), [reference_var(row, confidence) for row in scaled])
    # ... and a * VaR(x): x -> fl(a * x) is monotone for a > 0, so the order statistic of the scaled
    # row is fl(a * x_(k)) and even the rounding agrees - exact equality, not approximate.
    np.testing.assert_array_equal(historical_var(scaled, confidence), scale * historical_var(flows, confidence))


@settings(deadline=None)
@given(flow_matrices(), CONFIDENCES)
def test_es_is_tail_mean_and_at_least_var(flows: np.ndarray, confidence: float) -> None:
    var, es, days = var_and_es(flows, confidence)
    observed = days > 0
    assert (es[observed] >= var[observed]).all()
    np.testing.assert_allclose(es, [reference_es(row, confidence) for row in flows], rtol=1e-12, atol=1e-6)
    assert_same(days.astype(np.float64), [float((~np.isnan(row)).sum()) for row in flows])
    assert_same(expected_shortfall(flows, confidence), list(es))


@settings(deadline=None)
@given(flow_matrices(max_rows=4, max_days=60), st.integers(1, 65), CONFIDENCES, st.integers(1, 5))
def test_rolling_equals_per_window_var(series: np.ndarray, window: int, confidence: float, min_days: int) -> None:
    rolled = rolling_var(series, window, confidence, min_days)
    assert rolled.shape == series.shape
    assert np.isnan(rolled[:, : window - 1]).all()
    for end in range(window - 1, series.shape[1]):
        expected = historical_var(series[:, end - window + 1 : end + 1], confidence, min_days)
        np.testing.assert_array_equal(rolled[:, end], expected)


def test_order_statistic_index_matches_numpy_for_every_n() -> None:
    rng = np.random.default_rng(7)
    for confidence in (0.99, 0.975, 0.95, 0.9, 0.5, 0.999):
        p = tail_probability(confidence)
        for n in range(1, 1001):
            values = rng.permutation(n).astype(np.float64)  # distinct: value == sorted position
            expected = int(np.quantile(values, p, method="inverted_cdf"))
            assert int(order_statistic_index(n, p)) == expected, (confidence, n)


def test_250_days_at_99_is_third_worst_day() -> None:
    flows = np.arange(1.0, 251.0)[np.newaxis, :] * -1.0  # losses 1..250, worst day = -250
    assert_same(historical_var(flows, 0.99), [248.0])
    # ES: mean of the 3 worst losses 250, 249, 248.
    assert_same(expected_shortfall(flows, 0.99), [249.0])


def test_100_days_at_99_follows_numpy_float_rounding() -> None:
    # 1 - 0.99 = 0.010000000000000009, so n*p - 1 = 8.9e-16 > 0 and numpy takes the 2nd-worst day.
    flows = -np.arange(1.0, 101.0)[np.newaxis, :]
    assert_same(historical_var(flows, 0.99), [99.0])
    assert reference_var(flows[0], 0.99) == 99.0


def test_gains_give_zero_var_and_zero_es() -> None:
    assert_same(historical_var(np.array([[1.0, 2.0, 3.0]])), [0.0])
    assert_same(expected_shortfall(np.array([[1.0, 2.0, 3.0]])), [0.0])


def test_missing_days_are_skipped_and_counted() -> None:
    flows = np.array(
        [
            [np.nan, -5.0, np.nan, -1.0],  # 2 observed days: worst is -5
            [np.nan, np.nan, np.nan, np.nan],  # nothing observed
            [-3.0, -2.0, -1.0, 0.0],
        ]
    )
    var, es, days = var_and_es(flows, 0.99)
    assert_same(var, [5.0, math.nan, 3.0])
    assert_same(es, [5.0, math.nan, 3.0])
    assert days.tolist() == [2, 0, 4]


def test_min_days_blanks_short_histories_but_keeps_counts() -> None:
    flows = np.array([[-1.0, np.nan, np.nan], [-1.0, -2.0, -3.0]])
    result = var_and_es(flows, 0.99, min_days=2)
    assert_same(result.var, [math.nan, 3.0])
    assert result.days.tolist() == [1, 3]


def test_single_observation() -> None:
    assert_same(historical_var(np.array([[-7.5]])), [7.5])


def test_zero_days_matrix() -> None:
    result = var_and_es(np.empty((2, 0)))
    assert np.isnan(result.var).all() and np.isnan(result.es).all()
    assert result.days.tolist() == [0, 0]


def test_chunks_with_and_without_missing_days(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small chunks force mixed partition (complete) and sort (with NaN) chunks in one call."""
    monkeypatch.setattr(kernels, "_CHUNK_BYTES", 3 * 20 * 8)
    rng = np.random.default_rng(3)
    flows = rng.standard_normal((17, 20))
    flows[5, 3] = np.nan
    flows[12, :] = np.nan
    assert_same(historical_var(flows, 0.95), [reference_var(row, 0.95) for row in flows])


def test_rolling_chunks_over_accounts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernels, "_ROLLING_CHUNK_BYTES", 1)
    rng = np.random.default_rng(4)
    series = rng.standard_normal((5, 40))
    series[2, 10:15] = np.nan
    rolled = rolling_var(series, 12, 0.9)
    for end in range(11, 40):
        np.testing.assert_array_equal(rolled[:, end], historical_var(series[:, end - 11 : end + 1], 0.9))


def test_rolling_window_longer_than_history_is_all_nan() -> None:
    assert np.isnan(rolling_var(np.zeros((2, 3)), 4)).all()


def test_rolling_250_days_at_99() -> None:
    rng = np.random.default_rng(5)
    series = rng.standard_normal((3, 600))
    rolled = rolling_var(series, 250, 0.99)
    for end in (249, 250, 499, 500, 599):
        assert_same(rolled[:, end], [reference_var(row, 0.99) for row in series[:, end - 249 : end + 1]])


@pytest.mark.parametrize("confidence", [0.0, -0.1, 1.01, math.nan])
def test_confidence_out_of_range(confidence: float) -> None:
    with pytest.raises(ValueError, match="confidence"):
        historical_var(np.zeros((1, 3)), confidence)


@pytest.mark.parametrize("min_days", [0, -1, True, 1.5])
def test_min_days_must_be_positive_integer(min_days: object) -> None:
    with pytest.raises(ValueError, match="min_days"):
        historical_var(np.zeros((1, 3)), 0.99, min_days)  # type: ignore[arg-type]


@pytest.mark.parametrize("window", [0, True, 2.0])
def test_window_must_be_positive_integer(window: object) -> None:
    with pytest.raises(ValueError, match="window"):
        rolling_var(np.zeros((1, 3)), window)  # type: ignore[arg-type]


def test_one_dimensional_input_is_refused() -> None:
    with pytest.raises(ValueError, match="2-D"):
        historical_var(np.zeros(3))


def test_numpy_integer_window_accepted() -> None:
    assert rolling_var(np.zeros((1, 3)), np.int64(2)).shape == (1, 3)


def test_describe_days() -> None:
    assert describe_days(250, 250) == "VaR from 250 days"
    assert describe_days(40, 250) == "VaR from only 40 days (window 250)"
