"""The pure half of an account shard's batch: everything a batch will do, worked out without I/O.

``ShardWorker.process`` (actors/shard.py) runs a batch as *plan, then execute*. The phases, in
the order the shard runs them (``(I/O)`` marks the shard's own steps):

1. ``validate(msgs)``: size, schema version, body, key and currency -> valid events + dead letters.
2. (I/O) the state of accounts the shard has not seen yet is rebuilt from the ledger.
3. ``known_only(events, states)``: an event of an unregistered account becomes a dead letter.
4. ``ledger_query(events, clock)`` says what to read; (I/O) the shard reads which of the events
   the ledger already holds (decided or not) and the accounts' open orders -> ``LedgerView``.
5. ``plan_batch(...)`` -> ``BatchPlan``: first the refusals that need the clock or the ledger (an
   as-of time too far in the future, ``future_dated``; an event id already received with other
   content, ``repeat_conflict``), then the accounts' states after the batch, the balance rows to
   write, the orders to submit (one per decision key), the cash positions to publish, the dead
   letters, the rows to write after the orders are durable, the offsets to commit and the
   batch's statistics.
6. (I/O) the shard executes the plan in the order that makes it safe: positions and dead letters
   are produced; the rows of accounts without an order are written while the orders are made
   durable, and the rows of accounts with an order are written only after that, decided (rows a
   crashed attempt left undecided are marked decided then too); the producer is flushed; only
   then are the offsets committed. A crash anywhere before the commit replays the batch, and
   planning the replay against the ledger (step 4) is what keeps it from making a second order.

Nothing here reads a socket, a file or the database. The clocks, the order-id source and the
policy are parameters, so a test fixes them and a planned batch is the same every time. Decisions
are logged here, where they are made, with the order id they name.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import re
import time
from collections import defaultdict
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
from confluent_kafka import Message

from actors import kafka_clients
from actors.account_state import AccountState, Outcome, decision_inputs, future_dated, pending_sweeps
from actors.policy import Decision, DecisionInputs, decide, observed_var_bps
from schemas.balance_event import BalanceCode, BalanceEvent
from schemas.cash_position import CashPosition
from schemas.catalog import VERSIONS
from schemas.errors import MessageRejected, decode_with_source
from schemas.sweep_order import RiskChecks, SweepOrder
from storage import accounts, balances, forecasts, var_results
from storage.accounts import Account
from storage.balances import BalanceContent, BalanceRow, StoredBalance
from storage.forecasts import ForecastRow
from storage.orders import NewOrder, OpenOrder
from storage.var_results import VarResult
from treasury.envelope import row_context
from treasury.ids import new_order_id, new_trace_id
from treasury.money import ZERO
from treasury.order_status import OrderStatus
from treasury.settings import DEFAULT_MAX_CLOCK_SKEW_S, PolicyConfig
from treasury.topics import BALANCE_EVENTS_DLQ, CASH_POSITIONS

log = logging.getLogger("treasury.shard")
# A balance event is well under 1 KiB; anything past this (value plus headers) is refused unread,
# long before the broker's 1 MB limit, and its dead letter keeps only this much of the value so
# the dead letter itself always fits on the DLQ topic.
MAX_EVENT_BYTES = 64 * 1024
# The major version of BalanceEvent this shard reads; a producer may say which one it wrote in a
# ``schema_version`` header (``balance_event/1.0.0``). No header: the current contract.
SCHEMA_NAME = "balance_event"
SCHEMA_MAJOR = VERSIONS["BalanceEvent"].split(".")[0]

EventKey = tuple[str, str]  # (account_id, event_id): the ledger's unique key of a balance row
Policy = Callable[[DecisionInputs, PolicyConfig], Decision]


@dataclass
class BatchStats:
    outcomes: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    orders: int = 0
    # produce -> decision, consume -> decision, produce -> order durable (seconds)
    decision_latency_s: list[float] = field(default_factory=list)
    consume_latency_s: list[float] = field(default_factory=list)
    durable_latency_s: list[float] = field(default_factory=list)
    swept_usd: dict[str, Any] = field(default_factory=lambda: defaultdict(lambda: ZERO))


@dataclass(frozen=True)
class Incoming:
    """A valid balance event, the message it came in and the trace it belongs to."""

    msg: Message
    event: BalanceEvent
    source: dict[str, Any]  # the event as received, stored verbatim (encrypted) in raw_event
    trace_id: str

    @property
    def key(self) -> EventKey:
        return self.event.account_id, self.event.event_id


@dataclass(frozen=True)
class Rejected:
    """A message that goes to the dead-letter topic instead, with the field and the reason.

    ``outcome`` is what the events metric counts it as: ``invalid`` unless the event was well
    formed but dated in the future (``future``) or re-used an event id with other content
    (``conflict``)."""

    msg: Message
    error: MessageRejected
    outcome: Outcome = Outcome.INVALID


@dataclass(frozen=True)
class LedgerQuery:
    """What the shard reads from the ledger before planning."""

    keys: list[EventKey]  # which of these events the ledger holds already
    accounts: list[str]  # the accounts of the batch, whose open orders count as pending sweeps
    earliest: datetime  # an ACK before the batch's oldest balance is reflected by every balance of it


@dataclass(frozen=True)
class LedgerView:
    """What the ledger said: events already held (row id, decided?) and the accounts' open orders.

    ``stored`` holds the content of the held rows (``storage.balances.stored``): an event id held
    without an entry there, or with a ``None`` fingerprint (a row older than migration 003), is
    taken for a plain repeat, as before; one whose fingerprint differs is a conflict."""

    existing: Mapping[EventKey, tuple[int, bool]]
    open_orders: Sequence[OpenOrder]
    stored: Mapping[EventKey, StoredBalance] = field(default_factory=dict)
    invested: Mapping[str, Decimal] = field(default_factory=dict)  # OPEN investments' principal per account


@dataclass(frozen=True)
class Planned:
    """One event the batch stores, and what became of it."""

    incoming: Incoming
    outcome: Outcome
    row_id: int | None = None  # the ledger holds its row from a crashed attempt, undecided: decided again
    decision: Decision | None = None
    order: NewOrder | None = None

    @property
    def event(self) -> BalanceEvent:
        return self.incoming.event

    @property
    def key(self) -> EventKey:
        return self.incoming.key


@dataclass(frozen=True)
class RowPlan:
    """A balance row to insert, short of its ``raw_event``: encrypting it may call Vault (I/O)."""

    event: BalanceEvent
    document: dict[str, Any]  # what is encrypted into raw_event: the event as received, with its trace
    applied: bool
    decided: bool  # False: marked decided only once the batch's orders are durable

    @property
    def context(self) -> str:
        """The encryption context: binds the ciphertext to its row."""
        return row_context(self.event.account_id, self.event.event_id)

    def row(self, raw_event: dict[str, Any]) -> BalanceRow:
        ev = self.event
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
            applied=self.applied,
            raw_event=raw_event,
            decided=self.decided,
        )


@dataclass(frozen=True)
class Outbound:
    """A Kafka message to produce."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: kafka_clients.Headers


