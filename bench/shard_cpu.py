"""bench/shard_cpu: the CPU a shard spends on each event, without Kafka, Postgres or Ray.

    .venv/bin/python -m bench.shard_cpu [--events 20000] [--accounts 500] [--batch 500] [--profile]

The pipeline benchmark's figures move with everything else on the machine (the broker, Postgres,
other work); this one times only the shard's own Python, with the process's CPU clock, on the
very feed ``bench/pipeline`` sends (``serve_app.job.simulator``, its order-rich mix included). It
runs a shard's batch as ``ShardWorker.process`` does, with the I/O left out:

- ``validate``: the envelope checks and the event's schema (``entry_intake.split``, ``validate``,
  ``known_only``);
- ``plan``: ``plan_batch``, i.e. apply, decide, build each order and each cash position;
- ``rows``: encrypt each ``raw_event`` and fingerprint each row (``RowPlan.row``);
- ``positions``: the position messages' JSON;
- ``sign``: the coordinator's share of an order, its canonical bytes and signature (a local
  ``DevKeyring`` instead of Vault's Transit: the HTTP round trip is not CPU of ours).

Each batch's orders stay open (as the ledger would hold them) for the later batches, so the
decisions see the pending sweeps a real run sees. ``--profile`` prints cProfile's top functions.
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import pstats
import time
from datetime import UTC, datetime

from confluent_kafka import Message

from actors import entry_intake
from actors.account_state import AccountState
from actors.batch_plan import LedgerView, known_only, plan_batch, position_message, validate
from serve_app.job import simulator
from serve_app.job.bank.model import encode_report
from storage.orders import OpenOrder
from treasury.envelope import EnvelopeCipher
from treasury.keyring import DevKeyring
from treasury.metrics import Stopwatch
from treasury.order_status import OrderStatus
from treasury.settings import PolicyConfig
from treasury.signing import sign_orders
from treasury.topics import BALANCE_EVENTS

PHASES = ("validate", "plan", "rows", "positions", "sign")


def feed_messages(events: int, accounts: int) -> tuple[list[Message], dict[str, AccountState]]:
    """The simulator's records as consumed messages, and a state (with a VaR) for every account."""
    profiles = simulator.make_accounts(accounts, prefix="BENCHCPU-")
    records = [encode_report(e) for e in simulator.FeedSimulator(profiles).events(events)]
    stamp = int(time.time() * 1000)
    msgs = [Message(topic=BALANCE_EVENTS.name, partition=i % BALANCE_EVENTS.partitions, offset=i, key=r.key,
                    value=r.value, headers=r.headers, timestamp=(1, stamp)) for i, r in enumerate(records)]
    states = {p.account.account_id: AccountState(p.account, var_usd=50_000.0, var_days=250) for p in profiles}
    return msgs, states


class ShardCpu:
    """A shard's batches with the I/O taken out; ``phase_s`` holds the CPU seconds of each phase."""

    def __init__(self, states: dict[str, AccountState]) -> None:
        self.states = states
        self.open_orders: dict[str, list[OpenOrder]] = {}
        self.keyring = DevKeyring(bytes(32))
        self.cipher = EnvelopeCipher(self.keyring, "balances")
        self.config = PolicyConfig()
        self.phase_s = dict.fromkeys(PHASES, 0.0)
        self.orders = 0
        self._ids = (f"01930000-0000-7000-8000-{n:012x}" for n in itertools.count())

    def batch(self, msgs: list[Message]) -> None:
        clock = Stopwatch(self.phase_s, time.process_time)
        balance_msgs, _entries, _refused = entry_intake.split(msgs)
        events, rejected = validate(balance_msgs)
        events, unknown = known_only(events, self.states)
        clock("validate")
        accounts = {e.event.account_id for e in events}
        ledger = LedgerView({}, [o for a in accounts for o in self.open_orders.get(a, ())])
        plan = plan_batch(events, [*rejected, *unknown], {a: self.states[a] for a in accounts}, ledger, msgs,
                          self.config, clock=lambda: datetime.now(UTC), received=time.time(),
                          new_id=lambda: next(self._ids))
        self.states.update(plan.states)
        clock("plan")
        for row in plan.rows:
            _ = row.row(self.cipher.encrypt(row.document, row.context)).fingerprint
        clock("rows")
        for position in plan.positions:
            position_message(position)
        clock("positions")
        if plan.orders:
            sign_orders(self.keyring, "orders", [o.payload for o in plan.orders])
        clock("sign")
        self.orders += len(plan.orders)
        for o in plan.orders:  # open until settled: pending for the account's later balances
            self.open_orders.setdefault(o.account_id, []).append(OpenOrder(o.account_id, o.amount_usd,
                                                                           OrderStatus.SENT))


def run(events: int, accounts: int, batch: int) -> ShardCpu:
    msgs, states = feed_messages(events, accounts)
    shard = ShardCpu(states)
    for start in range(0, len(msgs), batch):
        shard.batch(msgs[start:start + batch])
    return shard


def report(shard: ShardCpu, events: int) -> list[str]:
    total = sum(shard.phase_s.values())
    lines = [f"{events} events, {shard.orders} orders ({100 * shard.orders / max(events, 1):.0f} %): "
             f"{total * 1e6 / max(events, 1):.1f} us of CPU per event, "
             f"{events / total if total else 0:,.0f} events/s on one core"]
    lines += [f"  {phase:<10} {seconds * 1e6 / max(events, 1):7.1f} us/event"
              for phase, seconds in shard.phase_s.items()]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--accounts", type=int, default=500)
    parser.add_argument("--batch", type=int, default=500, help="events per batch (a shard takes up to 1,000)")
    parser.add_argument("--profile", action="store_true", help="also print cProfile's 40 most costly functions")
    args = parser.parse_args()
    if args.profile:
        profiler = cProfile.Profile()
        shard = profiler.runcall(run, args.events, args.accounts, args.batch)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(40)
    else:
        shard = run(args.events, args.accounts, args.batch)
    for line in report(shard, args.events):
        print(line)


if __name__ == "__main__":
    main()

