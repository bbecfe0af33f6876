"""The spec's 1-hour load profile, compressed: 36,000 balance events as fast as the real system takes them.

100 simulated accounts x 360 hourly intraday balances; every twentieth account posts over REST
(POST /balances with a JWT), the rest go straight to Kafka. The whole system runs on Ray in a
process tree of its own (``bench.system``), against the session's Kafka and Postgres. The
1-hour run at 10 events/s is ``python -m bench.soak``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from actors.kafka_clients import CONSUMER_GROUP
from bench import loadgen
from bench.system import RaySystem
from tests.integration.conftest import free_port
from tests.integration.kafka_tools import high_watermarks, read_from, skip_to_end
from tests.integration.test_ray_system import VAR_USD, expected_orders

pytestmark = pytest.mark.integration
ACCOUNTS, PER_ACCOUNT = 100, 360
REST_SHARE = 0.05  # REST costs a Serve round trip per event: 1,800 of them keep the run to a few minutes
MAX_GROWTH_PCT = 20.0


@pytest.fixture(scope="module")
def ray_system(stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RaySystem]:  # type: ignore[no-untyped-def]
    # Four-eyes approval off: the simulator's larger accounts make orders above the threshold, which
    # would wait for approvers; this run counts orders lost or doubled (approval: test_approval.py).
    settings = stack.settings(shards=2, serve_port=free_port(), approval_threshold_usd=Decimal(0))
    skip_to_end(stack.kafka_bootstrap, CONSUMER_GROUP, "balance_events")
    log = Path(tmp_path_factory.mktemp("load")) / "system.log"
    system = RaySystem({**settings.as_env(), "LOG_LEVEL": "WARNING"}, settings.serve_port, log)
    system.start()
    try:
        yield system
    finally:
        system.stop()


async def test_compressed_hour_every_event_decided_every_order_sent_once(
    ray_system: RaySystem, stack, pool: asyncpg.Pool, auth_headers: dict[str, str]  # type: ignore[no-untyped-def]
) -> None:
    assert VAR_USD == loadgen.VAR_USD  # the offline policy run assumes the VaR the accounts get
    profiles, events = loadgen.feed(ACCOUNTS, PER_ACCOUNT, prefix=f"L{uuid.uuid4().hex[:8]}-")
    assert len(events) == 36_000
    await loadgen.register(pool, profiles)
    accounts = [p.account for p in profiles]
    expected = expected_orders(accounts, events)
    rest = loadgen.rest_accounts(profiles, REST_SHARE)
    start = high_watermarks(stack.kafka_bootstrap, "sweep_intent")
    gen = loadgen.LoadGenerator(stack.kafka_bootstrap, ray_system.base_url, auth_headers, rest,
                                rest_workers=len(rest))

    report = await loadgen.drive(pool, gen, events, stack.home, ray_system.pid, timeout=240)
    print("\ncompressed 1-hour profile (36,000 events, as fast as taken)\n" + report.text())

    assert report.decided == len(events) and report.rest == len(rest) * PER_ACCOUNT
    rows = await pool.fetch("SELECT decision_key, order_id, product, amount_usd, status FROM sweep_order "
                            "WHERE account_id = ANY($1::varchar[])", [a.account_id for a in accounts])
    keys = [r["decision_key"] for r in rows]
    assert len(keys) == len(set(keys)), "a decision key twice in the ledger"
    assert {r["decision_key"]: (r["product"], r["amount_usd"]) for r in rows} == expected
    assert {r["status"] for r in rows} == {"SENT"}
    order_ids = {r["order_id"] for r in rows}
    published = [k for k in ((m.key() or b"").decode() for m in read_from(
        stack.kafka_bootstrap, "sweep_intent", start, expect=len(order_ids), timeout=60, settle=2)) if k in order_ids]
    assert sorted(published) == sorted(order_ids), "an order missing or twice on sweep_intent"
    assert report.latency["n"] == len(events)
    # Memory of our own Python processes from the steady state (a tenth decided) to the end, over
    # the processes that ran before the load (a replica the autoscaler adds during the burst is
    # reported, not counted: sampled while starting, its loading would read as growth). The
    # broker and Postgres fill their caches by design and are only reported.
    growth = report.growth()
    assert {"ray shard", "ray coordinator", "serve replica"} <= set(growth)
    for part in ("ray shard", "ray coordinator", "serve replica"):
        assert growth[part][2] < MAX_GROWTH_PCT, (part, growth[part])
    print(f"serve replica RSS growth: {growth['serve replica'][2]:+.1f} %")
