"""What a replay of the ledger reads (``actors.replay``, docs/decisions.md "Replay and what-if").

For the accounts and the period (as-of dates ``start`` to ``end``, both included): the balance rows
(their columns, never the encrypted raw event), the statement entries that bear on them, the live
orders, every VaR result and outflow forecast with the time it was computed (so a replay uses only
what was known at each moment), the accounts, and each account's state at ``start``: its newest
decided available balance before it, as a restarted shard reads it
(``actors.batch_plan.state_from_ledger``), and the last projection its feed sent before it.

Read only; nothing here decides anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from storage.accounts import Account
from storage.db import Executor
from storage.forecasts import ForecastRow


@dataclass(frozen=True)
class BalanceRec:
    """A stored balance event, as the shard stored it; ``received_ts`` is when it was stored, just
    after the shard decided on it."""

    id: int
    account_id: str
    event_id: str
    as_of_ts: datetime
    kind: str
    balance_code: str | None
    avail_usd: Decimal | None
    booked_usd: Decimal | None
    projected_outflows_usd: Decimal | None
    received_ts: datetime
    applied: bool = True


@dataclass(frozen=True)
class EntryRec:
    """A stored statement entry; ``own_transfer`` (SWEEP or MATURITY) with the ``order_id`` it settled."""

    id: int
    account_id: str
    entry_id: str
    direction: str
    status: str
    amount_usd: Decimal
    booking_date: date | None
    booked_ts: datetime | None
    value_date: date | None
    own_transfer: str | None
    order_id: str | None
    received_ts: datetime

    @property
    def booked_at(self) -> datetime | None:
        """From when a balance shows it: its booking time, else the end of its booking date."""
        if self.booked_ts is not None:
            return self.booked_ts
        if self.booking_date is None:
            return None
        return datetime.combine(self.booking_date, time(23, 59, 59, 999000), tzinfo=UTC)


@dataclass(frozen=True)
class LiveOrder:
    """A live order and its life: ``settled_ts`` is when the entry that settled it was applied (the
    same transaction), ``booked_ts`` that entry's booking time, ``failed_ts`` when it failed (or was
    rejected or expired: it counts for nothing from then on, as a failed one)."""

    order_id: str
    decision_key: str
    account_id: str
    amount_usd: Decimal
    product: str
    created_ts: datetime
    cutoff_utc: datetime
    status: str
    booked_ts: datetime | None = None
    settled_ts: datetime | None = None
    failed_ts: datetime | None = None
    ladder_days: int | None = None


@dataclass(frozen=True)
class VarRec:
    account_id: str
    var_usd: Decimal | None
    days: int
    computed_ts: datetime


@dataclass(frozen=True)
class StartRec:
    """An account's state at the start of the period: its newest decided available balance before
    it (None: none yet) and the last projection its feed sent before it, with its as-of time."""

    position: dict[str, object] | None
    projection: Decimal | None = None
    projection_ts: datetime | None = None


@dataclass
class ReplaySource:
    start: date
    end: date
    accounts: dict[str, Account]
    starts: dict[str, StartRec]
    balances: list[BalanceRec]
    entries: list[EntryRec]
    orders: list[LiveOrder]
    var_results: list[VarRec] = field(default_factory=list)
    forecasts: list[ForecastRow] = field(default_factory=list)

    @property
    def begins(self) -> datetime:
        return datetime.combine(self.start, time(0), tzinfo=UTC)

    @property
    def ends(self) -> datetime:
        """The first instant after the period."""
        return datetime.combine(self.end + timedelta(days=1), time(0), tzinfo=UTC)


_BALANCES = """
    SELECT id, account_id, event_id, as_of_ts, kind, balance_code, avail_usd, booked_usd, projected_outflows_usd,
           received_ts, applied
    FROM balance WHERE account_id = ANY($1::varchar[]) AND as_of_ts >= $2 AND as_of_ts < $3
    ORDER BY received_ts, id
"""
# Entries booked in the period, and every own transfer of the accounts' orders of the period.
_ENTRIES = """
    SELECT id, account_id, entry_id, direction, status, amount_usd, booking_date, booked_ts, value_date,
           own_transfer, order_id, received_ts
    FROM statement_entry
    WHERE account_id = ANY($1::varchar[])
      AND ((booking_date >= $2::date AND booking_date <= $3::date)
           OR order_id IN (SELECT order_id FROM sweep_order WHERE account_id = ANY($1::varchar[])
                           AND created_ts < $4 AND (created_ts >= $5 OR status <> 'FAILED')))
    ORDER BY received_ts, id
