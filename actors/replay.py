"""Replay and what-if: the ledger's recorded balances and entries, in the order the shards applied
them, through the very decision code the shards run. Pure, so it is unit tested.

A replay (docs/decisions.md, "Replay and what-if") takes a ``storage.replay_source.ReplaySource``
(the period's balance rows, entries, live orders, VaR results and forecasts) and a policy variant:

1. **One timeline.** Balances and entries merged by ``received_ts`` (when the shard stored them),
   entries first on a tie (a shard applies a batch's entries before it decides its balances), then
   by row id (``timeline``).
2. **The same decision.** Each balance goes through ``AccountState.apply``; one applied with an
   available figure is decided by ``actors.batch_plan.decision_for``, the function a shard's batch
   calls (``decision_inputs`` + ``pending_sweeps`` + ``actors.policy.decide``), with the VaR and the
   outflow forecast known at that moment (``Known``: the latest computed no later; no look-ahead),
   the business calendar of ``BUSINESS_CALENDAR``, and ``now`` the live order's ``created_ts`` when
   the live decision made one (else the balance's ``received_ts``).
3. **Orders and their life.** A replayed order gets the live decision key ``account:event_id``. It
   is pending until the entry that settled the live order of the same key arrives (SETTLED, booked
   when that debit was), fails when the live one failed, and stays open when the live one did. An
   order the live run did not make is assumed settled at its cut-off (booked then, value date the
   cut-off's date). Orders made before the period keep their live life.
4. **Counterfactual balances.** A variant that sweeps differently leaves a different balance: each
   recorded available balance is moved by the live run's own transfers (sweeps out, maturities in)
   of the period's orders booked by its as-of time, replaced by the variant's (``adjusted``). A
   variant's sweep is booked when its live twin's was; its maturity comes back when the twin's did
   (same product; scaled to its principal), else on ``actors.settlement.maturity_date`` at 00:00 UTC,
   principal only. With the live configuration the two sets are equal and the adjustment is zero.
5. **Figures** per account (``AccountFigures``): orders by product (count, USD), USD-days invested
   within the period, yield at the given rates (act/360) and buffer breaches: days whose booked
   outflows (debits that are not our own transfers) exceeded what the policy left above the
   minimum balance (``breaches``).
"""

from __future__ import annotations

import bisect
import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation

from actors.account_state import AccountState, Outcome
from actors.batch_plan import decision_for, state_from_ledger
from actors.policy import Decision
from actors.settlement import Terms, maturity_date
from schemas.balance_event import BalanceCode, BalanceEvent, BalanceKind
from schemas.sweep_order import Product
from storage.forecasts import ForecastRow
from storage.orders import OpenOrder
from storage.replay_source import BalanceRec, EntryRec, LiveOrder, ReplaySource, VarRec
from treasury.money import ZERO
from treasury.order_status import OrderStatus
from treasury.settings import POLICY_KEYS, ConfigError, PolicyConfig, policy_from_mapping

FOUR_DP = Decimal("0.0001")
DAY_COUNT = Decimal(360)  # act/360, the money-market convention of the three products
MAX_VARIANTS = 64


# -- variants: --set, --grid, --rates -----------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    """A policy to replay: the base configuration with ``overrides`` (key -> value as given)."""

    name: str
    config: PolicyConfig
    overrides: tuple[tuple[str, str], ...] = ()


