"""The sweep order's lifecycle, in one place: the ledger, the coordinator, the pending rule, the REST
transitions and the metrics all name statuses through this enum, so a status added later cannot be
missed by one of them.
"""

from __future__ import annotations

from enum import StrEnum


class OrderStatus(StrEnum):
    """``NEW -> SENT -> ACK | FAILED``, then ``SETTLED`` when the bank's booked debit proves the money
    left (DESIGN.md section 2; docs/settlement.md). The value is what the ledger stores."""

    NEW = "NEW"
    SENT = "SENT"
    ACK = "ACK"
    FAILED = "FAILED"
    SETTLED = "SETTLED"


TRANSITIONS: frozenset[tuple[OrderStatus, OrderStatus]] = frozenset(
    {(OrderStatus.NEW, OrderStatus.SENT), (OrderStatus.SENT, OrderStatus.ACK), (OrderStatus.SENT, OrderStatus.FAILED),
     (OrderStatus.SENT, OrderStatus.SETTLED), (OrderStatus.ACK, OrderStatus.SETTLED)}
)
"""Every move an order may make; any other is refused (HTTP 409). A bank may book the debit before
its ACK reaches us, hence SENT -> SETTLED; only a booked entry settles (never the REST API)."""

SETTLEABLE: frozenset[OrderStatus] = frozenset({OrderStatus.SENT, OrderStatus.ACK})
"""Orders a booked debit may settle: published, and not known to have failed."""

UNSETTLED: frozenset[OrderStatus] = frozenset({OrderStatus.NEW, OrderStatus.SENT, OrderStatus.ACK})
"""Orders whose money no balance can be shown to reflect yet: pending for every balance."""

UNPUBLISHED: OrderStatus = OrderStatus.NEW
"""The outbox: orders written but not yet on ``sweep_intent``."""
