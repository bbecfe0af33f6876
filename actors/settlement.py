"""What the bank's booked entries prove about our orders and investments: pure, so it is unit tested.

An order is not done when the Bank-Connector ACKs it: an ACK says the payment was sent, not that
the dollars left. The proof is the booked debit on the account's statement. The Bank-Connector
puts the order id in pain.001's ``EndToEndId`` (``reference_key``: with or without its hyphens);
the bank returns it on the entry
(``NtryDtls/TxDtls/Refs/EndToEndId`` in camt, ``ref1``/``ref2`` in Finastra's statement). So:

* A booked DBIT whose reference names an order of the account, for the order's amount, settles it
  (``Matched.END_TO_END_ID``, ``INSTR_ID`` or ``REFERENCE``, by where the id was found).
* The same for another amount is a **break**: not settled, kept with both figures, counted.
* A booked DBIT naming no order of ours settles one only when exactly one published, unsettled
  order of the account has that very amount and was created on or before the booking date
  (``Matched.AMOUNT_AND_DATE``, recorded as such). Two candidates: ambiguous, nothing settled,
  counted as a break of kind ``ambiguous``. None: an operating flow, not ours.
* A settled sweep opens an investment (``maturity_date``). A booked CRDT naming the order matures
  it (``MATURITY``); without the reference, exactly one open investment of the account due on or
  before the booking date whose principal the amount covers, within interest of at most
  ``MAX_YIELD`` a year (``maturity_window``).

Entries are matched in the order the bank reported them; an order or an investment matched once
is gone from the candidates, so no entry settles two orders and no order is settled twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from schemas.statement_entry import EntryDirection, EntryStatus, StatementEntry
from treasury import business_calendar
from treasury.business_calendar import BusinessCalendar
from treasury.order_status import SETTLEABLE, OrderStatus

# Interest a maturity credit may carry over its principal, as an annual rate: above every money
# market rate on record; a credit larger than this is not taken for a maturity without its reference.
MAX_YIELD = Decimal("0.10")


class Matched(StrEnum):
    """How an entry was tied to an order: where the order id was found, or by amount and date alone."""

    END_TO_END_ID = "end_to_end_id"
    INSTR_ID = "instr_id"
    REFERENCE = "reference"
    AMOUNT_AND_DATE = "amount_and_date"


class BreakKind(StrEnum):
    AMOUNT = "amount"  # names the order, another amount
    NOT_SETTLEABLE = "not_settleable"  # names an order that is unpublished, failed or settled already
    AMBIGUOUS = "ambiguous"  # no reference, several orders or investments would fit
    MATURITY_SHORT = "maturity_short"  # names an investment, brings back less than its principal


@dataclass(frozen=True)
class OrderCandidate:
    """What matching needs of one of the account's orders."""

    order_id: str
    account_id: str
    amount_usd: Decimal
    status: OrderStatus
    created_ts: datetime
    product: str
    ladder_days: int | None = None  # the decision's TARGET_LADDER_DAYS (TBILL_4W)


@dataclass(frozen=True)
class InvestmentCandidate:
    order_id: str
    account_id: str
    principal_usd: Decimal
    value_date: date
    maturity_date: date


@dataclass(frozen=True)
class Terms:
    """How long each product is held: CARBON_NOTE_TENOR_DAYS, and TBILL_4W's default ladder; and the
    business calendar maturities roll on (None: the active one, ``BUSINESS_CALENDAR``, when used)."""

    carbon_note_tenor_days: int = 91
    tbill_days: int = 28
    calendar: BusinessCalendar | None = None


@dataclass(frozen=True)
class Settle:
    entry: StatementEntry
    order: OrderCandidate
    matched_by: Matched
    investment: InvestmentCandidate


@dataclass(frozen=True)
class Mature:
    entry: StatementEntry
    investment: InvestmentCandidate
    matched_by: Matched


@dataclass(frozen=True)
class Break:
    entry: StatementEntry
    kind: BreakKind
    detail: str
    order_id: str | None = None
    order_amount_usd: Decimal | None = None


Action = Settle | Mature | Break


@dataclass
class Book:
    """The account's open orders and investments as matching goes: what is matched leaves."""

    orders: dict[str, OrderCandidate] = field(default_factory=dict)
    investments: dict[str, InvestmentCandidate] = field(default_factory=dict)


def next_business_day(day: date, calendar: BusinessCalendar | None = None) -> date:
    """The first business day after ``day`` in ``calendar`` (the active one, ``BUSINESS_CALENDAR``, by
    default: the Federal Reserve Banks' holidays, or Monday to Friday)."""
    return (calendar or business_calendar.active()).next_business_day(day)


def following_business_day(day: date, calendar: BusinessCalendar | None = None) -> date:
    """``day`` itself when a business day of ``calendar`` (the active one by default), else the next
    one (the 'following' convention)."""
    return (calendar or business_calendar.active()).following(day)


def maturity_date(product: str, value_date: date, terms: Terms, ladder_days: int | None = None) -> date:
    """FED_RRP: overnight, the next business day; TBILL_4W: its ladder (the decision's
    TARGET_LADDER_DAYS); CARBON_NOTE: CARBON_NOTE_TENOR_DAYS; all rolled to a business day of
    ``terms.calendar`` (the active one when None)."""
    if product == "FED_RRP":
        return next_business_day(value_date, terms.calendar)
    days = (ladder_days or terms.tbill_days) if product == "TBILL_4W" else terms.carbon_note_tenor_days
    return following_business_day(value_date + timedelta(days=days), terms.calendar)


