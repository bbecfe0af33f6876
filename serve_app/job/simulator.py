"""A feed standing in for Finastra: realistic, reproducible balance streams per account.

Each account follows a casino-like daily cycle: takings flow in through the evening and night
and peak at weekends, payroll and suppliers flow out every morning. Most accounts take in a little
more than they pay out every day (their VaR is within the limit: term sweeps); every fifth one,
starting with the third, pays jackpots: its days swing widely (VaR breached: overnight sweeps).
Every simulated morning brings a prior-day closing statement (camt.053 equivalent, CLBD) and the
day brings intraday available balances (camt.052, ITAV) with the bank's 24 h outflow projection.
The same seed always gives the same events, so a test can compare two runs event for event.

The balances are those of a ``ModelBank`` (``serve_app.job.bank.model``): give the simulator the
bank the demo Bank-Connector books into, and every balance after a booking shows it.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from confluent_kafka import Producer

from actors.kafka_clients import produce_waiting
from schemas.balance_event import BalanceEvent
from schemas.balance_record import encode
from serve_app.job.bank.model import ModelBank
from storage.accounts import Account
from treasury.topics import BALANCE_EVENTS

CENT = Decimal("0.01")
OUTFLOW_SHARE = Decimal("0.95")  # of a day's takings, paid out every morning
EPOCH = datetime(2025, 6, 2, tzinfo=UTC)  # a Monday


@dataclass(frozen=True)
class SimProfile:
    account: Account
    opening_usd: Decimal
    daily_takings_usd: Decimal
    volatile: bool = False  # jackpots: days swing widely, VaR above the limit

    @property
    def projection_usd(self) -> Decimal:
        """The bank's 24 h outflow projection: a day's payroll and suppliers."""
        return (self.daily_takings_usd * OUTFLOW_SHARE).quantize(CENT)


def make_accounts(n: int, seed: int = 7, prefix: str | None = None) -> list[SimProfile]:
    """``n`` accounts, every fifth one ESG-minded and every fifth one (another) volatile, with
    balances from 5 to 50 million.

    Ids look like Finastra DDA numbers (``prefix`` + 8 digits); give each run its own prefix
    when events must not be mistaken for an earlier run's."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible simulation, not security
    head = f"9{seed % 10}" if prefix is None else prefix
    profiles = []
    for i in range(n):
        account = Account(
            account_id=f"{head}{i:08d}",
            esg_pref=i % 5 == 4,
            min_balance_usd=Decimal(rng.randrange(5, 20)) * Decimal(100_000),
            # what a bank's KYC system would attach; travels into each order's aml_tags
            aml_tags={"kyc_tier": "AB"[i % 2], "purpose": "CASH-SWEEP"},
        )
        opening = Decimal(rng.randrange(5_000, 50_000)) * Decimal(1_000)
        profiles.append(SimProfile(account, opening, (opening * Decimal("0.04")).quantize(CENT), volatile=i % 5 == 2))
    return profiles


def hourly_net_flow(profile: SimProfile, at: datetime, rng: random.Random) -> Decimal:
    """One hour's net flow: takings by night (more from Friday to Sunday), outflows every morning, noise.

    A day's takings are ``daily_takings_usd`` (1.15 times that from Friday to Sunday) and its outflows
    ``OUTFLOW_SHARE`` of it, so a calm account gains a little every day (its noise is small) and its
    1-day VaR is nil; a volatile one swings by about 60 % of a day's takings."""
    hour, weekday = at.hour, at.weekday()
    takings = float(profile.daily_takings_usd)
    night = 0.5 + 0.5 * math.cos((hour - 23) / 24 * 2 * math.pi)
    weekend = 1.15 if weekday >= 4 else 1.0
    inflow = takings / 12 * night * weekend
    outflow = takings * float(OUTFLOW_SHARE) / 4 if 8 <= hour < 12 else 0.0
    noise = rng.gauss(0, takings / (8 if profile.volatile else 400))
    return Decimal(str(round(inflow - outflow + noise, 2)))


