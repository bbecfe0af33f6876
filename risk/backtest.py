"""VaR backtesting: exceptions, Kupiec / Christoffersen likelihood ratios, Basel traffic light.

The forecast for day t is the historical VaR of the ``window`` days *before* t (never including t,
or the test would be rigged). An exception is a day whose loss ``-flow`` exceeds that forecast
(strictly: a loss equal to VaR is not an exception, matching "loss > VaR").

Statistics (p = 1 - confidence, T observed days, x exceptions, 0 * ln 0 taken as 0):

* Kupiec proportion of failures: ``LR_pof = -2 ln[(1-p)^(T-x) p^x] + 2 ln[(1-x/T)^(T-x) (x/T)^x]``,
  chi-square with 1 dof.
* Christoffersen independence, from the transition counts n_ij of the exception indicator
  (i = yesterday, j = today): ``LR_ind = -2 ln[(1-pi)^(n00+n10) pi^(n01+n11)]
  + 2 ln[(1-pi01)^n00 pi01^n01 (1-pi11)^n10 pi11^n11]``, chi-square 1 dof.
* Conditional coverage ``LR_cc = LR_pof + LR_ind``, chi-square 2 dof (the usual textbook sum,
  although LR_pof uses T days and LR_ind the T-1 transitions).

Chi-square survival functions in closed form, so no scipy: ``sf1(x) = erfc(sqrt(x/2))`` and
``sf2(x) = exp(-x/2)``.

Traffic light: Basel's zones are defined by the binomial cumulative probability of the exception
count under a correct model, ``P(X <= x)`` with X ~ Bin(T, p): green below 95 %, yellow from 95 %
to below 99.99 %, red from 99.99 %. For 250 days at 99 % this is exactly Basel's table (green 0-4,
yellow 5-9, red 10+, checked in the tests); other sample sizes and levels use the same thresholds
rather than a scaled count, which keeps the zones' false-alarm rates the same.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from risk.history import account_series, read_long
from risk.kernels import rolling_var

FloatVector = npt.NDArray[np.float64]

GREEN_BELOW = 0.95
RED_FROM = 0.9999
EXIT_OK = 0
EXIT_USAGE = 2


@dataclass(frozen=True)
class Transitions:
    """Counts of (yesterday, today) exception-indicator pairs."""

    n00: int
    n01: int
    n10: int
    n11: int


@dataclass(frozen=True)
class BacktestReport:
    """Everything a reviewer needs to judge a VaR model on one account's history."""

    confidence: float
    observations: int
    exceptions: int
    transitions: Transitions
    lr_pof: float
    p_pof: float
    lr_ind: float
    p_ind: float
    lr_cc: float
    p_cc: float
    zone: str
    window: int | None = None
    account_id: str | None = None

    @property
    def expected_exceptions(self) -> float:
        return self.observations * (1.0 - self.confidence)

    def render(self) -> str:
        """A plain-text report; p-values below 5 % are flagged because that is the usual test size."""
        t = self.transitions
        header = f"VaR backtest{f' for {self.account_id}' if self.account_id else ''}"
        window = f", window {self.window} days" if self.window else ""
        lines = [
            header,
            f"  confidence {self.confidence:.4g}{window}",
            f"  days tested          {self.observations}",
            f"  exceptions           {self.exceptions} (expected {self.expected_exceptions:.2f}, "
            f"rate {self.exceptions / self.observations:.4%})",
            f"  Kupiec POF           LR = {self.lr_pof:.4f}  p = {self.p_pof:.4f}{_flag(self.p_pof)}",
            f"  Christoffersen ind.  LR = {self.lr_ind:.4f}  p = {self.p_ind:.4f}{_flag(self.p_ind)}",
            f"  conditional coverage LR = {self.lr_cc:.4f}  p = {self.p_cc:.4f}{_flag(self.p_cc)}",
            f"  transitions          n00={t.n00} n01={t.n01} n10={t.n10} n11={t.n11}",
            f"  Basel traffic light  {self.zone.upper()}",
        ]
        return "\n".join(lines)