"""
# Orders of the period, and the older ones that may still have been pending in it. A rejected or
# expired order (four-eyes approval, docs/approval.md) stops counting when it ended, as a failed
# one does: the replay reads its end as ``failed_ts``.
_ORDERS = """
    SELECT order_id, decision_key, account_id, amount_usd, product, created_ts, cutoff_utc, status, booked_ts,
           settled_ts, COALESCE(failed_ts, rejected_ts, expired_ts) AS failed_ts,
           decision->>'ladder_days' AS ladder
    FROM sweep_order
    WHERE account_id = ANY($1::varchar[]) AND created_ts < $2
      AND (created_ts >= $3 OR settled_ts IS NULL OR settled_ts >= $3 OR booked_ts >= $3)
      AND COALESCE(failed_ts, rejected_ts, expired_ts, $3) >= $3
    ORDER BY created_ts, id
"""
_STARTS = """
    SELECT DISTINCT ON (account_id) account_id, event_id, as_of_ts, avail_usd, booked_usd
    FROM balance
    WHERE account_id = ANY($1::varchar[]) AND applied AND decided_ts IS NOT NULL AND avail_usd IS NOT NULL
          AND as_of_ts < $2
    ORDER BY account_id, as_of_ts DESC, id DESC
"""
_PROJECTIONS = """
    SELECT DISTINCT ON (account_id) account_id, projected_outflows_usd, as_of_ts
    FROM balance
    WHERE account_id = ANY($1::varchar[]) AND projected_outflows_usd IS NOT NULL AND decided_ts IS NOT NULL
          AND as_of_ts < $2
    ORDER BY account_id, as_of_ts DESC, id DESC
"""


async def load(db: Executor, start: date, end: date, account_ids: Sequence[str] | None = None) -> ReplaySource:
    """Everything a replay of ``start``..``end`` (as-of dates, inclusive) reads, for ``account_ids``
    (default: every registered account). Raises ValueError for an empty period."""
    if end < start:
        raise ValueError(f"--to {end} is before --from {start}")
    if account_ids is None:
        rows = await db.fetch("SELECT * FROM account ORDER BY account_id")
    else:
        rows = await db.fetch("SELECT * FROM account WHERE account_id = ANY($1::varchar[]) ORDER BY account_id",
                              list(account_ids))
    accts = {r["account_id"]: Account(r["account_id"], r["esg_pref"], r["min_balance_usd"], dict(r["aml_tags"]))
             for r in rows}
    ids = sorted(accts)
    source = ReplaySource(start, end, accts, {}, [], [], [])
    begins, ends = source.begins, source.ends
    source.balances = [BalanceRec(**dict(r)) for r in await db.fetch(_BALANCES, ids, begins, ends)]
    source.entries = [EntryRec(**dict(r)) for r in await db.fetch(_ENTRIES, ids, start, end, ends, begins)]
    source.orders = [
        LiveOrder(**{k: v for k, v in dict(r).items() if k != "ladder"}, ladder_days=int(r["ladder"]) if r["ladder"]
                  else None)
        for r in await db.fetch(_ORDERS, ids, ends, begins)
    ]
    source.var_results = [VarRec(r["account_id"], r["var_usd"], r["days"], r["computed_ts"]) for r in await db.fetch(
        "SELECT account_id, var_usd, days, computed_ts FROM var_result WHERE account_id = ANY($1::varchar[])"
        " AND computed_ts < $2 ORDER BY computed_ts, id", ids, ends)]
    source.forecasts = await _forecasts(db, ids, ends)
    positions = {r["account_id"]: dict(r) for r in await db.fetch(_STARTS, ids, begins)}
    projections = {r["account_id"]: (r["projected_outflows_usd"], r["as_of_ts"])
                   for r in await db.fetch(_PROJECTIONS, ids, begins)}
    source.starts = {a: StartRec(positions.get(a), *projections.get(a, (None, None))) for a in ids}
    return source


async def _forecasts(db: Executor, ids: Sequence[str], ends: datetime) -> list[ForecastRow]:
    """Every outflow forecast computed before the period ended. ``forecast_result`` keeps one row per
    account and day (a recompute of the same day replaces it, ``computed_ts`` moves): a replay sees
    the day's last figure from when it was computed."""
    rows = await db.fetch(
        "SELECT account_id, for_date, outflow_usd, method, expected_inflows_usd, computed_ts FROM forecast_result"
        " WHERE account_id = ANY($1::varchar[]) AND computed_ts < $2 ORDER BY computed_ts, id", list(ids), ends)
    return [ForecastRow(r["account_id"], r["for_date"], r["outflow_usd"], r["method"], r["expected_inflows_usd"],
                        r["computed_ts"]) for r in rows]
