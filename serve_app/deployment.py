"""The Ray Serve deployment of the REST tier and how a replica reaches the shards."""

from __future__ import annotations

import asyncio
from typing import Any

import ray
from fastapi import FastAPI
from ray import serve
from ray.serve import Application

from actors.config_watcher import WATCHER_NAME, follow_if_live
from actors.runtime import COORDINATOR_NAME, NAMESPACE, SCHEDULER_NAME, shard_handles
from serve_app.api import Backend, build_app
from treasury.logs import configure_logging
from treasury.metrics import ShardMetrics
from treasury.settings import RuntimeSettings

APP_NAME = "treasury"
DEPLOYMENT_NAME = "Ingress"
SHARD_CALL_TIMEOUT_S = 5.0


class RayShards:
    """Positions live in the shard that owns the account; asking every shard avoids coupling the
    REST tier to Kafka's partitioner, and there are only a handful of shards."""

    def __init__(self, shards: int) -> None:
        self._count = shards
        self._handles: list[Any] | None = None

    def _all(self) -> list[Any]:
        if self._handles is None:
            self._handles = shard_handles(self._count)
        return self._handles

    async def position(self, account_id: str) -> dict[str, Any] | None:
        calls = [h.position.remote(account_id) for h in self._all()]
        results = await asyncio.wait_for(asyncio.gather(*calls), SHARD_CALL_TIMEOUT_S)
        return next((r for r in results if r is not None), None)

    async def metrics(self) -> list[ShardMetrics]:
        handles = list(self._all())
        for name in (COORDINATOR_NAME, WATCHER_NAME):  # their config version (and the watcher's refusals)
            try:
                handles.append(ray.get_actor(name, namespace=NAMESPACE))
            except ValueError:
                continue  # no watcher without Consul
        results = await asyncio.wait_for(asyncio.gather(*[h.metrics.remote() for h in handles]),
                                         SHARD_CALL_TIMEOUT_S)
        return [r for r in results if r is not None]

    async def ready(self) -> bool:
        try:
            await asyncio.wait_for(asyncio.gather(*[h.ready.remote() for h in self._all()]), SHARD_CALL_TIMEOUT_S)
        except ValueError as exc:  # ray.get_actor: not started yet
            raise RuntimeError(str(exc)) from exc
        return True


class RayRiskJobs:
    """VaR jobs run in the named scheduler actor, so a job outlives the request (and the replica)."""

    def _scheduler(self) -> Any:
        return ray.get_actor(SCHEDULER_NAME, namespace=NAMESPACE)

    async def submit(self, accounts: list[str] | None, window: int | None, confidence: float) -> str:
        job_id: str = await self._scheduler().submit.remote(accounts, window, confidence)
        return job_id

    async def status(self, job_id: str) -> dict[str, Any] | None:
        job: dict[str, Any] | None = await self._scheduler().status.remote(job_id)
        return job


def build_ingress_app() -> FastAPI:
    """Called inside each replica: settings come from the replica's environment."""
    configure_logging()
    settings = RuntimeSettings.from_env()
    backend = Backend(settings, RayShards(settings.shards), RayRiskJobs())
    backend.follower = follow_if_live(settings, backend.apply_policy, "serve-replica")
    return build_app(backend)


@serve.deployment(
    name=DEPLOYMENT_NAME,
    ray_actor_options={"num_cpus": 0},
    max_ongoing_requests=100,
    health_check_period_s=5,
)
@serve.ingress(build_ingress_app)
class Ingress:
    """Routes come from ``build_ingress_app``; the class gives Serve a replica to host them."""


def application(settings: RuntimeSettings) -> Application:
    return Ingress.options(  # type: ignore[attr-defined]
        ray_actor_options={"num_cpus": 0, "runtime_env": {"env_vars": settings.as_env()}}
    ).bind()


def deploy(settings: RuntimeSettings) -> None:
    serve.start(http_options={"host": settings.serve_host, "port": settings.serve_port})
    serve.run(application(settings), name=APP_NAME, route_prefix="/")

