"""bench/soak: the spec's load profile for real, on the whole system (Ray actors, Serve, Kafka, Postgres).

    .venv/bin/python -m bench.soak [--rate 10] [--minutes 60] [--accounts 100] [--rest-share 0.1]

Starts its own stack (``.stack/soak``), Ray, the actors and Serve, then streams simulated intraday
balances at ``--rate`` events/s for ``--minutes`` (a tenth of the accounts over POST /balances
with a JWT, the rest straight to Kafka), waits until every event is decided and every order
published, and prints events/s, p50/p95/p99 decision latency, orders written and the RSS of every
process at start and end with the growth. A progress line every minute. The figures also go to
``bench/out/soak-<UTC time>.json``. Longer runs: ``--minutes 480``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import time
from datetime import UTC, datetime
from pathlib import Path

from actors.kafka_clients import CONSUMER_GROUP, skip_to_end
from bench import loadgen
from bench.system import RaySystem
from devstack import stack
from devstack.common import pick_free_port
from storage.db import create_pool
from treasury.auth import Scope, mint_token
from treasury.keyring import keyring_from_settings
from treasury.topics import BALANCE_EVENTS

ROOT = Path(__file__).resolve().parents[1]
SOAK_HOME = ROOT / ".stack" / "soak"
OUT = ROOT / "bench" / "out"


async def soak(args: argparse.Namespace) -> loadgen.Report:
    info = stack.up(SOAK_HOME)
    settings = info.settings(shards=args.shards, serve_port=pick_free_port())
    total = int(args.rate * args.minutes * 60)
    prefix = f"S{time.time_ns() // 10**6 % 10**9:09d}-"
    profiles, events = loadgen.feed(args.accounts, math.ceil(total / args.accounts), prefix)
    events = events[:total]
    pool = await create_pool(settings.database_url, max_size=3)
    await loadgen.register(pool, profiles)
    skip_to_end(settings.kafka_bootstrap, CONSUMER_GROUP, BALANCE_EVENTS.name)
    OUT.mkdir(parents=True, exist_ok=True)
    stamp = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    system = RaySystem({**settings.as_env(), "LOG_LEVEL": "WARNING"}, settings.serve_port,
                       OUT / f"soak-{stamp}-system.log")
    try:
        print(f"system up in {system.start():.1f} s", flush=True)
        token = mint_token(keyring_from_settings(settings), settings.token_signing_key, "soak",
                           [Scope.BALANCES_WRITE.value], ttl_s=24 * 3600)
        boot = loadgen.rss_snapshot(SOAK_HOME, [system.pid, os.getpid()],
                                    {system.pid: "ray driver", os.getpid(): "load generator"})
        rest = loadgen.rest_accounts(profiles, args.rest_share)
        print(f"soak: {total} events, {args.accounts} accounts ({len(rest)} over REST), {args.rate} events/s "
              f"for {args.minutes} min; started {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}", flush=True)
        gen = loadgen.LoadGenerator(settings.kafka_bootstrap, system.base_url, {"Authorization": f"Bearer {token}"},
                                    rest, rate=args.rate)
        report = await loadgen.drive(pool, gen, events, SOAK_HOME, system.pid, timeout=args.minutes * 60 + 600,
                                     progress_every=60)
        print(f"\nRSS right after start-up: {sum(r[2] for r in boot):.0f} MiB in total; the growth below is "
              "measured from the steady state (a tenth of the events decided) to the end", flush=True)
        print(report.text(), flush=True)
        out = OUT / f"soak-{stamp}.json"
        out.write_text(json.dumps({"rate": args.rate, "minutes": args.minutes, "accounts": args.accounts,
                                   **report.as_dict(), "rss_boot": boot, "rss_start": report.rss_start,
                                   "rss_end": report.rss_end}, indent=2))
        print(f"figures written to {out}", flush=True)
        return report
    finally:
        await pool.close()
        system.stop()
        if not args.keep_stack:
            stack.down(SOAK_HOME)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=10.0, help="events per second")
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--rest-share", type=float, default=0.1, help="share of the accounts posting over REST")
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--keep-stack", action="store_true", help="leave .stack/soak running afterwards")
    args = parser.parse_args()
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    asyncio.run(soak(args))


if __name__ == "__main__":
    main()