@dataclass
class BatchPlan:
    """Everything one batch does, in data; the shard executes it (``ShardWorker.process``)."""

    states: dict[str, AccountState]  # the batch's accounts after it: the shard's cache takes them
    work: list[Planned]  # every event that is not a duplicate, in batch order
    rows: list[RowPlan]  # balance rows to insert (not those the ledger already holds)
    orders: list[NewOrder]  # to the coordinator; at most one per decision key (account:event)
    positions: list[CashPosition]  # one per account whose position moved, the newest
    dead_letters: list[Rejected]
    deferred: set[EventKey]  # rows written (decided) only once the orders are durable
    redecided_row_ids: list[int]  # rows a crashed attempt stored undecided, decided again now
    offsets: dict[int, int]  # partition -> offset to commit (last consumed + 1)
    closes: list[str]  # accounts whose closing balance came in: VaR can include it
    stats: BatchStats

    def rows_before_orders(self) -> list[RowPlan]:
        """Rows decided as they are written: no order of their account in the batch. The shard
        writes them while the coordinator makes the orders durable."""
        return [r for r in self.rows if r.decided]

    def rows_after_orders(self) -> list[RowPlan]:
        """The other rows, written decided once the orders are durable: one insert, not an insert
        now and an update of every row later. A crash before leaves them unwritten, so the replay
        decides their events again, and the orders' decision keys keep that from making a second."""
        return [dataclasses.replace(r, decided=True) for r in self.rows if not r.decided]