def _key_value(text: str, flag: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or not value.strip():
        raise ConfigError(f"{flag} {text!r}: expected KEY=VALUE")
    if key not in POLICY_KEYS:
        raise ConfigError(f"{key}: unknown configuration key (known: {', '.join(POLICY_KEYS)})")
    return key, value.strip()


def parse_sets(items: Sequence[str]) -> dict[str, str]:
    """``--set KEY=VALUE`` (repeatable); the key must be a policy key. Values are checked by ``variants``."""
    return dict(_key_value(item, "--set") for item in items)


def parse_grid(items: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``--grid KEY=v1,v2,...`` (repeatable: the grids multiply). SWEEP_CUTOFFS_UTC, itself a list,
    cannot be a grid; ``--set`` it instead."""
    out: list[tuple[str, list[str]]] = []
    for item in items:
        key, text = _key_value(item, "--grid")
        if key == "SWEEP_CUTOFFS_UTC":
            raise ConfigError(f"{key}: a list already; give one value with --set, not a --grid")
        values = [v.strip() for v in text.split(",")]
        if any(not v for v in values) or len(set(values)) != len(values):
            raise ConfigError(f"{key}: --grid values must be distinct and not empty (got {text!r})")
        if key in {k for k, _ in out}:
            raise ConfigError(f"{key}: given in two --grid options")
        out.append((key, values))
    return out


def variants(base: PolicyConfig, sets: Mapping[str, str], grid: Sequence[tuple[str, list[str]]],
             limit: int = MAX_VARIANTS) -> list[Variant]:
    """The policies to replay: ``base`` with ``sets``, times every combination of ``grid`` (at most
    ``limit``); each one validated as live configuration is (``policy_from_mapping``: a ConfigError
    names the key)."""
    if set(sets) & {k for k, _ in grid}:
        raise ConfigError(f"{sorted(set(sets) & {k for k, _ in grid})[0]}: given both in --set and in --grid")
    combos = list(itertools.product(*[[(key, v) for v in values] for key, values in grid]))
    if len(combos) > limit:
        raise ConfigError(f"grid: {len(combos)} policies; at most {limit}")
    out: list[Variant] = []
    for combo in combos:
        overrides = (*sets.items(), *combo)
        config = policy_from_mapping(dict(overrides), base)
        name = " ".join(f"{k}={v}" for k, v in overrides) or "live"
        out.append(Variant(name, config, tuple(overrides)))
    return out


def parse_rates(text: str | None) -> dict[str, Decimal]:
    """``--rates FED_RRP=4.3,TBILL_4W=4.2,CARBON_NOTE=3.9``: annual rates in percent, per product;
    a product not named earns 0."""
    rates = {p.value: ZERO for p in Product}
    for item in [] if not text else text.split(","):
        key, sep, value = item.partition("=")
        key = key.strip()
        if key not in rates or not sep:
            raise ConfigError(f"--rates {item!r}: expected PRODUCT=PERCENT, PRODUCT one of {', '.join(rates)}")
        try:
            rate = Decimal(value.strip())
        except InvalidOperation:
            raise ConfigError(f"{key}: rate {value.strip()!r} is not a number (percent a year)") from None
        if not rate.is_finite() or not ZERO <= rate <= 100:
            raise ConfigError(f"{key}: rate {value.strip()!r} must be a percentage from 0 to 100")
        rates[key] = rate
    return rates


# -- the timeline -------------------------------------------------------------------------------
def timeline(balances: Iterable[BalanceRec], entries: Iterable[EntryRec]) -> list[BalanceRec | EntryRec]:
    """Balances and entries in the order the live shard applied them: by when it stored them, a
    batch's entries before its balances, then by row id."""
    keyed: list[tuple[datetime, int, int, BalanceRec | EntryRec]] = [
        *((e.received_ts, 0, e.id, e) for e in entries), *((b.received_ts, 1, b.id, b) for b in balances)]
    keyed.sort(key=lambda k: k[:3])
    return [item for *_, item in keyed]


class Known:
    """What was known of each account at a moment: its latest VaR result and outflow forecast computed
    no later (a shard keeps the forecast of the latest day it was given)."""

    def __init__(self, var_results: Sequence[VarRec], forecasts: Sequence[ForecastRow]) -> None:
        self._vars: dict[str, tuple[list[datetime], list[VarRec]]] = defaultdict(lambda: ([], []))
        for v in sorted(var_results, key=lambda r: r.computed_ts):
            times, rows = self._vars[v.account_id]
            times.append(v.computed_ts)
            rows.append(v)
        self._forecasts: dict[str, tuple[list[datetime], list[ForecastRow]]] = defaultdict(lambda: ([], []))
        for f in sorted(forecasts, key=lambda r: r.computed_ts or datetime.min.replace(tzinfo=UTC)):
            times_f, best = self._forecasts[f.account_id]
            keep = f if not best or f.for_date >= best[-1].for_date else best[-1]
            times_f.append(f.computed_ts or datetime.min.replace(tzinfo=UTC))
            best.append(keep)

    def var(self, account_id: str, at: datetime) -> tuple[float | None, int | None]:
        times, rows = self._vars.get(account_id, ([], []))
        i = bisect.bisect_right(times, at)
        if i == 0 or rows[i - 1].var_usd is None:
            return None, None if i == 0 else rows[i - 1].days
        return float(rows[i - 1].var_usd), rows[i - 1].days  # type: ignore[arg-type]

    def forecast(self, account_id: str, at: datetime) -> ForecastRow | None:
        times, best = self._forecasts.get(account_id, ([], []))
        i = bisect.bisect_right(times, at)
        return best[i - 1] if i else None


# -- orders and own transfers -------------------------------------------------------------------
@dataclass(frozen=True)
class Transfer:
    """An own transfer: a sweep's debit (negative) or a maturity's credit (positive), booked at ``at``."""

    at: datetime
    usd: Decimal


def net_by(transfers: Iterable[Transfer], at: datetime) -> Decimal:
    """The own transfers a balance taken at ``at`` shows: those booked by then."""
    return sum((t.usd for t in transfers if t.at <= at), ZERO)


def adjusted(recorded: Decimal, at: datetime, live: Iterable[Transfer], variant: Iterable[Transfer]) -> Decimal:
    """The available balance the variant would have seen: the recorded one without the live run's
    own transfers booked by ``at``, with the variant's."""
    return recorded - net_by(live, at) + net_by(variant, at)


@dataclass
class ReplayOrder:
    decision_key: str
    account_id: str
    product: str
    amount_usd: Decimal
    cutoff_utc: datetime
    created_ts: datetime
    twin: LiveOrder | None
    booked_ts: datetime | None = None  # when its debit is booked (None: never, in the period's ledger)
    value_date: date | None = None
    maturity: date | None = None
    transfers: list[Transfer] = field(default_factory=list)
    settled: bool = False  # the twin's settling entry has arrived

    def as_dict(self) -> dict[str, str | None]:
        return {"decision_key": self.decision_key, "account_id": self.account_id, "product": self.product,
                "amount_usd": format(self.amount_usd.quantize(FOUR_DP), "f"),
                "twin": self.twin.order_id if self.twin else None}


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def status_at(order: ReplayOrder, moment: datetime) -> OrderStatus:
    """A replayed order's status for a decision at ``moment`` (a balance's ``received_ts``)."""
    twin = order.twin
    if twin is None:
        return OrderStatus.SETTLED if moment >= order.cutoff_utc else OrderStatus.SENT
    if order.settled or (twin.settled_ts is not None and twin.settled_ts <= moment):
        return OrderStatus.SETTLED
    if twin.failed_ts is not None and twin.failed_ts <= moment:
        return OrderStatus.FAILED
    return OrderStatus.SENT


def live_open(order: LiveOrder, moment: datetime, settled: set[str]) -> OpenOrder:
    """A live order made before the period, as its own life had it at ``moment``."""
    if order.order_id in settled or (order.settled_ts is not None and order.settled_ts <= moment):
        return OpenOrder(order.account_id, order.amount_usd, OrderStatus.SETTLED, order.booked_ts)
    if order.failed_ts is not None and order.failed_ts <= moment:
        return OpenOrder(order.account_id, order.amount_usd, OrderStatus.FAILED)
    return OpenOrder(order.account_id, order.amount_usd, OrderStatus.SENT)


def place(decision: Decision, key: str, account_id: str, now: datetime, twin: LiveOrder | None,
          entries: Mapping[tuple[str, str], EntryRec], terms: Terms, ladder: int | None) -> ReplayOrder:
    """The order a replayed decision makes, with its booking and maturity as the module doc says."""
    assert decision.product is not None
    product = decision.product.value
    order = ReplayOrder(key, account_id, product, decision.amount_usd, decision.cutoff_utc, now, twin)
    if twin is None:
        order.booked_ts, order.value_date = decision.cutoff_utc, decision.cutoff_utc.date()
    else:
        sweep = entries.get((twin.order_id, "SWEEP"))
        order.booked_ts = sweep.booked_at if sweep is not None else twin.booked_ts
        if order.booked_ts is None:
            return order  # the live order never settled: neither does this one
        order.value_date = (sweep.value_date or sweep.booking_date) if sweep is not None else order.booked_ts.date()
    assert order.value_date is not None
    order.maturity = maturity_date(product, order.value_date, terms, ladder if product == "TBILL_4W" else None)
    order.transfers.append(Transfer(order.booked_ts, -order.amount_usd))
    back = entries.get((twin.order_id, "MATURITY")) if twin is not None else None
    if twin is not None and twin.product == product:
        if back is not None and back.booked_at is not None:  # as the twin's came back, for this principal
            usd = (back.amount_usd * order.amount_usd / twin.amount_usd).quantize(FOUR_DP)
            order.transfers.append(Transfer(back.booked_at, usd))
    else:
        order.transfers.append(Transfer(_midnight(order.maturity), order.amount_usd))
    return order


# -- the replay ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Decided:
    """One replayed decision, for the breach count: what the policy left above the minimum balance
    after it (excess less the amount ordered) on a balance taken at ``as_of``."""

    as_of: datetime
    left_usd: Decimal


@dataclass
class AccountRun:
    """One account as the replay goes."""

    state: AccountState
    live_transfers: list[Transfer] = field(default_factory=list)
    transfers: list[Transfer] = field(default_factory=list)
    inherited: list[LiveOrder] = field(default_factory=list)
    orders: list[ReplayOrder] = field(default_factory=list)
    decided: list[Decided] = field(default_factory=list)

    def open_orders(self, moment: datetime, settled: set[str]) -> list[OpenOrder]:
        out = [live_open(o, moment, settled) for o in self.inherited]
        out.extend(OpenOrder(o.account_id, o.amount_usd, status_at(o, moment), o.booked_ts) for o in self.orders)
        return out


def balance_event(row: BalanceRec) -> BalanceEvent:
    """The stored row as the event it was (the columns the decision reads; not the raw message)."""
    return BalanceEvent(event_id=row.event_id, account_id=row.account_id, as_of_ts=row.as_of_ts,
                        kind=BalanceKind(row.kind), balance_code=BalanceCode(row.balance_code) if row.balance_code
                        else None, available_usd=row.avail_usd, booked_usd=row.booked_usd,
                        projected_outflows_24h_usd=row.projected_outflows_usd)


def _runs(source: ReplaySource, keys: set[str]) -> dict[str, AccountRun]:
    """Each account's start: its state at the period's start, the live orders made before the period,
    and the live run's own transfers of the period's orders (by their booking)."""
    runs: dict[str, AccountRun] = {}
    for account_id, account in source.accounts.items():
        start = source.starts.get(account_id)
        state = state_from_ledger(account, start.position if start else None, start.projection if start else None,
                                  None, projection_ts=start.projection_ts if start else None)
        runs[account_id] = AccountRun(state)
    ours = {o.order_id for o in source.orders if o.decision_key in keys}
    for order in source.orders:
        if order.decision_key not in keys and order.account_id in runs:
            runs[order.account_id].inherited.append(order)
    for e in source.entries:
        if e.own_transfer and e.order_id in ours and e.booked_at is not None and e.account_id in runs:
            usd = -e.amount_usd if e.own_transfer == "SWEEP" else e.amount_usd
            runs[e.account_id].live_transfers.append(Transfer(e.booked_at, usd))
    return runs


def replay(source: ReplaySource, variant: Variant, terms: Terms | None = None) -> dict[str, AccountRun]:
    """Replay ``source`` under ``variant``; the accounts as the replay left them (orders, decisions)."""
    terms = terms or Terms()
    keys = {f"{b.account_id}:{b.event_id}" for b in source.balances}
    twins = {o.decision_key: o for o in source.orders if o.decision_key in keys}
    own = {(e.order_id, e.own_transfer): e for e in source.entries if e.order_id and e.own_transfer}
    known = Known(source.var_results, source.forecasts)
    runs = _runs(source, keys)
    settled: set[str] = set()  # live orders whose settling entry has arrived
    by_twin: dict[str, ReplayOrder] = {}
    for item in timeline(source.balances, source.entries):
        run = runs.get(item.account_id)
        if run is None:
            continue
        if isinstance(item, EntryRec):
            if item.own_transfer == "SWEEP" and item.order_id:
                settled.add(item.order_id)
                if item.order_id in by_twin:
                    by_twin[item.order_id].settled = True
            continue
        order = _step(item, run, variant.config, twins, own, known, terms, settled)
        if order is not None and order.twin is not None:
            by_twin[order.twin.order_id] = order
    return runs


def _step(row: BalanceRec, run: AccountRun, config: PolicyConfig, twins: Mapping[str, LiveOrder],
          own: Mapping[tuple[str, str], EntryRec], known: Known, terms: Terms,
          settled: set[str]) -> ReplayOrder | None:
    """One balance: applied to the account's state at the variant's balance, decided if it moves the
    position, its order placed."""
    event = balance_event(row)
    if row.avail_usd is not None:
        figure = adjusted(row.avail_usd, row.as_of_ts, run.live_transfers, run.transfers)
        if figure != row.avail_usd:
            event = event.model_copy(update={"available_usd": figure})
    state = run.state
    if state.apply(event) is not Outcome.APPLIED or event.available_usd is None:
        return None
    key = f"{row.account_id}:{row.event_id}"
    twin = twins.get(key)
    now = twin.created_ts if twin is not None else row.received_ts
    state.var_usd, state.var_days = known.var(row.account_id, now)
    state.forecast = known.forecast(row.account_id, now)
    decision = decision_for(state, event, run.open_orders(row.received_ts, settled), config, now)
    run.decided.append(Decided(row.as_of_ts, decision.excess_usd - decision.amount_usd))
    if not decision.order or decision.product is None:
        return None
    order = place(decision, key, row.account_id, now, twin, own, terms, config.TARGET_LADDER_DAYS)
    run.orders.append(order)
    run.transfers.extend(order.transfers)
    return order


# -- the figures --------------------------------------------------------------------------------
def invested_days(order: ReplayOrder, start: date, end: date) -> int:
    """Days the order's principal was invested within ``start``..``end`` (inclusive): from its value
    date to its maturity (exclusive); 0 for an order that never settled."""
    if order.value_date is None or order.maturity is None:
        return 0
    first = max(order.value_date, start)
    stop = min(order.maturity, end + timedelta(days=1))
    return max(0, (stop - first).days)


def interest(principal: Decimal, rate_pct: Decimal, days: int) -> Decimal:
    """Act/360 simple interest: principal x rate x days / 360, to 4 places."""
    return (principal * rate_pct / 100 * days / DAY_COUNT).quantize(FOUR_DP)


def daily_outflows(entries: Iterable[EntryRec], start: date, end: date) -> dict[date, list[EntryRec]]:
    """The account's booked debits that are not our own transfers, by booking date, in the period."""
    out: dict[date, list[EntryRec]] = defaultdict(list)
    for e in entries:
        if (e.status == "BOOK" and e.direction == "DBIT" and e.own_transfer is None and e.booking_date is not None
                and start <= e.booking_date <= end):
            out[e.booking_date].append(e)
    return out


def breaches(decided: Sequence[Decided], outflows: Mapping[date, Sequence[EntryRec]]) -> dict[date, Decimal]:
    """Days the outflows exceeded what the policy left, with the shortfall.

    For day d, each decision in force during d (the last one before d began, and those on d) left
    ``left`` above the minimum balance on a balance that already showed d's debits booked by its
    as-of time; the cushion it left for d is ``left`` plus those. A breach: d's outflows above the
    smallest cushion. A day before any decision is not counted."""
    ordered = sorted(decided, key=lambda d: d.as_of)
    out: dict[date, Decimal] = {}
    for day, debits in sorted(outflows.items()):
        begins = _midnight(day)
        ends = begins + timedelta(days=1)
        before = [d for d in ordered if d.as_of < begins][-1:]
        during = [d for d in ordered if begins <= d.as_of < ends]
        cushions = [d.left_usd + sum((e.amount_usd for e in debits if e.booked_at is not None
                                      and e.booked_at <= d.as_of), ZERO) for d in (*before, *during)]
        total = sum((e.amount_usd for e in debits), ZERO)
        if cushions and total > min(cushions):
            out[day] = total - min(cushions)
    return out


@dataclass
class AccountFigures:
    account_id: str
    orders: dict[str, tuple[int, Decimal]]  # product -> (count, USD)
    usd_days: Decimal
    yield_usd: Decimal
    breach_days: dict[date, Decimal]
    decisions: int

    def as_dict(self) -> dict[str, object]:
        return {
            "account_id": self.account_id,
            "decisions": self.decisions,
            "orders": {p: {"count": n, "usd": _usd(usd)} for p, (n, usd) in sorted(self.orders.items())},
            "usd_days": _usd(self.usd_days),
            "yield_usd": _usd(self.yield_usd),
            "buffer_breaches": len(self.breach_days),
            "breach_days": {d.isoformat(): _usd(v) for d, v in sorted(self.breach_days.items())},
        }


def _usd(value: Decimal) -> str:
    return format(value.quantize(FOUR_DP), "f")


def figures(source: ReplaySource, runs: Mapping[str, AccountRun], rates: Mapping[str, Decimal]) -> list[AccountFigures]:
    """Per account: orders by product, USD-days invested in the period, yield at ``rates`` (percent a
    year, act/360) and buffer breaches."""
    entries: dict[str, list[EntryRec]] = defaultdict(list)
    for e in source.entries:
        entries[e.account_id].append(e)
    out: list[AccountFigures] = []
    for account_id, run in sorted(runs.items()):
        by_product: dict[str, tuple[int, Decimal]] = {}
        usd_days = earned = ZERO
        for o in run.orders:
            n, usd = by_product.get(o.product, (0, ZERO))
            by_product[o.product] = (n + 1, usd + o.amount_usd)
            days = invested_days(o, source.start, source.end)
            usd_days += o.amount_usd * days
            earned += interest(o.amount_usd, rates.get(o.product, ZERO), days)
        gone = breaches(run.decided, daily_outflows(entries[account_id], source.start, source.end))
        out.append(AccountFigures(account_id, by_product, usd_days, earned, gone, len(run.decided)))
    return out


@dataclass
class VariantResult:
    variant: Variant
    accounts: list[AccountFigures]
    orders: list[ReplayOrder]

    def as_dict(self) -> dict[str, object]:
        totals: dict[str, tuple[int, Decimal]] = {}
        for a in self.accounts:
            for p, (n, usd) in a.orders.items():
                m, total = totals.get(p, (0, ZERO))
                totals[p] = (m + n, total + usd)
        return {
            "variant": self.variant.name,
            "overrides": dict(self.variant.overrides),
            "orders": {p: {"count": n, "usd": _usd(usd)} for p, (n, usd) in sorted(totals.items())},
            "usd_days": _usd(sum((a.usd_days for a in self.accounts), ZERO)),
            "yield_usd": _usd(sum((a.yield_usd for a in self.accounts), ZERO)),
            "buffer_breaches": sum(len(a.breach_days) for a in self.accounts),
            "accounts": [a.as_dict() for a in self.accounts],
        }


def run_variant(source: ReplaySource, variant: Variant, rates: Mapping[str, Decimal],
                terms: Terms | None = None) -> VariantResult:
    """One policy over the source: the replay and its figures (what a grid's Ray task runs)."""
    runs = replay(source, variant, terms)
    orders = sorted((o for run in runs.values() for o in run.orders), key=lambda o: (o.created_ts, o.decision_key))
    return VariantResult(variant, figures(source, runs, rates), orders)
