"""An account shard: the single, in-order owner of a set of ``balance_events`` partitions.

Per batch: validate -> apply to the per-account state machines -> decide -> persist the
BALANCE rows -> hand orders to the coordinator and wait until they are durable -> mark the
rows decided -> publish positions and dead letters -> commit offsets. A crash anywhere before
the commit replays the batch; rows already decided count as duplicates, rows stored but not
decided are decided again, and the coordinator's unique decision_key keeps a replayed decision
from becoming a second order.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol, TypeVar

import asyncpg
from confluent_kafka import Consumer, Message, Producer, TopicPartition

from actors import kafka_clients
from actors.account_state import AccountState, Outcome, pending_sweeps
from actors.coordinator import SubmitResult
from actors.policy import Decision, DecisionInputs, decide, observed_var_bps
from schemas.balance_event import BalanceCode, BalanceEvent
from schemas.cash_position import CashPosition
from schemas.catalog import VERSIONS
from schemas.errors import MessageRejected, decode_with_source
from schemas.sweep_order import RiskChecks, SweepOrder
from storage import accounts, balances, orders, var_results
from storage.balances import BalanceRow
from storage.orders import NewOrder, OpenOrder
from treasury.clock import utc_now
from treasury.envelope import EnvelopeCipher, row_context
from treasury.faults import crash_point
from treasury.ids import new_order_id, new_trace_id
from treasury.metrics import LatencyHistogram, ShardMetrics
from treasury.money import ZERO
from treasury.order_status import OrderStatus
from treasury.settings import PolicyConfig
from treasury.topics import BALANCE_EVENTS, BALANCE_EVENTS_DLQ, CASH_POSITIONS

log = logging.getLogger("treasury.shard")
T = TypeVar("T")
# A balance event is well under 1 KiB; anything past this (value plus headers) is refused unread,
# long before the broker's 1 MB limit, and its dead letter keeps only this much of the value so
# the dead letter itself always fits on the DLQ topic.
MAX_EVENT_BYTES = 64 * 1024
# The major version of BalanceEvent this shard reads; a producer may say which one it wrote in a
# ``schema_version`` header (``balance_event/1.0.0``). No header: the current contract.
SCHEMA_NAME = "balance_event"
SCHEMA_MAJOR = VERSIONS["BalanceEvent"].split(".")[0]


class OrderSink(Protocol):
    """Where decisions go: the coordinator actor in production, the Coordinator object in tests."""

    async def submit(self, new_orders: Sequence[NewOrder]) -> list[SubmitResult]: ...


def owned_partitions(index: int, shards: int, partitions: int = BALANCE_EVENTS.partitions) -> list[int]:
    if not 0 <= index < shards:
        raise ValueError(f"shard index {index} is outside 0..{shards - 1}")
    return [p for p in range(partitions) if p % shards == index]


@dataclass
class BatchStats:
    outcomes: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    orders: int = 0
    # produce -> decision, consume -> decision, produce -> order durable (seconds)
    decision_latency_s: list[float] = field(default_factory=list)
    consume_latency_s: list[float] = field(default_factory=list)
    durable_latency_s: list[float] = field(default_factory=list)
    swept_usd: dict[str, Any] = field(default_factory=lambda: defaultdict(lambda: ZERO))


@dataclass
class _Pending:
    msg: Message
    event: BalanceEvent
    source: dict[str, Any]  # the event as received, stored verbatim in raw_event
    trace_id: str
    outcome: Outcome
    row_id: int | None = None  # set when the ledger already holds the row, undecided
    decision: Decision | None = None
    order: NewOrder | None = None


class ShardWorker:
    def __init__(
        self,
        index: int,
        shards: int,
        pool: asyncpg.Pool,
        consumer: Consumer,
        producer: Producer,
        sink: OrderSink,
        config: PolicyConfig,
        clock: Callable[[], datetime] = utc_now,
        on_closing: Callable[[list[str]], None] | None = None,
        *,
        cipher: EnvelopeCipher,
    ) -> None:
        self.index = index
        self.partitions = owned_partitions(index, shards)
        self._pool = pool
        self._consumer = consumer
        self._producer = producer
        self._sink = sink
        self.config = config
        self._clock = clock
        self._on_closing = on_closing
        self._cipher = cipher
        self._states: dict[str, AccountState] = {}
        self._start_offsets: dict[int, int] = {}
        self.totals: dict[str, int] = defaultdict(int)
        self.phase_s: dict[str, float] = defaultdict(float)
        self._latency = LatencyHistogram()
        self._swept: dict[str, Decimal] = defaultdict(Decimal)

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """(Re)assign our partitions at the committed offsets and forget cached state."""
        self._states.clear()
        assigned = await asyncio.to_thread(
            kafka_clients.assign_from_committed, self._consumer, BALANCE_EVENTS.name, self.partitions
        )
        self._start_offsets = {tp.partition: tp.offset for tp in assigned}

    async def poll_once(self, max_messages: int = 1000, timeout: float = 0.1) -> BatchStats:
        msgs = await asyncio.to_thread(self._fetch, max_messages, timeout)
        return await self.process([m for m in msgs if m.error() is None])

    def _fetch(self, max_messages: int, timeout: float) -> list[Message]:
        """Wait for the first message only, then take what is already buffered: ``consume(n, t)``
        alone would hold every batch for the whole timeout whenever fewer than n are waiting."""
        first = self._consumer.poll(timeout)
        if first is None:
            return []
        return [first, *self._consumer.consume(max_messages - 1, 0)]

    async def run(self, stop: asyncio.Event, on_batch: Callable[[BatchStats], None] | None = None) -> None:
        await self.start()
        while not stop.is_set():
            try:
                stats = await self.poll_once()
            except Exception:
                # Nothing of the failed batch was committed: rewind and try again, from the ledger.
                log.exception("shard %d batch failed; replaying from committed offsets", self.index)
                await self._rewind(stop)
                continue
            if on_batch is not None:
                on_batch(stats)

    async def _rewind(self, stop: asyncio.Event, pause_s: float = 1.0) -> None:
        """Back to the committed offsets, for as long as that takes: the broker may be away for
        minutes, and giving up here would end the run loop and leave the partitions unread."""
        while not stop.is_set():
            await asyncio.sleep(pause_s)  # back-off before retrying
            try:
                await self.start()
                return
            except Exception as exc:  # any failure to rewind is retried the same way
                log.warning("shard %d cannot rewind yet (%s); retrying", self.index, exc)

    # -- the batch -------------------------------------------------------------------------
    async def process(self, msgs: Sequence[Message]) -> BatchStats:
        stats = BatchStats()
        if not msgs:
            return stats
        received = time.time()
        mark = _Stopwatch(self.phase_s)
        valid, rejects = self._validate(msgs)
        mark("validate")
        await self._load_states({p.event.account_id for p in valid})
        for item in list(valid):
            if item.event.account_id not in self._states:
                valid.remove(item)
                rejects.append((item.msg, MessageRejected("account_id", f"unknown account {item.event.account_id!r}")))
        earliest = min((p.event.as_of_ts for p in valid), default=self._clock())
        existing, open_orders = await asyncio.gather(
            self._with_conn(balances.existing, [(p.event.account_id, p.event.event_id) for p in valid]),
            self._with_conn(orders.open_orders, sorted({p.event.account_id for p in valid}), earliest),
        )
        mark("read ledger")
        by_account: dict[str, list[OpenOrder]] = defaultdict(list)
        for order in open_orders:
            by_account[order.account_id].append(order)

        seen: set[tuple[str, str]] = set()
        work: list[_Pending] = []
        for item in valid:
            key = (item.event.account_id, item.event.event_id)
            held = existing.get(key)
            if key in seen or (held is not None and held[1]):
                stats.outcomes[Outcome.DUPLICATE] += 1
                continue
            seen.add(key)
            state = self._states[item.event.account_id]
            item.outcome = state.apply(item.event)
            if held is not None:  # stored by a crashed attempt, never decided: decide again
                item.row_id = held[0]
            work.append(item)
            stats.outcomes[item.outcome] += 1
            if item.outcome is Outcome.APPLIED and item.event.available_usd is not None:
                try:
                    self._decide(item, state, by_account[item.event.account_id], stats, received)
                except Exception as exc:  # quarantine one event rather than stall its partition forever
                    log.exception("could not decide on %s; dead-lettered", item.event.event_id,
                                  extra={"trace_id": item.trace_id, "account_id": item.event.account_id})
                    item.decision, item.order = None, None
                    rejects.append((item.msg, MessageRejected("$", f"internal error while deciding: {exc!r}")))

        mark("decide")
        # Positions and dead letters travel while the ledger is written; both are flushed before
        # the commit. A position is derived from its event, so a replay re-publishes the same one.
        self._publish_positions(work)
        self._dead_letter(rejects)
        stats.outcomes[Outcome.INVALID] += len(rejects)
        # Balance rows and orders are independent until both are durable: write them concurrently.
        deferred = decided_after_orders(work)
        inserted, _ = await asyncio.gather(self._store_balances(work, deferred), self._submit_orders(work, stats))
        mark("write balances + orders")
        crash_point("shard_after_orders")
        await balances.mark_decided(
            self._pool,
            [row_id for key, row_id in inserted.items() if key in deferred]
            + [p.row_id for p in work if p.row_id is not None],
        )
        mark("mark decided")
        remaining = await asyncio.to_thread(self._producer.flush, 30.0)
        if remaining:
            raise RuntimeError(f"{remaining} position/dead-letter messages not delivered; batch will be replayed")
        mark("publish positions")
        self._commit(msgs)
        mark("commit offsets")
        self.totals["batches"] += 1
        closes = sorted({p.event.account_id for p in work
                         if p.outcome is Outcome.APPLIED and p.event.balance_code is BalanceCode.CLBD})
        if closes and self._on_closing is not None:
            self._on_closing(closes)  # yesterday's close is in: VaR can include it
        for outcome, n in stats.outcomes.items():
            self.totals[outcome] += n
        self.totals["orders"] += stats.orders
        self._latency.observe_many(stats.decision_latency_s)
        for product, usd in stats.swept_usd.items():
            self._swept[product] += usd
        return stats

    async def _with_conn(self, query: Callable[..., Awaitable[T]], *args: Any) -> T:
        async with self._pool.acquire() as conn:
            return await query(conn, *args)

    async def _store_balances(self, work: Sequence[_Pending],
                              deferred: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
        # Encryption may fetch a new data key from Vault (hourly): off the event loop.
        rows = await asyncio.to_thread(lambda: [
            self._row(p, decided=(p.event.account_id, p.event.event_id) not in deferred)
            for p in work if p.row_id is None
        ])
        async with self._pool.acquire() as conn:
            inserted = await balances.insert_batch(conn, rows)
        crash_point("shard_after_balances")
        return inserted

    async def _submit_orders(self, work: Sequence[_Pending], stats: BatchStats) -> None:
        new_orders = [p.order for p in work if p.order is not None]
        if new_orders:
            await self._sink.submit(new_orders)
            done = time.time()
            stats.durable_latency_s.extend(done - _produced_at(p.msg) for p in work if p.order is not None)

    def _validate(self, msgs: Sequence[Message]) -> tuple[list[_Pending], list[tuple[Message, MessageRejected]]]:
        valid: list[_Pending] = []
        rejects: list[tuple[Message, MessageRejected]] = []
        for msg in msgs:
            try:
                _check_envelope(msg)
                event, source = decode_with_source(BalanceEvent, msg.value() or b"")
                key = (msg.key() or b"").decode("utf-8", "replace")
                if key and key != event.account_id:
                    raise MessageRejected("account_id", f"{event.account_id!r} does not match the message key {key!r}")
                if event.currency != "USD":
                    raise MessageRejected("currency", f"only USD accounts are swept, got {event.currency}")
            except MessageRejected as exc:
                rejects.append((msg, exc))
                continue
            trace = event.trace_id or kafka_clients.header_map(msg.headers()).get("trace_id") or new_trace_id()
            valid.append(_Pending(msg, event, source, trace, Outcome.APPLIED))
        return valid, rejects

    def _decide(
        self, item: _Pending, state: AccountState, open_orders: list[OpenOrder], stats: BatchStats, received: float
    ) -> None:
        assert state.available_usd is not None
        projection, source = state.projection(item.event)
        now = self._clock()
        inputs = DecisionInputs(
            available_usd=state.available_usd,
            eod_projection_usd=projection,
            var_bps=observed_var_bps(state.var_usd, state.available_usd),
            now=now,
            pending_sweeps_usd=pending_sweeps(open_orders, item.event.as_of_ts),
            min_balance_usd=state.account.min_balance_usd,
            esg=state.account.esg_pref,
            var_history_days=state.var_days,
            projection_source=source,
        )
        decision = decide(inputs, self.config)
        item.decision = decision
        decided = time.time()
        stats.decision_latency_s.append(max(0.0, decided - _produced_at(item.msg)))
        stats.consume_latency_s.append(decided - received)
        ordered = decision.order and decision.product is not None
        order_id = new_order_id() if ordered else None  # named on the decision's log line
        log.log(
            logging.INFO if decision.order else logging.DEBUG,
            "decision %s for %s: %s",
            decision.reason.value,
            item.event.account_id,
            decision.explanation,
            extra={"trace_id": item.trace_id, "account_id": item.event.account_id, "decision": decision.reason.value,
                   "order_id": order_id},
        )
        if order_id is None or decision.product is None:
            return
        decision_key = f"{item.event.account_id}:{item.event.event_id}"
        payload = SweepOrder(
            order_id=order_id,
            source_account=item.event.account_id,
            target_product=decision.product,
            amount_usd=decision.amount_usd,
            cutoff_utc=decision.cutoff_utc,
            risk_checks=RiskChecks(
                var_limit_bps=decision.var_limit_bps,
                observed_var_bps=decision.observed_var_bps,
                var_history_days=state.var_days,
            ),
            created_ts=now,
            decision_key=decision_key,
            trace_id=item.trace_id,
            aml_tags={str(k): str(v) for k, v in state.account.aml_tags.items()},
        ).model_dump(mode="json", exclude={"signature", "signing_key_version"})  # nulls stay (observed_var_bps)
        # the coordinator signs it
        item.order = NewOrder(
            order_id=order_id,
            decision_key=decision_key,
            account_id=item.event.account_id,
            amount_usd=decision.amount_usd,
            product=decision.product.value,
            cutoff_utc=decision.cutoff_utc,
            created_ts=now,
            payload=payload,
            decision=decision.as_record(),
            trace_id=item.trace_id,
        )
        # Counts as pending for every later event of this batch: the same dollars go once.
        open_orders.append(OpenOrder(item.event.account_id, decision.amount_usd, OrderStatus.NEW, None))
        stats.orders += 1
        stats.swept_usd[decision.product.value] += decision.amount_usd

    def _row(self, item: _Pending, *, decided: bool) -> BalanceRow:
        ev = item.event
        raw = self._cipher.encrypt({**item.source, "trace_id": item.trace_id}, row_context(ev.account_id, ev.event_id))
        return BalanceRow(
            account_id=ev.account_id,
            event_id=ev.event_id,
            as_of_ts=ev.as_of_ts,
            kind=ev.kind.value,
            balance_code=ev.balance_code.value if ev.balance_code else None,
            avail_usd=ev.available_usd,
            booked_usd=ev.booked_usd,
            currency=ev.currency,
            projected_outflows_usd=ev.projected_outflows_24h_usd,
            applied=item.outcome is Outcome.APPLIED,
            raw_event=raw,
            decided=decided,
        )

    # -- state -----------------------------------------------------------------------------
    async def _load_states(self, account_ids: set[str]) -> None:
        """Lazily rebuild accounts' state from the ledger the first time the shard sees them."""
        missing = sorted(a for a in account_ids if a not in self._states)
        if not missing:
            return
        async with self._pool.acquire() as conn:
            known = await accounts.get_many(conn, missing)
            ids = sorted(known)
            positions = await balances.latest_positions(conn, ids)
            projections = await balances.last_projections(conn, ids)
            risks = await var_results.latest(conn, ids)
        for account_id, account in known.items():
            state = AccountState(account)
            pos = positions.get(account_id)
            if pos is not None:
                state.available_usd = pos["avail_usd"]
                state.booked_usd = pos["booked_usd"]
                state.as_of_ts = pos["as_of_ts"]
                state.last_event_id = pos["event_id"]
            state.last_projection_usd = projections.get(account_id)
            risk = risks.get(account_id)
            if risk is not None and risk.var_usd is not None:
                state.var_usd = float(risk.var_usd)
                state.var_days = risk.days
            self._states[account_id] = state

    def position(self, account_id: str) -> CashPosition | None:
        state = self._states.get(account_id)
        if state is None or state.available_usd is None or state.as_of_ts is None:
            return None
        return self._position_of(state, pending=ZERO, trace_id=None)

    def set_var(self, account_id: str, var_usd: float | None, days: int | None) -> bool:
        state = self._states.get(account_id)
        if state is None:
            return False  # loaded from var_result when the account is first seen
        state.var_usd, state.var_days = var_usd, days
        return True

    def _position_of(self, state: AccountState, pending: Any, trace_id: str | None) -> CashPosition:
        assert state.available_usd is not None and state.as_of_ts is not None and state.last_event_id is not None
        return CashPosition(
            account_id=state.account.account_id,
            as_of_ts=state.as_of_ts,
            available_usd=state.available_usd,
            booked_usd=state.booked_usd,
            pending_sweeps_usd=pending,
            min_balance_usd=state.account.min_balance_usd,
            excess_usd=state.available_usd - pending - state.account.min_balance_usd,
            var_usd=None if state.var_usd is None else round(state.var_usd, 4),
            var_bps=observed_var_bps(state.var_usd, state.available_usd),
            source_event_id=state.last_event_id,
            updated_ts=self._clock(),
            trace_id=trace_id,
        )

    # -- output ----------------------------------------------------------------------------
    def _publish_positions(self, work: Sequence[_Pending]) -> None:
        latest: dict[str, _Pending] = {}
        for item in work:
            if item.outcome is Outcome.APPLIED:
                latest[item.event.account_id] = item
        for account_id, item in latest.items():
            state = self._states[account_id]
            if state.available_usd is None:
                continue
            pending = item.decision.inputs.pending_sweeps_usd if item.decision else ZERO
            if item.order is not None:
                pending += item.order.amount_usd
            position = self._position_of(state, pending, item.trace_id)
            self._producer.produce(
                CASH_POSITIONS.name,
                key=account_id.encode(),
                value=position.model_dump_json(exclude_none=True).encode(),
                headers=kafka_clients.headers(trace_id=item.trace_id),
            )

    def _dead_letter(self, rejects: Sequence[tuple[Message, MessageRejected]]) -> None:
        for msg, exc in rejects:
            log.warning(
                "dead-lettered %s[%d]@%d: %s", msg.topic(), msg.partition(), msg.offset(), exc,
                extra={"decision": "invalid", "account_id": (msg.key() or b"").decode("utf-8", "replace") or None,
                       "trace_id": kafka_clients.header_map(msg.headers()).get("trace_id")},
            )
            value, original = msg.value(), _header_list(msg)
            size = _message_bytes(msg)
            if size > MAX_EVENT_BYTES:  # keep the evidence, not the payload that could not fit
                value, original = (value or b"")[:MAX_EVENT_BYTES], kafka_clients.headers(original_bytes=str(size))
            self._producer.produce(
                BALANCE_EVENTS_DLQ.name,
                key=(msg.key() or b"")[:1024] or None,
                value=value,
                headers=[
                    *original,
                    *kafka_clients.headers(
                        error_field=exc.field,
                        error_reason=exc.reason,
                        source_topic=msg.topic(),
                        source_partition=str(msg.partition()),
                        source_offset=str(msg.offset()),
                    ),
                ],
            )

    def _commit(self, msgs: Sequence[Message]) -> None:
        last: dict[int, int] = {}
        for msg in msgs:
            partition, offset = msg.partition(), msg.offset()
            assert partition is not None and offset is not None, "consumed messages carry both"
            last[partition] = max(last.get(partition, -1), offset)
        offsets = [TopicPartition(BALANCE_EVENTS.name, p, o + 1) for p, o in last.items()]
        # Asynchronous is safe: everything the offsets stand for is durable already, and a commit
        # lost to a crash only replays events the ledger recognises as duplicates.
        self._consumer.commit(offsets=offsets, asynchronous=True)

    async def close(self) -> None:
        """Deliver what is queued and leave the partitions; offsets are already committed."""
        await asyncio.to_thread(self._producer.flush, 10)
        await asyncio.to_thread(self._consumer.close)

    def apply_config(self, config: PolicyConfig) -> None:
        self.config = config

    def metrics(self) -> ShardMetrics:
        """What /metrics shows of this shard: totals since start, lag and the accounts' VaR in bps."""
        lag: dict[int, int] = {}
        for tp in self._consumer.position(self._consumer.assignment()):
            low, high = self._consumer.get_watermark_offsets(tp, cached=True) or (-1, -1)
            # Nothing consumed since the assignment: the position is where the assignment started
            # (the committed offset, or the log start when nothing was ever committed).
            at = tp.offset if tp.offset >= 0 else self._start_offsets.get(tp.partition, -1)
            at = at if at >= 0 else low
            if at >= 0 and high >= 0:
                lag[tp.partition] = max(0, high - at)
        var_bps = {
            account: bps for account, state in self._states.items() if state.available_usd is not None
            and (bps := observed_var_bps(state.var_usd, state.available_usd)) is not None
        }
        outcomes = {k: int(v) for k, v in self.totals.items() if k in {o.value for o in Outcome}}
        return ShardMetrics(dict(self._swept), outcomes, list(self._latency.counts), self._latency.total, lag, var_bps)

    def stats(self) -> dict[str, Any]:
        return {"index": self.index, "partitions": self.partitions, "accounts": len(self._states), **self.totals,
                "phase_s": dict(self.phase_s)}


