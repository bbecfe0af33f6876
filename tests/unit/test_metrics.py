from __future__ import annotations

from decimal import Decimal

from prometheus_client.parser import text_string_to_metric_families

from treasury.metrics import LATENCY_BUCKETS, VAR_TOP_ACCOUNTS, LatencyHistogram, ShardMetrics, render


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text.decode()) for s in fam.samples}


def test_spec_names_and_merged_values() -> None:
    h = LatencyHistogram()
    h.observe_many([0.0005, 0.004, 0.004, 3.0])
    one = ShardMetrics({"FED_RRP": Decimal("1000000.5")}, {"applied": 3, "stale": 1}, list(h.counts), h.total,
                       {0: 5, 2: 0}, {f"A{i}": float(i) for i in range(30)})
    two = ShardMetrics({"FED_RRP": Decimal("0.5"), "TBILL_4W": Decimal(7)}, {"applied": 2, "invalid": 4},
                       [0] * (len(LATENCY_BUCKETS) + 1), 0.0, {1: 9}, {})
    got = samples(render([one, two], {"NEW": 2, "SENT": 5}, config_version=3))
    assert got[("treasury_swept_usd_total", (("product", "FED_RRP"),))] == 1000001.0
    assert got[("treasury_swept_usd_total", (("product", "CARBON_NOTE"),))] == 0.0
    assert got[("sweep_decision_latency_seconds_bucket", (("le", "0.001"),))] == 1
    assert got[("sweep_decision_latency_seconds_bucket", (("le", "0.005"),))] == 3
    assert got[("sweep_decision_latency_seconds_bucket", (("le", "+Inf"),))] == 4
    assert got[("sweep_decision_latency_seconds_count", ())] == 4
    assert got[("treasury_balance_events_total", (("outcome", "applied"),))] == 5
    assert got[("treasury_balance_events_total", (("outcome", "invalid"),))] == 4
    assert got[("treasury_consumer_lag", (("partition", "0"),))] == 5
    assert got[("treasury_consumer_lag", (("partition", "1"),))] == 9
    assert got[("treasury_orders", (("status", "SENT"),))] == 5 and got[("treasury_outbox_orders", ())] == 2
    assert got[("treasury_config_version", ())] == 3
    per_account = [k for k in got if k[0] == "treasury_var_bps" and k[1] != (("account_id", ""),)]
    assert len(per_account) == VAR_TOP_ACCOUNTS  # bounded cardinality: the riskiest accounts only
    assert got[("treasury_var_bps", (("account_id", ""),))] == 29.0
    assert ("treasury_var_bps", (("account_id", "A0"),)) not in got


def test_every_event_outcome_is_exported_future_and_conflict_included() -> None:
    from actors.account_state import Outcome
    from treasury.metrics import BALANCE_EVENT_OUTCOMES

    assert set(BALANCE_EVENT_OUTCOMES) == {o.value for o in Outcome}
    got = samples(render([ShardMetrics(outcomes={"future": 2, "conflict": 1, "applied": 4})], {}))
    events = {dict(labels)["outcome"]: v for (name, labels), v in got.items()
              if name == "treasury_balance_events_total"}
    assert events == {"applied": 4, "duplicate": 0, "stale": 0, "invalid": 0, "future": 2, "conflict": 1}
