"""An account shard: the single, in-order owner of a set of ``balance_events`` partitions.

A batch is planned, then executed. The plan is pure and lives in ``actors/batch_plan.py`` (read
its module docstring for the phases); this module does the I/O around it, in this order:
validate -> load the accounts' state -> read the ledger -> plan (apply, decide) -> produce
positions and dead letters -> write the BALANCE rows and hand the orders to the coordinator,
waiting until both are durable -> mark the rows decided -> commit offsets (at most every
``OFFSET_COMMIT_INTERVAL_MS``, and when idle: ``actors.offset_commits``), each commit after a
flush of the producer, so that no offset is committed before its positions and dead letters are
delivered.
A crash anywhere before the commit replays the batch (and the uncommitted batches before it); rows
already decided count as duplicates, rows stored but not decided are decided again, and the
coordinator's unique decision_key keeps a replayed decision from becoming a second order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

import asyncpg
from confluent_kafka import Consumer, Message, Producer, TopicPartition, murmur2

from actors import entry_intake, entry_ledger, kafka_clients
from actors.account_state import AccountState, Outcome, pending_sweeps
from actors.batch_plan import (
    MAX_EVENT_BYTES,
    BatchPlan,
    BatchStats,
    LedgerQuery,
    LedgerView,
    Outbound,
    Rejected,
    RowPlan,
    cash_position,
    dead_letter_message,
    decided_after_orders,
    known_only,
    ledger_query,
    plan_batch,
    position_message,
    produced_at,
    states_from_ledger,
    validate,
)
from actors.coordinator import SubmitResult
from actors.entry_intake import IncomingEntry
from actors.offset_commits import OffsetCommits
from actors.policy import decide, observed_var_bps
from actors.settlement import Action, Mature, Settle, Terms
from schemas.cash_position import CashPosition
from storage import balances, batch_read
from storage.balances import BalanceRow
from storage.entries import EntryRow
from storage.forecasts import ForecastRow
from storage.orders import NewOrder
from treasury.clock import utc_now
from treasury.envelope import EnvelopeCipher, row_context
from treasury.faults import crash_point
from treasury.metrics import LatencyHistogram, ShardMetrics, Stopwatch
from treasury.money import ZERO
from treasury.settings import DEFAULT_MAX_CLOCK_SKEW_S, PolicyConfig
from treasury.topics import BALANCE_EVENTS

# Importers of this module's former contents find them here still.
__all__ = ["MAX_EVENT_BYTES", "BatchStats", "OrderSink", "ShardWorker", "decided_after_orders", "owned_partitions",
           "owning_shard", "partition_of"]

log = logging.getLogger("treasury.shard")


class OrderSink(Protocol):
    """Where decisions go: the coordinator actor in production, the Coordinator object in tests."""

    async def submit(self, new_orders: Sequence[NewOrder]) -> list[SubmitResult]: ...


def owned_partitions(index: int, shards: int, partitions: int = BALANCE_EVENTS.partitions) -> list[int]:
    if not 0 <= index < shards:
        raise ValueError(f"shard index {index} is outside 0..{shards - 1}")
    return [p for p in range(partitions) if _shard_of(p, shards) == index]


def owning_shard(account_id: str, shards: int) -> int:
    """The shard that applies this account's events: the one owning the ``balance_events``
    partition every producer of ours gives the account's key (murmur2, Java-compatible,
    ``treasury.topics``)."""
    return _shard_of(partition_of(account_id), shards)


def partition_of(account_id: str) -> int:
    """The ``balance_events`` partition of an account's key: murmur2, as the Java client hashes."""
    return int(murmur2(account_id.encode(), BALANCE_EVENTS.partitions))


def _shard_of(partition: int, shards: int) -> int:
    """Partitions are dealt to the shards round-robin."""
    return partition % shards


def _positions(offsets: dict[int, int]) -> list[TopicPartition]:
    """``balance_events`` partition -> next offset, as the consumer commits them."""
    return [TopicPartition(BALANCE_EVENTS.name, p, o) for p, o in offsets.items()]


