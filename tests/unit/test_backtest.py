"""Backtest statistics against values worked by hand (arithmetic in the comments)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from risk.backtest import (
    BacktestReport,
    Transitions,
    backtest,
    binomial_cdf,
    chi2_sf1,
    chi2_sf2,
    christoffersen_ind,
    kupiec_pof,
    plot_backtest,
    run_backtest_cli,
    traffic_light,
    transitions,
    var_forecasts,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EXCEPTION_DAYS = (10, 11, 50, 100, 200)


def five_exception_year() -> tuple[np.ndarray, np.ndarray]:
    """250 days, VaR 1.0 every day, losses of 2.0 on EXCEPTION_DAYS and exactly 1.0 on day 30."""
    flows = np.zeros(250)
    flows[list(EXCEPTION_DAYS)] = -2.0
    flows[30] = -1.0  # loss == VaR: not an exception ("loss > VaR")
    return flows, np.ones(250)


def test_kupiec_five_exceptions_in_250_days() -> None:
    # T = 250, x = 5, p = 0.01
    # null        = 245 ln 0.99 + 5 ln 0.01 = -2.462332 + -23.025851 = -25.488183
    # alternative = 245 ln 0.98 + 5 ln 0.02 = -4.949663 + -19.560115 = -24.509778
    # LR_pof = -2(-25.488183) + 2(-24.509778) = 50.976366 - 49.019557 = 1.956810
    # p = erfc(sqrt(1.956810 / 2)) = erfc(0.989146) = 0.161855
    lr = kupiec_pof(250, 5, 0.01)
    assert lr == pytest.approx(1.956810, abs=1e-6)
    assert chi2_sf1(lr) == pytest.approx(0.161855, abs=1e-6)


def test_kupiec_zero_exceptions() -> None:
    # x = 0: null = 250 ln 0.99 = -2.512584; alternative = 250 ln 1 + 0 ln 0 = 0 (0 ln 0 := 0)
    # LR_pof = -2(-2.512584) = 5.025168
    assert kupiec_pof(250, 0, 0.01) == pytest.approx(5.025168, abs=1e-6)


def test_kupiec_ten_exceptions() -> None:
    # x = 10: null = 240 ln 0.99 + 10 ln 0.01 = -2.412081 - 46.051702 = -48.463782
    #         alternative = 240 ln 0.96 + 10 ln 0.04 = -9.797243 - 32.188758 = -41.986037
    # LR_pof = 96.927565 - 83.972074 = 12.955491
    assert kupiec_pof(250, 10, 0.01) == pytest.approx(12.955491, abs=1e-6)


def test_kupiec_all_exceptions_and_invalid_counts() -> None:
    # x = T = 4, p = 0.5: null = 4 ln 0.5; alternative = 0 ln 0 + 4 ln 1 = 0 -> LR = -8 ln 0.5 = 5.545177
    assert kupiec_pof(4, 4, 0.5) == pytest.approx(5.545177, abs=1e-6)
    with pytest.raises(ValueError):
        kupiec_pof(0, 0, 0.01)
    with pytest.raises(ValueError):
        kupiec_pof(5, 6, 0.01)


def test_transitions_and_christoffersen_by_hand() -> None:
    flows, var = five_exception_year()
    indicator = -flows > var
    counts = transitions(indicator)
    # Exceptions on days 10, 11, 50, 100, 200: entries 9->10, 49->50, 99->100, 199->200 are 0->1 (4),
    # 10->11 is 1->1 (1), leaving 11->12, 50->51, 100->101, 200->201 as 1->0 (4); 249 - 9 = 240 are 0->0.
    assert counts == Transitions(n00=240, n01=4, n10=4, n11=1)
    # pi = 5/249, pi01 = 4/244, pi11 = 1/5
    # null        = 244 ln(1 - 5/249) + 5 ln(5/249)                 = -4.949460 - 19.540075 = -24.489535
    # alternative = 240 ln(240/244) + 4 ln(4/244) + 4 ln(4/5) + ln(1/5)
    #             = -3.967032 - 16.443495 - 0.892574 - 1.609438       = -22.912540
    # LR_ind = 48.979069 - 45.825081 = 3.153989
    lr_ind = christoffersen_ind(counts)
    assert lr_ind == pytest.approx(3.153989, abs=1e-6)


def test_christoffersen_without_transitions() -> None:
    assert christoffersen_ind(Transitions(0, 0, 0, 0)) == 0.0
    # No exceptions at all: pi = pi01 = 0, every term is 0 ln 0 or n ln 1 -> LR_ind = 0
    assert christoffersen_ind(Transitions(249, 0, 0, 0)) == 0.0


def test_full_backtest_report() -> None:
    flows, var = five_exception_year()
    report = backtest(flows, var, 0.99, window=250, account_id="ACC-1")
    assert (report.observations, report.exceptions) == (250, 5)
    assert report.lr_pof == pytest.approx(1.956810, abs=1e-6)
    assert report.lr_ind == pytest.approx(3.153989, abs=1e-6)
    # LR_cc = 1.956810 + 3.153989 = 5.110799; p = exp(-2.555400) = e^-2.5 * e^-0.055400
    #   = 0.082085 * 0.946107 = 0.077661
    assert report.lr_cc == pytest.approx(5.110799, abs=1e-6)
    assert report.p_cc == pytest.approx(0.077661, abs=1e-6)
    assert report.p_ind == pytest.approx(math.erfc(math.sqrt(3.153989 / 2)), abs=1e-6)
    assert report.zone == "yellow"
    assert report.expected_exceptions == pytest.approx(2.5)
    text = report.render()
    assert "ACC-1" in text and "YELLOW" in text and "exceptions           5" in text
    assert "<< reject" not in text  # every p-value is above 5 %


def test_render_flags_rejections_and_skips_missing_days() -> None:
    flows = np.full(100, -2.0)
    flows[0] = np.nan  # skipped
    var = np.ones(100)
    var[1] = np.nan  # skipped
    report = backtest(flows, var, 0.95)
    assert (report.observations, report.exceptions) == (98, 98)
    assert report.zone == "red"
    text = report.render()
    assert "<< reject at 5 %" in text and "VaR backtest\n" in text


@pytest.mark.parametrize(
    ("exceptions", "zone"), [(0, "green"), (4, "green"), (5, "yellow"), (9, "yellow"), (10, "red"), (25, "red")]
)
def test_basel_traffic_light_250_days_at_99(exceptions: int, zone: str) -> None:
    assert traffic_light(exceptions, 250, 0.99) == zone


def test_binomial_cdf_matches_basel_table() -> None:
    # Basel (1996) table for 250 days at 99 %: cumulative probability 89.22 % at 4, 95.88 % at 5,
    # 99.97 % at 9, 99.99 % at 10. Check against an exact-integer computation too.
    for x, basel in ((4, 0.8922), (5, 0.9588), (9, 0.9997), (10, 0.9999)):
        exact = sum(math.comb(250, k) * 0.01**k * 0.99 ** (250 - k) for k in range(x + 1))
        assert binomial_cdf(x, 250, 0.01) == pytest.approx(exact, rel=1e-12)
        assert binomial_cdf(x, 250, 0.01) == pytest.approx(basel, abs=1e-4)
    assert binomial_cdf(-1, 250, 0.01) == 0.0
    assert binomial_cdf(250, 250, 0.01) == 1.0


def test_traffic_light_other_sample_sizes_use_the_same_probabilities() -> None:
    # 500 days at 99 %: the zone changes exactly where P(X <= x) crosses 95 % and 99.99 %.
    zones = [traffic_light(x, 500, 0.99) for x in range(30)]
    cdf = [sum(math.comb(500, k) * 0.01**k * 0.99 ** (500 - k) for k in range(x + 1)) for x in range(30)]
    expected = ["green" if c < 0.95 else "yellow" if c < 0.9999 else "red" for c in cdf]
    assert zones == expected
    assert zones.index("yellow") == 9 and zones.index("red") == 15


def test_chi2_survival_functions() -> None:
    # 95 % critical values: 3.841459 (1 dof), 5.991465 (2 dof)
    assert chi2_sf1(3.841459) == pytest.approx(0.05, abs=1e-6)
    assert chi2_sf2(5.991465) == pytest.approx(0.05, abs=1e-6)
    assert chi2_sf1(0.0) == 1.0 and chi2_sf2(0.0) == 1.0


def test_var_forecasts_use_only_previous_days() -> None:
    # window 2 at 99 %: n*p - 1 < 0 -> k = 0, the worse of the two previous days.
    forecast = var_forecasts([-1.0, -2.0, -3.0, -4.0, -5.0], window=2, confidence=0.99)
    np.testing.assert_array_equal(forecast, [np.nan, np.nan, 2.0, 3.0, 4.0])


def test_backtest_input_errors() -> None:
    with pytest.raises(ValueError, match="equal length"):
        backtest(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="no day"):
        backtest(np.zeros(3), np.full(3, np.nan))
    with pytest.raises(ValueError, match="confidence"):
        backtest(np.zeros(3), np.zeros(3), 1.0)


def test_plot_is_a_png(tmp_path: Path) -> None:
    flows, var = five_exception_year()
    target = plot_backtest(flows, var, tmp_path / "bt.png")
    assert target.read_bytes()[:8] == PNG_MAGIC


def _write_history(path: Path, accounts: tuple[str, ...], days: int, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    dates = np.arange(np.datetime64("2023-01-02"), np.datetime64("2023-01-02") + days)
    lines = ["account_id,date,net_flow_usd"]
    for account in accounts:
        lines += [f"{account},{d},{v:.4f}" for d, v in zip(dates, rng.normal(0, 1000, days), strict=True)]
    path.write_text("\n".join(lines) + "\n")


def test_cli_prints_report_and_writes_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "flows.csv"
    _write_history(source, ("ACC-1",), 300)
    png = tmp_path / "out.png"
    assert run_backtest_cli(str(source), 0.99, 250, None, str(png)) == 0
    out = capsys.readouterr().out
    assert "VaR backtest for ACC-1" in out and "days tested          50" in out
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_cli_without_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "flows.csv"
    _write_history(source, ("A", "B"), 40)
    assert run_backtest_cli(str(source), 0.95, 20, "B", None) == 0
    assert "VaR backtest for B" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("account", "confidence", "window", "message"),
    [
        (None, 0.99, 20, "2 accounts"),
        ("ZZZ", 0.99, 20, "not found"),
        ("A", 1.0, 20, "confidence"),
        ("A", 0.99, 40, "shorter than the window"),
    ],
)
def test_cli_errors_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    account: str | None,
    confidence: float,
    window: int,
    message: str,
) -> None:
    source = tmp_path / "flows.csv"
    _write_history(source, ("A", "B"), 40)
    assert run_backtest_cli(str(source), confidence, window, account, None) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""


def test_cli_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_backtest_cli(str(tmp_path / "nope.csv"), 0.99, 250, None, None) == 2
    assert "nope.csv" in capsys.readouterr().err


def test_report_is_a_frozen_dataclass() -> None:
    report = backtest(*five_exception_year())
    with pytest.raises(AttributeError):
        report.exceptions = 0  # type: ignore[misc]
    assert isinstance(report, BacktestReport)
