"""Live state of one account, how a balance event moves it, and the decision inputs it gives.

Pure, so it is unit tested. A shard holds one ``AccountState`` per account it has seen; the state
is rebuilt from the ledger after a restart, so nothing here needs to survive a crash.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Final, Literal

from actors.policy import DecisionInputs, observed_var_bps
from schemas.balance_event import BalanceCode, BalanceEvent
from schemas.errors import MessageRejected
from schemas.statement_entry import StatementEntry
from storage.accounts import Account
from storage.forecasts import ForecastRow
from storage.orders import OpenOrder
from treasury import business_calendar
from treasury.clock import iso_z
from treasury.money import ZERO
from treasury.order_status import UNSETTLED, OrderStatus


class Outcome(StrEnum):
    """What became of one balance event; also the label of the events metric.

    ``future`` (dated too far ahead, see ``future_dated``) and ``conflict`` (an event id already
    received with other content) are refused and dead-lettered like ``invalid``, but counted apart:
    they point at a sender's clock or its id scheme, not at a malformed message.
    """

    APPLIED = "applied"
    STALE = "stale"
    DUPLICATE = "duplicate"
    INVALID = "invalid"
    FUTURE = "future"
    CONFLICT = "conflict"


# How the bank formats stamp a balance dated by a day alone (``schemas.camt.end_of_day_utc``):
# 23:59:59.999999. The contracts' JSON carries milliseconds (``treasury.clock.iso_z``), so after
# Kafka the same stamp reads 23:59:59.999: both are the end of the day.
_END_OF_DAY_FROM = time(23, 59, 59, 999000)


def end_of_day_stamp(at: datetime) -> bool:
    """Whether ``at`` is the stamp of a date given alone (see ``_END_OF_DAY_FROM``)."""
    return at.astimezone(UTC).timetz().replace(tzinfo=None) >= _END_OF_DAY_FROM


def value_dated(event: BalanceEvent) -> bool:
    """A forward-value balance (FWAV) carrying a booked figure only: its date is a value date, when
    the money will be there, not when the bank reported it. It may lie days ahead, so it is neither
    refused as future nor allowed to move the account's clocks. An FWAV that claims an *available*
    figure would move the live position: it is treated like any other balance."""
    return event.balance_code is BalanceCode.FWAV and event.available_usd is None


def reported_at(event: BalanceEvent) -> datetime:
    """The moment ``event`` claims to report, for the future check: its as-of time, except that a
    date-only stamp (read as the end of its day by the bank formats) counts from the start of that
    day: a camt.052 dated today is not "in the future" at 10:00 although its stamp is 23:59:59."""
    at = event.as_of_ts.astimezone(UTC)
    if end_of_day_stamp(at):
        return at.replace(hour=0, minute=0, second=0, microsecond=0)
    return at


def future_dated(event: BalanceEvent, now: datetime, max_skew_s: int) -> MessageRejected | None:
    """Why ``event`` is refused as dated in the future, or None when it is not.

    An as-of time more than ``max_skew_s`` (MAX_CLOCK_SKEW_S) after ``now`` is a sender's broken
    clock, a wrong year or a value date in the wrong field. Accepted, it would become the account's
    last-seen time and make every later real balance stale: the account would freeze until that
    date. Value dates are not as-of times: ``value_dated`` balances are never refused here.
    """
    if value_dated(event):
        return None
    limit = now.astimezone(UTC) + timedelta(seconds=max_skew_s)
    if reported_at(event) <= limit:
        return None
    return MessageRejected(
        "as_of_ts",
        f"{event.as_of_ts.astimezone(UTC).isoformat().replace('+00:00', 'Z')} is in the future: more than "
        f"{max_skew_s} s (MAX_CLOCK_SKEW_S) ahead of this service's clock "
        f"({now.astimezone(UTC).isoformat(timespec='seconds').replace('+00:00', 'Z')}); "
        "an as-of time is when the balance held, never a value date",
    )


def entry_future_dated(entry: StatementEntry, now: datetime, max_skew_s: int) -> MessageRejected | None:
    """Why a statement entry is refused as dated in the future, or None.

    Only its booking counts: a value date ahead (forward-value) is normal. A booking date alone
    counts from the start of its day, as a balance's date does (``reported_at``)."""
    if entry.booking_date is None:
        return None
    booked = datetime.combine(entry.booking_date, time(0), tzinfo=UTC)
    if entry.booked_ts is not None and not end_of_day_stamp(entry.booked_ts):
        booked = max(booked, entry.booked_ts.astimezone(UTC))
    if booked <= now.astimezone(UTC) + timedelta(seconds=max_skew_s):
        return None
    field = "booked_ts" if booked != datetime.combine(entry.booking_date, time(0), tzinfo=UTC) else "booking_date"
    return MessageRejected(
        field,
        f"entry {entry.entry_id!r} is booked {iso_z(booked)}, in the future: more than {max_skew_s} s "
        f"(MAX_CLOCK_SKEW_S) ahead of this service's clock ({iso_z(now.replace(microsecond=0))}); "
        "a value date may lie ahead, a booking may not",
    )