class FeedSimulator:
    """Deterministic event stream: step through simulated time, every account each step.

    ``bank`` holds the balances (a new ``ModelBank`` at the profiles' openings when not given); a
    demo Bank-Connector booking into the same bank is seen in every later balance."""

    def __init__(self, profiles: Sequence[SimProfile], seed: int = 7, start: datetime = EPOCH,
                 step: timedelta = timedelta(hours=1), bank: ModelBank | None = None) -> None:
        self.profiles = list(profiles)
        self._rng = random.Random(seed)  # noqa: S311 - a reproducible simulation, not security
        self._step = step
        self.now = start
        self.bank = bank if bank is not None else ModelBank.opening(
            {p.account.account_id: p.opening_usd for p in self.profiles},
            {p.account.account_id: p.account.min_balance_usd for p in self.profiles})
        self._day: date = start.date()

    @property
    def balances(self) -> dict[str, Decimal]:
        return self.bank.balances

    def events(self, limit: int | None = None) -> Iterator[BalanceEvent]:
        produced = 0
        while limit is None or produced < limit:
            for event in self._tick():
                yield event
                produced += 1
                if limit is not None and produced >= limit:
                    return

    def advance(self, until: datetime) -> list[BalanceEvent]:
        """Step up to ``until`` with the flows and the closing statements, but no intraday balance:
        the quiet days of a seeded history. Returns the closes, in order."""
        closes: list[BalanceEvent] = []
        while self.now + self._step <= until:
            closes.extend(self._tick(intraday=False))
        return closes

    def tick(self) -> list[BalanceEvent]:
        """One step: the closes when a day ended, then every account's intraday balance."""
        return self._tick()

    def report(self) -> list[BalanceEvent]:
        """Every account's intraday balance as of now."""
        return [self.bank.intraday(p.account.account_id, self.now, p.projection_usd) for p in self.profiles]

    def _tick(self, intraday: bool = True) -> list[BalanceEvent]:
        out: list[BalanceEvent] = []
        self.now += self._step
        if self.now.date() != self._day:
            close_day, self._day = self._day, self.now.date()
            out.extend(self.bank.closing(p.account.account_id, close_day) for p in self.profiles)
        share = Decimal(self._step.total_seconds() / 3600)
        for p in self.profiles:
            self.bank.flow(p.account.account_id, (hourly_net_flow(p, self.now, self._rng) * share).quantize(CENT))
        if intraday:
            out.extend(self.report())
        return out


def live(profiles: Sequence[SimProfile], rate: float, seed: int = 7, bank: ModelBank | None = None) -> FeedSimulator:
    """A feed whose simulated clock follows the real one at ``rate`` events/s: every run brings
    new events (a restart does not replay the previous run's ids) dated about now."""
    step = timedelta(seconds=max(len(profiles), 1) / rate)
    start = datetime.now(UTC).replace(microsecond=0) - step
    return FeedSimulator(profiles, seed=seed, start=start, step=step, bank=bank)


def produce_all(producer: Producer, events: Sequence[BalanceEvent]) -> int:
    """Send as fast as the broker takes them; returns how many were not delivered.

    Records are encoded as ``POST /balances`` encodes them (``schemas.balance_record``), so the
    shards see the same headers whichever way an event came in.
    """
    for event in events:
        record = encode(event)
        produce_waiting(producer, BALANCE_EVENTS.name, record.key, record.value, headers=record.headers)
    return producer.flush(60)


async def stream(producer: Producer, events: Iterator[BalanceEvent], rate: float, stop: asyncio.Event,
                 limit: int | None = None) -> int:
    """Paced at ``rate`` events/s until ``stop`` (or ``limit``); returns how many were sent."""
    sent = 0
    started = time.monotonic()
    for event in events:
        if stop.is_set() or (limit is not None and sent >= limit):
            break
        record = encode(event)
        producer.produce(BALANCE_EVENTS.name, key=record.key, value=record.value, headers=record.headers)
        producer.poll(0)
        sent += 1
        ahead = sent / rate - (time.monotonic() - started)
        if ahead > 0:
            await asyncio.sleep(ahead)  # pacing, not synchronisation
    await asyncio.to_thread(producer.flush, 30)
    return sent
