"""Latency-based autoscaling of the REST ingress (spec section 10: scale out when P95 > 800 ms).

Three parts, kept apart so the decision can be tested without Ray:

- ``LatencyWindow`` lives in each replica: the ingress middleware adds every request's latency
  and the replica reports the window's P95 to the Serve controller (``record_autoscaling_stats``).
- ``decide`` is the pure decision: replica count in, replica count out, plus the little state it
  needs between ticks (when the quiet streak began, when it last scaled out).
- ``P95LatencyPolicy`` is the glue the Serve controller instantiates once (``policy_kwargs``) and
  calls every control-loop tick with an ``AutoscalingContext``.

This module imports nothing from the project or from Ray: Serve pickles it by value into the
controller, which must be able to load it on any node.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

P95_METRIC = "latency_p95_ms"
REQUESTS_METRIC = "requests_in_window"
# Quiet means P95 at or below this share of the target: the band between it and the target holds
# the count steady, so a tier that sits just under the threshold does not flap in and out.
QUIET_RATIO = 0.5
QUIET_SINCE = "quiet_since"
LAST_SCALE_OUT = "last_scale_out"
MAX_SAMPLES = 50_000
# Serve's own logger: in the controller it writes to logs/serve/controller_<pid>.log, where an
# operator looks for why the replica count changed.
log = logging.getLogger("ray.serve")


class LatencyWindow:
    """Request latencies of the last ``window_s`` seconds in one replica.

    Bounded by count as well as by time so a burst cannot grow it without limit; under such a
    burst the newest samples are the ones that matter.
    """

    def __init__(self, window_s: float, max_samples: int = MAX_SAMPLES) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        self.window_s = window_s
        self._samples: deque[tuple[float, float]] = deque(maxlen=max_samples)

    def add(self, latency_ms: float, now: float | None = None) -> None:
        self._samples.append((time.monotonic() if now is None else now, latency_ms))

    def _prune(self, now: float) -> None:
        horizon = now - self.window_s
        while self._samples and self._samples[0][0] < horizon:
            self._samples.popleft()

    def stats(self, now: float | None = None) -> dict[str, float]:
        """What the replica reports: P95 (nearest rank; 0 when idle) and how many requests it covers."""
        self._prune(time.monotonic() if now is None else now)
        values = sorted(ms for _, ms in self._samples)
        p95 = values[math.ceil(0.95 * len(values)) - 1] if values else 0.0
        return {P95_METRIC: float(p95), REQUESTS_METRIC: float(len(values))}


@dataclass(frozen=True)
class ScalingParams:
    """``settle_s``: after a scale-out, wait this long before the next one, so the next decision
    reads latencies measured with the new replicas serving (start-up plus one latency window)."""

    p95_target_ms: float
    min_replicas: int
    max_replicas: int
    scale_in_quiet_s: float
    settle_s: float

    def __post_init__(self) -> None:
        if self.p95_target_ms <= 0:
            raise ValueError("p95_target_ms must be positive")
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise ValueError("need 1 <= min_replicas <= max_replicas")
        if self.scale_in_quiet_s < 0 or self.settle_s < 0:
            raise ValueError("periods must not be negative")


@dataclass(frozen=True)
class Decision:
    replicas: int
    state: dict[str, Any]
    reason: str


def decide(current: int, p95_ms: float | None, now: float, state: Mapping[str, Any],
           params: ScalingParams) -> Decision:
    """The next replica count for the ingress.

    - P95 above the target: scale out in proportion to the overshoot (at least one replica, at
      most doubling), then let ``settle_s`` pass before scaling out again.
    - P95 at or below ``QUIET_RATIO`` x target for ``scale_in_quiet_s`` without a break: one
      replica fewer, and the quiet period starts again, so each further step waits as long.
    - In between, or with no report yet: hold. A reading that is not quiet breaks the streak.
    Always within [min_replicas, max_replicas].
    """
    bounded = min(max(current, params.min_replicas), params.max_replicas)
    new_state = dict(state)
    if p95_ms is None:
        return Decision(bounded, new_state, "no latency reported yet")
    if p95_ms > params.p95_target_ms:
        new_state[QUIET_SINCE] = None
        last_out = state.get(LAST_SCALE_OUT)
        if last_out is not None and now - float(last_out) < params.settle_s:
            return Decision(bounded, new_state, "above target, settling after the last scale-out")
        wanted = math.ceil(bounded * p95_ms / params.p95_target_ms)
        target = min(max(wanted, bounded + 1), 2 * bounded, params.max_replicas)
        if target > bounded:
            new_state[LAST_SCALE_OUT] = now
            return Decision(target, new_state, f"p95 {p95_ms:.1f} ms above {params.p95_target_ms:.0f} ms")
        return Decision(bounded, new_state, "above target at max_replicas")
    if p95_ms > params.p95_target_ms * QUIET_RATIO:
        new_state[QUIET_SINCE] = None
        return Decision(bounded, new_state, "below target, not quiet")
    since = state.get(QUIET_SINCE)
    if since is None:
        new_state[QUIET_SINCE] = now
        since = now
    if now - float(since) >= params.scale_in_quiet_s and bounded > params.min_replicas:
        new_state[QUIET_SINCE] = now
        return Decision(bounded - 1, new_state, f"quiet for {now - float(since):.0f} s")
    return Decision(bounded, new_state, "quiet")


def tier_p95(per_replica: Mapping[Any, float] | None) -> float | None:
    """The tier's P95 is its slowest replica's: the Bank-Connector sees whichever it is routed to."""
    if not per_replica:
        return None
    return max(float(v) for v in per_replica.values())


class P95LatencyPolicy:
    """Serve custom autoscaling policy (``AutoscalingPolicy(policy_function=..., policy_kwargs=...)``).

    Serve instantiates it once per deployment with the kwargs and calls it every control-loop
    tick; bounds come from the context (Serve adjusts them for target capacity) and the
    state travels in ``ctx.policy_state``, which Serve keeps between ticks.
    """

    def __init__(self, p95_target_ms: float, scale_in_quiet_s: float, settle_s: float) -> None:
        self.p95_target_ms = float(p95_target_ms)
        self.scale_in_quiet_s = float(scale_in_quiet_s)
        self.settle_s = float(settle_s)

    def __call__(self, ctx: Any) -> tuple[int, dict[str, Any]]:
        low = max(1, int(ctx.capacity_adjusted_min_replicas))
        params = ScalingParams(self.p95_target_ms, low, max(low, int(ctx.capacity_adjusted_max_replicas)),
                               self.scale_in_quiet_s, self.settle_s)
        metrics = ctx.aggregated_metrics or {}
        now = ctx.current_time if ctx.current_time is not None else time.time()
        current = int(ctx.target_num_replicas)
        decision = decide(current, tier_p95(metrics.get(P95_METRIC)), now, ctx.policy_state or {}, params)
        if decision.replicas != current:
            log.info("autoscaling %s: %d -> %d replicas: %s", ctx.deployment_name, current, decision.replicas,
                     decision.reason)
        return decision.replicas, decision.state
