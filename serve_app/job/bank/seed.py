"""The demo's past, sent through the real pipeline so that it starts mid-life.

``seed_history`` plays the accounts' last ``history_days`` (``model.seed_plan``) into the running
system, hour by hour at the model bank, oldest first:

1. The days' statements up to the first past sweep day go onto ``balance_events``: each day's
   operating entries (a booked CRDT of its takings, a DBIT of its payments) and its close (CLBD),
   all encoded by ``model.encode_report``; once the shards have stored the last closes
   (``GET /accounts/{id}/balances/{event_id}``), a VaR recompute of the demo
   accounts runs (``POST /risk/var/recompute``, polled until done): VaR is known before any past sweep.
2. Day by day to yesterday: the statements; the maturities due that day booked back at 07:00; on a
   sweep day an intraday balance (ITAV) of every account at 10:00, and once the shards have decided
   on all of them, the orders they made are pulled, ACKed and their debits booked at 11:00 by the
   demo Bank-Connector, which then waits until the orchestrator shows each SETTLED with its investment.

Nothing is written to Postgres here except through the orchestrator: the accounts are registered
by the caller (``treasury-orch accounts add`` does the same), everything else is a bank report on
Kafka or a REST call. Every instant is in the past, so ``MAX_CLOCK_SKEW_S`` never refuses one; the
investments maturing on ``plan.live_from`` are left open, for the live bank to book back.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time
from typing import Any

import httpx

from schemas.balance_event import BalanceEvent
from serve_app.job.bank.connector import BankConnector, BankError, send
from serve_app.job.bank.model import BankReport, Order, SeedPlan, unsettled_within_headroom
from serve_app.job.simulator import FeedSimulator, SimProfile

SWEEP_AT, BOOK_AT, MATURITY_AT = day_time(10), day_time(11), day_time(7)
POLL_S = 0.2  # between two looks at the API while waiting for the pipeline (always under a deadline)


@dataclass
class SeedSummary:
    closes: int = 0
    entries: int = 0  # operating entries: the days' takings and payments
    var_accounts: int = 0
    orders: Counter[str] = field(default_factory=Counter)
    settled: int = 0
    matured: int = 0
    breaches: list[str] = field(default_factory=list)  # the money invariant, should it ever fail
    seconds: float = 0.0


async def until(what: str, check: Callable[[], Awaitable[Any]], timeout_s: float) -> Any:
    """Poll ``check`` until it returns something truthy; BankError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while True:
        try:
            found = await check()
            if found:
                return found
        except (httpx.TransportError, httpx.HTTPStatusError) as exc:  # the API starting or busy: look again
            last_error = exc
        if time.monotonic() > deadline:
            raise BankError(f"{what}: not within {timeout_s:.0f} s" + (f" (last error: {last_error})"
                                                                        if last_error else ""))
        await asyncio.sleep(POLL_S)


async def stored(ops: httpx.AsyncClient, events: Sequence[BalanceEvent], decided: bool, timeout_s: float) -> None:
    """Wait until the ledger holds every one of ``events`` (and, with ``decided``, has decided on it:
    its orders, if any, are durable then)."""
    left = {(e.account_id, e.event_id) for e in events}

    async def check() -> bool:
        for account_id, event_id in sorted(left):
            answer = await ops.get(f"/accounts/{account_id}/balances/{event_id}")
            if answer.status_code == 404:
                return False
            answer.raise_for_status()
            if decided and not answer.json()["decided"]:
                return False
            left.discard((account_id, event_id))
        return True

    await until(f"{len(left)} balance events stored{' and decided' if decided else ''}", check, timeout_s)


async def recompute_var(ops: httpx.AsyncClient, accounts: Sequence[str], timeout_s: float) -> int:
    """A VaR recompute of ``accounts``, waited for: how many got a VaR (rows in ``var_result``)."""
    answer = await ops.post("/risk/var/recompute", json={"accounts": list(accounts)})
    answer.raise_for_status()
    job_id = answer.json()["job_id"]

    async def done() -> dict[str, Any] | None:
        job = (await ops.get(f"/risk/var/recompute/{job_id}")).raise_for_status().json()
        if job["status"] == "failed":
            raise BankError(f"VaR job {job_id} failed: {job.get('error')}")
        return job if job["status"] == "done" else None

    job = await until(f"VaR job {job_id}", done, timeout_s)
    return int(job["counts"]["with_var"])


