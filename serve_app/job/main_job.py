"""``treasury-orch run``: the whole system on this machine, until Ctrl-C.

Brings up Kafka and Postgres (the project's own), Ray with its dashboard on 127.0.0.1:8265
(``RAY_DASHBOARD_PORT``), the named coordinator and shards, Serve on 127.0.0.1:8000, Prometheus
scraping them (preferably on 127.0.0.1:9090, ``PROMETHEUS_PORT``), the pull front when
``REST_PULL_WORKERS`` asks for one (``serve_app.rest.plain``), the feed simulator and, unless
``--no-bank``, the demo bank: the simulated accounts start mid-life (a seeded history: closes, VaR,
past sweeps settled, open investments) and a demo Bank-Connector executes every order and books its
maturity back (``serve_app.job.bank``, docs/demo.md). Ctrl-C (SIGINT) or SIGTERM stops the simulator,
the bank, the TLS and pull fronts, Prometheus, Serve and Ray, then the stack it started.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import ray
from ray import serve

from actors import kafka_clients
from actors.system import start_actors, stop_actors
from devstack import certs, prometheus, stack, tls_front
from devstack.common import InfraError, port_is_free
from serve_app.job import simulator
from serve_app.job.bank.demo import DemoOptions, run_demo
from serve_app.rest import plain, serve_front
from serve_app.rest.deployment import deploy
from storage import accounts
from storage.db import create_pool
from treasury.actor_names import NAMESPACE
from treasury.keyring import keyring_from_settings
from treasury.logs import configure_logging
from treasury.priority import decisions_first
from treasury.settings import ConfigError, PolicyConfig, RuntimeSettings, policy_from_env

log = logging.getLogger("treasury.run")
TLS_FILE_KEYS = ("TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CLIENT_CA_FILE")


@dataclass(frozen=True)
class RunOptions:
    accounts: int = 20
    rate: float = 20.0
    simulate: bool = True
    keep_stack: bool = False
    prometheus: bool = True
    consul: bool | None = None  # None: TREASURY_CONSUL decides
    bank: bool = True  # the demo bank (with the simulator): seeded history, orders executed, maturities back
    tls: bool | None = None  # None: TREASURY_TLS decides; True: mutual TLS 1.3 on every hop (`run --tls`)


def tls_environment(info: stack.StackInfo, base: RuntimeSettings) -> dict[str, str]:
    """What `run --tls` adds to this process's environment, which Ray's processes and our actors inherit.

    The stack's client certificate settings (Kafka, Vault, Consul; Postgres's are in the DSN), Ray's own
    TLS switches for its gRPC, and the REST front's files from the stack's CA unless the operator named
    their own (TLS_CERT_FILE, ...): the Bank-Connector then presents ``client.pem`` of that CA.
    """
    stack_certs = certs.ensure(info.home)
    env = {**info.tls_env, **stack_certs.ray_env()}
    if not base.tls_enabled:
        env |= {"TLS_CERT_FILE": str(stack_certs.cert("server")), "TLS_KEY_FILE": str(stack_certs.key("server")),
                "TLS_CLIENT_CA_FILE": str(stack_certs.ca)}
    return env


async def seed_accounts(settings: RuntimeSettings, profiles: list[simulator.SimProfile]) -> None:
    pool = await create_pool(settings.database_url, max_size=1)
    try:
        await accounts.upsert(pool, [p.account for p in profiles])
    finally:
        await pool.close()


def start_system(settings: RuntimeSettings, policy: PolicyConfig) -> None:
    """Ray (local, or the cluster in RAY_ADDRESS), the actors and Serve (with its proxy, or in
    HAProxy mode on a local Ray: ``serve_front``)."""
    switches = serve_front.ray_switches(settings)
    os.environ.update(settings.as_env() | switches)  # before Ray starts: its processes inherit them
    # Ray gives its dashboard 60 s to come up and aborts the start otherwise; on a busy 2-core
    # machine it has been seen to need a few seconds more, so allow longer unless told otherwise.
    os.environ.setdefault("RAY_DASHBOARD_STARTUP_TIMEOUT_S", "180")
    decisions_first()  # a local Ray only; a cluster's nodes take it from `ray start`'s environment
    ray.init(
        namespace=NAMESPACE,
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        dashboard_port=settings.dashboard_port,
        runtime_env=serve_front.runtime_env(settings, settings.as_env() | switches),
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


def start_prometheus(settings: RuntimeSettings, home: Path) -> prometheus.Server | None:
    """The operator's Prometheus; the system runs on without it (with a warning) when it cannot start."""
    try:
        prometheus.binary()
        targets = prometheus.Targets(f"{settings.serve_host}:{settings.serve_port}", prometheus.ray_node_targets())
        return prometheus.start(home / "prometheus", targets, settings.prometheus_port)
    except InfraError as exc:
        log.warning("Prometheus not started: %s", exc)
        return None


def refuse_unrunnable_front(settings: RuntimeSettings) -> None:
    """Before anything is started: a Serve front this machine cannot run, or a port haproxy needs
    that is taken (haproxy would exit, and Serve's start fail deep inside Ray), is a ConfigError
    naming the setting."""
    serve_front.ray_switches(settings)
    for key, port in serve_front.haproxy_ports(settings).items():
        if not port_is_free(port):
            raise ConfigError(f"{key}: port {port} on 127.0.0.1, which haproxy needs (SERVE_FRONT=haproxy), is taken "
                              f"by another process; find it with `ss -ltnp 'sport = :{port}'`, or set {key}")