class ShardWorker:
    """The I/O half of a shard's batch (``process``), plus what the actor asks of it between batches.

    ``_states`` (account id -> ``AccountState``) is not capped, and need not be: an entry is made
    only by ``_load_states``, only for an account the ``account`` table holds (an event of any other
    account is dead-lettered without a state), and only for an account whose events reach this
    shard, that is whose key hashes to one of ``self.partitions``. So it holds at most the
    registered accounts of those partitions: one entry per account the bank lets us sweep, a few
    hundred bytes each, not one per event or per day; ``start`` (every rewind) empties it. It is not
    an LRU on purpose: ``metrics`` reports the VaR in bps of every account held and ``position``
    answers from it, so an evicted account would drop out of both until its next event, and a
    state rebuilt from the ledger forgets the as-of time of a booked-only balance.
    """

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
        max_clock_skew_s: int = DEFAULT_MAX_CLOCK_SKEW_S,
        terms: Terms | None = None,
        commit_interval_s: float = 0.0,
    ) -> None:
        """``max_clock_skew_s`` (MAX_CLOCK_SKEW_S): how far ahead of ``clock`` an event's as-of time
        may be before it is dead-lettered as dated in the future (``actors.account_state.future_dated``).
        ``commit_interval_s`` (OFFSET_COMMIT_INTERVAL_MS): the least time between two offset commits;
        0 commits after every batch."""
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
        self.max_clock_skew_s = max_clock_skew_s
        self.terms = terms or Terms()  # how long each product is held: the investment book's maturities
        self._states: dict[str, AccountState] = {}
        self._start_offsets: dict[int, int] = {}
        self.totals: dict[str, int] = defaultdict(int)
        self.phase_s: dict[str, float] = defaultdict(float)
        self._latency = LatencyHistogram()
        self._swept: dict[str, Decimal] = defaultdict(Decimal)
        self._commits = OffsetCommits(commit_interval_s)

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """(Re)assign our partitions at the committed offsets and forget cached state."""
        self._states.clear()
        self._commits.forget()
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
        """One batch: the plan (``actors.batch_plan``) and the I/O around it, in the order that
        makes a replay safe (module docstring). ``msgs`` are consumed messages without errors."""
        if not msgs:
            await self._commit(self._commits.due(idle=True))
            return BatchStats()
        # One pooled connection for the whole batch: each release costs a round trip (asyncpg's
        # reset query), and a batch's reads and writes run one after another anyway.
        async with self._pool.acquire() as conn:
            return await self._process(msgs, conn)

    async def _process(self, msgs: Sequence[Message], conn: asyncpg.Connection) -> BatchStats:
        received = time.time()
        mark = Stopwatch(self.phase_s)
        balance_msgs, entry_items, entry_rejects = entry_intake.split(msgs)
        events, rejected = validate(balance_msgs)
        mark("validate")
        await self._load_states(conn, {item.event.account_id for item in events}
                                | {item.entry.account_id for item in entry_items})
        events, unknown = known_only(events, self._states)
        # Entries first: a balance of this batch may already show a debit that settles an order.
        entry_dead = await self._apply_entries(conn, entry_items, entry_rejects)
        crash_point("shard_after_entries")
        mark("entries")
        query = ledger_query(events, self._clock)
        ledger = await self._read_ledger(conn, query)
        mark("read ledger")
        # `decide` is looked up in this module at each batch, so a test can substitute the policy.
        plan = plan_batch(events, [*rejected, *unknown], {a: self._states[a] for a in query.accounts}, ledger, msgs,
                          self.config, clock=self._clock, received=received, policy=decide,
                          max_clock_skew_s=self.max_clock_skew_s)
        self._states.update(plan.states)  # no await since planning: a VaR pushed meanwhile is not lost
        mark("decide")
        # Positions and dead letters wait in the producer until the next commit, which delivers
        # them first (``_commit``).
        self._produce(position_message(p) for p in plan.positions)
        self._dead_letter([*entry_dead, *plan.dead_letters])
        # Rows decided at once and the orders are independent: write them concurrently. The rows of
        # accounts with an order follow the orders, decided (``BatchPlan.rows_after_orders``).
        # Those later rows are encrypted meanwhile, so only their insert waits for the orders.
        _, _, later = await asyncio.gather(self._store_balances(conn, plan.rows_before_orders()),
                                           self._submit_orders(plan), self._encrypted(plan.rows_after_orders()))
        mark("write balances + orders")
        crash_point("shard_after_orders")
        await self._insert(conn, later)
        await balances.mark_decided(conn, plan.redecided_row_ids)
        mark("write decided rows")
        self._commits.add(plan.offsets)
        await self._commit(self._commits.due())
        mark("publish + commit")
        self._account(plan)
        return plan.stats

    async def _apply_entries(self, conn: asyncpg.Connection, items: Sequence[IncomingEntry],
                             refused: Sequence[Rejected]) -> list[Rejected]:
        """Store the batch's entries and settle what they prove (``actors.entry_ledger``), durable
        before any balance of the batch is decided; returns the entries' dead letters."""
        keep, refused_now = entry_intake.admissible(items, self._states, self._clock(), self.max_clock_skew_s)
        dead = [*refused, *refused_now]
        if keep:
            rows = await asyncio.to_thread(lambda: [
                EntryRow(i.entry, self._cipher.encrypt({**i.source, "trace_id": i.trace_id},
                                                       row_context(i.entry.account_id, f"entry/{i.entry.entry_id}")))
                for i in keep])
            applied = await entry_ledger.apply(conn, rows, self.terms)
            by_key = {i.key: i for i in keep}
            dead.extend(entry_intake.conflict(by_key[k], kept) for k, kept in applied.conflicts.items())
            self.totals["entries_applied"] += len(applied.inserted)
            self.totals["entries_duplicate"] += len(applied.duplicates)
            for action in applied.actions:
                self.totals[f"entries_{type(action).__name__.lower()}"] += 1
                self._log_action(action, by_key[(action.entry.account_id, action.entry.entry_id)].trace_id)
        for rejected in dead:
            self.totals[f"entries_{rejected.outcome.value}"] += 1
        return dead

    @staticmethod
    def _log_action(action: Action, trace_id: str) -> None:
        extra = {"trace_id": trace_id, "account_id": action.entry.account_id}
        if isinstance(action, Settle):
            log.info("order %s SETTLED by entry %s (%s)", action.order.order_id, action.entry.entry_id,
                     action.matched_by.value, extra={**extra, "order_id": action.order.order_id})
        elif isinstance(action, Mature):
            log.info("investment %s MATURED by entry %s (%s)", action.investment.order_id, action.entry.entry_id,
                     action.matched_by.value, extra={**extra, "order_id": action.investment.order_id})
        else:
            log.warning("settlement break (%s): %s", action.kind.value, action.detail,
                        extra={**extra, "order_id": action.order_id})

    async def _read_ledger(self, conn: asyncpg.Connection, query: LedgerQuery) -> LedgerView:
        """Which of the batch's events the ledger holds (decided or not, and with what content: a
        repeat of an id with other content is a conflict), the accounts' open orders and what they
        have invested: one statement (``storage.batch_read``)."""
        # `now`: an order awaiting approval at its cut-off no longer counts (it can only expire)
        read = await batch_read.read(conn, query.keys, query.accounts, query.earliest, self._clock())
        existing = {key: (row.row_id, row.decided) for key, row in read.stored.items()}
        return LedgerView(existing, read.open_orders, read.stored, read.invested)

    async def _store_balances(self, conn: asyncpg.Connection, rows: Sequence[RowPlan]) -> dict[tuple[str, str], int]:
        return await self._insert(conn, await self._encrypted(rows))

    async def _encrypted(self, rows: Sequence[RowPlan]) -> list[BalanceRow]:
        """The rows to insert, each ``raw_event`` encrypted. Encryption may fetch a new data key
        from Vault (hourly): off the event loop."""
        if not rows:
            return []
        return await asyncio.to_thread(lambda: [r.row(self._cipher.encrypt(r.document, r.context)) for r in rows])

    async def _insert(self, conn: asyncpg.Connection, records: Sequence[BalanceRow]) -> dict[tuple[str, str], int]:
        if not records:
            return {}
        inserted = await balances.insert_batch(conn, records)
        crash_point("shard_after_balances")
        return inserted

    async def _submit_orders(self, plan: BatchPlan) -> None:
        """Returns once the coordinator has made the orders durable."""
        if plan.orders:
            await self._sink.submit(plan.orders)
            done = time.time()
            plan.stats.durable_latency_s.extend(done - produced_at(p.incoming.msg) for p in plan.work
                                                if p.order is not None)

    def _account(self, plan: BatchPlan) -> None:
        """After the commit: totals, metrics, and the accounts whose close came in."""
        stats = plan.stats
        self.totals["batches"] += 1
        if plan.closes and self._on_closing is not None:
            self._on_closing(plan.closes)  # yesterday's close is in: VaR can include it
        for outcome, n in stats.outcomes.items():
            self.totals[outcome] += n
        self.totals["orders"] += stats.orders
        self._latency.observe_many(stats.decision_latency_s)
        for product, usd in stats.swept_usd.items():
            self._swept[product] += usd

    # -- state -----------------------------------------------------------------------------
    async def _load_states(self, conn: asyncpg.Connection, account_ids: set[str]) -> None:
        """Lazily rebuild accounts' state from the ledger the first time the shard sees them.

        Only registered accounts get a state (an event of any other is dead-lettered), so
        ``_states`` is bounded by the accounts table: see ``ShardWorker``."""
        missing = sorted(a for a in account_ids if a not in self._states)
        if not missing:
            return
        self._states.update(await states_from_ledger(conn, missing))

    async def position(self, account_id: str) -> CashPosition | None:
        """The position as the next decision on this account sees it: pending sweeps by the decision's
        own rule over the ledger's open orders, so the treasurer's view and the decision agree."""
        state = self._states.get(account_id)
        if state is None or state.available_usd is None or state.as_of_ts is None:
            return None
        as_of, now = state.as_of_ts, self._clock()
        # The batch's own read (no event keys): the same statement, the same rules; the position is
        # stamped with the moment its cut-offs were judged at.
        read = await batch_read.read(self._pool, [], [account_id], as_of, now)
        return cash_position(state, pending_sweeps(read.open_orders, as_of), None, now,
                             read.invested.get(account_id, ZERO))

    def set_var(self, account_id: str, var_usd: float | None, days: int | None) -> bool:
        state = self._states.get(account_id)
        if state is None:
            return False  # loaded from var_result when the account is first seen
        state.var_usd, state.var_days = var_usd, days
        return True

    def set_forecast(self, forecast: ForecastRow) -> bool:
        """An outflow forecast from a recompute; False when the account is not held here (it is
        loaded from ``forecast_result`` when the account is first seen)."""
        state = self._states.get(forecast.account_id)
        if state is None:
            return False
        if state.forecast is None or forecast.for_date >= state.forecast.for_date:
            state.forecast = forecast
        return True

    # -- output ----------------------------------------------------------------------------
    def _produce(self, messages: Iterable[Outbound]) -> None:
        for m in messages:
            self._producer.produce(m.topic, key=m.key, value=m.value, headers=m.headers)

    def _dead_letter(self, rejects: Sequence[Rejected]) -> None:
        for rejected in rejects:
            msg, exc = rejected.msg, rejected.error
            log.warning(
                "dead-lettered %s[%d]@%d: %s", msg.topic(), msg.partition(), msg.offset(), exc,
                extra={"decision": rejected.outcome.value,
                       "account_id": (msg.key() or b"").decode("utf-8", "replace") or None,
                       "trace_id": kafka_clients.header_map(msg.headers()).get("trace_id")},
            )
            self._produce([dead_letter_message(rejected)])

    async def _commit(self, offsets: dict[int, int]) -> None:
        """Commit ``offsets`` once the positions and dead letters produced so far are delivered.

        The producer holds them until this flush (its linger is the commit interval: one request
        per partition per commit, not one per batch), so they travel no later than the offsets that
        stand for them. When they cannot be delivered the offsets are not committed and the batch
        fails: the shard replays from the last commit, which produces them again.
        """
        if not offsets:
            return
        remaining = await asyncio.to_thread(self._producer.flush, 30.0)
        if remaining:
            raise RuntimeError(f"{remaining} position/dead-letter messages not delivered; "
                               "the batches since the last commit will be replayed")
        # Asynchronous is safe: everything the offsets stand for is durable already, and a commit
        # lost to a crash only replays events the ledger recognises as duplicates.
        self._consumer.commit(offsets=_positions(offsets), asynchronous=True)

    async def close(self) -> None:
        """Deliver what is queued, commit the offsets still pending and leave the partitions.

        What cannot be delivered or committed here (the broker away) is logged and left: the next
        owner of the partitions replays those events, as duplicates in the ledger, and produces
        their positions and dead letters again."""
        undelivered = await asyncio.to_thread(self._producer.flush, 10)
        pending = self._commits.due(idle=True)
        if pending and undelivered:
            log.warning("shard %d could not deliver %d position/dead-letter messages on close; its last offsets "
                        "are left uncommitted and will be replayed", self.index, undelivered)
        elif pending:
            try:
                await asyncio.to_thread(kafka_clients.commit_sync, self._consumer, _positions(pending), 10.0)
            except Exception as exc:  # any failure only means a longer replay for the next owner
                log.warning("shard %d could not commit its last offsets on close (%s); they will be replayed",
                            self.index, exc)
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
