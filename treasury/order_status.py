"""The sweep order's lifecycle, in one place: the ledger, the coordinator, the pending rule, the REST
transitions and the metrics all name statuses through this enum, so a status added later cannot be
missed by one of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum


class OrderStatus(StrEnum):
    """``NEW -> SENT -> ACK | FAILED``, then ``SETTLED`` when the bank's booked debit proves the money
    left (DESIGN.md section 2; docs/settlement.md). An order of at least APPROVAL_THRESHOLD_USD is
    written ``AWAITING_APPROVAL`` instead of NEW and becomes NEW (the outbox) only once approved by
    APPROVALS_REQUIRED distinct people; else ``REJECTED`` or ``EXPIRED`` (docs/approval.md). The value
    is what the ledger stores."""

    AWAITING_APPROVAL = "AWAITING_APPROVAL"
    NEW = "NEW"
    SENT = "SENT"
    ACK = "ACK"
    FAILED = "FAILED"
    SETTLED = "SETTLED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"


TRANSITIONS: frozenset[tuple[OrderStatus, OrderStatus]] = frozenset(
    {(OrderStatus.NEW, OrderStatus.SENT), (OrderStatus.SENT, OrderStatus.ACK), (OrderStatus.SENT, OrderStatus.FAILED),
     (OrderStatus.SENT, OrderStatus.SETTLED), (OrderStatus.ACK, OrderStatus.SETTLED),
     (OrderStatus.AWAITING_APPROVAL, OrderStatus.NEW), (OrderStatus.AWAITING_APPROVAL, OrderStatus.REJECTED),
     (OrderStatus.AWAITING_APPROVAL, OrderStatus.EXPIRED)}
)
"""Every move an order may make; any other is refused (HTTP 409). A bank may book the debit before
its ACK reaches us, hence SENT -> SETTLED; only a booked entry settles (never the REST API). An order
awaiting approval is released to NEW (so the one outbox publishes it, as every order), rejected, or
expired at its cut-off; it is never published before."""

INITIAL: frozenset[OrderStatus] = frozenset({OrderStatus.NEW, OrderStatus.AWAITING_APPROVAL})
"""The statuses an order may be written with (``initial_status``)."""

SETTLEABLE: frozenset[OrderStatus] = frozenset({OrderStatus.SENT, OrderStatus.ACK})
"""Orders a booked debit may settle: published, and not known to have failed."""

UNSETTLED: frozenset[OrderStatus] = frozenset(
    {OrderStatus.AWAITING_APPROVAL, OrderStatus.NEW, OrderStatus.SENT, OrderStatus.ACK})
"""Orders whose money no balance can be shown to reflect yet: pending for every balance. An order
awaiting approval counts (it may still be released and executed; sweeping the same dollars again
meanwhile would order them twice) until its cut-off: past it, it can only expire (docs/approval.md)."""

UNPUBLISHED: OrderStatus = OrderStatus.NEW
"""The outbox: orders written (or released) but not yet on ``sweep_intent``."""

AWAITING: OrderStatus = OrderStatus.AWAITING_APPROVAL
"""Written, signed and pending, but neither published nor pullable until approved."""


def initial_status(amount_usd: Decimal, threshold_usd: Decimal) -> OrderStatus:
    """The status an order is written with: AWAITING_APPROVAL from ``threshold_usd``
    (APPROVAL_THRESHOLD_USD) up, the amount exactly at the threshold included; a threshold of 0
    turns four-eyes approval off."""
    if threshold_usd > 0 and amount_usd >= threshold_usd:
        return OrderStatus.AWAITING_APPROVAL
    return OrderStatus.NEW


@dataclass(frozen=True)
class ApprovalRule:
    """Four-eyes approval as configured (APPROVAL_THRESHOLD_USD, APPROVALS_REQUIRED): which orders
    wait and for how many distinct approvers. The coordinator applies it when it writes an order,
    and the order keeps the count it was written with, so a change of the setting never moves the
    goalposts of an order already waiting."""

    threshold_usd: Decimal = Decimal(0)
    approvals_required: int = 2

    def status_for(self, amount_usd: Decimal) -> OrderStatus:
        return initial_status(amount_usd, self.threshold_usd)

    def required_for(self, amount_usd: Decimal) -> int | None:
        """The approvals an order of ``amount_usd`` needs; None when it needs none."""
        return self.approvals_required if self.status_for(amount_usd) is OrderStatus.AWAITING_APPROVAL else None


NO_APPROVAL = ApprovalRule()
"""Threshold 0: no order waits (what a coordinator built without settings applies, e.g. in tests)."""
