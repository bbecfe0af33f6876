"""The ingress's latency autoscaling: the pure decision, the replica's window, and the options Serve gets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ray.serve.config import AutoscalingConfig, AutoscalingContext

from serve_app.rest.autoscaling import (
    LAST_SCALE_OUT,
    P95_METRIC,
    QUIET_SINCE,
    REQUESTS_METRIC,
    LatencyWindow,
    P95LatencyPolicy,
    ScalingParams,
    decide,
    tier_p95,
)
from serve_app.rest.deployment import MAX_ONGOING_REQUESTS, POLICY_PATH, autoscaling_config, ingress_options
from treasury.settings import ConfigError, RuntimeSettings

PARAMS = ScalingParams(p95_target_ms=800, min_replicas=1, max_replicas=4, scale_in_quiet_s=60, settle_s=20)


def test_above_target_scales_out_in_proportion_at_most_doubling() -> None:
    assert decide(1, 1000, 0, {}, PARAMS).replicas == 2  # 1.25x -> at least one more
    assert decide(2, 1300, 0, {}, PARAMS).replicas == 4  # 2 x 1.625 -> 4
    assert decide(1, 8000, 0, {}, PARAMS).replicas == 2  # never more than double per step
    assert decide(3, 8000, 0, {}, PARAMS).replicas == 4  # never above max


def test_waits_for_the_new_replicas_before_scaling_out_again() -> None:
    first = decide(1, 2000, 100, {}, PARAMS)
    assert first.replicas == 2 and first.state[LAST_SCALE_OUT] == 100
    held = decide(2, 2000, 110, first.state, PARAMS)
    assert held.replicas == 2 and "settling" in held.reason
    assert decide(2, 2000, 120, held.state, PARAMS).replicas == 4


def test_at_max_holds() -> None:
    d = decide(4, 5000, 0, {}, PARAMS)
    assert d.replicas == 4 and LAST_SCALE_OUT not in d.state


def test_scales_in_one_step_per_full_quiet_period() -> None:
    state: dict[str, object] = {}
    d = decide(3, 100, 1000, state, PARAMS)
    assert d.replicas == 3 and d.state[QUIET_SINCE] == 1000
    assert decide(3, 100, 1059, d.state, PARAMS).replicas == 3
    step = decide(3, 100, 1060, d.state, PARAMS)
    assert step.replicas == 2 and step.state[QUIET_SINCE] == 1060
    assert decide(2, 100, 1100, step.state, PARAMS).replicas == 2
    assert decide(2, 0, 1120, step.state, PARAMS).replicas == 1  # idle (no requests) is quiet too


def test_a_busy_reading_breaks_the_quiet_streak() -> None:
    quiet = decide(2, 100, 0, {}, PARAMS)
    busy = decide(2, 500, 30, quiet.state, PARAMS)  # below the target but above half of it
    assert busy.replicas == 2 and busy.state[QUIET_SINCE] is None and "not quiet" in busy.reason
    again = decide(2, 100, 70, busy.state, PARAMS)
    assert again.replicas == 2 and again.state[QUIET_SINCE] == 70


def test_never_below_min_and_no_report_holds() -> None:
    assert decide(1, 0, 10_000, {QUIET_SINCE: 0}, PARAMS).replicas == 1
    d = decide(2, None, 5, {QUIET_SINCE: 1}, PARAMS)
    assert d.replicas == 2 and d.state == {QUIET_SINCE: 1} and "no latency" in d.reason
    assert decide(9, None, 0, {}, PARAMS).replicas == 4  # bounds changed under a running count


@given(current=st.integers(0, 10), p95=st.none() | st.floats(0, 10_000), now=st.floats(0, 1e6),
       quiet=st.none() | st.floats(0, 1e6), last_out=st.none() | st.floats(0, 1e6))
def test_always_within_bounds_and_moves_the_right_way(current: int, p95: float | None, now: float,
                                                      quiet: float | None, last_out: float | None) -> None:
    d = decide(current, p95, now, {QUIET_SINCE: quiet, LAST_SCALE_OUT: last_out}, PARAMS)
    assert PARAMS.min_replicas <= d.replicas <= PARAMS.max_replicas
    bounded = min(max(current, 1), 4)
    if p95 is not None and p95 > PARAMS.p95_target_ms:
        assert d.replicas >= bounded
    else:
        assert d.replicas <= bounded


@pytest.mark.parametrize("kw", [
    {"p95_target_ms": 0}, {"min_replicas": 0}, {"min_replicas": 5}, {"scale_in_quiet_s": -1}, {"settle_s": -1},
])
def test_params_refuse_nonsense(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ScalingParams(**{**PARAMS.__dict__, **kw})


def test_window_reports_p95_of_recent_requests_only() -> None:
    w = LatencyWindow(window_s=10)
    assert w.stats(now=0) == {P95_METRIC: 0.0, REQUESTS_METRIC: 0.0}
    for i in range(1, 101):
        w.add(float(i), now=0)
    assert w.stats(now=5) == {P95_METRIC: 95.0, REQUESTS_METRIC: 100.0}
    w.add(3.0, now=12)
    assert w.stats(now=12) == {P95_METRIC: 3.0, REQUESTS_METRIC: 1.0}
    bounded = LatencyWindow(window_s=10, max_samples=3)
    for ms in (900.0, 1.0, 2.0, 3.0):
        bounded.add(ms, now=0)
    assert bounded.stats(now=0)[P95_METRIC] == 3.0
    w.add(7.0)  # the replica's own clock
    assert w.stats()[REQUESTS_METRIC] >= 1
    with pytest.raises(ValueError):
        LatencyWindow(0)


def test_tier_p95_is_the_slowest_replica() -> None:
    assert tier_p95(None) is None and tier_p95({}) is None
    assert tier_p95({"r1": 12.0, "r2": 950.0}) == 950.0


def context(target: int, p95s: dict[str, float] | None, state: dict[str, object], now: float = 1000.0,
            low: int = 1, high: int = 4) -> AutoscalingContext:
    """A real Serve context, as the controller builds it each tick."""
    return AutoscalingContext(
        deployment_id=None, deployment_name="Ingress",  # the policy never reads the id
        app_name="treasury", current_num_replicas=target, target_num_replicas=target, running_replicas=[],
        total_num_requests=0.0, total_queued_requests=0.0,
        aggregated_metrics=(lambda: {P95_METRIC: p95s}) if p95s is not None else (lambda: {}),
        raw_metrics={}, capacity_adjusted_min_replicas=low, capacity_adjusted_max_replicas=high,
        policy_state=state, last_scale_up_time=None, last_scale_down_time=None, current_time=now, config=None,
    )


def test_policy_reads_the_context_and_keeps_its_state(caplog: pytest.LogCaptureFixture) -> None:
    policy = P95LatencyPolicy(p95_target_ms=800, scale_in_quiet_s=30, settle_s=10)
    caplog.set_level("INFO", logger="ray.serve")
    replicas, state = policy(context(1, {"a": 100.0, "b": 1700.0}, {}))
    assert replicas == 2 and state[LAST_SCALE_OUT] == 1000.0  # at most doubling
    assert "Ingress: 1 -> 2 replicas: p95 1700.0 ms above 800 ms" in caplog.text
    assert policy(context(3, {"a": 2000.0}, state, now=1005.0))[0] == 3
    assert policy(context(3, None, state, now=1020.0)) == (3, state)
    replicas, state = policy(context(3, {"a": 10.0}, {}, now=2000.0))
    assert replicas == 3 and state[QUIET_SINCE] == 2000.0
    assert policy(context(3, {"a": 10.0}, state, now=2030.0))[0] == 2
    assert policy(context(2, {"a": 5000.0}, {}, high=2))[0] == 2  # capacity-adjusted bound
    ctx = context(1, {"a": 5000.0}, {})
    ctx.current_time = None
    assert policy(ctx)[1][LAST_SCALE_OUT] > 0  # falls back to the controller's clock


def test_ingress_options_are_what_serve_accepts() -> None:
    settings = RuntimeSettings(serve_p95_target_ms=250, serve_min_replicas=2, serve_max_replicas=6,
                               serve_scale_in_quiet_s=45, serve_latency_window_s=4)
    opts = ingress_options(settings)
    assert opts["max_ongoing_requests"] == MAX_ONGOING_REQUESTS and opts["ray_actor_options"]["num_cpus"] == 0
    assert opts["ray_actor_options"]["runtime_env"]["env_vars"]["SERVE_P95_TARGET_MS"] == "250.0"
    config = AutoscalingConfig(**autoscaling_config(settings))
    assert (config.min_replicas, config.max_replicas, config.look_back_period_s) == (2, 6, 4)
    assert config.metrics_interval_s < config.look_back_period_s
    assert config.upscale_delay_s == config.downscale_delay_s == 0
    assert config.policy.policy_function == POLICY_PATH == "serve_app.rest.autoscaling:P95LatencyPolicy"
    assert config.policy.get_policy() is P95LatencyPolicy
    assert config.policy.policy_kwargs == {"p95_target_ms": 250, "scale_in_quiet_s": 45, "settle_s": 8}


def test_settings_read_and_refuse_autoscaling_keys() -> None:
    s = RuntimeSettings.from_env({"SERVE_P95_TARGET_MS": "500", "SERVE_MIN_REPLICAS": "2", "SERVE_MAX_REPLICAS": "3",
                                  "SERVE_SCALE_IN_QUIET_S": "120", "SERVE_LATENCY_WINDOW_S": "5"})
    assert (s.serve_p95_target_ms, s.serve_min_replicas, s.serve_max_replicas) == (500, 2, 3)
    assert RuntimeSettings.from_env(s.as_env()) == s
    assert RuntimeSettings().serve_p95_target_ms == 800  # spec section 10
    for env, key in [({"SERVE_MIN_REPLICAS": "3", "SERVE_MAX_REPLICAS": "2"}, "SERVE_MAX_REPLICAS"),
                     ({"SERVE_P95_TARGET_MS": "0"}, "SERVE_P95_TARGET_MS"),
                     ({"SERVE_MIN_REPLICAS": "0"}, "SERVE_MIN_REPLICAS"),
                     ({"SERVE_SCALE_IN_QUIET_S": "-1"}, "SERVE_SCALE_IN_QUIET_S"),
                     ({"SERVE_LATENCY_WINDOW_S": "soon"}, "SERVE_LATENCY_WINDOW_S")]:
        with pytest.raises(ConfigError, match=f"^{key}: "):
            RuntimeSettings.from_env(env)
