"""Fixtures for the pipeline tests: a real Postgres pool and an in-process shard + coordinator.

The shard and the coordinator run here, in the test's process, against the real Kafka and
Postgres started by the ``stack`` fixture; the Ray tests run the same classes inside actors.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from actors import kafka_clients
from actors.coordinator import Coordinator
from actors.shard import ShardWorker
from devstack.common import pick_free_port
from serve_app.rest.api import Backend, build_app
from storage import accounts, var_results
from storage.accounts import Account
from storage.db import create_pool
from storage.var_results import VarResult
from tests.integration.kafka_tools import close_producer, high_watermarks, poll_until, skip_to_end
from treasury.envelope import EnvelopeCipher
from treasury.keyring import Keyring
from treasury.metrics import ShardMetrics
from treasury.settings import PolicyConfig


@pytest.fixture(scope="session")
async def pool(stack) -> AsyncIterator[asyncpg.Pool]:  # type: ignore[no-untyped-def]
    p = await create_pool(stack.postgres_dsn, max_size=6)
    yield p
    await p.close()


@dataclass
class Pipeline:
    bootstrap: str
    pool: asyncpg.Pool
    worker: ShardWorker
    coordinator: Coordinator
    intent_start: dict[int, int]
    dlq_start: dict[int, int]
    positions_start: dict[int, int]

    async def step(self) -> None:
        await self.worker.poll_once(timeout=0.1)
        await self.coordinator.settle(0.01)

    async def orders_for(self, account_ids: list[str]) -> list[asyncpg.Record]:
        return list(await self.pool.fetch(
            "SELECT * FROM sweep_order WHERE account_id = ANY($1::varchar[]) ORDER BY id", account_ids))

    async def balances_for(self, account_ids: list[str]) -> list[asyncpg.Record]:
        return list(await self.pool.fetch(
            "SELECT * FROM balance WHERE account_id = ANY($1::varchar[]) ORDER BY id", account_ids))

    async def drain(self, account_ids: list[str], events: int, timeout: float = 30.0) -> None:
        """Run until the ledger holds ``events`` decided balance rows and every order is SENT."""
        async def done() -> bool:
            decided = await self.pool.fetchval(
                "SELECT count(*) FROM balance WHERE account_id = ANY($1::varchar[]) AND decided_ts IS NOT NULL",
                account_ids)
            unsent = await self.pool.fetchval(
                "SELECT count(*) FROM sweep_order WHERE account_id = ANY($1::varchar[]) AND status = 'NEW'",
                account_ids)
            return bool(decided >= events and unsent == 0)

        await poll_until(self.step, done, timeout)


# A loopback port free right now, for a server a test starts (Serve, the run command).
free_port = pick_free_port


def haproxy_backends(config: Path) -> set[tuple[str, int]]:
    """The replicas' own ``(host, port)`` that haproxy forwards to in Ray's HAProxy mode, from the
    config the controller last wrote for it (empty until there is one)."""
    text = config.read_text() if config.is_file() else ""
    return {(host, int(port)) for host, port in
            re.findall(r"^\s*server SERVE_REPLICA\S* (\S+):(\d+) ", text, re.MULTILINE)}


def new_accounts(n: int = 1, **kw: object) -> list[Account]:
    tag = uuid.uuid4().hex[:10]
    return [Account(f"T{tag}{i:02d}", **kw) for i in range(n)]  # type: ignore[arg-type]


async def register(pool: asyncpg.Pool, accts: list[Account], var_usd: Decimal | None = None, days: int = 250) -> None:
    await accounts.upsert(pool, accts)
    if var_usd is not None:
        await var_results.upsert_many(pool, [
            VarResult(a.account_id, datetime.now(UTC).date(), 250, Decimal("0.99"), days, var_usd, None, None)
            for a in accts
        ])


@pytest.fixture
async def pipeline(stack, pool: asyncpg.Pool, keyring: Keyring) -> AsyncIterator[Pipeline]:  # type: ignore[no-untyped-def]
    group = f"test-{uuid.uuid4().hex[:8]}"
    skip_to_end(stack.kafka_bootstrap, group, "balance_events")
    producer = kafka_clients.producer(stack.kafka_bootstrap)
    settings = stack.settings()
    coordinator = Coordinator(pool, producer, stack.kafka_bootstrap, keyring=keyring,
                              signing_key=settings.order_signing_key)
    await coordinator.start()
    worker = ShardWorker(0, 1, pool, kafka_clients.consumer(stack.kafka_bootstrap, group=group), producer,
                         coordinator, PolicyConfig(), cipher=EnvelopeCipher(keyring, settings.data_key))
    await worker.start()
    yield Pipeline(
        stack.kafka_bootstrap, pool, worker, coordinator,
        high_watermarks(stack.kafka_bootstrap, "sweep_intent"),
        high_watermarks(stack.kafka_bootstrap, "balance_events.dlq"),
        high_watermarks(stack.kafka_bootstrap, "cash_positions"),
    )
    producer.flush(10)
    # Release the clients now: the worker stays referenced after the test (a Backend built on it is
    # kept by FastAPI's route caches), and live clients would reconnect to the stopped broker.
    await worker.close()
    close_producer(producer)


class LocalShards:
    """ShardLookup over an in-process worker (the deployment asks Ray actors the same questions)."""

    def __init__(self, worker: ShardWorker | None) -> None:
        self.worker = worker

    async def position(self, account_id: str) -> dict[str, Any] | None:
        pos = await self.worker.position(account_id) if self.worker else None
        return None if pos is None else pos.model_dump(mode="json", exclude_none=True)

    async def metrics(self) -> list[ShardMetrics]:
        return [self.worker.metrics()] if self.worker else []

    async def ready(self) -> bool:
        if self.worker is None:
            raise RuntimeError("no shard running")
        return True


@pytest.fixture
async def api(stack, pipeline: Pipeline,  # type: ignore[no-untyped-def]
              auth_headers: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """The REST app in-process over the pipeline's shard, signed in with a token of every scope."""
    backend = Backend(stack.settings(), LocalShards(pipeline.worker))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(backend)), base_url="http://api",
                                 headers=auth_headers) as c:
        yield c
    await backend.close()
