"""The money loop for treasurers: the investment book and what settlement has not closed.

``GET /investments`` is the ladder (what comes back when, by product); ``GET
/accounts/{id}/investments`` an account's book; ``GET /settlement/overdue`` the orders whose debit
the bank has not booked ``SETTLEMENT_OVERDUE_AFTER_S`` after their cut-off; ``GET
/settlement/breaks`` the booked entries that named an order but could not settle it, with both
figures. How settlement works: docs/settlement.md.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from serve_app.rest.auth import scope
from serve_app.rest.backend import Backend
from serve_app.rest.errors import error, responses
from serve_app.rest.routes.accounts import ACCOUNT_ID
from serve_app.rest.routes.orders import order_detail
from storage import accounts, approvals, entries, investments, orders
from treasury.auth import Scope
from treasury.clock import utc_now

MATURING_BEFORE = Query(default=None, json_schema_extra={"format": "date"},
                        description="only OPEN investments maturing before this date (YYYY-MM-DD); all OPEN ones "
                                    "when omitted")


def router(backend: Backend) -> APIRouter:
    api = APIRouter(tags=["book"])
    readers = [scope(backend, Scope.BALANCES_READ)]

    @api.get("/accounts/{account_id}/investments", dependencies=readers,
             responses=responses(401, 403, 404, 422, 503))
    async def account_investments(account_id: str = ACCOUNT_ID) -> Response:
        """Every investment of the account, by maturity date: OPEN, OVERDUE (OPEN and more than
        MATURITY_GRACE_DAYS past maturity) or MATURED, with what came back; 404 for an account
        that is not registered."""
        pool = await backend.pool()
        if not await accounts.get_many(pool, [account_id]):
            return error(404, "account_id", f"no account {account_id!r}")
        rows = await investments.of_account(pool, account_id, utc_now().date(),
                                           backend.settings.maturity_grace_days)
        return JSONResponse({"account_id": account_id, "investments": [investments.view(r) for r in rows],
                             "count": len(rows)})

    @api.get("/investments", dependencies=readers, responses=responses(401, 403, 422, 503))
    async def ladder(
        maturing_before: str | None = MATURING_BEFORE,
        limit: int = Query(default=1000, ge=1, le=10_000),
    ) -> Response:
        """The ladder: OPEN investments by maturity date and product, with their totals."""
        before = None if maturing_before is None else _full_date(maturing_before)
        if maturing_before is not None and before is None:
            return error(422, "maturing_before", f"{maturing_before[:40]!r} is not a date (YYYY-MM-DD)")
        rows = await investments.maturing(await backend.pool(), before, utc_now().date(),
                                         backend.settings.maturity_grace_days, limit)
        rungs: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
        for r in rows:
            rungs[(r["maturity_date"].isoformat(), r["product"])] += r["principal_usd"]
        return JSONResponse({
            "ladder": [{"maturity_date": day, "product": product, "principal_usd": format(usd, "f")}
                       for (day, product), usd in sorted(rungs.items())],
            "investments": [investments.view(r) for r in rows],
            "total_usd": format(sum(rungs.values(), Decimal(0)), "f"),
            "count": len(rows),
        })

    order_readers = [scope(backend, Scope.ORDERS_READ)]

    @api.get("/settlement/overdue", dependencies=order_readers, responses=responses(401, 403, 422, 503))
    async def overdue(limit: int = Query(default=100, ge=1, le=1000)) -> dict[str, Any]:
        """Orders the bank has not shown debited SETTLEMENT_OVERDUE_AFTER_S after their cut-off."""
        pool = await backend.pool()
        rows = await orders.overdue(pool, utc_now(), backend.settings.settlement_overdue_after_s, limit)
        trails = await approvals.trails(pool, [r["order_id"] for r in rows])
        return {"orders": [order_detail(r, None, trails[r["order_id"]]) for r in rows], "count": len(rows),
                "overdue_after_s": backend.settings.settlement_overdue_after_s}

    @api.get("/settlement/breaks", dependencies=order_readers, responses=responses(401, 403, 422, 503))
    async def breaks(limit: int = Query(default=100, ge=1, le=1000)) -> dict[str, Any]:
        """Booked entries that named an order or investment but could not settle it, newest first."""
        rows = await entries.breaks(await backend.pool(), None, limit)
        return {"breaks": [investments.view(r) for r in rows], "count": len(rows)}

    return api


def _full_date(text: str) -> date | None:
    """An RFC 3339 full-date (``2026-11-30``) and nothing else: not a timestamp, not ISO week dates."""
    if len(text) != 10 or text[4] != "-" or text[7] != "-" or not text.replace("-", "").isdigit():
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None
