"""Metric definitions: the spec's names (section 8) plus what an operator needs.

Actors keep plain, mergeable snapshots (``ShardMetrics``); the REST ingress gathers them and
renders one Prometheus exposition at ``/metrics``. Ray's own metrics would carry a ``ray_``
prefix, so the spec's exact names are rendered here with ``prometheus_client``.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from treasury.order_status import AWAITING, UNPUBLISHED, OrderStatus

# 1 ms to 2 s, as issue 6 asks; +Inf is implicit.
LATENCY_BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
# Per-account VaR is exported for the riskiest accounts only: bounded cardinality, whatever the book.
VAR_TOP_ACCOUNTS = 20
# The ``outcome`` labels of ``treasury_balance_events_total``, every one exported (0 until it happens)
# so a dashboard or an alert on any of them has a series from the start. The same values as
# ``actors.account_state.Outcome`` (a test holds them equal; ``treasury`` may not import ``actors``).
BALANCE_EVENT_OUTCOMES: tuple[str, ...] = ("applied", "duplicate", "stale", "invalid", "future", "conflict")
# Ray Serve's own series, exported by every Ray node's metrics port (the `ray` group of the scrape
# target list, devstack/prometheus.py): the dashboard's replica and request-latency panels
# read them rather than a per-replica copy of ours, which each scrape would see only one of.
# The Prometheus integration test proves each of them arrives.
RAY_SERVE_METRICS: tuple[str, ...] = (
    "ray_serve_deployment_replica_healthy",
    "ray_serve_num_http_requests_total",
    "ray_serve_http_request_latency_ms_bucket",
)


class LatencyHistogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.total = 0.0

    def observe_many(self, values: Iterable[float]) -> None:
        for v in values:
            self.counts[bisect.bisect_left(LATENCY_BUCKETS, v)] += 1
            self.total += v


class Stopwatch:
    """Adds the time since the previous mark to a named phase: where a shard's batch, or the
    coordinator's submit, spends its time (their ``stats()``; bench/pipeline prints it per batch).
    ``clock``: wall time by default; ``time.process_time`` counts this process's CPU instead."""

    def __init__(self, sums: dict[str, float], clock: Callable[[], float] = time.perf_counter) -> None:
        self._sums = sums
        self._clock = clock
        self._last = clock()

    def __call__(self, phase: str) -> None:
        now = self._clock()
        self._sums[phase] = self._sums.get(phase, 0.0) + now - self._last
        self._last = now


@dataclass
class ShardMetrics:
    swept_usd: dict[str, Decimal] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    latency_sum: float = 0.0
    lag: dict[int, int] = field(default_factory=dict)
    var_bps: dict[str, float] = field(default_factory=dict)
    # Live configuration: the version this part applies (0: env/file configuration, no live update
    # yet) and, from the config watcher only, how many Consul snapshots it refused.
    config_version: int = 0
    config_rejected: int = 0


def merge(parts: Sequence[ShardMetrics]) -> ShardMetrics:
    out = ShardMetrics()
    for p in parts:
        for k, usd in p.swept_usd.items():
            out.swept_usd[k] = out.swept_usd.get(k, Decimal(0)) + usd
        for k, n in p.outcomes.items():
            out.outcomes[k] = out.outcomes.get(k, 0) + n
        out.latency_counts = [a + b for a, b in zip(out.latency_counts, p.latency_counts, strict=True)]
        out.latency_sum += p.latency_sum
        out.lag.update(p.lag)
        out.var_bps.update(p.var_bps)
        out.config_rejected += p.config_rejected
    # The version every part has applied: a part still on an older one holds the figure down.
    out.config_version = min((p.config_version for p in parts), default=0)
    return out


# The products of the investment book, each exported (0 until invested) so a panel has a series.
PRODUCTS: tuple[str, ...] = ("FED_RRP", "TBILL_4W", "CARBON_NOTE")
# ``kind`` labels of ``treasury_settlement_breaks`` (``actors.settlement.BreakKind``; a test holds them equal).
BREAK_KINDS: tuple[str, ...] = ("amount", "not_settleable", "ambiguous", "maturity_short")


@dataclass(frozen=True)
class BookFigures:
    """The money loop as the ledger has it at scrape time (docs/settlement.md): read from Postgres,
    not counted by a process, so a restart loses nothing."""

    invested_usd: Mapping[str, Decimal] = field(default_factory=dict)  # OPEN principal by product
    investments_overdue: int = 0
    orders_overdue: int = 0
    breaks: Mapping[str, int] = field(default_factory=dict)  # settlement_break rows by kind


