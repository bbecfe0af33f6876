"""Daily net cash flows from the ledger: day-over-day changes of each account's closing balance.

The close of a day is its latest CLBD (camt.053 closing booked) balance; the flow of day d is
``close(d) - close(previous day with a close)``, so a gap's change lands on the later day (the
same rule as ``schemas.statements.daily_net_flows`` for files).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from storage.db import Executor


async def closing_flows(db: Executor, account_ids: Sequence[str] | None = None) -> pa.Table:
    """Long form (``account_id``, ``date``, ``net_flow_usd``) as a pyarrow table for the VaR engine."""
    rows = await db.fetch(
        """
        WITH closes AS (
            SELECT DISTINCT ON (account_id, (as_of_ts AT TIME ZONE 'UTC')::date)
                   account_id, (as_of_ts AT TIME ZONE 'UTC')::date AS day, booked_usd
            FROM balance
            WHERE balance_code = 'CLBD' AND booked_usd IS NOT NULL
              AND ($1::varchar[] IS NULL OR account_id = ANY($1::varchar[]))
            ORDER BY account_id, (as_of_ts AT TIME ZONE 'UTC')::date, as_of_ts DESC, id DESC
        ), flows AS (
            SELECT account_id, day, booked_usd - lag(booked_usd) OVER (PARTITION BY account_id ORDER BY day) AS flow
            FROM closes
        )
        SELECT account_id, day, flow::float8 AS flow FROM flows WHERE flow IS NOT NULL ORDER BY account_id, day
        """,
        None if account_ids is None else list(account_ids),
    )
    return pa.table({
        "account_id": pa.array([r["account_id"] for r in rows], pa.string()),
        "date": pa.array([r["day"] for r in rows], pa.date32()),
        "net_flow_usd": pa.array([r["flow"] for r in rows], pa.float64()),
    })
