"""The demo Bank-Connector: executes the orchestrator's orders at the model bank, reports what it booked.

It is the counterpart a real Bank-Connector is, through the same doors: it pulls orders with
``GET /sweep-intent?after=<cursor>`` and acknowledges each with ``POST /sweep-intent/{id}/ack``
(a JWT with ``orders:read orders:write``, minted as ``treasury-orch token`` does), then books the
debit at the bank (``ModelBank.book_debit``) and reports it as the bank would: a booked DBIT
``StatementEntry`` carrying the order id in ``end_to_end_id`` (what a Bank-Connector puts in
pain.001's EndToEndId), on ``balance_events`` under the account's key. It follows each booked order
with ``GET /sweep-intent/{id}`` until the orchestrator shows it SETTLED with the investment it
opened, and on the investment's maturity date books the principal and the interest back: a CRDT
naming the order. Every later balance the simulator reports comes from the same bank, so it shows
all of it.

What to book and when is decided by the pure ``serve_app.job.bank.model``; this module only talks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import httpx
from confluent_kafka import Producer

from actors.kafka_clients import produce_waiting
from schemas.statement_entry import StatementEntry
from serve_app.job.bank.model import BankReport, Investment, ModelBank, Order, encode_report
from treasury.clock import utc_now
from treasury.topics import BALANCE_EVENTS

log = logging.getLogger("treasury.demo_bank")


class BankError(RuntimeError):
    """The orchestrator did not do what the bank's reports prove, within the time allowed."""


def send(producer: Producer, messages: Sequence[BankReport]) -> None:
    """Onto ``balance_events`` in the given order, each under its account's key (one partition, in order)."""
    for message in messages:
        record = encode_report(message)
        produce_waiting(producer, BALANCE_EVENTS.name, record.key, record.value, headers=record.headers)
    producer.poll(0)


@dataclass
class Pulled:
    orders: list[Order]
    complete: bool  # no order of ours still NEW (unpublished) on the pages read


@dataclass
class BankConnector:
    bank: ModelBank
    api: httpx.AsyncClient
    producer: Producer
    clock: Callable[[], datetime] = utc_now  # the bank's time: when it books
    page_size: int = 500
    cursor: str = ""
    awaiting: dict[str, Order] = field(default_factory=dict)  # booked, not yet seen SETTLED
    counts: Counter[str] = field(default_factory=Counter)

    async def pull(self) -> Pulled:
        """The published orders of the bank's accounts not executed yet, from the cursor on."""
        found: dict[str, Order] = {}
        while True:
            page_doc = await self._json("GET", "/sweep-intent", params={"after": self.cursor, "limit": self.page_size})
            page = self.bank.page(Order.from_json(o) for o in page_doc["orders"]  # others' orders: not read
                                  if self.bank.holds(str(o.get("source_account"))))
            found.update((o.order_id, o) for o in page.to_book)
            if not page.advance:
                return Pulled(list(found.values()), complete=False)
            self.cursor = page_doc["next_cursor"]
            if page_doc["count"] < self.page_size:
                return Pulled(list(found.values()), complete=True)

    async def execute(self, orders: Sequence[Order]) -> list[StatementEntry]:
        """ACK each order, then book its debit and report the entry."""
        booked: list[StatementEntry] = []
        for order in orders:
            answer = await self.api.post(f"/sweep-intent/{order.order_id}/ack")
            if answer.status_code == 409:  # failed or settled meanwhile: nothing to execute
                log.warning("demo bank: order %s not acknowledged: %s", order.order_id, answer.text,
                            extra={"order_id": order.order_id, "account_id": order.account_id})
                continue
            answer.raise_for_status()
            entry = self.bank.book_debit(order, self.clock())
            if entry is None:
                continue
            send(self.producer, [entry])  # before anything else reads the bank: the report comes first
            self.awaiting[order.order_id] = order
            self.counts[f"debits {order.product}"] += 1
            booked.append(entry)
            log.info("demo bank: order %s ACKed, %s %s debited (entry %s, booked %s)", order.order_id, order.product,
                     order.amount_usd, entry.entry_id, entry.booked_ts,
                     extra={"order_id": order.order_id, "account_id": order.account_id})
        await self.flush()
        return booked

    async def follow(self) -> list[Investment]:
        """Ask after every booked order not yet seen settled; the investments their settlements opened."""
        opened: list[Investment] = []
        for order_id in list(self.awaiting):
            doc = await self._json("GET", f"/sweep-intent/{order_id}")
            if doc["status"] != "SETTLED" or not doc.get("investment"):
                continue
            investment = Investment.from_json(doc["investment"])
            del self.awaiting[order_id]
            self.counts["settled"] += 1
            if self.bank.open(investment):
                opened.append(investment)
                log.info("demo bank: order %s SETTLED; %s %s matures %s", order_id, investment.product,
                         investment.principal_usd, investment.maturity_date,
                         extra={"order_id": order_id, "account_id": investment.account_id})
        return opened

    async def mature(self, until: date | None = None) -> list[StatementEntry]:
        """Pay back every investment due on or before ``until`` (default: the bank's today)."""
        credits: list[StatementEntry] = []
        for investment in self.bank.due(until or self.clock().date()):
            entry = self.bank.book_maturity(investment, self.clock())
            if entry is None:
                continue
            send(self.producer, [entry])
            self.counts[f"maturities {investment.product}"] += 1
            credits.append(entry)
            log.info("demo bank: %s %s of order %s booked back with interest: %s (entry %s)", investment.product,
                     investment.principal_usd, investment.order_id, entry.amount_usd, entry.entry_id,
                     extra={"order_id": investment.order_id, "account_id": investment.account_id})
        await self.flush()
        return credits

    async def cycle(self) -> None:
        """One turn of the live bank: maturities due, new orders executed, settlements followed."""
        await self.mature()
        pulled = await self.pull()
        await self.execute(pulled.orders)
        await self.follow()

    async def run(self, stop: asyncio.Event, period_s: float = 1.0) -> None:
        """Cycle until ``stop``; a failed turn (the API restarting, the broker away) is retried next turn."""
        while not stop.is_set():
            try:
                await self.cycle()
            except (httpx.HTTPError, BankError, KeyError) as exc:
                log.warning("demo bank: turn failed (%s); trying again", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), period_s)  # the pace of the bank, not a synchronisation

    async def flush(self) -> None:
        remaining = await asyncio.to_thread(self.producer.flush, 30.0)
        if remaining:
            raise BankError(f"{remaining} bank reports not delivered to {BALANCE_EVENTS.name}")

    async def _json(self, method: str, path: str, **kw: Any) -> Any:
        answer = await self.api.request(method, path, **kw)
        answer.raise_for_status()
        return answer.json()