class _Snapshot:
    """A one-shot collector: the exposition is built from data gathered for this scrape."""

    def __init__(self, shards: ShardMetrics, orders_by_status: Mapping[str, int], config_version: int,
                 book: BookFigures) -> None:
        self._m, self._orders, self._config, self._book = shards, orders_by_status, config_version, book

    def collect(self) -> Iterable[Any]:
        m = self._m
        swept = CounterMetricFamily("treasury_swept_usd", "USD swept, by target product", labels=["product"])
        for product in PRODUCTS:
            swept.add_metric([product], float(m.swept_usd.get(product, Decimal(0))))
        yield swept
        cumulative, running = [], 0
        for le, n in zip([*map(str, LATENCY_BUCKETS), "+Inf"], m.latency_counts, strict=True):
            running += n
            cumulative.append((le, running))
        yield HistogramMetricFamily("sweep_decision_latency_seconds", "Event produced -> decision made",
                                    buckets=cumulative, sum_value=m.latency_sum)
        var = GaugeMetricFamily("treasury_var_bps", "1-day 99% VaR over available balance (riskiest accounts; "
                                "account_id=\"\" is the maximum over all accounts)", labels=["account_id"])
        top = sorted(m.var_bps.items(), key=lambda kv: kv[1], reverse=True)[:VAR_TOP_ACCOUNTS]
        for account, bps in top:
            var.add_metric([account], bps)
        var.add_metric([""], max(m.var_bps.values(), default=0.0))
        yield var
        orders = GaugeMetricFamily("treasury_orders", "Sweep orders in the ledger, by status", labels=["status"])
        for status in OrderStatus:
            orders.add_metric([status], self._orders.get(status, 0))
        yield orders
        yield GaugeMetricFamily("treasury_outbox_orders", "Orders written but not yet published (status NEW)",
                                value=self._orders.get(UNPUBLISHED, 0))
        yield GaugeMetricFamily("treasury_orders_awaiting_approval", "Orders written AWAITING_APPROVAL (at least "
                                "APPROVAL_THRESHOLD_USD), not yet approved, rejected or expired",
                                value=self._orders.get(AWAITING, 0))
        events = CounterMetricFamily("treasury_balance_events", "Balance events, by outcome (future: as-of time "
                                     "too far ahead; conflict: an event_id re-used with other content)",
                                     labels=["outcome"])
        for outcome in BALANCE_EVENT_OUTCOMES:
            events.add_metric([outcome], m.outcomes.get(outcome, 0))
        yield events
        lag = GaugeMetricFamily("treasury_consumer_lag", "balance_events messages not yet applied",
                                labels=["partition"])
        for partition, n in sorted(m.lag.items()):
            lag.add_metric([str(partition)], n)
        yield lag
        yield GaugeMetricFamily("treasury_config_version", "Policy configuration version applied by every part "
                                "(0: env/file configuration)", value=self._config)
        yield CounterMetricFamily("treasury_config_rejected", "Consul configuration changes refused by validation",
                                  value=m.config_rejected)
        yield from self._money_loop()

    def _money_loop(self) -> Iterable[Any]:
        book = self._book
        invested = GaugeMetricFamily("treasury_invested_usd", "Principal of OPEN investments, by product",
                                     labels=["product"])
        for product in PRODUCTS:
            invested.add_metric([product], float(book.invested_usd.get(product, Decimal(0))))
        yield invested
        yield GaugeMetricFamily("treasury_investments_overdue", "OPEN investments more than MATURITY_GRACE_DAYS "
                                "past their maturity date", value=book.investments_overdue)
        yield GaugeMetricFamily("treasury_orders_overdue", "Orders not settled SETTLEMENT_OVERDUE_AFTER_S after "
                                "their cut-off", value=book.orders_overdue)
        breaks = CounterMetricFamily("treasury_settlement_breaks", "Booked entries that name an order or an "
                                     "investment but cannot settle it, by kind", labels=["kind"])
        for kind in BREAK_KINDS:
            breaks.add_metric([kind], book.breaks.get(kind, 0))
        yield breaks


def render(shards: Sequence[ShardMetrics], orders_by_status: Mapping[str, int],
           config_version: int | None = None, book: BookFigures | None = None) -> bytes:
    """``config_version`` None: the lowest version among the parts (what every part has applied)."""
    registry = CollectorRegistry()
    merged = merge(shards)
    registry.register(_Snapshot(merged, orders_by_status,
                                merged.config_version if config_version is None else config_version,
                                book or BookFigures()))
    return bytes(generate_latest(registry))