class _Stopwatch:
    """Adds the time since the previous mark to a named phase: where a batch spends its time."""

    def __init__(self, sums: dict[str, float]) -> None:
        self._sums = sums
        self._last = time.perf_counter()

    def __call__(self, phase: str) -> None:
        now = time.perf_counter()
        self._sums[phase] += now - self._last
        self._last = now


def _message_bytes(msg: Message) -> int:
    return len(msg.value() or b"") + len(msg.key() or b"") + sum(len(k) + len(v or b"") for k, v in _header_list(msg))


def _check_envelope(msg: Message) -> None:
    """What is refused before the body is even parsed: size, and a schema version we do not read."""
    size = _message_bytes(msg)
    if size > MAX_EVENT_BYTES:
        raise MessageRejected("$", f"message is {size} bytes; a balance event may be at most {MAX_EVENT_BYTES}")
    version = kafka_clients.header_map(_header_list(msg)).get("schema_version")
    if version is None:
        return
    if not re.fullmatch(rf"{SCHEMA_NAME}/{SCHEMA_MAJOR}\.\d+\.\d+", version):
        raise MessageRejected(
            "schema_version", f"{version[:80]!r} is not a version this service reads ({SCHEMA_NAME}/{SCHEMA_MAJOR}.x.y)"
        )


def _produced_at(msg: Message) -> float:
    kind, ts_ms = msg.timestamp()
    return ts_ms / 1000.0 if kind and ts_ms > 0 else time.time()


def _header_list(msg: Message) -> kafka_clients.Headers:
    raw = msg.headers()
    return list(raw.items()) if isinstance(raw, dict) else list(raw or [])


def decided_after_orders(work: Sequence[_Pending]) -> set[tuple[str, str]]:
    """Events whose rows are marked decided only once the batch's orders are durable.

    An event with an order, and every other event of an account that has an order in the batch:
    a restarted shard rebuilds an account from its newest *decided* row, so a later no-order
    event marked decided at insert would make the earlier, still undecided event with the order
    look stale on replay, and its order would never be made.
    """
    with_orders = {p.event.account_id for p in work if p.order is not None}
    return {(p.event.account_id, p.event.event_id) for p in work if p.event.account_id in with_orders}
