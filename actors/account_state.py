"""Live state of one account and how a balance event moves it. Pure, so it is unit tested.

A shard holds one ``AccountState`` per account it has seen; the state is rebuilt from the
ledger after a restart, so nothing here needs to survive a crash.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from schemas.balance_event import BalanceEvent
from storage.accounts import Account
from storage.orders import OpenOrder
from treasury.money import ZERO
from treasury.order_status import EXECUTING, OrderStatus


class Outcome(StrEnum):
    """What became of one balance event; also the label of the events metric."""

    APPLIED = "applied"
    STALE = "stale"
    DUPLICATE = "duplicate"
    INVALID = "invalid"


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

    def apply(self, event: BalanceEvent) -> Outcome:
        """Move the position unless the event is older than what we hold (it is still stored).

        Only an available balance moves the live position and its as-of time; a booked-only
        figure (a close, a forward or expected balance) is kept beside it and never makes a
        later available balance look stale.
        """
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
        return Outcome.APPLIED

    def projection(self, event: BalanceEvent) -> tuple[Decimal | None, str]:
        """The event's own 24 h outflow forecast, else the latest one the account's feed sent."""
        if event.projected_outflows_24h_usd is not None:
            return event.projected_outflows_24h_usd, "event"
        if self.last_projection_usd is not None:
            return self.last_projection_usd, "last_seen"
        return None, "none"


def pending_sweeps(orders: Iterable[OpenOrder], balance_as_of: datetime) -> Decimal:
    """Orders the balance cannot reflect yet: NEW or SENT, or ACKed after the balance was taken."""
    total = ZERO
    for order in orders:
        if order.status in EXECUTING or (
            order.status == OrderStatus.ACK and order.acked_ts is not None and order.acked_ts > balance_as_of
        ):
            total += order.amount_usd
    return total