async def settled(connector: BankConnector, orders: Sequence[Order], timeout_s: float) -> None:
    """Wait until the orchestrator shows every booked one of ``orders`` SETTLED; else the evidence."""
    async def check() -> bool:
        await connector.follow()
        return not any(o.order_id in connector.awaiting for o in orders)

    try:
        await until(f"{len(orders)} orders settled", check, timeout_s)
    except BankError as exc:
        stuck = [o.order_id for o in orders if o.order_id in connector.awaiting][:3]
        evidence = [{"entry": connector.bank.booked[i].model_dump(mode="json"),
                     "order": (await connector.api.get(f"/sweep-intent/{i}")).json()} for i in stuck]
        raise BankError(f"{exc}; booked but not settled: {evidence}") from exc


def at(day: date, when: day_time) -> datetime:
    return datetime.combine(day, when, tzinfo=UTC)


def _count(summary: SeedSummary, statements: Sequence[BankReport]) -> list[BalanceEvent]:
    """Count the statements' closes and entries; the closes."""
    closes = [s for s in statements if isinstance(s, BalanceEvent)]
    summary.closes += len(closes)
    summary.entries += len(statements) - len(closes)
    return closes


async def seed_history(profiles: Sequence[SimProfile], connector: BankConnector, ops: httpx.AsyncClient,
                       plan: SeedPlan, *, seed: int = 7, timeout_s: float = 120.0,
                       progress: Callable[[str], None] | None = None) -> SeedSummary:
    """Play ``plan`` into the running system (module doc); returns what it made."""
    started = time.monotonic()
    summary = SeedSummary()
    say = progress or (lambda _: None)
    sim = FeedSimulator(profiles, seed=seed, start=at(plan.start, day_time(0)), bank=connector.bank)
    connector.clock = lambda: sim.now
    accounts = [p.account.account_id for p in profiles]
    statements = sim.advance(at(plan.sweep_days[0], day_time(0)))
    send(connector.producer, statements)
    await connector.flush()
    closes = _count(summary, statements)
    await stored(ops, closes[-len(profiles):], decided=False, timeout_s=timeout_s)
    summary.var_accounts = await recompute_var(ops, accounts, timeout_s)
    say(f"{summary.closes} closes and {summary.entries} operating entries up to "
        f"{plan.sweep_days[0] - timedelta(days=1)}, "
        f"VaR known for {summary.var_accounts} of {len(accounts)} accounts")
    day = plan.sweep_days[0]
    while day < plan.today:
        await _past_day(sim, connector, ops, plan, day, summary, timeout_s, say)
        day += timedelta(days=1)
    statements = sim.advance(at(plan.today, day_time(0)))  # yesterday's statement
    send(connector.producer, statements)
    await connector.flush()
    _count(summary, statements)
    summary.seconds = time.monotonic() - started
    return summary


async def _past_day(sim: FeedSimulator, connector: BankConnector, ops: httpx.AsyncClient, plan: SeedPlan,
                    day: date, summary: SeedSummary, timeout_s: float, say: Callable[[str], None]) -> None:
    statements = sim.advance(at(day, MATURITY_AT))
    send(connector.producer, statements)
    _count(summary, statements)
    summary.matured += len(await connector.mature(min(day, plan.live_from - timedelta(days=1))))
    if day not in plan.sweep_days:
        return
    send(connector.producer, sim.advance(at(day, SWEEP_AT)))
    reports = sim.report()
    send(connector.producer, reports)
    await connector.flush()
    await stored(ops, reports, decided=True, timeout_s=timeout_s)
    orders: dict[str, Order] = {}

    async def published() -> bool:
        pulled = await connector.pull()
        orders.update((o.order_id, o) for o in pulled.orders)
        return pulled.complete

    await until(f"orders of {day} published", published, timeout_s)
    over = unsettled_within_headroom(connector.bank, list(orders.values()))
    summary.breaches.extend(f"{day} {a}: ordered {usd}, headroom {room}" for a, (usd, room) in over.items())
    send(connector.producer, sim.advance(at(day, BOOK_AT)))
    await connector.execute(list(orders.values()))
    await settled(connector, list(orders.values()), timeout_s)
    summary.orders.update(o.product for o in orders.values())
    summary.settled += len(orders)
    products = ", ".join(f"{n} {p}" for p, n in sorted(Counter(o.product for o in orders.values()).items()))
    say(f"past sweep {day}: {len(orders)} orders ({products or 'none'}) ACKed, booked and SETTLED")
