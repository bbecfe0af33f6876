"""The money loop (issue 16) on the real Kafka and Postgres: settlement, pending until settled, the
investment book, and VaR on operating flows.

Each test runs the shard and the coordinator in-process (the ``pipeline`` fixture) and talks to the
REST app as the Bank-Connector and a treasurer would (the ``api`` fixture).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

import httpx
import numpy as np
import pytest

from actors import shard as shard_module
from actors.var_job import load
from devstack.stack import StackInfo
from risk.kernels import var_and_es
from schemas.balance_event import BalanceCode, BalanceEvent, BalanceKind
from schemas.statement_entry import EntryDirection, StatementEntry
from tests.integration.camt_samples import camt_with_entries, closing_balance, finastra_statement, ntry, tx
from tests.integration.conftest import Pipeline, new_accounts, register
from tests.integration.kafka_tools import poll_until, produce_entries, produce_events, read_from
from tests.integration.test_cli_stack import cli
from treasury.keyring import Keyring
from treasury.signing import verify_order

pytestmark = pytest.mark.integration
TEN_M = Decimal("10000000")


def intraday(account: str, event_id: str, available: Decimal, at: datetime) -> BalanceEvent:
    return BalanceEvent(event_id=event_id, account_id=account, as_of_ts=at, kind=BalanceKind.INTRADAY,
                        balance_code=BalanceCode.ITAV, available_usd=available)


def close(account: str, day: date, booked: Decimal) -> BalanceEvent:
    return BalanceEvent(event_id=f"clbd-{day.isoformat()}", account_id=account, kind=BalanceKind.PRIOR_DAY,
                        as_of_ts=datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=UTC),
                        balance_code=BalanceCode.CLBD, booked_usd=booked)


def entry(account: str, entry_id: str, amount: Decimal, booked_at: datetime, direction: str = "DBIT",
          **refs: Any) -> StatementEntry:
    return StatementEntry(entry_id=entry_id, account_id=account, direction=EntryDirection(direction),
                          amount_usd=amount, booking_date=booked_at.date(), booked_ts=booked_at,
                          value_date=booked_at.date(), bank_reference=f"BR-{entry_id}", **refs)


async def entries_stored(pipeline: Pipeline, account: str, n: int) -> None:
    async def done() -> bool:
        held = await pipeline.pool.fetchval("SELECT count(*) FROM statement_entry WHERE account_id = $1", account)
        return bool(held >= n)

    await poll_until(pipeline.step, done)


async def nth_order_published(pipeline: Pipeline, account: str, n: int) -> dict[str, Any]:
    """Run until the account has ``n`` orders, every one published (SENT); the newest."""
    async def done() -> bool:
        rows = await pipeline.orders_for([account])
        return len(rows) >= n and all(r["status"] != "NEW" for r in rows)

    await poll_until(pipeline.step, done)
    return dict((await pipeline.orders_for([account]))[n - 1])


async def first_order(pipeline: Pipeline, api: httpx.AsyncClient, account: str, at: datetime,
                      available: Decimal = TEN_M) -> dict[str, Any]:
    """A balance that makes one order, published and ACKed by the Bank-Connector."""
    produce_events(pipeline.bootstrap, [intraday(account, "ev-1", available, at)])
    await pipeline.drain([account], events=1)
    [row] = await pipeline.orders_for([account])
    r = await api.post(f"/sweep-intent/{row['order_id']}/ack")
    assert r.status_code == 200 and r.json()["status"] == "ACK", r.text
    return dict(row)


async def test_an_ack_is_not_the_debit_a_stale_intraday_balance_makes_no_second_order(
    stack: StackInfo, pipeline: Pipeline, api: httpx.AsyncClient, keyring: Keyring,
) -> None:
    """The issue's case: 10 M available, one order for 10 M, ACKed; the bank's next intraday balance
    (after the ACK, before the debit is booked) still shows 10 M. It used to make a second 10 M order."""
    [a] = new_accounts()
    await register(pipeline.pool, [a])
    now = datetime.now(UTC).replace(microsecond=0)
    order = await first_order(pipeline, api, a.account_id, now - timedelta(minutes=30))
    assert order["amount_usd"] == TEN_M

    produce_events(pipeline.bootstrap, [intraday(a.account_id, "ev-2", TEN_M, now - timedelta(minutes=10))])
    await pipeline.drain([a.account_id], events=2)
    assert len(await pipeline.orders_for([a.account_id])) == 1  # 20 M from a 10 M account no more
    position = (await api.get(f"/accounts/{a.account_id}/position")).json()
    assert Decimal(position["pending_sweeps_usd"]) == TEN_M and Decimal(position["excess_usd"]) == 0

    # The debit is booked, with the order id as pain.001's EndToEndId (32 hex digits: Max35Text).
    booked_at = now - timedelta(minutes=5)
    e2e = order["order_id"].replace("-", "")
    produce_entries(pipeline.bootstrap, [entry(a.account_id, "ntry-1", TEN_M, booked_at, end_to_end_id=e2e)])
    await entries_stored(pipeline, a.account_id, 1)
    detail = (await api.get(f"/sweep-intent/{order['order_id']}")).json()
    assert detail["status"] == "SETTLED", detail
    assert detail["settlement"]["entry_id"] == "ntry-1" and detail["settlement"]["matched_by"] == "end_to_end_id"
    assert detail["settlement"]["bank_reference"] == "BR-ntry-1"
    assert detail["settlement"]["booked_ts"].startswith(booked_at.strftime("%Y-%m-%dT%H:%M"))
    assert set(detail["status_history"]) == {"NEW", "SENT", "ACK", "SETTLED"}
    assert detail["investment"]["product"] == "FED_RRP" and detail["investment"]["status"] == "OPEN"
    # what a treasurer reads is still the signed order: its signature verifies over the view
    keys = keyring.public_keys(stack.settings().order_signing_key)
    assert verify_order(detail, keys) == detail["signing_key_version"]

    # A balance taken after the booking shows the debit (2 M came in since): only the new money goes.
    produce_events(pipeline.bootstrap, [intraday(a.account_id, "ev-3", Decimal("2000000"), now)])
    await pipeline.drain([a.account_id], events=3)
    orders = await pipeline.orders_for([a.account_id])
    assert [o["amount_usd"] for o in orders] == [TEN_M, Decimal("2000000")]
    position = (await api.get(f"/accounts/{a.account_id}/position")).json()
    assert Decimal(position["pending_sweeps_usd"]) == Decimal("2000000")  # the new, unsettled order
    assert Decimal(position["invested_usd"]) == TEN_M
    # the position says what the next decision counts: 3 M available now, 2 M of it already ordered
    produce_events(pipeline.bootstrap, [intraday(a.account_id, "ev-4", Decimal("3000000"), now + timedelta(seconds=1))])
    await pipeline.drain([a.account_id], events=4)
    orders = await pipeline.orders_for([a.account_id])
    assert [o["amount_usd"] for o in orders][2:] == [Decimal("1000000")]
    assert Decimal(orders[2]["decision"]["inputs"]["pending_sweeps_usd"]) == Decimal(position["pending_sweeps_usd"])
    assert Decimal(orders[1]["decision"]["inputs"]["pending_sweeps_usd"]) == 0  # the first settled before ev-3


async def test_a_debit_without_the_id_settles_the_one_order_of_its_amount(
    pipeline: Pipeline, api: httpx.AsyncClient,
) -> None:
    [a] = new_accounts()
    await register(pipeline.pool, [a])
    now = datetime.now(UTC).replace(microsecond=0)
    order = await first_order(pipeline, api, a.account_id, now - timedelta(minutes=30))
    produce_entries(pipeline.bootstrap, [entry(a.account_id, "ntry-x", TEN_M, now - timedelta(minutes=1))])
    await entries_stored(pipeline, a.account_id, 1)
    detail = (await api.get(f"/sweep-intent/{order['order_id']}")).json()
    assert detail["status"] == "SETTLED" and detail["settlement"]["matched_by"] == "amount_and_date"
    own = await pipeline.pool.fetchrow("SELECT own_transfer, order_id FROM statement_entry WHERE account_id = $1",
                                       a.account_id)
    assert (own["own_transfer"], own["order_id"]) == ("SWEEP", order["order_id"])


async def test_another_amount_is_a_break_listed_and_counted_and_the_order_stays_pending(
    pipeline: Pipeline, api: httpx.AsyncClient,
) -> None:
    [a] = new_accounts()
    await register(pipeline.pool, [a])
    now = datetime.now(UTC).replace(microsecond=0)
    order = await first_order(pipeline, api, a.account_id, now - timedelta(minutes=30))
    produce_entries(pipeline.bootstrap, [entry(a.account_id, "ntry-b", Decimal("9999000"), now - timedelta(minutes=1),
                                               end_to_end_id=order["order_id"])])
    await entries_stored(pipeline, a.account_id, 1)
    assert (await api.get(f"/sweep-intent/{order['order_id']}")).json()["status"] == "ACK"
    breaks = [b for b in (await api.get("/settlement/breaks")).json()["breaks"] if b["account_id"] == a.account_id]
    assert len(breaks) == 1 and breaks[0]["kind"] == "amount"
    assert breaks[0]["order_amount_usd"] == "10000000.0000" and Decimal(breaks[0]["entry_amount_usd"]) == Decimal(
        "9999000")
    assert "9999000" in breaks[0]["detail"] and "10000000" in breaks[0]["detail"]
    metrics = (await api.get("/metrics")).text
    assert 'treasury_settlement_breaks_total{kind="amount"}' in metrics
    position = (await api.get(f"/accounts/{a.account_id}/position")).json()
    assert Decimal(position["pending_sweeps_usd"]) == TEN_M


async def test_an_order_not_settled_after_its_cutoff_is_overdue(pipeline: Pipeline, api: httpx.AsyncClient) -> None:
    [a] = new_accounts()
    await register(pipeline.pool, [a])
    now = datetime.now(UTC).replace(microsecond=0)
    order = await first_order(pipeline, api, a.account_id, now - timedelta(minutes=30))
    listed = {o["order_id"] for o in (await api.get("/settlement/overdue?limit=1000")).json()["orders"]}
    assert order["order_id"] not in listed  # its cut-off is still ahead
    # The bank never books it: two days later (the cut-off moved back, as time would have moved on)
    await pipeline.pool.execute("UPDATE sweep_order SET cutoff_utc = $2 WHERE order_id = $1", order["order_id"],
                                now - timedelta(days=2))
    overdue = (await api.get("/settlement/overdue?limit=1000")).json()
    assert order["order_id"] in {o["order_id"] for o in overdue["orders"]}
    assert overdue["overdue_after_s"] == 21600
    metrics = (await api.get("/metrics")).text
    [line] = [m for m in metrics.splitlines() if m.startswith("treasury_orders_overdue ")]
    assert float(line.split()[1]) >= 1


async def test_a_maturity_comes_back_and_the_investment_is_matured(
    pipeline: Pipeline, api: httpx.AsyncClient,
) -> None:
    [a] = new_accounts()
    await register(pipeline.pool, [a])
    now = datetime.now(UTC).replace(microsecond=0)
    order = await first_order(pipeline, api, a.account_id, now - timedelta(minutes=30))
    booked = now - timedelta(minutes=20)  # the sweep's debit; in the first minutes after midnight, yesterday
    produce_entries(pipeline.bootstrap, [entry(a.account_id, "ntry-s", TEN_M, booked,
                                               end_to_end_id=order["order_id"])])
    await entries_stored(pipeline, a.account_id, 1)
    ladder = (await api.get("/investments?limit=10000")).json()
    mine = [i for i in ladder["investments"] if i["account_id"] == a.account_id]
    assert [(i["product"], i["principal_usd"], i["status"]) for i in mine] == [("FED_RRP", "10000000.0000", "OPEN")]
    assert any(r["product"] == "FED_RRP" and r["maturity_date"] == mine[0]["maturity_date"] for r in ladder["ladder"])
    maturity = date.fromisoformat(mine[0]["maturity_date"])
    assert maturity.weekday() < 5 and maturity > booked.date()  # overnight: a business day after the booking

    async def ladder_holds_mine(before: date) -> bool:
        rows = (await api.get(f"/investments?maturing_before={before.isoformat()}&limit=10000")).json()
        return any(i["account_id"] == a.account_id for i in rows["investments"])

    assert not await ladder_holds_mine(maturity)  # it matures on that date, not before
    assert await ladder_holds_mine(maturity + timedelta(days=1))

    produce_entries(pipeline.bootstrap, [entry(a.account_id, "ntry-m", Decimal("10001100"), now - timedelta(minutes=2),
                                               "CRDT", end_to_end_id=order["order_id"])])
    await entries_stored(pipeline, a.account_id, 2)
    [held] = (await api.get(f"/accounts/{a.account_id}/investments")).json()["investments"]
    assert held["status"] == "MATURED" and held["matured_entry_id"] == "ntry-m"
    assert Decimal(held["matured_amount_usd"]) == Decimal("10001100")
    kinds = await pipeline.pool.fetch("SELECT entry_id, own_transfer FROM statement_entry WHERE account_id = $1"
                                      " ORDER BY entry_id", a.account_id)
    assert [(k["entry_id"], k["own_transfer"]) for k in kinds] == [("ntry-m", "MATURITY"), ("ntry-s", "SWEEP")]


async def test_a_shard_crash_after_the_entry_is_applied_settles_the_order_exactly_once(
    pipeline: Pipeline, api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The crash point sits after the entries' transaction and before the offsets are committed: the
    batch is consumed again after the restart, and its entry is then a duplicate."""
    [a] = new_accounts()
    await register(pipeline.pool, [a])
    now = datetime.now(UTC).replace(microsecond=0)
    order = await first_order(pipeline, api, a.account_id, now - timedelta(minutes=30))

    class Crash(Exception):
        pass

    def crash(point: str) -> None:
        if point == "shard_after_entries":
            raise Crash(point)

    monkeypatch.setattr(shard_module, "crash_point", crash)
    produce_entries(pipeline.bootstrap, [entry(a.account_id, "ntry-c", TEN_M, now - timedelta(minutes=1),
                                               end_to_end_id=order["order_id"])])
    with pytest.raises(Crash):
        await poll_until(pipeline.step, lambda: _never())
    monkeypatch.undo()
    await pipeline.worker.start()  # the restarted shard: back to the committed offsets, state forgotten
    await poll_until(pipeline.step, lambda: _duplicates_seen(pipeline))

    assert (await api.get(f"/sweep-intent/{order['order_id']}")).json()["status"] == "SETTLED"
    counts = await pipeline.pool.fetchrow(
        "SELECT (SELECT count(*) FROM statement_entry WHERE account_id = $1) AS entries,"
        " (SELECT count(*) FROM investment WHERE account_id = $1) AS investments,"
        " (SELECT count(*) FROM settlement_break WHERE account_id = $1) AS breaks", a.account_id)
    assert dict(counts) == {"entries": 1, "investments": 1, "breaks": 0}