# -- 1. validate ------------------------------------------------------------------------------
def validate(msgs: Sequence[Message]) -> tuple[list[Incoming], list[Rejected]]:
    """Valid events in batch order, and the rest with the reason each is refused."""
    valid: list[Incoming] = []
    rejects: list[Rejected] = []
    for msg in msgs:
        try:
            check_envelope(msg, SCHEMA_NAME, SCHEMA_MAJOR, "a balance event")
            event, source = decode_with_source(BalanceEvent, msg.value() or b"")
            check_owner(msg, event.account_id, event.currency)
        except MessageRejected as exc:
            rejects.append(Rejected(msg, exc))
            continue
        trace = event.trace_id or kafka_clients.header_map(msg.headers()).get("trace_id") or new_trace_id()
        valid.append(Incoming(msg, event, source, trace))
    return valid, rejects


def check_envelope(msg: Message, schema: str, major: str, what: str) -> None:
    """What is refused before the body is even parsed: size, and a schema version we do not read
    (none given: the current one). Balances and statement entries share ``balance_events``."""
    headers = header_list(msg)  # once: every message of every batch comes through here
    size = message_bytes(msg, headers)
    if size > MAX_EVENT_BYTES:
        raise MessageRejected("$", f"message is {size} bytes; {what} may be at most {MAX_EVENT_BYTES}")
    version = kafka_clients.header_map(headers).get("schema_version")
    if version is None:
        return
    if not _version_pattern(schema, major).fullmatch(version):
        raise MessageRejected(
            "schema_version", f"{version[:80]!r} is not a version this service reads ({schema}/{major}.x.y)"
        )


def check_owner(msg: Message, account_id: str, currency: str) -> None:
    """A message on ``balance_events`` is keyed by its own account (so its shard owns it) and in USD."""
    key = (msg.key() or b"").decode("utf-8", "replace")
    if key and key != account_id:
        raise MessageRejected("account_id", f"{account_id!r} does not match the message key {key!r}")
    if currency != "USD":
        raise MessageRejected("currency", f"only USD accounts are swept, got {currency}")


# -- 3. known accounts ------------------------------------------------------------------------
def known_only(events: Sequence[Incoming], known: Container[str]) -> tuple[list[Incoming], list[Rejected]]:
    """Events of registered accounts (``known``: the accounts whose state could be loaded), and the rest refused."""
    keep: list[Incoming] = []
    unknown: list[Rejected] = []
    for item in events:
        if item.event.account_id in known:
            keep.append(item)
        else:
            reason = f"unknown account {item.event.account_id!r}"
            unknown.append(Rejected(item.msg, MessageRejected("account_id", reason)))
    return keep, unknown


# -- 4. what to read --------------------------------------------------------------------------
def ledger_query(events: Sequence[Incoming], clock: Callable[[], datetime]) -> LedgerQuery:
    return LedgerQuery(
        keys=[item.key for item in events],
        accounts=sorted({item.event.account_id for item in events}),
        earliest=min((item.event.as_of_ts for item in events), default=clock()),
    )


