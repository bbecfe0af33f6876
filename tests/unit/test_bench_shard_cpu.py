"""bench/shard_cpu runs a shard's batches without I/O: the figures it prints come from real work."""

from __future__ import annotations

from bench.shard_cpu import PHASES, report, run


def test_the_simulator_feed_is_validated_decided_and_ordered_in_every_phase() -> None:
    shard = run(events=600, accounts=40, batch=200)
    assert shard.orders > 0  # the feed is order-rich: decisions were made and signed
    assert all(shard.phase_s[phase] > 0 for phase in PHASES)
    lines = report(shard, 600)
    assert lines[0].startswith(f"600 events, {shard.orders} orders")
    assert [line.split()[0] for line in lines[1:]] == list(PHASES)
