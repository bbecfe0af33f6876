"""A feed standing in for Finastra: realistic, reproducible balance streams and statements per account.

Each account follows a casino-like cycle. **Takings** flow in every day, through the evening and
the night, 15 % more from Friday to Sunday. **Payments** (suppliers, payroll) leave on business
days only, in the morning (08:00 to 12:00 UTC), by a weekday profile: Monday 1.2 (suppliers),
Tuesday to Thursday 0.9, Friday 1.3 (payroll), weekends nothing; a holiday of the active business
calendar (``BUSINESS_CALENDAR``, the Fed's by default) pays nothing and its payments move to the
next business day, which then carries two days' (``payment_weight``). Every fifth account,
starting with the third, pays jackpots besides: its days swing widely (VaR breached: overnight
sweeps); the others are calm (VaR nil: term sweeps).

The day's reports (``serve_app.job.bank.model``): intraday available balances (camt.052, ITAV)
with the bank's 24 h outflow projection (the payments scheduled in the next 24 hours), and at each
day's end its statement (camt.053): the booked operating entries (a CRDT of the day's gross
takings, a DBIT of its gross payments) and the CLBD close. The same seed always gives the same
events, so a test can compare two runs event for event.

**Calm accounts stay calm.** With T a day's takings from Monday to Thursday (1.15 T Friday to
Sunday) and s = ``PAYMENT_SHARE`` = 0.26, a business day pays s x T x its weight, the weights of
the holidays it carries added. Each hour's takings carry a noise of ±5 % (sd, cut at 3 sd: ±15 %),
each hour's payments ±8 % (cut at ±24 %), so a day's takings are at least 0.85 x its level and its
payments at most 1.24 x theirs. The heaviest day is a Monday after a Friday holiday (July 4 2025,
Juneteenth 2026, Christmas 2026): weight 1.2 + 1.3 = 2.5, so payments ≤ 0.26 x 2.5 x 1.24 T =
0.806 T < 0.85 T ≤ Monday's takings. A Friday after Thanksgiving: 0.26 x 2.2 x 1.24 T = 0.709 T <
1.15 x 0.85 T = 0.978 T; a Tuesday after a Monday holiday: 0.677 T < 0.85 T; an ordinary day at
most 0.26 x 1.3 x 1.24 T = 0.419 T. So a calm account's daily operating flow is positive on every
day, whatever the seed (the Fed never closes two weekdays in a row), its 1-day 99 % VaR is nil and
its sweeps are term sweeps. Typically it keeps about 80 % of its takings: a week takes 7.45 T and
pays s x 5.2 T = 1.35 T. The jackpot accounts pay as before on average (``VOLATILE_PAYMENT_SHARE``:
1.28 x 5.2 T = 6.66 T a week, what 0.95 T a day paid), plus an hourly jackpot noise of sd T / 8:
their days swing by about 60 % of T and their VaR is far above 10 bps.

The balances are those of a ``ModelBank``: give the simulator the bank the demo Bank-Connector
books into, and every balance after a booking shows it. What goes onto Kafka is encoded by one
function, ``model.encode_report`` (a balance with ``encode``, an entry with ``encode_entry``).
"""

from __future__ import annotations

import asyncio
import functools
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
from serve_app.job.bank.model import BankReport, ModelBank, encode_report
from storage.accounts import Account
from treasury import business_calendar
from treasury.topics import BALANCE_EVENTS

CENT = Decimal("0.01")
EPOCH = datetime(2025, 6, 2, tzinfo=UTC)  # a Monday
HOUR = timedelta(hours=1)
# Monday .. Sunday
TAKINGS_WEEKDAY = (Decimal(1), Decimal(1), Decimal(1), Decimal(1), Decimal("1.15"), Decimal("1.15"), Decimal("1.15"))
PAYMENTS_WEEKDAY = (Decimal("1.2"), Decimal("0.9"), Decimal("0.9"), Decimal("0.9"), Decimal("1.3"), Decimal(0),
                    Decimal(0))