async def _never() -> bool:
    return False


async def _duplicates_seen(pipeline: Pipeline) -> bool:
    return pipeline.worker.totals["entries_duplicate"] >= 1


async def test_an_entry_booked_in_the_future_is_dead_lettered(pipeline: Pipeline) -> None:
    [a] = new_accounts()
    await register(pipeline.pool, [a])
    ahead = datetime(2099, 1, 1, 12, tzinfo=UTC)
    produce_entries(pipeline.bootstrap, [entry(a.account_id, "ntry-f", TEN_M, ahead)])

    async def refused() -> bool:
        return pipeline.worker.totals["entries_future"] >= 1

    await poll_until(pipeline.step, refused)
    dead = [m for m in read_from(pipeline.bootstrap, "balance_events.dlq", pipeline.dlq_start, expect=1)
            if m.key() == a.account_id.encode()]
    headers = dict(dead[0].headers() or [])
    assert headers["error_field"] == b"booked_ts" and b"in the future" in cast(bytes, headers["error_reason"])
    assert await pipeline.pool.fetchval("SELECT count(*) FROM statement_entry WHERE account_id = $1",
                                        a.account_id) == 0


async def test_var_leaves_our_own_sweeps_out_of_the_flows(stack: StackInfo, pipeline: Pipeline,
                                                          api: httpx.AsyncClient) -> None:
    """An account whose only large moves are its own sweeps has the VaR of its other flows: three 8.5 M
    sweeps in 30 days used to be three 8.5 M loss days, and the 99 % VaR at least that large."""
    [a] = new_accounts()
    await register(pipeline.pool, [a])
    rng = np.random.default_rng(16)
    operating = [Decimal(int(x)) for x in rng.normal(0, 200_000, 30)]
    start = datetime.now(UTC).date() - timedelta(days=40)
    days = [start + timedelta(days=i) for i in range(31)]
    sweep_days = {days[8], days[17], days[26]}
    balance = Decimal("50000000")
    sweep = Decimal("8500000")
    produce_events(pipeline.bootstrap, [close(a.account_id, days[0], balance)])
    await pipeline.drain([a.account_id], events=1)
    for i, day in enumerate(days[1:]):
        balance += operating[i]
        if day in sweep_days:  # a balance that sweeps 8.5 M, its ACK, the debit booked that day
            at = datetime(day.year, day.month, day.day, 10, tzinfo=UTC)
            produce_events(pipeline.bootstrap, [intraday(a.account_id, f"itav-{day}", sweep, at)])
            order = await nth_order_published(pipeline, a.account_id, len(sweep_days & set(days[:i + 2])))
            assert order["amount_usd"] == sweep
            assert (await api.post(f"/sweep-intent/{order['order_id']}/ack")).status_code == 200
            held = await pipeline.pool.fetchval("SELECT count(*) FROM statement_entry WHERE account_id = $1",
                                                a.account_id)
            produce_entries(pipeline.bootstrap, [entry(a.account_id, f"sweep-{day}", sweep, at + timedelta(hours=1),
                                                       end_to_end_id=order["order_id"])])
            await entries_stored(pipeline, a.account_id, held + 1)
            balance -= sweep
        produce_events(pipeline.bootstrap, [close(a.account_id, day, balance)])
    await pipeline.drain([a.account_id], events=31 + len(sweep_days))

    history, _ = await load(pipeline.pool, "postgres", 30, [a.account_id])
    flows = history.flows[0][~np.isnan(history.flows[0])]
    assert sorted(flows.tolist()) == sorted(float(x) for x in operating)  # no 8.5 M day left in
    ledger_var = var_and_es(history.flows, 0.99, 1).var[0]
    assert ledger_var == pytest.approx(var_and_es(np.array([[float(x) for x in operating]]), 0.99, 1).var[0])
    assert ledger_var < float(sweep) / 4

    # and day by day, as a quant reads it
    shown = cli(stack, "var", "flows", "--account", a.account_id, "--days", "30")
    assert shown.returncode == 0, shown.stderr
    lines = [json.loads(line) for line in shown.stdout.splitlines()]
    assert [line["date"] for line in lines] == [d.isoformat() for d in days[1:]]
    swept = [line for line in lines if line["own_transfers_usd"] != "0.0000"]
    assert [line["date"] for line in swept] == sorted(d.isoformat() for d in sweep_days)
    for line in swept:
        assert line["own_transfers_usd"] == "-8500000.0000"
        assert Decimal(line["close_change_usd"]) == Decimal(line["operating_flow_usd"]) - sweep
    assert [Decimal(line["operating_flow_usd"]) for line in lines] == operating
    assert cli(stack, "var", "flows", "--account", a.account_id, "--days", "0").returncode == 2


