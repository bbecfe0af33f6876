"""``treasury-orch run``: the whole system on this machine, until Ctrl-C.

Brings up Kafka and Postgres (the project's own), Ray with its dashboard on 127.0.0.1:8265, the
named coordinator and shards, Serve on 127.0.0.1:8000, and the feed simulator. Ctrl-C (SIGINT)
or SIGTERM stops the simulator, Serve and Ray, then the stack it started.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass

import ray
from ray import serve

from actors import kafka_clients
from actors.runtime import NAMESPACE, start_actors, stop_actors
from serve_app import simulator
from serve_app.deployment import deploy
from serve_app.infra import stack
from storage import accounts
from storage.db import create_pool
from treasury.logs import configure_logging
from treasury.settings import PolicyConfig, RuntimeSettings, policy_from_env

log = logging.getLogger("treasury.run")
DASHBOARD_PORT = 8265


@dataclass(frozen=True)
class RunOptions:
    accounts: int = 20
    rate: float = 20.0
    simulate: bool = True
    keep_stack: bool = False
    consul: bool | None = None  # None: TREASURY_CONSUL decides


async def seed_accounts(settings: RuntimeSettings, profiles: list[simulator.SimProfile]) -> None:
    pool = await create_pool(settings.database_url, max_size=1)
    try:
        await accounts.upsert(pool, [p.account for p in profiles])
    finally:
        await pool.close()


def start_system(settings: RuntimeSettings, policy: PolicyConfig) -> None:
    """Ray (local, or the cluster in RAY_ADDRESS), the actors and Serve."""
    os.environ.update(settings.as_env())
    ray.init(
        namespace=NAMESPACE,
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        dashboard_port=DASHBOARD_PORT,
        runtime_env={"env_vars": settings.as_env()},
        log_to_driver=False,
    )
    start_actors(settings, policy)
    deploy(settings)


async def feed(settings: RuntimeSettings, accounts: int, rate: float, stop: asyncio.Event,
               limit: int | None = None) -> int:
    """Register the simulated accounts, then stream their live feed until ``stop`` (or ``limit``)."""
    profiles = simulator.make_accounts(accounts)
    await seed_accounts(settings, profiles)
    producer = kafka_clients.producer(settings.kafka_bootstrap)
    return await simulator.stream(producer, simulator.live(profiles, rate).events(), rate, stop, limit)


def run(opts: RunOptions) -> int:
    configure_logging()
    policy = policy_from_env()
    info = stack.up(with_consul=opts.consul)
    base = RuntimeSettings.from_env()
    settings = base.model_copy(update={"kafka_bootstrap": info.kafka_bootstrap, "database_url": info.postgres_dsn,
                                       "consul_http_addr": info.consul_http_addr or base.consul_http_addr})
    stop = asyncio.Event()
    try:
        start_system(settings, policy)
        print(f"REST API      http://{settings.serve_host}:{settings.serve_port}/docs", flush=True)
        print(f"Ray dashboard http://127.0.0.1:{DASHBOARD_PORT}", flush=True)
        print(f"Kafka         {settings.kafka_bootstrap}\nPostgres      {settings.database_url}", flush=True)
        if settings.consul_http_addr:
            print(f"Consul        {settings.consul_http_addr} (live config under {settings.consul_kv_prefix})",
                  flush=True)
        print("Ctrl-C stops everything.", flush=True)

        async def main() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            if opts.simulate:
                sent = await feed(settings, opts.accounts, opts.rate, stop)
                log.info("simulator stopped after %d events", sent)
            await stop.wait()

        asyncio.run(main())
    finally:
        log.info("stopping")
        if ray.is_initialized():
            serve.shutdown()
            stop_actors(settings)
            ray.shutdown()
        if not opts.keep_stack:
            stack.down()
    return 0
