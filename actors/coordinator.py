"""The coordinator: the single writer of SWEEP_ORDER and the publisher of ``sweep_intent``.

One writer committing one transaction at a time keeps ids in commit order, which is what lets
``GET /sweep-intent?after=`` page by id without skipping a row. Orders are written NEW, then
produced (idempotent, acks=all) and marked SENT on delivery. On start, NEW orders left by a
crash are checked against the topic itself, so an order produced just before the crash is
marked SENT rather than published a second time.

Four-eyes approval (docs/approval.md): an order of at least APPROVAL_THRESHOLD_USD is written
AWAITING_APPROVAL instead, signed and durable but not published. Approvals arrive over REST, which
sets a released order NEW; the run loop looks for released orders every ``APPROVAL_CHECK_S``,
claims them (so one coordinator publishes each) and publishes them through the same outbox, and
marks EXPIRED those still awaiting approval at their cut-off. The pull's order is the ledger's
release sequence, not the id, so the id order this writer keeps matters to nobody any more.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from confluent_kafka import OFFSET_END, KafkaError, Message, Producer, TopicPartition

from actors import kafka_clients
from schemas.catalog import VERSIONS
from storage import orders
from storage.orders import NewOrder
from treasury.clock import utc_now
from treasury.faults import crash_point
from treasury.keyring import Keyring
from treasury.metrics import Stopwatch
from treasury.order_status import NO_APPROVAL, UNPUBLISHED, ApprovalRule
from treasury.signing import sign_orders
from treasury.topics import SWEEP_INTENT

log = logging.getLogger("treasury.coordinator")
SCHEMA_HEADER = f"sweep_order/{VERSIONS['SweepOrder']}"
# Message timestamps come from the producer's clock; look back this far before the oldest
# unsent order when checking what already reached the topic.
RECONCILE_SLACK = timedelta(minutes=5)
# A write whose outcome is unknown is looked up this often until it is found ...
IN_DOUBT_RECHECK_S = 1.0
# ... or until this long has passed without it: by then a commit would be visible, so it never happened.
IN_DOUBT_FORGET_S = 60.0
# How often the run loop looks for approved orders to publish and unapproved ones past their cut-off.
APPROVAL_CHECK_S = 1.0


@dataclass(frozen=True)
class SubmitResult:
    order_id: str
    decision_key: str
    status: str
    created: bool


class Coordinator:
    def __init__(self, pool: asyncpg.Pool, producer: Producer, bootstrap: str, *, keyring: Keyring,
                 signing_key: str, approval: ApprovalRule = NO_APPROVAL) -> None:
        """``approval``: which orders wait for approvers (the settings' APPROVAL_THRESHOLD_USD and
        APPROVALS_REQUIRED; the default waits for none)."""
        self._pool = pool
        self.approval = approval
        self._keyring = keyring
        self._signing_key = signing_key
        self._producer = producer
        self._bootstrap = bootstrap
        self._write_lock = asyncio.Lock()
        self._delivered: deque[str] = deque()
        self._undelivered: deque[tuple[str, str]] = deque()
        # order_id -> row: produced, delivery report not yet settled. Bounded without a cap of its
        # own: an entry is made only once produce() has accepted the message into librdkafka's local
        # queue, which holds at most queue.buffering.max.messages (100,000 by default; beyond it
        # produce() raises BufferError and no entry is made), and every accepted message gets
        # exactly one delivery report within message.timeout.ms (5 min by default), success or
        # failure. ``settle`` removes the entry on either report (a failed one is produced again:
        # still one entry). So it holds the orders the broker has not acknowledged yet and those
        # whose reports the next ``settle`` marks SENT: about one local queue's worth at most,
        # never one per order ever made.
        self._in_flight: dict[str, asyncpg.Record] = {}
        # decision_key -> when: orders of a submit that raised, which may have committed anyway.
        self._in_doubt: dict[str, float] = {}
        self._next_doubt_check = 0.0
        self._next_approval_check = 0.0
        self.published = 0
        self.released = 0
        self.expired = 0
        self.submits = 0
        self.phase_s: dict[str, float] = {}  # where submits and settles spend their time (``Stopwatch``)

    async def start(self) -> dict[str, int]:
        """Finish what a previous incarnation left: mark or re-publish every NEW order."""
        pending = await orders.unsent(self._pool)
        if not pending:
            return {"reconciled": 0, "republished": 0}
        since = min(row["created_ts"] for row in pending) - RECONCILE_SLACK
        on_topic = await asyncio.to_thread(
            published_order_ids, self._bootstrap, int(since.timestamp() * 1000)
        )
        already = [row["order_id"] for row in pending if row["order_id"] in on_topic]
        await orders.mark_sent(self._pool, already)
        republish = [row for row in pending if row["order_id"] not in on_topic]
        self._publish(republish)
        log.info("coordinator start: %d NEW orders already on topic, %d re-published", len(already), len(republish))
        return {"reconciled": len(already), "republished": len(republish)}

    async def submit(self, new_orders: Sequence[NewOrder]) -> list[SubmitResult]:
        """Make the orders durable (one transaction) and start publishing them; returns when durable."""
        if not new_orders:
            return []
        mark = Stopwatch(self.phase_s)
        new_orders = await asyncio.to_thread(self._signed, new_orders)
        mark("sign")
        try:
            async with self._write_lock:
                mark("wait for the write lock")
                async with self._pool.acquire() as conn:
                    rows, inserted = await orders.insert_new(conn, new_orders)
        except BaseException:
            # The commit may have gone through with its reply lost (Postgres killed at that
            # moment). Nobody else would publish such an order until a restart: remember it.
            now = time.monotonic()
            for o in new_orders:
                self._in_doubt.setdefault(o.decision_key, now)
            raise
        mark("write")
        crash_point("coordinator_after_write")
        # Only what this call inserted, plus what an earlier call of this process wrote without
        # learning it. An order another call inserted is that call's to publish: a call Ray
        # re-sends to a restarted coordinator finds its orders already published by `start`.
        # An order awaiting approval is not published: its release makes it NEW (`release_and_expire`).
        self._publish([row for row in rows if row["order_id"] in inserted and row["status"] == UNPUBLISHED]
                      + self._found_in_doubt(rows))
        mark("produce")
        self.submits += 1
        return [
            SubmitResult(row["order_id"], row["decision_key"], row["status"], row["order_id"] in inserted)
            for row in rows
        ]

    def _found_in_doubt(self, rows: Sequence[asyncpg.Record]) -> list[asyncpg.Record]:
        """Settle the in-doubt writes among ``rows``; returns those that committed and are unpublished."""
        found = [row for row in rows if self._in_doubt.pop(row["decision_key"], None) is not None]
        unpublished = [row for row in found if row["status"] == UNPUBLISHED]
        if unpublished:
            log.warning("publishing %d order(s) whose write committed while its reply was lost", len(unpublished),
                        extra={"order_id": unpublished[0]["order_id"], "trace_id": unpublished[0]["trace_id"]})
        return unpublished

    async def recheck_in_doubt(self) -> None:
        """Look up writes of unknown outcome, in case the shard never submits those orders again."""
        now = time.monotonic()
        if not self._in_doubt or now < self._next_doubt_check:
            return
        self._next_doubt_check = now + IN_DOUBT_RECHECK_S
        # Under the write lock, so a submit writing the same orders is either over or not begun.
        async with self._write_lock:
            rows = await orders.by_decision_keys(self._pool, list(self._in_doubt))
            self._publish(self._found_in_doubt(rows))
        for key, since in list(self._in_doubt.items()):
            if now - since > IN_DOUBT_FORGET_S:
                del self._in_doubt[key]

    async def release_and_expire(self, now: datetime | None = None) -> tuple[int, int]:
        """Publish the orders approvers released since the last look, and expire those still
        awaiting approval at their cut-off (``now``); returns (published, expired)."""
        expired = await orders.expire_due(self._pool, now or utc_now())
        for row in expired:
            log.warning("order %s EXPIRED: not approved by its cut-off %s", row["order_id"], row["cutoff_utc"],
                        extra={"order_id": row["order_id"], "trace_id": row["trace_id"],
                               "account_id": row["account_id"]})
        released = await orders.claim_released(self._pool)
        for row in released:
            log.info("order %s approved: publishing", row["order_id"],
                     extra={"order_id": row["order_id"], "trace_id": row["trace_id"], "account_id": row["account_id"]})
        self._publish(released)
        self.released += len(released)
        self.expired += len(expired)
        return len(released), len(expired)

    def _signed(self, new_orders: Sequence[NewOrder]) -> list[NewOrder]:
        """Signed before they are written: the ledger, the topic and the REST pull carry one payload.
        The approval rule gives each its initial status (signing does not cover the status)."""
        payloads = sign_orders(self._keyring, self._signing_key, [o.payload for o in new_orders])
        return [dataclasses.replace(o, payload=p, status=self.approval.status_for(o.amount_usd),
                                    approvals_required=self.approval.required_for(o.amount_usd))
                for o, p in zip(new_orders, payloads, strict=True)]

    def _publish(self, rows: Sequence[asyncpg.Record]) -> None:
        for row in rows:
            order_id = row["order_id"]
            if order_id in self._in_flight:
                continue
            payload = row["payload"]
            self._producer.produce(
                SWEEP_INTENT.name,
                key=order_id.encode(),
                value=kafka_clients.dumps(row["payload"]),
                headers=kafka_clients.headers(
                    trace_id=row["trace_id"], schema_version=SCHEMA_HEADER, content_type="application/json",
                    signature=payload.get("signature"), signing_key_version=_text(payload.get("signing_key_version")),
                ),
                on_delivery=self._on_delivery,
            )
            # Only once produce() accepted it: a message it refused gets no delivery report, so
            # its entry would never leave (and would keep this process from publishing it again).
            self._in_flight[order_id] = row
            crash_point("coordinator_after_produce")

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        order_id = (msg.key() or b"").decode()
        if err is None:
            self._delivered.append(order_id)
        else:
            self._undelivered.append((order_id, str(err)))

    async def settle(self, poll_timeout: float = 0.05) -> int:
        """Serve delivery reports: mark delivered orders SENT, re-queue failed ones."""
        await asyncio.to_thread(self._producer.poll, poll_timeout)
        delivered: list[str] = []
        while self._delivered:
            delivered.append(self._delivered.popleft())
        if delivered:
            mark = Stopwatch(self.phase_s)
            try:
                await orders.mark_sent(self._pool, delivered)
                mark("mark sent")
            except BaseException:
                # Postgres away: keep the delivery reports for the next round, or these orders
                # would stay NEW (on the topic, but not SENT in the ledger) until a restart.
                self._delivered.extendleft(reversed(delivered))
                raise
            for order_id in delivered:
                self._in_flight.pop(order_id, None)
            self.published += len(delivered)
        retry: list[asyncpg.Record] = []
        while self._undelivered:
            order_id, reason = self._undelivered.popleft()
            row = self._in_flight.pop(order_id, None)
            log.warning("order %s not delivered (%s); retrying", order_id, reason,
                        extra={"order_id": order_id, "trace_id": row["trace_id"] if row is not None else None})
            if row is not None:
                retry.append(row)
        self._publish(retry)
        return len(delivered)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.settle()
                await self.recheck_in_doubt()
                if time.monotonic() >= self._next_approval_check:
                    self._next_approval_check = time.monotonic() + APPROVAL_CHECK_S
                    await self.release_and_expire()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:  # Postgres away: retry
                log.warning("coordinator could not settle deliveries: %s", exc)
                await asyncio.sleep(0.5)

    def in_flight(self) -> int:
        return len(self._in_flight)

    async def stats(self) -> dict[str, Any]:
        return {"in_flight": len(self._in_flight), "published": self.published, "released": self.released,
                "expired": self.expired, "submits": self.submits, "phase_s": dict(self.phase_s)}


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def published_order_ids(bootstrap: str, since_ms: int, timeout: float = 30.0) -> set[str]:
    """Keys of every ``sweep_intent`` message at or after ``since_ms``: what already went out."""
    c = kafka_clients.consumer(bootstrap, group="treasury-coordinator-reconcile")
    try:
        meta = c.list_topics(SWEEP_INTENT.name, timeout=timeout)
        parts = sorted(meta.topics[SWEEP_INTENT.name].partitions)
        starts = c.offsets_for_times([TopicPartition(SWEEP_INTENT.name, p, since_ms) for p in parts], timeout=timeout)
        ends = kafka_clients.high_watermarks(bootstrap, SWEEP_INTENT.name, timeout)
        todo = {tp.partition for tp in starts if 0 <= tp.offset < ends[tp.partition] and tp.offset != OFFSET_END}
        c.assign([tp for tp in starts if tp.partition in todo])
        seen: set[str] = set()
        deadline = time.monotonic() + timeout
        while todo:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {SWEEP_INTENT.name} to its end within {timeout:.0f} s")
            for msg in c.consume(500, timeout=1.0):
                if msg.error():
                    continue
                seen.add((msg.key() or b"").decode())
                partition, offset = msg.partition(), msg.offset()
                if partition is not None and offset is not None and offset + 1 >= ends[partition]:
                    todo.discard(partition)
        return seen
    finally:
        c.close()
