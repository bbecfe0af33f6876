"""The REST tier asks the account's own shard for its position first (``RayShards.position``):
that shard is found from the partition our producers give the account's key, so that partition
must be the one Kafka really receives (the position would still be found, but slowly, if not)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from confluent_kafka import murmur2

from tests.integration.conftest import Pipeline, new_accounts, register
from treasury.topics import BALANCE_EVENTS

pytestmark = pytest.mark.integration


async def test_balances_land_on_the_partition_the_owner_lookup_computes(api: httpx.AsyncClient,
                                                                         pipeline: Pipeline) -> None:
    accounts = new_accounts(6)
    await register(pipeline.pool, accounts)
    for n, a in enumerate(accounts):
        r = await api.post("/balances", json={
            "event_id": f"owner-{n}", "account_id": a.account_id, "as_of_ts": datetime.now(UTC).isoformat(),
            "kind": "INTRADAY", "available_usd": "1000"})
        assert r.status_code == 202, r.text
        [where] = r.json()["events"]
        assert where["partition"] == murmur2(a.account_id.encode(), BALANCE_EVENTS.partitions)