# -- 5. the plan ------------------------------------------------------------------------------
def plan_batch(
    events: Sequence[Incoming],
    rejected: Sequence[Rejected],
    states: Mapping[str, AccountState],
    ledger: LedgerView,
    msgs: Sequence[Message],
    config: PolicyConfig,
    *,
    clock: Callable[[], datetime],
    received: float,
    wall: Callable[[], float] = time.time,
    new_id: Callable[[], str] = new_order_id,
    policy: Policy = decide,
    max_clock_skew_s: int = DEFAULT_MAX_CLOCK_SKEW_S,
) -> BatchPlan:
    """Apply ``events`` (valid, of known accounts) to copies of ``states`` and decide; see the module doc.

    ``states`` must hold every account of ``events``; it is not changed (the plan's ``states`` are
    the accounts after the batch). ``rejected`` are the dead letters found so far; an event that
    cannot be decided (a defect, not bad input) joins them rather than stall its partition forever,
    its row still stored. ``msgs`` are all the batch's messages, dead letters included: the offsets
    to commit cover them all. ``clock`` dates decisions and positions, and is the "now" an as-of
    time may not exceed by more than ``max_clock_skew_s`` (MAX_CLOCK_SKEW_S); ``received`` (when
    the batch was consumed) and ``wall`` time the decisions for the latency metrics.

    Before an event is applied, two refusals (dead letters, never stored, never moving state):
    dated in the future (``future_dated``: it would make every later balance stale), and an event
    id already received with other content (``repeat_conflict``: the second figure would vanish as
    a "duplicate"). A true repeat, same content, stays a duplicate.
    """
    stats = BatchStats()
    after = {account: copy.copy(state) for account, state in states.items()}
    open_orders: dict[str, list[OpenOrder]] = defaultdict(list)
    for order in ledger.open_orders:
        open_orders[order.account_id].append(order)
    dead = list(rejected)
    now = clock()
    seen: dict[EventKey, Incoming] = {}  # the first accepted event of each key in this batch
    work: list[Planned] = []
    for item in events:
        key = item.key
        refusal = future_dated(item.event, now, max_clock_skew_s)
        outcome_if_refused = Outcome.FUTURE
        if refusal is None:
            refusal = repeat_conflict(item, seen.get(key), ledger.stored.get(key))
            outcome_if_refused = Outcome.CONFLICT
        if refusal is not None:
            stats.outcomes[outcome_if_refused] += 1
            dead.append(Rejected(item.msg, refusal, outcome_if_refused))
            continue
        held = ledger.existing.get(key)
        if key in seen or (held is not None and held[1]):
            stats.outcomes[Outcome.DUPLICATE] += 1
            continue
        seen[key] = item
        state = after[item.event.account_id]
        outcome = state.apply(item.event)
        stats.outcomes[outcome] += 1
        decision: Decision | None = None
        new_order: NewOrder | None = None
        if outcome is Outcome.APPLIED and item.event.available_usd is not None:
            decision, new_order = _decide_and_count(item, state, open_orders[item.event.account_id], config, stats,
                                                    dead, clock=clock, received=received, wall=wall, new_id=new_id,
                                                    policy=policy)
        work.append(Planned(item, outcome, held[0] if held is not None else None, decision, new_order))
    stats.outcomes[Outcome.INVALID] += sum(1 for d in dead if d.outcome is Outcome.INVALID)
    deferred = decided_after_orders(work)
    return BatchPlan(
        states=after,
        work=work,
        rows=[
            RowPlan(p.event, {**p.incoming.source, "trace_id": p.incoming.trace_id},
                    applied=p.outcome is Outcome.APPLIED, decided=p.key not in deferred)
            for p in work if p.row_id is None
        ],
        orders=[p.order for p in work if p.order is not None],
        positions=positions(work, after, clock, open_orders, ledger.invested),
        dead_letters=dead,
        deferred=deferred,
        redecided_row_ids=[p.row_id for p in work if p.row_id is not None],
        offsets=commit_offsets(msgs),
        closes=sorted({p.event.account_id for p in work
                       if p.outcome is Outcome.APPLIED and p.event.balance_code is BalanceCode.CLBD}),
        stats=stats,
    )


