"""The load generator's pure parts: the input it sends and the figures it reports."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from bench import loadgen
from schemas.balance_event import BalanceCode


def test_feed_is_intraday_only_reproducible_and_in_bank_order() -> None:
    start = datetime(2026, 11, 21, tzinfo=UTC)
    profiles, events = loadgen.feed(3, 40, "A-", start=start)
    again = loadgen.feed(3, 40, "B-", start=start)[1]
    assert len(events) == 120 and {e.balance_code for e in events} == {BalanceCode.ITAV}
    assert [e.event_id.replace("A-", "") for e in events] == [e.event_id.replace("B-", "") for e in again]
    assert [e.available_usd for e in events] == [e.available_usd for e in again]
    for p in profiles:  # each account's balances in time order: a shard never sees one as stale
        times = [e.as_of_ts for e in events if e.account_id == p.account.account_id]
        assert times == sorted(times) and len(times) == 40
    assert max(e.as_of_ts for e in loadgen.feed(2, 10, "C-")[1]) < datetime.now(UTC)


def test_rest_accounts_take_the_asked_share() -> None:
    profiles = loadgen.feed(20, 1, "R-")[0]
    assert len(loadgen.rest_accounts(profiles, 0.25)) == 5
    assert loadgen.rest_accounts(profiles, 0) == set()
    assert len(loadgen.rest_accounts(profiles, 1.0)) == 20


def test_percentiles_in_milliseconds() -> None:
    p = loadgen.percentiles([i / 1000 for i in range(1, 101)])
    assert p["n"] == 100 and math.isclose(p["p50"], 50.5) and 95 < p["p95"] < 96 and 99 < p["p99"] < 100
    assert math.isnan(loadgen.percentiles([])["p95"])


def test_rss_growth_counts_only_processes_alive_at_both_ends() -> None:
    start = [("ray shard", 1, 100.0), ("ray shard", 2, 100.0), ("postgres", 3, 10.0), ("serve replica", 4, 50.0)]
    end = [("ray shard", 1, 110.0), ("ray shard", 2, 110.0), ("postgres", 3, 40.0), ("serve replica", 5, 80.0)]
    growth = loadgen.rss_growth(start, end)
    assert growth == {"ray shard": (200.0, 220.0, 10.0)}  # the replica was replaced; postgres is not Python
    text = loadgen.format_rss(start, end)
    assert "ray shard" in text and "+10.0%" in text and "+300.0%" in text  # postgres 10 -> 40


def test_rss_growth_leaves_out_processes_started_during_the_load() -> None:
    # Replica 5 was added by the autoscaler and sampled at "start" while still loading (59 MiB).
    start = [("serve replica", 4, 245.0), ("serve replica", 5, 59.0)]
    end = [("serve replica", 4, 247.0), ("serve replica", 5, 242.0)]
    assert loadgen.rss_growth(start, end)["serve replica"][2] > 50  # what the load test once reported
    assert loadgen.rss_growth(start, end, before={4}) == {"serve replica": (245.0, 247.0, (247 - 245) / 245 * 100)}
    report = loadgen.Report(1, 0, 1, 1.0, 1, 0, {}, {}, start, end, frozenset({4}))
    assert report.started_during_run() == [("serve replica", 5, 242.0)]
