"""What a replica of the REST app holds: its connections and the ways to reach the shards and the VaR pool.

Kept apart from the routes so each route module takes the one ``Backend`` it needs and nothing
imports the app to reach it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

import asyncpg

from actors import kafka_clients
from actors.replay_job import ReplayJobs as LocalReplayJobs
from actors.replay_job import ReplaySpec
from storage.db import create_pool
from treasury.auth import TokenVerifier
from treasury.envelope import EnvelopeCipher
from treasury.keyring import keyring_from_settings
from treasury.metrics import ShardMetrics
from treasury.settings import PolicyConfig, RuntimeSettings, policy_from_env

log = logging.getLogger("treasury.api")


class ShardLookup(Protocol):
    async def position(self, account_id: str) -> dict[str, Any] | None: ...
    async def ready(self) -> bool: ...
    async def metrics(self) -> list[ShardMetrics]: ...


class RiskJobs(Protocol):
    async def submit(self, accounts: list[str] | None, window: int | None, confidence: float) -> str: ...
    async def status(self, job_id: str) -> dict[str, Any] | None: ...


class ReplayJobs(Protocol):
    """Replays of the ledger (``actors.replay_job``): ``ReplayJobs`` in this process by default, the
    ``replay-jobs`` Ray actor in the deployment."""

    async def submit(self, spec: ReplaySpec) -> str: ...
    async def status(self, job_id: str) -> dict[str, Any] | None: ...


class _Versioned(Protocol):
    """The replica's config follower, as the app sees it."""

    version: int

    def stop(self) -> None: ...


class Backend:
    """Connections a replica opens once, lazily, so the app starts even while a part is down."""

    def __init__(self, settings: RuntimeSettings, shards: ShardLookup, risk_jobs: RiskJobs | None = None,
                 replay_jobs: ReplayJobs | None = None) -> None:
        self.settings = settings
        self.shards = shards
        self.risk_jobs = risk_jobs
        # Without a runner of its own (tests, a replica without Ray), replays run here, one at a time.
        self.replay_jobs: ReplayJobs = replay_jobs or LocalReplayJobs(self.pool)
        keyring = keyring_from_settings(settings)  # refuses to start without Vault unless SIGNER=dev
        self.cipher = EnvelopeCipher(keyring, settings.data_key)
        self.verifier: TokenVerifier | None = None
        if settings.auth == "jwt":
            self.verifier = TokenVerifier(keyring, settings.token_signing_key, settings.jwt_audience)
        else:
            log.warning("AUTH=off: the REST API accepts requests from anyone. Never run this in production.")
        # The policy in force for this replica: env/file at start, each live version after that.
        self.policy: PolicyConfig = policy_from_env()
        self.follower: _Versioned | None = None
        self._pool: asyncpg.Pool | None = None
        self._producer: kafka_clients.AsyncProducer | None = None
        self._lock = asyncio.Lock()

    async def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    self._pool = await create_pool(self.settings.database_url, max_size=8)
        return self._pool

    def producer(self) -> kafka_clients.AsyncProducer:
        if self._producer is None:
            self._producer = kafka_clients.AsyncProducer(kafka_clients.producer(self.settings.kafka_bootstrap))
        return self._producer

    def apply_policy(self, policy: PolicyConfig) -> None:
        self.policy = policy

    @property
    def config_version(self) -> int:
        return self.follower.version if self.follower is not None else 0

    async def close(self) -> None:
        if isinstance(self.replay_jobs, LocalReplayJobs):
            await self.replay_jobs.close()
        if self.follower is not None:
            self.follower.stop()
        if self._producer is not None:
            self._producer.close()
        if self._pool is not None:
            await self._pool.close()