def _decide_and_count(
    item: Incoming,
    state: AccountState,
    pending: list[OpenOrder],
    config: PolicyConfig,
    stats: BatchStats,
    dead: list[Rejected],
    *,
    clock: Callable[[], datetime],
    received: float,
    wall: Callable[[], float],
    new_id: Callable[[], str],
    policy: Policy,
) -> tuple[Decision | None, NewOrder | None]:
    """Decide one applied event; its order joins ``pending`` so that the same dollars go once in the batch.

    An event that cannot be decided (a defect, not bad input) joins ``dead`` rather than stall its
    partition forever."""
    try:
        decision, decided_at, new_order = _decide(item, state, pending, config, clock(), wall, new_id, policy)
    except Exception as exc:  # quarantine one event rather than stall its partition forever
        log.exception("could not decide on %s; dead-lettered", item.event.event_id,
                      extra={"trace_id": item.trace_id, "account_id": item.event.account_id})
        dead.append(Rejected(item.msg, MessageRejected("$", f"internal error while deciding: {exc!r}")))
        return None, None
    stats.decision_latency_s.append(max(0.0, decided_at - produced_at(item.msg, wall)))
    stats.consume_latency_s.append(decided_at - received)
    if new_order is not None:
        pending.append(OpenOrder(item.event.account_id, new_order.amount_usd, OrderStatus.NEW, None))
        stats.orders += 1
        stats.swept_usd[new_order.product] += new_order.amount_usd
    return decision, new_order


def content_of(event: BalanceEvent) -> BalanceContent:
    """The content an event id stands for, in the ledger's terms: what ``RowPlan.row`` stores and
    fingerprints (``BalanceRow.content``), so an incoming event and its stored row compare equal."""
    return BalanceContent(
        as_of_ts=event.as_of_ts,
        kind=event.kind.value,
        balance_code=event.balance_code.value if event.balance_code else None,
        available_usd=event.available_usd,
        booked_usd=event.booked_usd,
        currency=event.currency,
        projected_outflows_usd=event.projected_outflows_24h_usd,
    )


def repeat_conflict(item: Incoming, earlier: Incoming | None, held: StoredBalance | None) -> MessageRejected | None:
    """Why ``item`` re-uses an event id with other content, or None (new, or a true repeat).

    ``earlier`` is the event of the same key accepted earlier in this batch, ``held`` the ledger's
    row for the key (an earlier batch, before any restart). The content compared is
    ``content_of``: amounts, as-of time, kind, balance code, currency and projection; the trace id
    is not content. A held row without a fingerprint (stored before migration 003) proves nothing
    either way and is taken for a true repeat, as it always was.
    """
    if earlier is None and (held is None or held.fingerprint is None):
        return None  # nothing to compare with: the common case, so no content is built for it
    content = content_of(item.event)
    if earlier is not None:  # already checked against the ledger when it was accepted
        first = content_of(earlier.event)
        if first.fingerprint() == content.fingerprint():
            return None
        return _conflict(item.event.event_id, first, content, "earlier in this batch")
    if held is None or held.fingerprint == content.fingerprint():  # held is set: see the first return
        return None
    return _conflict(item.event.event_id, held.content, content, "in the ledger")


# Content fields as the contract names them, and their BalanceContent attribute; amounts first.
_CONTENT_FIELDS: tuple[tuple[str, str], ...] = (
    ("available_usd", "available_usd"),
    ("booked_usd", "booked_usd"),
    ("projected_outflows_24h_usd", "projected_outflows_usd"),
    ("as_of_ts", "as_of_ts"),
    ("balance_code", "balance_code"),
    ("kind", "kind"),
    ("currency", "currency"),
)


def _conflict(event_id: str, first: BalanceContent, again: BalanceContent, where: str) -> MessageRejected:
    """The dead letter's reason names both figures of every field that differs, so whoever reads
    ``balance_events.dlq`` sees what was kept and what was refused without decrypting the ledger."""
    differ = [(name, getattr(first, attr), getattr(again, attr)) for name, attr in _CONTENT_FIELDS
              if getattr(first, attr) != getattr(again, attr)]
    if not differ:  # only a digit past the ledger's 4 decimal places differs: name the amounts
        differ = [(name, getattr(first, attr), getattr(again, attr)) for name, attr in _CONTENT_FIELDS[:3]
                  if getattr(again, attr) is not None]
    was = ", ".join(f"{name} {_shown(a)}" for name, a, _ in differ)
    now = ", ".join(f"{name} {_shown(b)}" for name, _, b in differ)
    return MessageRejected(
        "event_id",
        f"event_id {event_id!r} already received with {was} ({where}); this one says {now}: same id, "
        "different content, refused (the first stands; send a correction under a new event_id)",
    )


