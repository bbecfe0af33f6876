"""The sweep order's lifecycle, in one place: the ledger, the coordinator, the pending rule, the REST
transitions and the metrics all name statuses through this enum, so a status added later cannot be
missed by one of them.
"""

from __future__ import annotations

from enum import StrEnum


class OrderStatus(StrEnum):
    """``NEW -> SENT -> ACK | FAILED`` (DESIGN.md section 2). The value is what the ledger stores."""

    NEW = "NEW"
    SENT = "SENT"
    ACK = "ACK"
    FAILED = "FAILED"


TRANSITIONS: frozenset[tuple[OrderStatus, OrderStatus]] = frozenset(
    {(OrderStatus.NEW, OrderStatus.SENT), (OrderStatus.SENT, OrderStatus.ACK), (OrderStatus.SENT, OrderStatus.FAILED)}
)
"""Every move an order may make; any other is refused (HTTP 409)."""

UNPUBLISHED: OrderStatus = OrderStatus.NEW
"""The outbox: orders written but not yet on ``sweep_intent``."""

EXECUTING: frozenset[OrderStatus] = frozenset({OrderStatus.NEW, OrderStatus.SENT})
"""Orders the bank cannot have executed yet, so no balance can show them."""