def chi2_sf1(x: float) -> float:
    """Survival function of chi-square with 1 dof: P(X > x) = erfc(sqrt(x / 2))."""
    return math.erfc(math.sqrt(max(x, 0.0) / 2.0))


def chi2_sf2(x: float) -> float:
    """Survival function of chi-square with 2 dof: P(X > x) = exp(-x / 2)."""
    return math.exp(-max(x, 0.0) / 2.0)


def kupiec_pof(observations: int, exceptions: int, p: float) -> float:
    """Kupiec's proportion-of-failures LR (see module docstring); >= 0."""
    t, x = observations, exceptions
    if t <= 0 or not 0 <= x <= t:
        raise ValueError(f"need 0 <= exceptions <= observations > 0, got {x} of {t}")
    rate = x / t
    null = _xlogy(t - x, 1.0 - p) + _xlogy(x, p)
    alternative = _xlogy(t - x, 1.0 - rate) + _xlogy(x, rate)
    return max(0.0, -2.0 * null + 2.0 * alternative)


def transitions(indicator: npt.NDArray[np.bool_]) -> Transitions:
    """Transition counts of a boolean exception sequence."""
    today = indicator[1:]
    yesterday = indicator[:-1]
    return Transitions(
        n00=int((~yesterday & ~today).sum()),
        n01=int((~yesterday & today).sum()),
        n10=int((yesterday & ~today).sum()),
        n11=int((yesterday & today).sum()),
    )


def christoffersen_ind(counts: Transitions) -> float:
    """Christoffersen's independence LR (see module docstring); 0 when there are no transitions."""
    c = counts
    total = c.n00 + c.n01 + c.n10 + c.n11
    if total == 0:
        return 0.0
    pi = (c.n01 + c.n11) / total
    pi01 = _ratio(c.n01, c.n00 + c.n01)
    pi11 = _ratio(c.n11, c.n10 + c.n11)
    null = _xlogy(c.n00 + c.n10, 1.0 - pi) + _xlogy(c.n01 + c.n11, pi)
    alternative = _xlogy(c.n00, 1.0 - pi01) + _xlogy(c.n01, pi01) + _xlogy(c.n10, 1.0 - pi11) + _xlogy(c.n11, pi11)
    return max(0.0, -2.0 * null + 2.0 * alternative)


def binomial_cdf(x: int, n: int, p: float) -> float:
    """P(X <= x) for X ~ Bin(n, p), summed in log space (lgamma) so large n cannot overflow."""
    if x < 0:
        return 0.0
    if x >= n:
        return 1.0
    log_p, log_q = math.log(p), math.log1p(-p)
    total = 0.0
    for k in range(x + 1):
        log_comb = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
        total += math.exp(log_comb + k * log_p + (n - k) * log_q)
    return min(total, 1.0)


def traffic_light(exceptions: int, observations: int, confidence: float = 0.99) -> str:
    """Basel zone ("green", "yellow", "red") from the binomial cumulative probability."""
    cumulative = binomial_cdf(exceptions, observations, 1.0 - confidence)
    if cumulative < GREEN_BELOW:
        return "green"
    return "yellow" if cumulative < RED_FROM else "red"


def var_forecasts(flows: npt.ArrayLike, window: int, confidence: float = 0.99, min_days: int = 1) -> FloatVector:
    """VaR forecast per day from the ``window`` days before it (NaN for the first ``window`` days)."""
    series = np.asarray(flows, dtype=np.float64).reshape(1, -1)
    trailing = rolling_var(series, window, confidence, min_days)[0]
    forecast = np.full(trailing.shape, np.nan)
    forecast[1:] = trailing[:-1]
    return forecast


