"""The Ray Serve deployment of the REST tier and how a replica reaches the shards."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import ray
from fastapi import FastAPI
from ray import serve
from ray.serve import Application
from starlette.types import ASGIApp, Receive, Scope, Send

from actors.config_watcher import follow_if_live
from actors.replay_job import ReplaySpec
from actors.shard import owning_shard
from actors.system import shard_handles
from serve_app.rest.api import Backend, build_app
from serve_app.rest.autoscaling import LatencyWindow, P95LatencyPolicy
from treasury.actor_names import CONFIG_WATCHER, COORDINATOR, NAMESPACE, VAR_SCHEDULER
from treasury.heap import freeze_startup_heap
from treasury.keyring import keyring_from_settings
from treasury.logs import configure_logging
from treasury.metrics import ShardMetrics
from treasury.settings import ConfigError, RuntimeSettings

APP_NAME = "treasury"
DEPLOYMENT_NAME = "Ingress"
ROUTE_PREFIX = "/"
# Without these a replica would talk to the localhost defaults: on a cluster that is never right.
REQUIRED_ENV = ("KAFKA_BOOTSTRAP", "DATABASE_URL")
SHARD_CALL_TIMEOUT_S = 5.0
MAX_ONGOING_REQUESTS = 100
POLICY_PATH = f"{P95LatencyPolicy.__module__}:{P95LatencyPolicy.__name__}"


class RayShards:
    """Positions live in the shard that owns the account: the one whose partitions hold the
    account's key (``actors.shard.owning_shard``).

    That shard is asked first, the others only when it has no position (an account it has not
    seen, or a key produced some other way): a found position costs one actor call instead of one
    per shard (bench/rest: the extra call was a third of the route's CPU in the replica and the
    shards), and a partitioner mismatch still finds the account, only slower.
    """

    def __init__(self, shards: int) -> None:
        self._count = shards
        self._handles: list[Any] | None = None

    def _all(self) -> list[Any]:
        if self._handles is None:
            self._handles = shard_handles(self._count)
        return self._handles

    async def position(self, account_id: str) -> dict[str, Any] | None:
        handles = self._all()
        owner = owning_shard(account_id, len(handles))
        found: dict[str, Any] | None = await asyncio.wait_for(handles[owner].position.remote(account_id),
                                                              SHARD_CALL_TIMEOUT_S)
        if found is not None:
            return found
        calls = [h.position.remote(account_id) for i, h in enumerate(handles) if i != owner]
        results = await asyncio.wait_for(asyncio.gather(*calls), SHARD_CALL_TIMEOUT_S)
        return next((r for r in results if r is not None), None)

    async def metrics(self) -> list[ShardMetrics]:
        handles = list(self._all())
        for name in (COORDINATOR, CONFIG_WATCHER):  # their config version (and the watcher's refusals)
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
        return ray.get_actor(VAR_SCHEDULER, namespace=NAMESPACE)

    async def submit(self, accounts: list[str] | None, window: int | None, confidence: float) -> str:
        job_id: str = await self._scheduler().submit.remote(accounts, window, confidence)
        return job_id

    async def status(self, job_id: str) -> dict[str, Any] | None:
        job: dict[str, Any] | None = await self._scheduler().status.remote(job_id)
        return job


class RayReplayJobs:
    """Replay jobs run in the named ``replay-jobs`` actor (started by the first replica that needs it,
    detached), so a job outlives the request and the replica; its policies run as Ray tasks."""

    def __init__(self, settings: RuntimeSettings) -> None:
        self._env = settings.as_env()

    def _actor(self) -> Any:
        from actors.replay_job import REPLAY_JOBS, ReplayJobsActor

        return ray.remote(ReplayJobsActor).options(
            name=REPLAY_JOBS, namespace=NAMESPACE, get_if_exists=True, lifetime="detached", num_cpus=0,
            runtime_env={"env_vars": self._env}).remote()

    async def submit(self, spec: ReplaySpec) -> str:
        job_id: str = await self._actor().submit.remote(spec)
        return job_id

    async def status(self, job_id: str) -> dict[str, Any] | None:
        job: dict[str, Any] | None = await self._actor().status.remote(job_id)
        return job


def build_ingress_app() -> FastAPI:
    """Called inside each replica: settings come from the replica's environment."""
    configure_logging()
    settings = RuntimeSettings.from_env()
    backend = Backend(settings, RayShards(settings.shards), RayRiskJobs(), RayReplayJobs(settings))
    backend.follower = follow_if_live(settings, backend.apply_policy, "serve-replica")
    app = build_app(backend)
    window = LatencyWindow(settings.serve_latency_window_s)
    app.state.latency_window = window
    app.add_middleware(TimedRequests, window=window)
    freeze_startup_heap()
    return app