PAYMENT_HOURS = range(8, 12)
PAYMENT_SHARE = Decimal("0.26")  # calm: a day of weight 1 pays 26 % of a Monday's takings (module doc)
VOLATILE_PAYMENT_SHARE = Decimal("1.28")  # jackpot accounts: 6.66 T a week, as 0.95 T a day paid before
TAKINGS_NOISE, PAYMENTS_NOISE = 0.05, 0.08  # an hour's relative sd, cut at 3 sd
JACKPOT_NOISE = 8  # a volatile account's hourly sd: a day's takings / 8


@dataclass(frozen=True)
class SimProfile:
    account: Account
    opening_usd: Decimal
    daily_takings_usd: Decimal
    volatile: bool = False  # jackpots: days swing widely, VaR above the limit

    @property
    def payment_share(self) -> Decimal:
        return VOLATILE_PAYMENT_SHARE if self.volatile else PAYMENT_SHARE

    def projection(self, at: datetime) -> Decimal:
        """The bank's 24 h outflow projection as of ``at``: the payments scheduled in the next 24 hours
        (no jackpot: nobody schedules those)."""
        return (self.daily_takings_usd * self.payment_share * _units_ahead(_hour_of(at),
                                                                             business_calendar.active().name)
                ).quantize(CENT)


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


@functools.lru_cache(maxsize=4096)
def payment_weight(day: date, calendar: str) -> Decimal:
    """The payments ``day`` carries, in weekday units: its own weekday's on a business day, plus those
    of the holidays just before it (their payments moved here); nothing on a day the banks are closed."""
    days = business_calendar.calendar(calendar)
    if not days.is_business_day(day):
        return Decimal(0)
    weight = PAYMENTS_WEEKDAY[day.weekday()]
    back = day - timedelta(days=1)
    while not days.is_business_day(back):
        weight += PAYMENTS_WEEKDAY[back.weekday()]  # nothing for a weekend day, its own for a holiday
        back -= timedelta(days=1)
    return weight


def _hour_units(at: datetime, calendar: str) -> Decimal:
    """The payments of the hour ``at`` falls in, in weekday units of a day's payments."""
    return payment_weight(at.date(), calendar) / len(PAYMENT_HOURS) if at.hour in PAYMENT_HOURS else Decimal(0)


