"""The demo bank's books, pure: what each account holds, what the bank books and when.

One ``ModelBank`` is shared by the feed simulator (``serve_app.job.simulator``), which reports its
balances and moves them by the business's operating flows, and the demo Bank-Connector
(``serve_app.job.bank.connector``), which books our sweeps out of them and their maturities back.
So the balances the orchestrator sees are the bank's: after a debit is booked, every later
intraday balance and every close shows it.

**Operating entries.** The business's flows move the balance as they happen (every later intraday
balance shows them), and the bank keeps each day's gross takings and gross payments per account.
At the day's close it reports them as a camt.053 does, before the ``CLBD`` close (``day_end``): a
booked ``CRDT`` of the takings and a booked ``DBIT`` of the payments (none on a day without
payments), ``entry_id`` ``<account>-<yyyymmdd>-TAKINGS`` / ``-PAYMENTS`` (stable: the same seed
gives the same ids), a ``bank_reference``, no ``end_to_end_id``, booking and value date the day,
``booked_ts`` the day's end, the close's own instant (``booking_instant`` keeps it after any balance
already reported, so the close, and no earlier balance, is the first to be dated with them: the
safe side of the pending rule). They name no order, so they settle nothing by reference. Two rules
of ``actors.settlement`` match entries that name nothing, and the bank keeps clear of both:

* a DBIT for exactly an open order's amount, created by its booking date, would settle that order
  (the amount-and-date rule): the payments are a sum of hourly amounts to the cent, an order's
  amount is an excess less a buffer to four places; equal to the cent is practically impossible
  (about one chance in the number of cents of the range, ~10⁻⁸ per pair);
* a CRDT within an open investment's maturity window (principal to principal plus 10 % a year),
  booked on or after its maturity date, would mature it. The bank knows the investments it has not
  paid back, so when the day's takings would fit one (possible when the demo starts on a weekend:
  what matures on the last business day is left for the live bank), it reports them as two or more
  equal credits (``-TAKINGS-1``, ``-TAKINGS-2``, ...) none of which fits.

When a booking happens matters to the orchestrator: a settled order counts as pending for every
balance taken before its ``booked_ts`` (``actors.account_state.pending_sweeps``). So the bank never
books at or before an instant it has already reported a balance for: ``booking_instant`` is after
the account's last report. Times are kept to the millisecond, as the contracts carry them
(``treasury.clock.iso_z``), so the order survives the trip through Kafka.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from typing import Any

from actors.settlement import InvestmentCandidate, following_business_day, maturity_window, next_business_day
from schemas.balance_event import BalanceCode, BalanceEvent, BalanceKind
from schemas.balance_record import BalanceRecord, encode, encode_entry
from schemas.statement_entry import EntryDirection, EntryStatus, StatementEntry
from treasury import business_calendar
from treasury.business_calendar import BusinessCalendar

CENT = Decimal("0.01")
MS = timedelta(milliseconds=1)
# What the demo's money earns, a year, act/360: about the money market's rates of the day.
DEMO_RATES: Mapping[str, Decimal] = {"FED_RRP": Decimal("0.0430"), "TBILL_4W": Decimal("0.0425"),
                                     "CARBON_NOTE": Decimal("0.0375")}
DAY_END = time(23, 59, 59, 999000)  # a close's instant, and its day's operating entries'
BOOKABLE = frozenset({"SENT", "ACK"})  # published and not failed: what a bank executes
SOURCE = "demo-bank"
BankReport = BalanceEvent | StatementEntry  # what the bank sends onto balance_events


def encode_report(report: BankReport) -> BalanceRecord:
    """The one Kafka record of a bank report, whoever sends it (the feed, the seeding, the connector):
    a balance with ``encode``, as ``POST /balances`` encodes it, an entry with ``encode_entry`` and
    its own version header (``schemas.balance_record``)."""
    return encode_entry(report) if isinstance(report, StatementEntry) else encode(report)


def floor_ms(at: datetime) -> datetime:
    at = at.astimezone(UTC)
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


@dataclass(frozen=True)
class Order:
    """What the bank needs of an order pulled from ``GET /sweep-intent``."""

    order_id: str
    account_id: str
    product: str
    amount_usd: Decimal
    status: str

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Order:
        return cls(str(doc["order_id"]), str(doc["source_account"]), str(doc["target_product"]),
                   Decimal(str(doc["amount_usd"])), str(doc["status"]))


@dataclass(frozen=True)
class Investment:
    """An investment the orchestrator opened on a settled sweep (``GET /sweep-intent/{id}``'s ``investment``)."""

    order_id: str
    account_id: str
    product: str
    principal_usd: Decimal
    value_date: date
    maturity_date: date

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Investment:
        return cls(str(doc["order_id"]), str(doc["account_id"]), str(doc["product"]),
                   Decimal(str(doc["principal_usd"])), date.fromisoformat(str(doc["value_date"])[:10]),
                   date.fromisoformat(str(doc["maturity_date"])[:10]))


def maturity_amount(inv: Investment, rates: Mapping[str, Decimal] = DEMO_RATES) -> Decimal:
    """Principal plus interest at the product's demo rate, act/360, to the cent."""
    days = max(1, (inv.maturity_date - inv.value_date).days)
    interest = (inv.principal_usd * rates.get(inv.product, Decimal(0)) * days / 360).quantize(CENT, ROUND_HALF_EVEN)
    return inv.principal_usd + interest


@dataclass(frozen=True)
class Page:
    """What to do with one page of ``GET /sweep-intent``: the orders to ACK and book, and whether the
    cursor may move past the page (not while an order of ours on it is still NEW: published later,
    it must be seen again)."""

    to_book: list[Order]
    advance: bool


@dataclass
class ModelBank:
    """Balances per account, and the bookings the bank made on them (see the module doc)."""

    balances: dict[str, Decimal]
    min_balances: dict[str, Decimal]
    rates: Mapping[str, Decimal] = field(default_factory=lambda: dict(DEMO_RATES))
    name: str = "DEMOBANK"
    booked: dict[str, StatementEntry] = field(default_factory=dict)  # order id -> its debit
    investments: dict[str, Investment] = field(default_factory=dict)  # order id -> opened by its settlement
    credited: dict[str, StatementEntry] = field(default_factory=dict)  # order id -> its maturity credit
    _reported: dict[str, datetime] = field(default_factory=dict)
    _closes: dict[str, dict[date, Decimal]] = field(default_factory=dict)
    _gross: dict[tuple[str, date], tuple[Decimal, Decimal]] = field(default_factory=dict)  # takings, payments
    _sequence: int = 0

    @classmethod
    def opening(cls, openings: Mapping[str, Decimal], min_balances: Mapping[str, Decimal]) -> ModelBank:
        return cls(dict(openings), dict(min_balances))

    def holds(self, account_id: str) -> bool:
        return account_id in self.balances

    def headroom(self, account_id: str) -> Decimal:
        """What the account holds above its minimum balance: all an honest orchestrator may sweep."""
        return self.balances[account_id] - self.min_balances[account_id]

    # -- the business's side --------------------------------------------------------------------
    def flow(self, account_id: str, day: date, takings: Decimal, payments: Decimal) -> None:
        """Operating flows of ``day`` (gross takings in, gross payments out, both ≥ 0): in the balance
        now, in the day's operating entries at its close (``day_end``)."""
        self.balances[account_id] += takings - payments
        took, paid = self._gross.get((account_id, day), (Decimal(0), Decimal(0)))
        self._gross[account_id, day] = (took + takings, paid + payments)

    def gross(self, account_id: str, day: date) -> tuple[Decimal, Decimal]:
        """``day``'s takings and payments so far, not yet reported."""
        return self._gross.get((account_id, day), (Decimal(0), Decimal(0)))

    def day_end(self, account_id: str, day: date) -> list[BankReport]:
        """The day's statement: its operating entries, then the CLBD close that shows them."""
        return [*self.operating_entries(account_id, day), self.closing(account_id, day)]

    def operating_entries(self, account_id: str, day: date) -> list[StatementEntry]:
        """The booked CRDT of ``day``'s takings (split when one credit could pass for a maturity) and
        the DBIT of its payments, when any; the day's gross is then reported and forgotten."""
        takings, payments = self._gross.pop((account_id, day), (Decimal(0), Decimal(0)))
        booked = self.booking_instant(account_id, datetime.combine(day, DAY_END, tzinfo=UTC))
        parts = self._unmistakable(account_id, day, takings)
        credits = [(f"TAKINGS-{n}" if len(parts) > 1 else "TAKINGS", EntryDirection.CRDT, amount)
                   for n, amount in enumerate(parts, start=1)]
        return [StatementEntry(
            entry_id=f"{account_id}-{day:%Y%m%d}-{kind}", account_id=account_id, direction=direction,
            status=EntryStatus.BOOK, amount_usd=amount, booking_date=day, booked_ts=booked, value_date=day,
            bank_reference=f"{self.name}{day:%Y%m%d}{kind.replace('-', '')}{account_id}", source=SOURCE,
        ) for kind, direction, amount in [*credits, ("PAYMENTS", EntryDirection.DBIT, payments)] if amount > 0]

    def _unmistakable(self, account_id: str, day: date, takings: Decimal) -> list[Decimal]:
        """``takings`` as one credit, else as the fewest equal ones (to the cent) of which none lies in
        the maturity window of an investment of the account due by ``day`` the bank has not paid
        back: a credit naming nothing there would be taken for its maturity (module doc)."""
        windows = [maturity_window(InvestmentCandidate(i.order_id, i.account_id, i.principal_usd, i.value_date,
                                                       i.maturity_date))
                   for i in self.due(day) if i.account_id == account_id]
        parts = 1
        while True:
            share = (takings / parts).quantize(CENT, ROUND_DOWN)
            split = [*[share] * (parts - 1), takings - share * (parts - 1)]
            if not any(low <= amount <= high for amount in split for low, high in windows):
                return split
            parts += 1

    def intraday(self, account_id: str, at: datetime, projection: Decimal | None) -> BalanceEvent:
        """An ITAV balance (camt.052) as of ``at``: what the account holds now, every booking so far in it."""
        at = self._report(account_id, at)
        return BalanceEvent(
            event_id=f"{account_id}-{at:%Y%m%dT%H%M%S.%f}-ITAV", account_id=account_id, as_of_ts=at,
            kind=BalanceKind.INTRADAY, balance_code=BalanceCode.ITAV, available_usd=self.balances[account_id],
            projected_outflows_24h_usd=projection,
        )

    def closing(self, account_id: str, day: date) -> BalanceEvent:
        """The CLBD booked balance (camt.053) of ``day``, as of its last millisecond."""
        at = self._report(account_id, datetime.combine(day, DAY_END, tzinfo=UTC))
        self._closes.setdefault(account_id, {})[day] = self.balances[account_id]
        return BalanceEvent(
            event_id=f"{account_id}-{day:%Y%m%d}-CLBD", account_id=account_id, as_of_ts=at,
            kind=BalanceKind.PRIOR_DAY, balance_code=BalanceCode.CLBD, booked_usd=self.balances[account_id],
        )

    def closes(self, account_id: str) -> dict[date, Decimal]:
        return dict(self._closes.get(account_id, {}))

    def _report(self, account_id: str, at: datetime) -> datetime:
        at = floor_ms(at)
        last = self._reported.get(account_id)
        self._reported[account_id] = at if last is None else max(last, at)
        return at

    # -- our side: what the bank books for the orchestrator ------------------------------------
    def booking_instant(self, account_id: str, at: datetime) -> datetime:
        """``at``, but never at or before a balance the bank already reported: that balance did not show it."""
        at = floor_ms(at)
        last = self._reported.get(account_id)
        return at if last is None or at > last else last + MS

    def page(self, orders: Iterable[Order]) -> Page:
        own = [o for o in orders if self.holds(o.account_id)]
        to_book = [o for o in own if o.status in BOOKABLE and o.order_id not in self.booked]
        return Page(to_book, advance=not any(o.status == "NEW" for o in own))

    def book_debit(self, order: Order, at: datetime) -> StatementEntry | None:
        """The booked DBIT of an executed sweep, carrying the order id as pain.001's EndToEndId does;
        None when it is booked already or the account is not ours."""
        if order.order_id in self.booked or not self.holds(order.account_id):
            return None
        entry = self._entry(order.account_id, EntryDirection.DBIT, order.amount_usd, order.order_id, at)
        self.booked[order.order_id] = entry
        return entry

    def open(self, investment: Investment) -> bool:
        """The investment a settlement opened; True when it is new to the bank."""
        if investment.order_id in self.investments or not self.holds(investment.account_id):
            return False
        self.investments[investment.order_id] = investment
        return True

    def due(self, until: date) -> list[Investment]:
        """Open investments maturing on or before ``until`` that the bank has not paid back, by maturity."""
        return sorted((i for i in self.investments.values() if i.maturity_date <= until
                       and i.order_id not in self.credited), key=lambda i: (i.maturity_date, i.order_id))

    def book_maturity(self, investment: Investment, at: datetime) -> StatementEntry | None:
        """The CRDT paying ``investment`` back with interest, naming its order; None when paid already."""
        if investment.order_id in self.credited or not self.holds(investment.account_id):
            return None
        entry = self._entry(investment.account_id, EntryDirection.CRDT, maturity_amount(investment, self.rates),
                            investment.order_id, at)
        self.credited[investment.order_id] = entry
        return entry

    def _entry(self, account_id: str, direction: EntryDirection, amount: Decimal, order_id: str,
               at: datetime) -> StatementEntry:
        booked = self.booking_instant(account_id, at)
        self._sequence += 1
        signed = -amount if direction is EntryDirection.DBIT else amount
        self.balances[account_id] += signed
        return StatementEntry(
            entry_id=f"{direction.value}-{order_id}", account_id=account_id, direction=direction,
            status=EntryStatus.BOOK, amount_usd=amount, booking_date=booked.date(), booked_ts=booked,
            value_date=booked.date(), end_to_end_id=order_id,
            bank_reference=f"{self.name}{booked:%Y%m%d}{self._sequence:07d}",
            balance_after_usd=self.balances[account_id], source=SOURCE,
        )


# -- the history the demo starts from ------------------------------------------------------------
@dataclass(frozen=True)
class SeedPlan:
    """Days of the seeded past: closing statements from ``start`` to yesterday; VaR computed on the
    closes before the first sweep day; past sweeps on ``sweep_days`` (each at 10:00, booked at 11:00);
    maturities before ``live_from`` booked back in the past, the rest (due on ``live_from``) once live."""

    start: date
    sweep_days: tuple[date, ...]
    live_from: date
    today: date

    @property
    def days(self) -> list[date]:
        return [self.start + timedelta(days=n) for n in range((self.today - self.start).days)]


def previous_business_day(day: date, calendar: BusinessCalendar | None = None) -> date:
    """The last business day before ``day`` in ``calendar`` (the active one, ``BUSINESS_CALENDAR``, by
    default), the calendar the orchestrator rolls maturities on (``actors.settlement``)."""
    days = calendar or business_calendar.active()
    day -= timedelta(days=1)
    while not days.is_business_day(day):
        day -= timedelta(days=1)
    return day


def seed_plan(today: date, history_days: int = 260, ladder_days: int = 28, carbon_days: int = 91,
              calendar: BusinessCalendar | None = None) -> SeedPlan:
    """Past sweeps placed so that some of each product mature on ``live_from``, the last business day up to
    today: a CARBON_NOTE ``carbon_days`` before, a TBILL_4W ``ladder_days`` before, a FED_RRP the business
    day before; and TBILL_4Ws two weeks and one week before, still open (the ladder). Business days are
    ``calendar``'s (the active one by default); a sweep day that falls on a holiday moves to the business
    day before, so that product then matures before ``live_from`` (booked back in the seeded past)."""
    days_of = calendar or business_calendar.active()
    live_from = _on_business_day(today, days_of)
    back = [carbon_days, ladder_days, 14, 7]
    days = {_on_business_day(live_from - timedelta(days=n), days_of) for n in back}
    days.add(previous_business_day(live_from, days_of))
    sweep_days = tuple(sorted(days))
    if (sweep_days[0] - (today - timedelta(days=history_days))).days < 30:
        raise ValueError(f"history of {history_days} days leaves under 30 days of closes for VaR before "
                         f"the first past sweep on {sweep_days[0]}")
    return SeedPlan(today - timedelta(days=history_days), sweep_days, live_from, today)


def _on_business_day(day: date, calendar: BusinessCalendar) -> date:
    return day if calendar.is_business_day(day) else previous_business_day(day, calendar)


def matures_by(value: date, days: int, calendar: BusinessCalendar | None = None) -> date:
    """A term investment's maturity, as the orchestrator rolls it (``actors.settlement.maturity_date``)."""
    return following_business_day(value + timedelta(days=days), calendar)


def overnight(value: date, calendar: BusinessCalendar | None = None) -> date:
    return next_business_day(value, calendar)


def unsettled_within_headroom(bank: ModelBank, unsettled: Sequence[Order]) -> dict[str, tuple[Decimal, Decimal]]:
    """The money invariant, per account: the accounts whose unsettled orders exceed what the bank
    holds above the minimum balance (sum ordered, headroom). Empty when nothing was ordered twice."""
    ordered: dict[str, Decimal] = {}
    for order in unsettled:
        if bank.holds(order.account_id):
            ordered[order.account_id] = ordered.get(order.account_id, Decimal(0)) + order.amount_usd
    return {a: (usd, bank.headroom(a)) for a, usd in ordered.items() if usd > bank.headroom(a)}
