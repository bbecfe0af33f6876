"""What a shard's batch reads from the ledger before it decides, in one statement.

Three reads (``balances.stored``, ``orders.open_orders``, ``investments.invested``) used to go
side by side on three pooled connections: three round trips, three backends woken, on the path
between consuming a batch and deciding it. Here the same three SELECTs (their text comes from
those modules, so the rules live in one place) run as one statement, each aggregated into an
array of anonymous records, and are decoded by the same positional readers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from storage import balances, investments, orders
from storage.balances import StoredBalance
from storage.db import Executor
from storage.orders import OpenOrder

_READ = f"""
    SELECT ARRAY(SELECT s FROM ({balances.stored_select("$1", "$2")}) s) AS stored,
           ARRAY(SELECT o FROM ({orders.open_orders_select("$3", "$4", "$5")}) o) AS open_orders,
           ARRAY(SELECT i FROM ({investments.invested_select("$3")}) i) AS invested
"""  # noqa: S608  # nosec B608: three of this package's SELECTs, their parameters numbered here


@dataclass(frozen=True)
class BatchRead:
    stored: dict[tuple[str, str], StoredBalance]
    """The rows held for the batch's event ids (``balances.stored``)."""
    open_orders: list[OpenOrder]
    """The accounts' orders the pending-sweeps rule counts (``orders.open_orders``)."""
    invested: dict[str, Decimal]
    """The accounts' OPEN investment principal (``investments.invested``)."""


async def read(db: Executor, keys: Sequence[tuple[str, str]], account_ids: Sequence[str], booked_after: datetime,
               now: datetime | None) -> BatchRead:
    """``keys``: the batch's (account, event id) pairs; the rest as ``orders.open_orders`` takes them."""
    row = await db.fetchrow(_READ, [k[0] for k in keys], [k[1] for k in keys], list(account_ids), booked_after, now)
    assert row is not None  # nosec B101: a SELECT without FROM always returns its one row
    return BatchRead(
        dict(balances.stored_balance(r) for r in row["stored"]),
        [orders.open_order(r) for r in row["open_orders"]],
        {r[0]: r[1] for r in row["invested"]},
    )