def refuse_future(events: Iterable[BalanceEvent | StatementEntry], now: datetime, max_skew_s: int) -> None:
    """Raise ``MessageRejected`` (field ``as_of_ts``, or ``booking_date``/``booked_ts`` for an entry)
    for the first event dated in the future: the REST tier refuses the whole body with it before
    anything is produced."""
    for event in events:
        if isinstance(event, StatementEntry):
            refused = entry_future_dated(event, now, max_skew_s)
        else:
            refused = future_dated(event, now, max_skew_s)
        if refused is not None:
            raise refused


@dataclass
class AccountState:
    account: Account
    available_usd: Decimal | None = None
    booked_usd: Decimal | None = None
    as_of_ts: datetime | None = None
    last_event_id: str | None = None
    last_projection_usd: Decimal | None = None
    var_usd: float | None = None
    var_days: int | None = None

    booked_as_of_ts: datetime | None = None
    # When the feed's last projection held (the as-of time of its balance); None: unknown (a what-if).
    last_projection_ts: datetime | None = None
    # The recompute's outflow forecast of the account's next business day (``risk.forecast``).
    forecast: ForecastRow | None = None

    def __copy__(self) -> AccountState:
        """A batch is planned on copies of its accounts' states (``batch_plan.plan_batch``); the
        generic ``copy.copy`` of a dataclass goes through ``__reduce_ex__`` at several times the cost."""
        clone = object.__new__(AccountState)
        clone.__dict__.update(self.__dict__)
        return clone

    def apply(self, event: BalanceEvent) -> Outcome:
        """Move the position unless the event is older than what we hold (it is still stored).

        Only an available balance moves the live position and its as-of time; a booked-only
        figure (a close, a forward or expected balance) is kept beside it and never makes a
        later available balance look stale. A value-dated (FWAV) figure moves nothing: dated
        days ahead, it would make every booked figure until then look stale. It is still stored.
        An event dated in the future never gets here: the shard refuses it first (``future_dated``).
        """
        if value_dated(event):
            return Outcome.APPLIED
        if event.available_usd is None:
            if self.booked_as_of_ts is not None and event.as_of_ts < self.booked_as_of_ts:
                return Outcome.STALE
            self.booked_usd, self.booked_as_of_ts = event.booked_usd, event.as_of_ts
            return Outcome.APPLIED
        if self.as_of_ts is not None and event.as_of_ts < self.as_of_ts:
            return Outcome.STALE
        self.as_of_ts = event.as_of_ts
        self.last_event_id = event.event_id
        self.available_usd = event.available_usd
        if event.booked_usd is not None:
            self.booked_usd, self.booked_as_of_ts = event.booked_usd, event.as_of_ts
        if event.projected_outflows_24h_usd is not None:
            self.last_projection_usd = event.projected_outflows_24h_usd
            self.last_projection_ts = event.as_of_ts
        return Outcome.APPLIED

    def projection(self, event: BalanceEvent | None, now: datetime | None = None) -> tuple[Decimal | None, str]:
        """The 24 h outflow projection a decision on ``event`` uses, and where it comes from:

        1. the event's own (``event``);
        2. else the latest one the account's feed sent, when it held at most ``PROJECTION_MAX_AGE``
           before the event (``last_seen``; a projection of unknown time, set by hand, counts);
        3. else the recompute's forecast, when it is for the event's business day
           (``forecast_day``): ``forecast:<method>``;
        4. else ``none`` (the policy falls back to the overnight product).

        Ages and days are measured from the event's as-of time (``now`` for a what-if without an
        event), not from the clock: a replayed event is decided on what was known when it held.
        """
        if event is not None and event.projected_outflows_24h_usd is not None:
            return event.projected_outflows_24h_usd, "event"
        at = event.as_of_ts if event is not None else now
        if self.last_projection_usd is not None and (
            self.last_projection_ts is None or at is None or at - self.last_projection_ts <= PROJECTION_MAX_AGE
        ):
            return self.last_projection_usd, "last_seen"
        if self.forecast is not None and at is not None and self.forecast.for_date == forecast_day(at):
            return self.forecast.outflow_usd, f"forecast:{self.forecast.method}"
        return None, "none"