def _shown(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, Decimal):
        exponent = value.as_tuple().exponent
        if isinstance(exponent, int) and exponent >= -4:
            return format(value.quantize(Decimal("0.0001")), "f")
        return format(value, "f")
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return str(value)


def _decide(
    item: Incoming, state: AccountState, open_orders: Sequence[OpenOrder], config: PolicyConfig, now: datetime,
    wall: Callable[[], float], new_id: Callable[[], str], policy: Policy,
) -> tuple[Decision, float, NewOrder | None]:
    """The decision on one applied event, when it was made (wall clock), and its order if it makes one."""
    decision = decision_for(state, item.event, open_orders, config, now, policy)
    decided_at = wall()
    ordered = decision.order and decision.product is not None
    order_id = new_id() if ordered else None  # named on the decision's log line
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
        return decision, decided_at, None
    return decision, decided_at, sweep_order(item, state, decision, order_id, now)


def decision_for(state: AccountState, event: BalanceEvent, open_orders: Sequence[OpenOrder], config: PolicyConfig,
                 now: datetime, policy: Policy = decide) -> Decision:
    """The policy's decision on ``event``, applied to ``state``, with ``open_orders`` pending by the
    one rule (``pending_sweeps``): what a shard decides, and what ``actors.replay`` re-decides."""
    inputs = decision_inputs(state, event, pending_sweeps_usd=pending_sweeps(open_orders, event.as_of_ts), now=now)
    return policy(inputs, config)


def sweep_order(item: Incoming, state: AccountState, decision: Decision, order_id: str, now: datetime) -> NewOrder:
    """The order a decision makes, unsigned (the coordinator signs it). Its decision key is the
    account and the source event: the ledger's unique constraint on it is what keeps a replayed
    decision from becoming a second order."""
    assert decision.product is not None
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
    return NewOrder(
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


def decided_after_orders(work: Sequence[Planned]) -> set[EventKey]:
    """Events whose rows are marked decided only once the batch's orders are durable.

    An event with an order, and every other event of an account that has an order in the batch:
    a restarted shard rebuilds an account from its newest *decided* row, so a later no-order
    event marked decided at insert would make the earlier, still undecided event with the order
    look stale on replay, and its order would never be made.
    """
    with_orders = {p.event.account_id for p in work if p.order is not None}
    return {(p.event.account_id, p.event.event_id) for p in work if p.event.account_id in with_orders}


def positions(work: Sequence[Planned], states: Mapping[str, AccountState], clock: Callable[[], datetime],
              open_orders: Mapping[str, Sequence[OpenOrder]],
              invested: Mapping[str, Decimal] | None = None) -> list[CashPosition]:
    """The position of each account an applied event moved, after the batch. Pending sweeps come from
    the rule a decision uses (``pending_sweeps``) over the account's open orders, this batch's
    included, so a position says what the next decision will count. A position is derived from
    its event and the ledger, so a replay re-publishes the same one."""
    latest: dict[str, Planned] = {}
    for p in work:
        if p.outcome is Outcome.APPLIED:
            latest[p.event.account_id] = p
    out: list[CashPosition] = []
    for account_id, p in latest.items():
        state = states[account_id]
        if state.available_usd is None:
            continue
        assert state.as_of_ts is not None  # set with available_usd
        pending = pending_sweeps(open_orders.get(account_id, ()), state.as_of_ts)
        out.append(cash_position(state, pending, p.incoming.trace_id, clock(), (invested or {}).get(account_id, ZERO)))
    return out


def cash_position(state: AccountState, pending: Decimal, trace_id: str | None, updated: datetime,
                  invested: Decimal | None = None) -> CashPosition:
    """An account's position for ``cash_positions`` (and the shard's position look-up); ``invested``
    is the principal of its OPEN investments (``storage.investments.invested``)."""
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
        invested_usd=invested,
        source_event_id=state.last_event_id,
        updated_ts=updated,
        trace_id=trace_id,
    )