def backtest(
    flows: npt.ArrayLike,
    var: npt.ArrayLike,
    confidence: float = 0.99,
    window: int | None = None,
    account_id: str | None = None,
) -> BacktestReport:
    """Backtest aligned daily flows against VaR forecasts; days without either are skipped."""
    _check_backtest_confidence(confidence)
    flow = np.asarray(flows, dtype=np.float64)
    forecast = np.asarray(var, dtype=np.float64)
    if flow.shape != forecast.shape or flow.ndim != 1:
        raise ValueError(f"flows and var must be 1-D of equal length, got {flow.shape} and {forecast.shape}")
    usable = ~np.isnan(flow) & ~np.isnan(forecast)
    observations = int(usable.sum())
    if observations == 0:
        raise ValueError("no day has both a flow and a VaR forecast: history shorter than the window?")
    indicator = -flow[usable] > forecast[usable]
    exceptions = int(indicator.sum())
    p = 1.0 - confidence
    counts = transitions(indicator)
    lr_pof = kupiec_pof(observations, exceptions, p)
    lr_ind = christoffersen_ind(counts)
    lr_cc = lr_pof + lr_ind
    return BacktestReport(
        confidence=confidence,
        observations=observations,
        exceptions=exceptions,
        transitions=counts,
        lr_pof=lr_pof,
        p_pof=chi2_sf1(lr_pof),
        lr_ind=lr_ind,
        p_ind=chi2_sf1(lr_ind),
        lr_cc=lr_cc,
        p_cc=chi2_sf2(lr_cc),
        zone=traffic_light(exceptions, observations, confidence),
        window=window,
        account_id=account_id,
    )


def plot_backtest(
    flows: npt.ArrayLike,
    var: npt.ArrayLike,
    path: str | Path,
    dates: npt.ArrayLike | None = None,
    title: str | None = None,
) -> Path:
    """PNG of daily flows against the -VaR line, exceptions marked.

    Uses matplotlib's object API with the Agg canvas directly (no pyplot), so it neither needs a
    display nor touches global backend state in a process that may be serving requests.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    flow = np.asarray(flows, dtype=np.float64)
    forecast = np.asarray(var, dtype=np.float64)
    x_axis = np.arange(len(flow)) if dates is None else np.asarray(dates)
    breach = ~np.isnan(forecast) & (-flow > forecast)
    figure = Figure(figsize=(11, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(x_axis, flow, color="tab:blue", linewidth=0.8, label="daily net flow")
    axes.plot(x_axis, -forecast, color="tab:red", linewidth=1.2, label="-VaR (forecast)")
    axes.scatter(x_axis[breach], flow[breach], color="black", marker="x", zorder=3, label="exception")
    axes.axhline(0.0, color="grey", linewidth=0.5)
    axes.set_title(title or "VaR backtest")
    axes.set_ylabel("USD")
    axes.legend(loc="best")
    figure.tight_layout()
    target = Path(path)
    figure.savefig(target, format="png")
    return target


def run_backtest_cli(path: str, confidence: float, window: int, account: str | None, png: str | None) -> int:
    """Print the report (and write the PNG) for one account; errors to stderr, exit code 2.

    The exit code does not encode the zone: a red zone is a finding to report, not a failure of
    the command.
    """
    try:
        _check_backtest_confidence(confidence)
        account_id, dates, flows = account_series(read_long(path), account)
        forecast = var_forecasts(flows, window, confidence)
        report = backtest(flows, forecast, confidence, window=window, account_id=account_id)
        if png:
            plot_backtest(flows, forecast, png, dates=dates, title=f"VaR backtest: {account_id}")
    except (ValueError, OSError) as exc:
        print(f"treasury-orch var backtest: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(report.render())
    if png:
        print(f"plot written to {png}")
    return EXIT_OK


def _check_backtest_confidence(confidence: float) -> None:
    """A 100 % VaR predicts zero exceptions, for which the likelihood ratios are undefined."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1) for a backtest, got {confidence!r}")


def _xlogy(x: float, y: float) -> float:
    """x * ln(y) with 0 * ln(0) = 0, the convention that makes the LR formulas total."""
    return 0.0 if x == 0 else x * math.log(y)


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def _flag(p_value: float) -> str:
    return "  << reject at 5 %" if p_value < 0.05 else ""
