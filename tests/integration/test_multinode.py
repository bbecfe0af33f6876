"""The multi-node rehearsal: a real two-node Ray cluster on this machine, deployed as an operator would.

A head (``ray start --head``) and a second node that joins it (``ray start --address``), each
with one CPU, free ports and a temp dir of its own, started by this module and stopped by killing
exactly their process groups. On it, in order:

1. the generated ``deploy/serve_config.yaml`` goes through ``serve deploy`` (Ray's own CLI);
2. ``treasury-orch deploy up`` (RAY_ADDRESS) starts the actors and the app; the shards land on
   both nodes; a repeated ``up`` changes nothing; balance events give exactly the orders the
   policy gives on one node;
3. ``treasury-orch var recompute`` runs unchanged on the cluster: its VaR workers run on both
   nodes and the stored VaR equals ``risk.kernels`` on the same history;
4. ``treasury-orch deploy down`` removes the app and the actors.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
import pytest
import ray
import yaml
from ray.util.state import list_actors

from actors.kafka_clients import CONSUMER_GROUP
from devstack.common import pids_matching, wait_until
from risk.history import load_history
from risk.kernels import var_and_es
from serve_app.cli import artifacts
from storage import accounts, var_results
from tests.integration.conftest import free_port, new_accounts, register
from tests.integration.kafka_tools import produce_events, skip_to_end
from tests.integration.ray_nodes import RAY, LocalCluster, run_cli, start_cluster
from tests.integration.test_ray_system import (
    VAR_USD,
    all_decided_and_sent,
    expected_orders,
    feed,
    ledger_orders,
    wait_for,
)
from treasury.actor_names import NAMESPACE, shard_name
from treasury.settings import RuntimeSettings

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Rehearsal:
    cluster: LocalCluster
    settings: RuntimeSettings
    env: dict[str, str]  # an operator's shell: RAY_ADDRESS and the system's settings

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.serve_port}"


def report(line: str) -> None:
    """The rehearsal's figures, for the record (`pytest -s` shows them)."""
    print(f"[multinode] {line}", flush=True)


@pytest.fixture(scope="module")
def rehearsal(stack) -> Iterator[Rehearsal]:  # type: ignore[no-untyped-def]
    settings = stack.settings(shards=2, serve_port=free_port())  # Kafka, Postgres and the stack's Vault
    skip_to_end(stack.kafka_bootstrap, CONSUMER_GROUP, "balance_events")  # this cluster's shards start at the end
    # Token auth on every node and CLI (a joining node or an explicit address does not enable it by
    # itself). Ray gives an agent 15 s to start by default; a machine busy with other work may need more.
    auth = {"RAY_AUTH_MODE": "token"}
    node_env = {**os.environ, **settings.as_env(), **auth, "RAY_agent_register_timeout_ms": "120000"}
    cluster = start_cluster(node_env, nodes=2, num_cpus=1)
    try:
        nodes = [n for n in ray.nodes() if n["Alive"]]
        report(f"nodes: {len(nodes)} alive, {[n['NodeID'][:8] for n in nodes]}, address {cluster.address}")
        yield Rehearsal(cluster, settings, {**os.environ, **settings.as_env(), **auth, "RAY_ADDRESS": cluster.address})
    finally:
        ray.shutdown()
        cluster.stop()
        assert not pids_matching(str(cluster.temp_dir)), "processes of the test cluster outlived it"


def placement(class_name: str) -> dict[str, str]:
    """Actor name (or id) -> node id, from Ray's state API; dead actors keep the node they ran on."""
    found = list_actors(filters=[("class_name", "=", class_name)], limit=1000, raise_on_missing_output=False)
    return {a.name or a.actor_id: a.node_id for a in found if a.node_id}


