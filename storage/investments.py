"""INVESTMENT rows: the book of what our settled sweeps put where, and when it comes back.

An investment is opened by the settlement of its sweep (``storage.entries.settle``) and matured by
the credit that brings it back (``storage.entries.mature``). OVERDUE is not stored: an OPEN
investment more than ``grace_days`` (MATURITY_GRACE_DAYS) past its maturity date reads as OVERDUE,
so the status never lags the calendar.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

import asyncpg

from storage.db import Executor

_SELECT = """
    SELECT order_id, account_id, product, principal_usd, value_date, maturity_date, matured_entry_id,
           matured_amount_usd, matured_booked_ts, created_ts,
           CASE WHEN status = 'OPEN' AND maturity_date + $1::int < $2::date THEN 'OVERDUE' ELSE status END AS status
    FROM investment
"""


def view(row: asyncpg.Record) -> dict[str, Any]:
    """One investment as the REST API and the console show it: amounts as strings, dates ISO."""
    out: dict[str, Any] = {}
    for key, value in dict(row).items():
        if isinstance(value, Decimal):
            out[key] = format(value, "f")
        elif hasattr(value, "isoformat"):
            out[key] = value.isoformat().replace("+00:00", "Z")
        else:
            out[key] = value
    return out


def invested_select(account_ids: str) -> str:
    """The SELECT of ``invested``, its parameter placed by the caller (``"$1"``): ``storage.batch_read``
    runs it in one statement with a batch's other reads. Rows: account id, principal."""
    return f"""
        SELECT account_id, sum(principal_usd) AS usd FROM investment
        WHERE account_id = ANY({account_ids}::varchar[]) AND status = 'OPEN' GROUP BY account_id
        """  # noqa: S608  # nosec B608: the placeholder is a parameter marker ("$1"), never data


async def invested(db: Executor, account_ids: Sequence[str]) -> dict[str, Decimal]:
    """Per account, the principal of its OPEN investments (overdue ones included: still out)."""
    return {r[0]: r[1] for r in await db.fetch(invested_select("$1"), list(account_ids))}


async def of_account(db: Executor, account_id: str, today: date, grace_days: int) -> list[asyncpg.Record]:
    return list(await db.fetch(_SELECT + " WHERE account_id = $3 ORDER BY maturity_date, id",
                               grace_days, today, account_id))


async def of_order(db: Executor, order_id: str, today: date, grace_days: int) -> asyncpg.Record | None:
    return await db.fetchrow(_SELECT + " WHERE order_id = $3", grace_days, today, order_id)


async def maturing(db: Executor, before: date | None, today: date, grace_days: int,
                   limit: int = 1000) -> list[asyncpg.Record]:
    """OPEN investments maturing before ``before`` (all OPEN ones when None), by maturity date."""
    return list(await db.fetch(
        _SELECT + " WHERE status = 'OPEN' AND ($3::date IS NULL OR maturity_date < $3::date)"
        " ORDER BY maturity_date, product, id LIMIT $4",
        grace_days, today, before, limit,
    ))


async def book_totals(db: Executor, today: date, grace_days: int) -> tuple[dict[str, Decimal], int]:
    """What the metrics show: OPEN principal per product, and how many OPEN investments are overdue."""
    rows = await db.fetch(
        "SELECT product, sum(principal_usd) AS usd,"
        " count(*) FILTER (WHERE maturity_date + $1::int < $2::date) AS overdue"
        " FROM investment WHERE status = 'OPEN' GROUP BY product",
        grace_days, today,
    )
    return {r["product"]: r["usd"] for r in rows}, sum(int(r["overdue"]) for r in rows)
