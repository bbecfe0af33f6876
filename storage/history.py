"""Daily operating cash flows from the ledger: what VaR is of (spec: the business's net cash flows).

The close of a day is its latest CLBD (camt.053 closing booked) balance. The change of day d is
``close(d) - close(previous day with a close)``, so a gap's change lands on the later day (the
same rule as ``schemas.statements.daily_net_flows`` for files). That change includes our own
transfers: the sweeps that left (booked debits that settled an order) and the investments that
came back (the maturity credits). They are the orchestrator's doing, not the business's, and left
in they would make every large sweep a loss day of the VaR history. So the flow of day d is

    operating_flow(d) = close_change(d) - own_transfers(d)

where ``own_transfers(d)`` is the signed sum of the booked entries marked ``own_transfer``
(``storage.entries``) whose booking date falls after the previous close's day and on or before d.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import pyarrow as pa

from storage.db import Executor

_FLOWS = """
    WITH closes AS (
        SELECT DISTINCT ON (account_id, (as_of_ts AT TIME ZONE 'UTC')::date)
               account_id, (as_of_ts AT TIME ZONE 'UTC')::date AS day, booked_usd
        FROM balance
        WHERE balance_code = 'CLBD' AND booked_usd IS NOT NULL
          AND ($1::varchar[] IS NULL OR account_id = ANY($1::varchar[]))
        ORDER BY account_id, (as_of_ts AT TIME ZONE 'UTC')::date, as_of_ts DESC, id DESC
    ), changes AS (
        SELECT account_id, day, lag(day) OVER w AS previous_day, booked_usd - lag(booked_usd) OVER w AS change
        FROM closes WINDOW w AS (PARTITION BY account_id ORDER BY day)
    )
    SELECT c.account_id, c.day, c.change, COALESCE(own.usd, 0) AS own, c.change - COALESCE(own.usd, 0) AS operating
    FROM changes c
    LEFT JOIN LATERAL (
        SELECT sum(CASE WHEN e.direction = 'DBIT' THEN -e.amount_usd ELSE e.amount_usd END) AS usd
        FROM statement_entry e
        WHERE e.own_transfer IS NOT NULL AND e.account_id = c.account_id
          AND e.booking_date > c.previous_day AND e.booking_date <= c.day
    ) own ON true
    WHERE c.change IS NOT NULL
    ORDER BY c.account_id, c.day
"""


async def closing_flows(db: Executor, account_ids: Sequence[str] | None = None) -> pa.Table:
    """Long form (``account_id``, ``date``, ``net_flow_usd``: the operating flow) for the VaR engine."""
    rows = await db.fetch(_FLOWS, None if account_ids is None else list(account_ids))
    return pa.table({
        "account_id": pa.array([r["account_id"] for r in rows], pa.string()),
        "date": pa.array([r["day"] for r in rows], pa.date32()),
        "net_flow_usd": pa.array([float(r["operating"]) for r in rows], pa.float64()),
    })


async def account_flows(db: Executor, account_id: str, days: int) -> list[asyncpg.Record]:
    """The last ``days`` days of one account with a close: ``day``, ``change``, ``own``, ``operating``
    (exact decimals), oldest first: what ``treasury-orch var flows`` prints."""
    rows = await db.fetch(_FLOWS, [account_id])
    return list(rows[-days:])