def cli_json(rehearsal: Rehearsal, *args: str) -> dict[str, Any]:
    done = run_cli(list(args), rehearsal.env)
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_the_generated_serve_config_deploys_with_serve_deploy(rehearsal: Rehearsal, tmp_path: Path) -> None:
    config = yaml.safe_load((ROOT / artifacts.SERVE_CONFIG).read_text())
    assert config == artifacts.serve_config()
    # Loopback and a free port here; the rest (import path, builder args, deployment options) as generated.
    config["http_options"] = {"host": "127.0.0.1", "port": rehearsal.settings.serve_port}
    path = tmp_path / "serve_config.yaml"
    path.write_text(yaml.safe_dump(config))
    serve_cli = str(Path(RAY).with_name("serve"))
    dashboard = ["--address", rehearsal.cluster.dashboard_url]
    deployed = subprocess.run([serve_cli, "deploy", str(path), *dashboard], env=rehearsal.env, capture_output=True,
                              text=True, timeout=120, check=False)
    assert deployed.returncode == 0, deployed.stderr[-3000:]
    try:
        def healthy() -> bool:
            try:
                return httpx.get(f"{rehearsal.base_url}/healthz", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        assert wait_until(healthy, 120, first_interval_s=0.5), "the app from serve_config.yaml never answered"
        status = subprocess.run([serve_cli, "status", *dashboard], env=rehearsal.env, capture_output=True,
                                text=True, timeout=60, check=True)
        app = yaml.safe_load(status.stdout)["applications"][config["applications"][0]["name"]]
        assert app["status"] == "RUNNING" and "Ingress" in app["deployments"]
        # The KubeRay way: the app is declared, `deploy up --actors-only` adds the actors it talks to.
        actors = cli_json(rehearsal, "deploy", "up", "--actors-only")
        assert actors["app"] is None and {"shard-0", "shard-1", "coordinator"} <= set(actors["actors"])
        ready = httpx.get(f"{rehearsal.base_url}/readyz", timeout=10)
        assert ready.status_code == 200 and ready.json()["checks"]["shards"] == "ok"
    finally:
        # `deploy up` deploys the same app through the Python API next: one owner at a time.
        subprocess.run([serve_cli, "shutdown", "-y", *dashboard], env=rehearsal.env, capture_output=True,
                       timeout=120, check=True)


@pytest.fixture(scope="module")
def deployed(rehearsal: Rehearsal) -> dict[str, Any]:
    return cli_json(rehearsal, "deploy", "up")


async def test_deploy_up_spreads_the_shards_and_decides_as_one_node_does(
    rehearsal: Rehearsal, deployed: dict[str, Any], pool: asyncpg.Pool
) -> None:
    assert deployed["nodes"] == 2 and deployed["shards"] == 2
    shards = [shard_name(i) for i in range(2)]
    assert {*shards, "coordinator", "var-scheduler"} <= set(deployed["actors"])
    report(f"deploy up: {json.dumps({k: v[:8] for k, v in deployed['actors'].items()})}")
    assert len({deployed["actors"][s] for s in shards}) == 2, f"both shards on one node: {deployed['actors']}"

    handles = [ray.get_actor(s, namespace=NAMESPACE) for s in shards]
    pids = [await h.pid.remote() for h in handles]
    again = cli_json(rehearsal, "deploy", "up")  # idempotent: the running actors are found, not replaced
    assert again["actors"] == deployed["actors"] and [await h.pid.remote() for h in handles] == pids
    resharded = run_cli(["deploy", "up"], {**rehearsal.env, "SHARDS": "3"})  # would share partitions: refused
    assert resharded.returncode == 2 and "deploy down" in resharded.stderr

    accts = new_accounts(12)
    await register(pool, accts, var_usd=VAR_USD)
    events = feed(accts, per_account=6, start=datetime.now(UTC) - timedelta(days=1))
    expected = expected_orders(accts, events)
    produce_events(rehearsal.settings.kafka_bootstrap, events)
    await wait_for(lambda: all_decided_and_sent(pool, accts, len(events)), timeout=120, what="all events decided")
    rows = await ledger_orders(pool, accts)
    got = {r["decision_key"]: (r["product"], r["amount_usd"]) for r in rows}
    assert got == expected and len(rows) == len(expected)
    held = [sum([await h.position.remote(a.account_id) is not None for a in accts]) for h in handles]
    assert all(held) and sum(held) == len(accts)  # both nodes' shards decided some of the accounts
    report(f"orders: {len(rows)} from {len(events)} events on 12 accounts, accounts per shard {held}, "
           f"equal to the single-node policy run: {got == expected}")
    async with httpx.AsyncClient(base_url=rehearsal.base_url, timeout=10) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"]["shards"] == "ok"


async def test_var_recompute_spreads_over_both_nodes_and_equals_the_kernel(
    rehearsal: Rehearsal, deployed: dict[str, Any], pool: asyncpg.Pool, tmp_path: Path
) -> None:
    ids = [f"MN{os.getpid()}-{i:04d}" for i in range(400)]
    await accounts.upsert(pool, [accounts.Account(a) for a in ids])
    rng = np.random.default_rng(11)
    flows = tmp_path / "flows.csv"
    with flows.open("w") as f:
        f.write("account_id,date,net_flow_usd\n")
        for account in ids:
            for d, v in enumerate(rng.normal(0, 1e5, 30)):
                f.write(f"{account},2025-01-{d + 1:02d},{v:.2f}\n")
    summary = cli_json(rehearsal, "var", "recompute", "--source", str(flows), "--window", "30", "--workers", "2")
    # pushed counts accounts a running shard holds: these have had no balance yet, so none
    assert (summary["accounts"], summary["with_var"], summary["pushed"]) == (len(ids), len(ids), 0)
    workers = placement("VarWorker")  # the CLI's workers (they ended with it; Ray remembers where they ran)
    assert len(workers) == 2 and len(set(workers.values())) == 2, f"VaR workers on {workers}"

    history = load_history(flows, 30)
    direct = var_and_es(history.flows, 0.99)
    expected = {a: Decimal(repr(round(float(v), 4))) for a, v in zip(history.account_ids, direct.var, strict=True)}
    stored = await var_results.latest(pool, ids)
    assert {a: r.var_usd for a, r in stored.items()} == expected
    report(f"var recompute: {len(ids)} accounts, VaR workers on {len(set(workers.values()))} nodes, "
           f"{sum(stored[a].var_usd == expected[a] for a in ids)}/{len(ids)} equal to risk.kernels")


def test_deploy_down_removes_the_app_and_the_actors(rehearsal: Rehearsal, deployed: dict[str, Any]) -> None:
    down = cli_json(rehearsal, "deploy", "down")
    assert down["app_deleted"] is True and set(down["stopped"]) == {"shard-0", "shard-1", "coordinator"}
    assert not set(ray.util.list_named_actors()) & {"shard-0", "shard-1", "coordinator", "var-scheduler"}
    assert cli_json(rehearsal, "deploy", "down") == {"app_deleted": False, "stopped": []}  # nothing left to stop
    refused = run_cli(["deploy", "up"], {k: v for k, v in rehearsal.env.items() if k != "RAY_ADDRESS"})
    assert refused.returncode == 2 and "RAY_ADDRESS" in refused.stderr