class TimedRequests:
    """Time inside the replica, waits for a pooled connection included: that is what grows when
    one replica has more requests than it can serve, and what more replicas shrink.

    A plain ASGI middleware rather than ``@app.middleware("http")``: Starlette's
    ``BaseHTTPMiddleware`` runs each request through a task group and memory streams, a
    measurable share of a small request's cost (bench/rest). The time runs to the last byte sent.
    """

    def __init__(self, app: ASGIApp, window: LatencyWindow) -> None:
        self.app = app
        self.window = window

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.window.add((time.perf_counter() - start) * 1000.0)


def autoscaling_config(settings: RuntimeSettings) -> dict[str, Any]:
    """Serve's ``autoscaling_config`` for the ingress, as plain data (also what a Serve config YAML holds).

    The policy owns all timing (settle after a scale-out, quiet period before a scale-in), so
    Serve's own up/down delays are zero. Replicas sample their window five times per look-back
    and push twice per look-back (Serve's 10 s default push would make every decision late).
    """
    window = settings.serve_latency_window_s
    return {
        "min_replicas": settings.serve_min_replicas,
        "max_replicas": settings.serve_max_replicas,
        "look_back_period_s": window,
        "metrics_interval_s": window / 2,
        "upscale_delay_s": 0.0,
        "downscale_delay_s": 0.0,
        "policy": {
            "policy_function": POLICY_PATH,
            "policy_kwargs": {
                "p95_target_ms": settings.serve_p95_target_ms,
                "scale_in_quiet_s": settings.serve_scale_in_quiet_s,
                "settle_s": 2 * window,
            },
        },
    }


def ingress_options(settings: RuntimeSettings) -> dict[str, Any]:
    """Every option the ingress deployment runs with (``Ingress.options(**...)``), in one place."""
    return {
        "ray_actor_options": {"num_cpus": 0, "runtime_env": {"env_vars": settings.as_env()}},
        "max_ongoing_requests": MAX_ONGOING_REQUESTS,
        "health_check_period_s": 5,
        "autoscaling_config": autoscaling_config(settings),
    }


@serve.deployment(
    name=DEPLOYMENT_NAME,
    ray_actor_options={"num_cpus": 0},
    max_ongoing_requests=MAX_ONGOING_REQUESTS,
    health_check_period_s=5,
)
@serve.ingress(build_ingress_app)
class Ingress:
    """Routes come from ``build_ingress_app``; the class gives Serve a replica to host them."""

    app: FastAPI  # set by Serve's ingress wrapper once the app is built

    def record_autoscaling_stats(self) -> dict[str, float]:
        """Serve calls this periodically; the custom policy reads the P95 it returns."""
        window: LatencyWindow = self.app.state.latency_window
        return window.stats()


def application(settings: RuntimeSettings) -> Application:
    return Ingress.options(**ingress_options(settings)).bind()  # type: ignore[attr-defined]


def app_builder(args: dict[str, Any]) -> Application:
    """The import path of ``serve deploy`` (deploy/serve_config.yaml, the KubeRay manifest).

    It runs on the cluster, so the settings are the node's environment (cluster.yaml's
    ``treasury.env``, the pod's ``env``); the replicas are given the same values explicitly. A
    missing required variable fails the deploy with its name instead of replicas that start and
    then talk to 127.0.0.1.
    """
    missing = [name for name in args.get("required_env", REQUIRED_ENV) if not os.environ.get(name)]
    if missing:
        raise ConfigError(f"{', '.join(missing)}: not set in the environment of the Ray nodes")
    settings = RuntimeSettings.from_env()
    keyring_from_settings(settings)  # no Vault and no explicit SIGNER=dev: refuse here, not in each replica
    return application(settings)


def deploy(settings: RuntimeSettings) -> None:
    serve.start(http_options={"host": settings.serve_host, "port": settings.serve_port})
    serve.run(application(settings), name=APP_NAME, route_prefix=ROUTE_PREFIX)