# How long the feed's last projection stands in for an event without one.
PROJECTION_MAX_AGE: Final = timedelta(hours=24)


def forecast_day(at: datetime) -> date:
    """The business day whose outflows a decision at ``at`` must cover: the day itself when it is a
    business day, else the next one; after the day is over (an end-of-day stamp: a close), the next
    business day. A forecast is used only by decisions of its day (``AccountState.projection``)."""
    day = at.astimezone(UTC).date()
    calendar = business_calendar.active()
    return calendar.next_business_day(day) if end_of_day_stamp(at) else calendar.following(day)


def pending_sweeps(orders: Iterable[OpenOrder], balance_as_of: datetime) -> Decimal:
    """Orders the balance cannot reflect yet: every unsettled one (an ACK is not proof the money left;
    only the bank's booked debit is), and a settled one for a balance taken before its booking.
    FAILED orders never count. The decision, the REST position and ``cash_positions`` all use this."""
    total = ZERO
    for order in orders:
        if order.status in UNSETTLED or (
            order.status == OrderStatus.SETTLED and order.booked_ts is not None and order.booked_ts > balance_as_of
        ):
            total += order.amount_usd
    return total


# ``decision_inputs(var_bps=OBSERVED)``: the state's own VaR over its available balance.
OBSERVED: Final = "observed"


def decision_inputs(
    state: AccountState,
    event: BalanceEvent | None,
    *,
    pending_sweeps_usd: Decimal,
    now: datetime,
    var_bps: float | Literal["observed"] | None = OBSERVED,
) -> DecisionInputs:
    """The policy's inputs for ``state`` as ``event`` left it: the one place they are put together.

    The shard, the ``decide`` command and the tests all call this, so an input added to the policy,
    or a rule changed for one (the VaR in bps: ``observed_var_bps``), changes for all of them at once.
    ``event`` is the event being decided (its own projection comes first); ``None`` for a what-if.
    ``var_bps`` is the state's observed figure unless a what-if states one: the ``decide`` command
    takes it in bps, as the policy does, and converting it to dollars and back could move a figure
    that sits exactly on the limit.
    """
    if state.available_usd is None:
        raise ValueError(f"account {state.account.account_id!r} has no available balance to decide on")
    projection, source = state.projection(event, now)
    return DecisionInputs(
        available_usd=state.available_usd,
        eod_projection_usd=projection,
        var_bps=observed_var_bps(state.var_usd, state.available_usd) if isinstance(var_bps, str) else var_bps,
        now=now,
        pending_sweeps_usd=pending_sweeps_usd,
        min_balance_usd=state.account.min_balance_usd,
        esg=state.account.esg_pref,
        var_history_days=state.var_days,
        projection_source=source,
    )