def maturity_window(investment: InvestmentCandidate) -> tuple[Decimal, Decimal]:
    """The credits that may be this investment's maturity without naming it: principal to principal
    plus ``MAX_YIELD`` a year of interest (a cent of slack for rounding)."""
    days = max(1, (investment.maturity_date - investment.value_date).days)
    top = investment.principal_usd * (1 + MAX_YIELD * days / 365) + Decimal("0.01")
    return investment.principal_usd, top


def plan_entries(entries: Sequence[StatementEntry], book: Book, terms: Terms) -> list[Action]:
    """What each booked entry does, in order; ``book`` is updated as orders and investments match.

    Entries not booked (PDNG, INFO, FUTR) and entries that are nobody's (operating flows) make no
    action."""
    actions: list[Action] = []
    for entry in entries:
        if entry.status is not EntryStatus.BOOK:
            continue
        action = _debit(entry, book, terms) if entry.direction is EntryDirection.DBIT else _credit(entry, book)
        if action is not None:
            actions.append(action)
    return actions


def reference_key(ref: str) -> str:
    """An order id as a bank may return it: pain.001's EndToEndId is ISO Max35Text, one character
    short of a UUID's 36, so a Bank-Connector sends the 32 hex digits without hyphens (and some
    banks upper-case references). Both forms name the same order."""
    return ref.strip().replace("-", "").lower()


def ledger_forms(refs: Sequence[str]) -> list[str]:
    """The order ids ``refs`` may stand for, in the ledger's form (lower-case, hyphenated UUID), to
    look them up by the unique index; a reference that is no UUID is looked up as it is."""
    out: set[str] = set()
    for ref in refs:
        key = reference_key(ref)
        if len(key) == 32 and all(c in "0123456789abcdef" for c in key):
            out.add(f"{key[:8]}-{key[8:12]}-{key[12:16]}-{key[16:20]}-{key[20:]}")
        out.add(ref.strip())
    return sorted(out)


def _named(entry: StatementEntry, ids: Sequence[str]) -> tuple[str, Matched] | None:
    """The first of ``ids`` the entry names, and where: EndToEndId, InstrId, then other references."""
    by_key = {reference_key(i): i for i in ids}
    where = [(entry.end_to_end_id, Matched.END_TO_END_ID), (entry.instr_id, Matched.INSTR_ID),
             *((ref, Matched.REFERENCE) for ref in entry.customer_references)]
    for ref, matched in where:
        if ref and reference_key(ref) in by_key:
            return by_key[reference_key(ref)], matched
    return None


def _debit(entry: StatementEntry, book: Book, terms: Terms) -> Action | None:
    named = _named(entry, list(book.orders))
    if named is not None:
        order = book.orders[named[0]]
        if order.status not in SETTLEABLE:
            return Break(entry, BreakKind.NOT_SETTLEABLE, f"entry {entry.entry_id} names order {order.order_id}, "
                         f"which is {order.status}: not settled", order.order_id, order.amount_usd)
        if entry.amount_usd != order.amount_usd:
            return Break(entry, BreakKind.AMOUNT, f"entry {entry.entry_id} names order {order.order_id} for "
                         f"{entry.amount_usd} but the order is for {order.amount_usd}: not settled",
                         order.order_id, order.amount_usd)
        return _settle(entry, order, named[1], book, terms)
    assert entry.booking_date is not None  # BOOK entries carry it (the contract's rule)
    fits = [o for o in book.orders.values() if o.status in SETTLEABLE and o.amount_usd == entry.amount_usd
            and o.created_ts.date() <= entry.booking_date]
    if len(fits) == 1:
        return _settle(entry, fits[0], Matched.AMOUNT_AND_DATE, book, terms)
    if len(fits) > 1:
        ids = ", ".join(sorted(o.order_id for o in fits))
        return Break(entry, BreakKind.AMBIGUOUS, f"entry {entry.entry_id} names no order and {len(fits)} "
                     f"orders of {entry.amount_usd} would fit ({ids}): none settled")
    return None


def _settle(entry: StatementEntry, order: OrderCandidate, matched_by: Matched, book: Book, terms: Terms) -> Settle:
    del book.orders[order.order_id]
    assert entry.booking_date is not None
    value = entry.value_date or entry.booking_date
    investment = InvestmentCandidate(order.order_id, order.account_id, order.amount_usd, value,
                                     maturity_date(order.product, value, terms, order.ladder_days))
    book.investments[order.order_id] = investment
    return Settle(entry, replace(order, status=OrderStatus.SETTLED), matched_by, investment)


def _credit(entry: StatementEntry, book: Book) -> Action | None:
    named = _named(entry, list(book.investments))
    if named is not None:
        investment = book.investments.pop(named[0])
        if entry.amount_usd < investment.principal_usd:
            book.investments[investment.order_id] = investment
            return Break(entry, BreakKind.MATURITY_SHORT, f"entry {entry.entry_id} names investment "
                         f"{investment.order_id} but brings back {entry.amount_usd} of its principal "
                         f"{investment.principal_usd}: not matured", investment.order_id, investment.principal_usd)
        return Mature(entry, investment, named[1])
    assert entry.booking_date is not None
    booked = entry.booking_date
    fits = [i for i in book.investments.values() if i.maturity_date <= booked
            and maturity_window(i)[0] <= entry.amount_usd <= maturity_window(i)[1]]
    if len(fits) == 1:
        return Mature(entry, book.investments.pop(fits[0].order_id), Matched.AMOUNT_AND_DATE)
    if len(fits) > 1:
        ids = ", ".join(sorted(i.order_id for i in fits))
        return Break(entry, BreakKind.AMBIGUOUS, f"credit {entry.entry_id} of {entry.amount_usd} names no "
                     f"investment and {len(fits)} due ones would fit ({ids}): none matured")
    return None