def _hour_of(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


@functools.lru_cache(maxsize=4096)
def _units_ahead(hour: datetime, calendar: str) -> Decimal:
    return sum((_hour_units(hour + n * HOUR, calendar) for n in range(1, 25)), Decimal(0))


def _noise(rng: random.Random, sd: float) -> Decimal:
    """1 + a gaussian relative noise of ``sd``, cut at 3 sd."""
    return 1 + Decimal(str(round(max(-3 * sd, min(3 * sd, rng.gauss(0, sd))), 6)))


def hourly_flows(profile: SimProfile, at: datetime, rng: random.Random) -> tuple[Decimal, Decimal]:
    """One hour's gross takings and gross payments (both ≥ 0, to the cent): takings by night (more from
    Friday to Sunday), payments on business-day mornings by the weekday profile, jackpots (module doc)."""
    takings_day = profile.daily_takings_usd
    night = Decimal(str(round(0.5 + 0.5 * math.cos((at.hour - 23) / 24 * 2 * math.pi), 9)))
    takings = takings_day / 12 * night * TAKINGS_WEEKDAY[at.weekday()] * _noise(rng, TAKINGS_NOISE)
    units = _hour_units(at, business_calendar.active().name)
    payments = takings_day * profile.payment_share * units * _noise(rng, PAYMENTS_NOISE)
    if profile.volatile:
        jackpot = Decimal(str(round(rng.gauss(0, float(takings_day) / JACKPOT_NOISE), 2)))
        takings, payments = takings + max(jackpot, Decimal(0)), payments + max(-jackpot, Decimal(0))
    return takings.quantize(CENT), payments.quantize(CENT)


def hourly_net_flow(profile: SimProfile, at: datetime, rng: random.Random) -> Decimal:
    """One hour's takings less its payments."""
    takings, payments = hourly_flows(profile, at, rng)
    return takings - payments


class FeedSimulator:
    """Deterministic event stream: step through simulated time, every account each step.

    ``bank`` holds the balances (a new ``ModelBank`` at the profiles' openings when not given); a
    demo Bank-Connector booking into the same bank is seen in every later balance."""

    def __init__(self, profiles: Sequence[SimProfile], seed: int = 7, start: datetime = EPOCH,
                 step: timedelta = HOUR, bank: ModelBank | None = None) -> None:
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

    def events(self, limit: int | None = None) -> Iterator[BankReport]:
        """Balances and, at each day's end, its statement (operating entries, then the close)."""
        produced = 0
        while limit is None or produced < limit:
            for event in self._tick():
                yield event
                produced += 1
                if limit is not None and produced >= limit:
                    return

    def advance(self, until: datetime) -> list[BankReport]:
        """Step up to ``until`` with the flows and the days' statements, but no intraday balance:
        the quiet days of a seeded history. Returns the statements (entries and closes), in order."""
        statements: list[BankReport] = []
        while self.now + self._step <= until:
            statements.extend(self._tick(intraday=False))
        return statements

    def tick(self) -> list[BankReport]:
        """One step: the statements when a day ended, then every account's intraday balance."""
        return self._tick()

    def report(self) -> list[BalanceEvent]:
        """Every account's intraday balance as of now."""
        return [self.bank.intraday(p.account.account_id, self.now, p.projection(self.now)) for p in self.profiles]

    def _tick(self, intraday: bool = True) -> list[BankReport]:
        out: list[BankReport] = []
        self.now += self._step
        if self.now.date() != self._day:
            close_day, self._day = self._day, self.now.date()
            for p in self.profiles:
                out.extend(self.bank.day_end(p.account.account_id, close_day))
        share = Decimal(self._step.total_seconds() / 3600)
        for p in self.profiles:
            takings, payments = hourly_flows(p, self.now, self._rng)
            self.bank.flow(p.account.account_id, self._day, (takings * share).quantize(CENT),
                           (payments * share).quantize(CENT))
        if intraday:
            out.extend(self.report())
        return out


def live(profiles: Sequence[SimProfile], rate: float, seed: int = 7, bank: ModelBank | None = None) -> FeedSimulator:
    """A feed whose simulated clock follows the real one at ``rate`` events/s: every run brings
    new events (a restart does not replay the previous run's ids) dated about now."""
    step = timedelta(seconds=max(len(profiles), 1) / rate)
    start = datetime.now(UTC).replace(microsecond=0) - step
    return FeedSimulator(profiles, seed=seed, start=start, step=step, bank=bank)


def produce_all(producer: Producer, events: Sequence[BankReport]) -> int:
    """Send as fast as the broker takes them (each with ``encode_report``); returns how many were not delivered."""
    for event in events:
        rec = encode_report(event)
        produce_waiting(producer, BALANCE_EVENTS.name, rec.key, rec.value, headers=rec.headers)
    return producer.flush(60)


async def stream(producer: Producer, events: Iterator[BankReport], rate: float, stop: asyncio.Event,
                 limit: int | None = None) -> int:
    """Paced at ``rate`` events/s until ``stop`` (or ``limit``); returns how many were sent."""
    sent = 0
    started = time.monotonic()
    for event in events:
        if stop.is_set() or (limit is not None and sent >= limit):
            break
        rec = encode_report(event)
        producer.produce(BALANCE_EVENTS.name, key=rec.key, value=rec.value, headers=rec.headers)
        producer.poll(0)
        sent += 1
        ahead = sent / rate - (time.monotonic() - started)
        if ahead > 0:
            await asyncio.sleep(ahead)  # pacing, not synchronisation
    await asyncio.to_thread(producer.flush, 30)
    return sent