def print_serve_lines(settings: RuntimeSettings) -> None:
    """Where Serve answers, and in HAProxy mode what stands on its port."""
    print(f"REST API      http://{settings.serve_host}:{settings.serve_port}/docs", flush=True)
    print(f"Console       http://{settings.serve_host}:{settings.serve_port}/console (sign in with a REST token; "
          "docs/console.md)", flush=True)
    if haproxy := serve_front.haproxy_ports(settings):
        print(f"Serve front   haproxy in Ray's HAProxy mode (SERVE_FRONT=haproxy), before each replica's own port; "
              f"its stats on http://127.0.0.1:{haproxy['RAY_SERVE_HAPROXY_STATS_PORT']}/stats", flush=True)


def print_demo_lines(settings: RuntimeSettings) -> None:
    """Where to watch the money loop (docs/demo.md), with the token printed above."""
    base = f"http://{settings.serve_host}:{settings.serve_port}"
    auth = '-H "Authorization: Bearer $TOKEN" ' if settings.auth == "jwt" else ""
    print(f"Demo bank     seeds a past (closes, VaR, settled sweeps, open investments), then executes every order\n"
          f"              and books maturities back (docs/demo.md); follow it with:\n"
          f"              curl {auth}'{base}/sweep-intent?limit=20'          # orders, newest pages last\n"
          f"              curl {auth}{base}/sweep-intent/<order_id>          # status, settlement, investment\n"
          f"              curl {auth}{base}/investments                      # the ladder\n"
          f"              curl {auth}{base}/accounts/<account_id>/investments", flush=True)


def run(opts: RunOptions) -> int:
    configure_logging()
    policy = policy_from_env()
    base = RuntimeSettings.from_env()
    refuse_unrunnable_front(base)
    info = stack.up(with_consul=opts.consul, tls=opts.tls)
    if info.tls:
        os.environ.update(tls_environment(info, base))
        base = RuntimeSettings.from_env()
    update = {"kafka_bootstrap": info.kafka_bootstrap, "database_url": info.postgres_dsn,
              "consul_http_addr": info.consul_http_addr or base.consul_http_addr}
    if base.signer == "vault" and not base.vault_addr:  # no Vault of the operator's own: the stack's OpenBao
        update |= {"vault_addr": info.vault_addr, "vault_token_file": info.vault_token_file}
    settings = base.model_copy(update=update)
    keyring_from_settings(settings)  # refuse to start unsigned before anything else is started
    # Absolute TLS paths for local Ray workers, which inherit this environment from another cwd.
    os.environ.update({key: str(getattr(settings, key.lower())) for key in TLS_FILE_KEYS if settings.tls_enabled})
    stop = asyncio.Event()
    front: tls_front.Front | None = None
    pull: plain.PullFront | None = None
    scraper: prometheus.Server | None = None
    try:
        start_system(settings, policy)
        pull = plain.start(settings, ray.get_runtime_context().gcs_address)
        if opts.prometheus:
            scraper = start_prometheus(settings, info.home)
        print_serve_lines(settings)
        if pull is not None:
            print(f"Pull front    {pull.url}/sweep-intent ({pull.workers} uvicorn worker(s), REST_PULL_WORKERS: "
                  "the same app for the Bank-Connector's pull and POST /balances)", flush=True)
        front = tls_front.start_for(settings, info.home)
        if front is not None:
            routed = "; /sweep-intent and POST /balances to the pull front" if pull is not None else ""
            print(f"REST API TLS  {front.url}/docs (TLS 1.3, client certificate from TLS_CLIENT_CA_FILE{routed})",
                  flush=True)
        print(f"Ray dashboard http://127.0.0.1:{settings.dashboard_port} (sign in with Ray's token: "
              "`ray get-auth-token`, kept in ~/.ray/auth_token)", flush=True)
        if scraper is not None:
            print(f"Prometheus    {scraper.url} (targets: {scraper.paths.targets})", flush=True)
        print(f"Kafka         {settings.kafka_bootstrap}\nPostgres      {settings.database_url}", flush=True)
        if info.tls:
            print(f"Transport     mutual TLS 1.3 on Kafka, Postgres, OpenBao, Consul and Ray's gRPC; certificates in "
                  f"{info.home / 'certs'} (docs/security.md)", flush=True)
        if settings.auth == "jwt":
            print("REST token    export TOKEN=$(treasury-orch token --subject me --scopes orders:read "
                  "balances:read)", flush=True)
            if "vault_addr" not in update:  # the CLI finds the stack's OpenBao by itself, not the operator's Vault
                print(f"              with VAULT_ADDR={settings.vault_addr} "
                      f"VAULT_TOKEN_FILE={settings.vault_token_file}", flush=True)
        if settings.consul_http_addr:
            print(f"Consul        {settings.consul_http_addr} (live config under {settings.consul_kv_prefix})",
                  flush=True)
        if opts.simulate and opts.bank:
            print_demo_lines(settings)
        print("Ctrl-C stops everything.", flush=True)

        async def main() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            if opts.simulate and opts.bank:
                await run_demo(settings, policy, DemoOptions(opts.accounts, opts.rate), stop,
                               lambda line: print(f"Demo bank     {line}", flush=True))
            elif opts.simulate:
                sent = await feed(settings, opts.accounts, opts.rate, stop)
                log.info("simulator stopped after %d events", sent)
            await stop.wait()

        asyncio.run(main())
    finally:
        log.info("stopping")
        if front is not None:
            tls_front.stop(info.home, front)
        if pull is not None:
            plain.stop(pull)
        if scraper is not None:
            prometheus.stop(scraper)
        if ray.is_initialized():
            node_id = ray.get_runtime_context().get_node_id()
            serve.shutdown()
            stop_actors(settings)
            ray.shutdown()
            serve_front.remove_haproxy_files(settings, node_id)
        if not opts.keep_stack:
            stack.down()
    return 0
