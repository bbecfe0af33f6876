"""Closing balances and daily net cash flows from a series of statements (camt.053).

Why: the VaR engine needs a history of daily net cash flows per account, and a bank statement
does not state one. It does state ``CLBD``, the closing booked balance, which is the prior-day
close; the day-over-day change of ``CLBD`` is the net flow of that day.

Rules:

* Only events with ``balance_code == CLBD`` count (camt.052/053 and native events alike); every
  other code is ignored. The day of a close is the UTC date of its ``as_of_ts`` (a camt ``Dt``
  is read as 23:59:59.999999Z of that date, so it keeps its own date; a ``Dt`` with an offset is the
  end of that day in that zone: east of UTC, or ``Z``, it keeps its date, west of UTC it falls on
  the next UTC day, the same for every close of that bank, so the day-over-day changes stay whole).
* The same close seen twice (same account, day, amount and currency; e.g. a re-sent statement
  under a new message id) counts once. Two *different* closes for the same account and day are
  contradictory and raise ``ValueError``: guessing which one is right would feed a wrong flow
  into the risk numbers.
* A gap (days without a close, e.g. weekends and holidays) yields no entry for the missing days:
  the whole change since the previous close is attributed to the later day.
* An account whose closes change currency raises ``ValueError``: a difference between a EUR and
  a SEK figure is not a cash flow. Amounts are never converted here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from itertools import pairwise

from schemas.balance_event import BalanceCode, BalanceEvent

__all__ = ["closing_balances", "daily_net_flows", "prior_day_close"]


def closing_balances(events: Iterable[BalanceEvent]) -> dict[str, dict[date, BalanceEvent]]:
    """Per account, the one ``CLBD`` event of each UTC day (see the module rules)."""
    closes: dict[str, dict[date, BalanceEvent]] = {}
    for event in events:
        if event.balance_code is not BalanceCode.CLBD or event.booked_usd is None:
            continue
        by_day = closes.setdefault(event.account_id, {})
        day = event.as_of_ts.date()
        known = by_day.get(day)
        if known is None:
            by_day[day] = event
        elif (known.booked_usd, known.currency) != (event.booked_usd, event.currency):
            raise ValueError(
                f"account {event.account_id}: two different closing balances for {day.isoformat()} "
                f"({known.booked_usd} {known.currency} in {known.event_id}, "
                f"{event.booked_usd} {event.currency} in {event.event_id})"
            )
    return closes


def prior_day_close(events: Iterable[BalanceEvent]) -> dict[str, BalanceEvent]:
    """Per account, the latest ``CLBD`` event: the prior-day close a sweep starts from."""
    return {account: by_day[max(by_day)] for account, by_day in closing_balances(events).items()}


def daily_net_flows(events: Iterable[BalanceEvent]) -> dict[str, list[tuple[date, Decimal]]]:
    """Per account, ``(day, close(day) - previous close)`` sorted by day; the first day has none."""
    flows: dict[str, list[tuple[date, Decimal]]] = {}
    for account, by_day in closing_balances(events).items():
        days = sorted(by_day)
        series: list[tuple[date, Decimal]] = []
        for previous, current in pairwise(days):
            series.append((current, _change(account, by_day[previous], by_day[current])))
        flows[account] = series
    return flows


def _change(account: str, before: BalanceEvent, after: BalanceEvent) -> Decimal:
    if before.currency != after.currency:
        raise ValueError(
            f"account {account}: closing balance currency changes from {before.currency} "
            f"to {after.currency} on {after.as_of_ts.date().isoformat()}"
        )
    assert before.booked_usd is not None and after.booked_usd is not None  # filtered above
    return after.booked_usd - before.booked_usd