async def test_bank_files_posted_by_the_connector_settle_a_pending_then_booked_entry_once(
    pipeline: Pipeline, api: httpx.AsyncClient,
) -> None:
    """The same entry, reported pending in the day's camt.052 and booked in the next camt.053 (same
    AcctSvcrRef, so the same entry id): one entry moving on, not a conflict; it settles when booked."""
    [a] = new_accounts()
    await register(pipeline.pool, [a])
    now = datetime.now(UTC).replace(microsecond=0)
    order = await first_order(pipeline, api, a.account_id, now - timedelta(minutes=30))
    today = now.date().isoformat()
    e2e = order["order_id"].replace("-", "")
    pending = ntry("08", amount="10000000.00", status="PDNG", booking=None, value=f"<Dt>{today}</Dt>",
                   acct_svcr_ref="BANK-REF-1", txs=[tx(end_to_end=e2e)])
    booked = ntry("08", amount="10000000.00", status="BOOK", booking=f"<Dt>{today}</Dt>",
                  value=f"<Dt>{today}</Dt>", acct_svcr_ref="BANK-REF-1", txs=[tx(end_to_end=e2e)])
    report = camt_with_entries("052", "08", a.account_id, [pending], created=now.isoformat().replace("+00:00", "Z"))
    r = await api.post("/balances", content=report, headers={"content-type": "application/xml"})
    assert r.status_code == 202 and r.json()["entries"] == 1, r.text
    await entries_stored(pipeline, a.account_id, 1)
    assert (await api.get(f"/sweep-intent/{order['order_id']}")).json()["status"] == "ACK"  # pending is no proof

    statement = camt_with_entries("053", "08", a.account_id, [booked], balances=closing_balance("0.00", today),
                                  created=now.isoformat().replace("+00:00", "Z"))
    r = await api.post("/balances", content=statement, headers={"content-type": "application/xml"})
    assert r.status_code == 202, r.text

    async def settled() -> bool:
        return bool((await api.get(f"/sweep-intent/{order['order_id']}")).json()["status"] == "SETTLED")

    await poll_until(pipeline.step, settled)
    rows = await pipeline.pool.fetch("SELECT status, own_transfer FROM statement_entry WHERE account_id = $1",
                                     a.account_id)
    assert [(r["status"], r["own_transfer"]) for r in rows] == [("BOOK", "SWEEP")]
    assert pipeline.worker.totals["entries_conflict"] == 0
    # the re-sent statement adds only duplicates
    r = await api.post("/balances", content=statement, headers={"content-type": "application/xml"})
    assert r.status_code == 202

    async def repeated() -> bool:
        return pipeline.worker.totals["entries_duplicate"] >= 1

    await poll_until(pipeline.step, repeated)
    assert await pipeline.pool.fetchval("SELECT count(*) FROM investment WHERE account_id = $1", a.account_id) == 1