def commit_offsets(msgs: Iterable[Message]) -> dict[int, int]:
    """Per partition, the offset to commit: one past the last message consumed."""
    last: dict[int, int] = {}
    for msg in msgs:
        partition, offset = msg.partition(), msg.offset()
        assert partition is not None and offset is not None, "consumed messages carry both"
        last[partition] = max(last.get(partition, -1), offset)
    return {p: o + 1 for p, o in last.items()}


# -- the messages the plan produces -----------------------------------------------------------
def position_message(position: CashPosition) -> Outbound:
    return Outbound(
        CASH_POSITIONS.name,
        key=position.account_id.encode(),
        value=position.model_dump_json(exclude_none=True).encode(),
        headers=kafka_clients.headers(trace_id=position.trace_id),
    )


def dead_letter_message(rejected: Rejected) -> Outbound:
    """The refused message with the reason in headers; one too large keeps its first bytes and its size."""
    msg, exc = rejected.msg, rejected.error
    value, original = msg.value(), header_list(msg)
    size = message_bytes(msg)
    if size > MAX_EVENT_BYTES:  # keep the evidence, not the payload that could not fit
        value, original = (value or b"")[:MAX_EVENT_BYTES], kafka_clients.headers(original_bytes=str(size))
    return Outbound(
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


# -- state from the ledger --------------------------------------------------------------------
def state_from_ledger(account: Account, position: Mapping[str, Any] | None, projection: Decimal | None,
                      risk: VarResult | None, *, projection_ts: datetime | None = None,
                      forecast: ForecastRow | None = None) -> AccountState:
    """An account's state as the ledger has it: its newest decided available balance, the last
    projection it sent (and when it held: ``projection_ts``), its latest VaR result and its latest
    outflow forecast. How a shard starts, and rebuilds after a crash."""
    state = AccountState(account)
    if position is not None:
        state.available_usd = position["avail_usd"]
        state.booked_usd = position["booked_usd"]
        state.as_of_ts = position["as_of_ts"]
        state.last_event_id = position["event_id"]
    state.last_projection_usd = projection
    state.last_projection_ts = projection_ts if projection is not None else None
    state.forecast = forecast
    if risk is not None and risk.var_usd is not None:
        state.var_usd = float(risk.var_usd)
        state.var_days = risk.days
    return state


async def states_from_ledger(conn: asyncpg.Connection, account_ids: Sequence[str]) -> dict[str, AccountState]:
    """``state_from_ledger`` for every known account of ``account_ids``, in one read of each table: what a
    shard loads for accounts it has not seen, and what the console rebuilds to show a decision's inputs."""
    known = await accounts.get_many(conn, account_ids)
    ids = sorted(known)
    positions = await balances.latest_positions(conn, ids)
    projections = await forecasts.last_projections(conn, ids)
    risks = await var_results.latest(conn, ids)
    outflows = await forecasts.latest(conn, ids)
    states = {}
    for account_id, account in known.items():
        projection, projection_ts = projections.get(account_id, (None, None))
        states[account_id] = state_from_ledger(account, positions.get(account_id), projection, risks.get(account_id),
                                               projection_ts=projection_ts, forecast=outflows.get(account_id))
    return states


# -- message helpers --------------------------------------------------------------------------
def header_list(msg: Message) -> kafka_clients.Headers:
    raw = msg.headers()
    return list(raw.items()) if isinstance(raw, dict) else list(raw or [])


def message_bytes(msg: Message, headers: kafka_clients.Headers | None = None) -> int:
    """Value, key and headers (``headers``: ``header_list(msg)`` when the caller has it already)."""
    listed = header_list(msg) if headers is None else headers
    return len(msg.value() or b"") + len(msg.key() or b"") + sum(len(k) + len(v or b"") for k, v in listed)


@functools.lru_cache(maxsize=8)
def _version_pattern(schema: str, major: str) -> re.Pattern[str]:
    return re.compile(rf"{schema}/{major}\.\d+\.\d+")


def produced_at(msg: Message, wall: Callable[[], float] = time.time) -> float:
    """When the producer sent ``msg`` (its timestamp), else now."""
    kind, ts_ms = msg.timestamp()
    return ts_ms / 1000.0 if kind and ts_ms > 0 else wall()
