"""The outflow forecast on the real Kafka and Postgres (issue 17 point 2): an account whose bank sends
only closes and entries, never a projection, gets a forecast from the VaR recompute, and its next
decision keeps a buffer sized by it and invests the rest for 4 weeks."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest

from actors.var_job import recompute
from risk.forecast import previous_business_day
from schemas.balance_event import BalanceCode, BalanceEvent, BalanceKind
from schemas.statement_entry import EntryDirection, StatementEntry
from tests.integration.conftest import Pipeline, new_accounts, register
from tests.integration.kafka_tools import poll_until, produce_entries, produce_events
from treasury.business_calendar import active
from treasury.settings import PolicyConfig

pytestmark = pytest.mark.integration
PROFILE = {0: Decimal("300000"), 1: Decimal("150000"), 2: Decimal("120000"), 3: Decimal("200000"),
           4: Decimal("500000")}
BALANCE = Decimal("1000000000")
WEEKS = 9


def close(account: str, day: date, booked: Decimal) -> BalanceEvent:
    return BalanceEvent(event_id=f"clbd-{day.isoformat()}", account_id=account, kind=BalanceKind.PRIOR_DAY,
                        as_of_ts=datetime.combine(day, time(23, 59, 59), tzinfo=UTC),
                        balance_code=BalanceCode.CLBD, booked_usd=booked)


def booked(account: str, entry_id: str, amount: Decimal, day: date, direction: EntryDirection) -> StatementEntry:
    at = datetime.combine(day, time(15), tzinfo=UTC)
    return StatementEntry(entry_id=entry_id, account_id=account, direction=direction, amount_usd=amount,
                          booking_date=day, booked_ts=at, value_date=day, bank_reference=f"BR-{entry_id}")


def business_days(first: date, last: date) -> list[date]:
    calendar, out, day = active(), [], first
    while day <= last:
        if calendar.is_business_day(day):
            out.append(day)
        day += timedelta(days=1)
    return out


async def test_a_camt_only_account_gets_a_forecast_and_a_buffer_sized_term_sweep(pipeline: Pipeline) -> None:
    calendar = active()
    today = datetime.now(UTC).date()
    decision_day = today if calendar.is_business_day(today) else previous_business_day(calendar, today)
    last = previous_business_day(calendar, decision_day)
    days = business_days(last - timedelta(weeks=WEEKS), last)
    # A: its bank books every payment (debits), and as much comes in (credits): the closes hold steady.
    # B: no entries at all; its closes decline by what it paid.
    a, b = new_accounts(2)
    await register(pipeline.pool, [a, b], var_usd=Decimal("1000"))  # 0.01 bps of 1 bn: within the limit
    entries = [e for d in days for e in (
        booked(a.account_id, f"d-{d}", PROFILE[d.weekday()], d, EntryDirection.DBIT),
        booked(a.account_id, f"c-{d}", PROFILE[d.weekday()], d, EntryDirection.CRDT))]
    produce_entries(pipeline.bootstrap, entries)
    closes = [close(a.account_id, d, BALANCE) for d in days]
    paid, balance_b = Decimal(0), []
    for d in days:
        paid += PROFILE[d.weekday()]
        balance_b.append(close(b.account_id, d, BALANCE - paid))
    produce_events(pipeline.bootstrap, [*closes, *balance_b])

    async def stored() -> bool:
        n_entries = await pipeline.pool.fetchval("SELECT count(*) FROM statement_entry WHERE account_id = $1",
                                                 a.account_id)
        n_closes = await pipeline.pool.fetchval(
            "SELECT count(*) FROM balance WHERE account_id = ANY($1::varchar[])", [a.account_id, b.account_id])
        return bool(n_entries >= len(entries) and n_closes >= 2 * len(days))

    await poll_until(pipeline.step, stored, 60)

    summary = await recompute(pipeline.pool, accounts=[a.account_id, b.account_id], inline_max_rows=10)
    assert summary.forecasts == 2 and summary.as_dict()["forecasts"] == 2
    rows = {r["account_id"]: r for r in await pipeline.pool.fetch(
        "SELECT * FROM forecast_result WHERE account_id = ANY($1::varchar[])", [a.account_id, b.account_id])}
    # The decision day's weekday level, and the level of any holiday it absorbs (those flows land on it).
    absorbed = [d for d in (last + timedelta(days=i) for i in range(1, (decision_day - last).days))
                if d.weekday() < 5]
    expected = PROFILE[decision_day.weekday()] + sum((PROFILE[h.weekday()] for h in absorbed), Decimal(0))
    for account in (a, b):  # the entries' debits, and the closes' declines: the same outflows
        row = rows[account.account_id]
        assert row["for_date"] == decision_day and row["outflow_usd"] == expected, dict(row)
        assert row["method"].startswith("weekday-q90-13w") and row["expected_inflows_usd"] == 0

    # The shard restarts (or the push reaches it): it loads the forecast with the account.
    await pipeline.worker.start()
    now = datetime.now(UTC)
    at = max(datetime.combine(decision_day, time(0, 0, 1), tzinfo=UTC),
             min(datetime.combine(decision_day, time(12), tzinfo=UTC), now - timedelta(minutes=1)))
    produce_events(pipeline.bootstrap, [BalanceEvent(
        event_id="itav-1", account_id=a.account_id, as_of_ts=at, kind=BalanceKind.INTRADAY,
        balance_code=BalanceCode.ITAV, available_usd=BALANCE)])
    await pipeline.drain([a.account_id], events=len(days) + 1, timeout=60)
    [order] = await pipeline.orders_for([a.account_id])
    decision = order["decision"]
    buffer = PolicyConfig().LIQ_BUFFER_PCT * expected
    assert (order["product"], decision["reason"]) == ("TBILL_4W", "within_limit"), decision
    assert decision["inputs"]["projection_source"].startswith("forecast:weekday-q90-13w")
    assert Decimal(decision["buffer_usd"]) == buffer and order["amount_usd"] == BALANCE - buffer
