"""A feed standing in for Finastra: realistic, reproducible balance streams per account.

Each account follows a casino-like daily cycle: takings flow in through the evening and night
and peak at weekends, payroll and suppliers flow out on weekday mornings. Every simulated morning
brings a prior-day closing statement (camt.053 equivalent, CLBD) and the day brings intraday
available balances (camt.052, ITAV) with the bank's 24 h outflow projection. The same seed
always gives the same events, so a test can compare two runs event for event.
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
from schemas.balance_event import BalanceCode, BalanceEvent, BalanceKind
from schemas.balance_record import encode
from storage.accounts import Account
from treasury.topics import BALANCE_EVENTS

CENT = Decimal("0.01")
EPOCH = datetime(2025, 6, 2, tzinfo=UTC)  # a Monday


@dataclass(frozen=True)
class SimProfile:
    account: Account
    opening_usd: Decimal
    daily_takings_usd: Decimal


def make_accounts(n: int, seed: int = 7, prefix: str | None = None) -> list[SimProfile]:
    """``n`` accounts, every fifth one ESG-minded, with balances from 5 to 50 million.

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
        profiles.append(SimProfile(account, opening, (opening * Decimal("0.04")).quantize(CENT)))
    return profiles


def hourly_net_flow(profile: SimProfile, at: datetime, rng: random.Random) -> Decimal:
    """One hour's net flow: takings by night (more at weekends), outflows on weekday mornings, noise."""
    hour, weekday = at.hour, at.weekday()
    night = 0.5 + 0.5 * math.cos((hour - 23) / 24 * 2 * math.pi)
    weekend = 1.8 if weekday >= 4 else 1.0
    inflow = float(profile.daily_takings_usd) / 12 * night * weekend
    outflow = float(profile.daily_takings_usd) / 4 if weekday < 5 and 8 <= hour < 12 else 0.0
    noise = rng.gauss(0, float(profile.daily_takings_usd) / 40)
    return Decimal(str(round(inflow - outflow + noise, 2)))


class FeedSimulator:
    """Deterministic event stream: step through simulated hours, every account each hour."""

    def __init__(self, profiles: Sequence[SimProfile], seed: int = 7, start: datetime = EPOCH,
                 step: timedelta = timedelta(hours=1)) -> None:
        self.profiles = list(profiles)
        self._rng = random.Random(seed)  # noqa: S311 - a reproducible simulation, not security
        self._step = step
        self.now = start
        self.balances = {p.account.account_id: p.opening_usd for p in self.profiles}
        self._closes: dict[str, Decimal] = dict(self.balances)
        self._day: date = start.date()

    def events(self, limit: int | None = None) -> Iterator[BalanceEvent]:
        produced = 0
        while limit is None or produced < limit:
            for event in self._tick():
                yield event
                produced += 1
                if limit is not None and produced >= limit:
                    return

    def _tick(self) -> list[BalanceEvent]:
        out: list[BalanceEvent] = []
        self.now += self._step
        if self.now.date() != self._day:
            self._day = self.now.date()
            out.extend(self._closing_statement(p) for p in self.profiles)
        share = Decimal(self._step.total_seconds() / 3600)
        for p in self.profiles:
            acct = p.account.account_id
            self.balances[acct] += (hourly_net_flow(p, self.now, self._rng) * share).quantize(CENT)
            projection = (p.daily_takings_usd * Decimal("0.8")).quantize(CENT)
            out.append(BalanceEvent(
                event_id=f"{acct}-{self.now:%Y%m%dT%H%M%S.%f}-ITAV", account_id=acct, as_of_ts=self.now,
                kind=BalanceKind.INTRADAY, balance_code=BalanceCode.ITAV, available_usd=self.balances[acct],
                projected_outflows_24h_usd=projection,
            ))
        return out

    def _closing_statement(self, p: SimProfile) -> BalanceEvent:
        acct = p.account.account_id
        close_day = self._day - timedelta(days=1)
        self._closes[acct] = self.balances[acct]
        return BalanceEvent(
            event_id=f"{acct}-{close_day:%Y%m%d}-CLBD", account_id=acct,
            as_of_ts=datetime.combine(close_day, datetime.max.time(), tzinfo=UTC).replace(microsecond=999000),
            kind=BalanceKind.PRIOR_DAY, balance_code=BalanceCode.CLBD, booked_usd=self.balances[acct],
        )


def live(profiles: Sequence[SimProfile], rate: float, seed: int = 7) -> FeedSimulator:
    """A feed whose simulated clock follows the real one at ``rate`` events/s: every run brings
    new events (a restart does not replay the previous run's ids) dated about now."""
    step = timedelta(seconds=max(len(profiles), 1) / rate)
    start = datetime.now(UTC).replace(microsecond=0) - step
    return FeedSimulator(profiles, seed=seed, start=start, step=step)


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