async def test_a_finastra_statement_settles_by_its_reference(pipeline: Pipeline, api: httpx.AsyncClient) -> None:
    [a] = new_accounts()
    await register(pipeline.pool, [a])
    now = datetime.now(UTC).replace(microsecond=0)
    order = await first_order(pipeline, api, a.account_id, now - timedelta(minutes=30))
    page = finastra_statement(a.account_id, [{
        "postingDate": (now - timedelta(minutes=1)).isoformat().replace("+00:00", "Z"),
        "valueDate": now.date().isoformat(), "amount": "10,000,000.00", "transactionType": "DEBIT",
        "balance": "0.00", "backOfficeReference": "BO-1", "ref1": "INV-1", "ref2": order["order_id"],
        "currency": "USD"}])
    r = await api.post("/balances", content=page, headers={"content-type": "application/json"})
    assert r.status_code == 202, r.text
    await entries_stored(pipeline, a.account_id, 1)
    detail = (await api.get(f"/sweep-intent/{order['order_id']}")).json()
    assert detail["status"] == "SETTLED" and detail["settlement"]["matched_by"] == "reference"
    assert detail["settlement"]["bank_reference"] == "BO-1"


async def test_an_entry_id_booked_again_on_another_day_is_a_conflict_not_a_duplicate(pipeline: Pipeline) -> None:
    """Some banks reuse an AcctSvcrRef (DBS writes card-receipt codes such as 0101), so the entry id
    taken from it comes back on another day's entry: as a duplicate it would vanish unseen."""
    [a] = new_accounts()
    await register(pipeline.pool, [a])
    now = datetime.now(UTC).replace(microsecond=0)
    produce_entries(pipeline.bootstrap, [entry(a.account_id, "ntry-d", Decimal("279.60"), now - timedelta(days=3))])
    await entries_stored(pipeline, a.account_id, 1)
    produce_entries(pipeline.bootstrap, [entry(a.account_id, "ntry-d", Decimal("279.60"), now - timedelta(minutes=5))])

    async def refused() -> bool:
        return pipeline.worker.totals["entries_conflict"] >= 1

    await poll_until(pipeline.step, refused)
    [dead] = [m for m in read_from(pipeline.bootstrap, "balance_events.dlq", pipeline.dlq_start, expect=1)
              if m.key() == a.account_id.encode()][:1]
    reason = cast(bytes, dict(dead.headers() or [])["error_reason"]).decode()
    assert f"booking_date {(now - timedelta(days=3)).date()}; this one says booking_date" in reason
    assert "booked on another day" in reason
    assert pipeline.worker.totals["entries_duplicate"] == 0


async def test_an_entry_id_resent_with_another_amount_is_a_conflict_with_both_figures(pipeline: Pipeline) -> None:
    [a] = new_accounts()
    await register(pipeline.pool, [a])
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    produce_entries(pipeline.bootstrap, [entry(a.account_id, "ntry-k", Decimal("50000"), at)])
    await entries_stored(pipeline, a.account_id, 1)
    produce_entries(pipeline.bootstrap, [entry(a.account_id, "ntry-k", Decimal("90000000"), at)])

    async def refused() -> bool:
        return pipeline.worker.totals["entries_conflict"] >= 1

    await poll_until(pipeline.step, refused)
    [dead] = [m for m in read_from(pipeline.bootstrap, "balance_events.dlq", pipeline.dlq_start, expect=1)
              if m.key() == a.account_id.encode()][:1]
    headers = dict(dead.headers() or [])
    reason = cast(bytes, headers["error_reason"]).decode()
    assert headers["error_field"] == b"entry_id"
    assert "already received with amount_usd 50000" in reason and "this one says amount_usd 90000000" in reason
    assert await pipeline.pool.fetchval("SELECT amount_usd FROM statement_entry WHERE account_id = $1",
                                        a.account_id) == Decimal("50000")
