"""Rehearsal: `treasury-orch var recompute` on a two-node Ray cluster, unchanged, via RAY_ADDRESS.

    eval "$(.venv/bin/treasury-orch infra up | grep export)"
    .venv/bin/python -m bench.var_multinode [--accounts 25000] [--days 30]

Two raylets on this machine (Ray's own ``cluster_utils.Cluster``); prints where the VaR workers
ran and the largest difference from the single-process ``var compute`` of the same file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import ray
from ray.cluster_utils import Cluster
from ray.util.state import list_actors

from storage import accounts
from storage.db import create_pool

CLI = [sys.executable, "-m", "serve_app.cli"]


def write_flows(path: Path, ids: list[str], days: int) -> None:
    rng = np.random.default_rng(3)
    with path.open("w") as f:
        f.write("account_id,date,net_flow_usd\n")
        for account in ids:
            for d, v in enumerate(rng.normal(0, 1e5, days)):
                f.write(f"{account},2025-01-{d + 1:02d},{v:.2f}\n")


async def register(ids: list[str]) -> None:
    pool = await create_pool(os.environ["DATABASE_URL"], max_size=1)
    await accounts.upsert(pool, [accounts.Account(a) for a in ids])
    await pool.close()


async def stored(days: int) -> dict[str, float]:
    pool = await create_pool(os.environ["DATABASE_URL"], max_size=1)
    rows = await pool.fetch(
        "SELECT account_id, var_usd FROM var_result WHERE account_id LIKE 'MN%' AND window_days = $1", days
    )
    await pool.close()
    return {r["account_id"]: float(r["var_usd"]) for r in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=25_000, help="> 10,000 so both workers get rows")
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    ids = [f"MN{i:06d}" for i in range(args.accounts)]
    flows = Path(tempfile.mkdtemp()) / "flows.csv"
    write_flows(flows, ids, args.days)
    asyncio.run(register(ids))

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        # S603: the project's own CLI with arguments built here, never from outside input
        argv = [*CLI, "var", "recompute", "--source", str(flows), "--window", str(args.days), "--workers", "2"]
        run = subprocess.run(argv, env={**os.environ, "RAY_ADDRESS": cluster.address},  # noqa: S603
                             capture_output=True, text=True, timeout=900, check=True)
        print(f"nodes: {len(cluster.list_all_nodes())}; recompute: {run.stdout.strip()}")
        ray.init(address=cluster.address)
        placement = {a.node_id for a in list_actors(filters=[("class_name", "=", "VarWorker")], limit=100)}
        print(f"VaR workers ran on {len(placement)} distinct node(s)")
    finally:
        ray.shutdown()
        cluster.shutdown()
    single = subprocess.run([*CLI, "var", "compute", str(flows), "--window", str(args.days)],  # noqa: S603
                            capture_output=True, text=True, timeout=600, check=True)
    expected = {r["account_id"]: r["var_usd"] for r in map(json.loads, single.stdout.splitlines())}
    got = {k: v for k, v in asyncio.run(stored(args.days)).items() if k in expected}  # this run's accounts
    worst = max(abs(v - round(expected[k], 4)) for k, v in got.items())
    print(f"var_result rows {len(got)}; largest difference from single-process `var compute`: {worst:.6f} USD "
          f"(4-dp storage)")


if __name__ == "__main__":
    main()
