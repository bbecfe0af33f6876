"""The sweep decision: spec section 5 with the semantics of DESIGN.md section 3. Pure, no I/O.

Rules, in order:
1. ``excess = available - pending_sweeps - min_balance``. Pending sweeps are orders not yet
   reflected in a balance, so the same dollars are never swept twice.
2. ``observed_var_bps = var_usd / available * 10 000``; a non-positive balance is a breach.
3. Breach (``var_bps > VAR_LIMIT_BPS``) -> FED_RRP, ``amount = max(0, excess)``.
   Unknown VaR or no outflow projection: we cannot justify a term investment, so the same
   overnight fallback applies (money is back on the account the next morning).
4. Otherwise ``amount = max(0, excess - LIQ_BUFFER_PCT * eod_projection)`` to CARBON_NOTE for an
   ESG account, else TBILL_4W (laddered over TARGET_LADDER_DAYS).
5. Emit only when ``amount >= MIN_SWEEP_USD``; amounts are rounded down to 4 places.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from schemas.sweep_order import Product
from treasury.clock import iso_z, next_cutoff
from treasury.money import ZERO, fmt, quantize_down
from treasury.settings import PolicyConfig

# Reported when the balance is not positive: any VaR is then infinitely many bps of it.
BREACH_BPS_CAP = 1_000_000.0


class Reason(StrEnum):
    WITHIN_LIMIT = "within_limit"
    VAR_BREACH = "var_breach"
    VAR_UNKNOWN = "var_unknown"
    NO_PROJECTION = "no_projection"
    BELOW_MIN_SWEEP = "below_min_sweep"
    NO_EXCESS = "no_excess"


@dataclass(frozen=True)
class DecisionInputs:
    available_usd: Decimal
    eod_projection_usd: Decimal | None
    var_bps: float | None
    now: datetime
    pending_sweeps_usd: Decimal = ZERO
    min_balance_usd: Decimal = ZERO
    esg: bool = False
    var_history_days: int | None = None
    projection_source: str = "event"


@dataclass(frozen=True)
class Decision:
    order: bool
    product: Product | None
    amount_usd: Decimal
    cutoff_utc: datetime
    reason: Reason
    explanation: str
    excess_usd: Decimal
    buffer_usd: Decimal
    observed_var_bps: float | None
    var_limit_bps: float
    inputs: DecisionInputs
    ladder_days: int | None = None

    def as_record(self) -> dict[str, Any]:
        """JSON-safe record of what was decided and from what, kept with the order for audit."""
        inputs = {
            k: (fmt(v) if isinstance(v, Decimal) else iso_z(v) if isinstance(v, datetime) else v)
            for k, v in ((f.name, getattr(self.inputs, f.name)) for f in fields(self.inputs))
        }  # the inputs are flat scalars: ``asdict``'s deep copy of each cost more than the decision
        return {
            "order": self.order,
            "product": self.product.value if self.product else None,
            "amount_usd": fmt(self.amount_usd),
            "cutoff_utc": iso_z(self.cutoff_utc),
            "reason": self.reason.value,
            "explanation": self.explanation,
            "excess_usd": fmt(self.excess_usd),
            "buffer_usd": fmt(self.buffer_usd),
            "observed_var_bps": self.observed_var_bps,
            "var_limit_bps": self.var_limit_bps,
            "ladder_days": self.ladder_days,
            "inputs": inputs,
        }


def observed_var_bps(var_usd: float | None, available_usd: Decimal) -> float | None:
    """DESIGN 3: VaR over the available balance in bps; a non-positive balance is a breach.

    The one rule for the figure: decisions, cash positions, the metrics and the ``var_bps`` a VaR
    recompute stores (``actors.var_job``) all call this, so a stored figure equals the decided one.
    """
    if var_usd is None:
        return None
    if available_usd <= 0:
        return BREACH_BPS_CAP
    return min(BREACH_BPS_CAP, var_usd / float(available_usd) * 10_000.0)


def decide(inputs: DecisionInputs, config: PolicyConfig) -> Decision:
    excess = inputs.available_usd - inputs.pending_sweeps_usd - inputs.min_balance_usd
    var_bps = inputs.var_bps
    limit = float(config.VAR_LIMIT_BPS)
    cutoff = next_cutoff(inputs.now, config.cutoff_times())
    buffer = ZERO
    ladder: int | None = None

    if var_bps is None:
        reason, product = Reason.VAR_UNKNOWN, Product.FED_RRP
        why = "no VaR for this account yet; only the overnight FED_RRP fallback is allowed"
    elif var_bps > limit:
        reason, product = Reason.VAR_BREACH, Product.FED_RRP
        why = f"VaR {var_bps:.2f} bps exceeds the {limit:g} bps limit; whole excess to FED_RRP"
    elif inputs.eod_projection_usd is None:
        reason, product = Reason.NO_PROJECTION, Product.FED_RRP
        why = "no 24 h outflow projection to size a buffer; only the overnight FED_RRP fallback is allowed"
    else:
        buffer = config.LIQ_BUFFER_PCT * inputs.eod_projection_usd
        reason = Reason.WITHIN_LIMIT
        product = Product.CARBON_NOTE if inputs.esg else Product.TBILL_4W
        ladder = config.TARGET_LADDER_DAYS if product is Product.TBILL_4W else None
        why = (
            f"VaR {var_bps:.2f} bps within {limit:g} bps; keep {fmt(buffer)} "
            f"({config.LIQ_BUFFER_PCT} x projected outflows) on the account"
        )

    amount = quantize_down(max(ZERO, excess - buffer))
    emit = amount >= config.MIN_SWEEP_USD
    if not emit:
        if amount <= 0:
            reason, why = Reason.NO_EXCESS, f"nothing to sweep (excess {fmt(excess)}, buffer {fmt(buffer)}); " + why
        else:
            reason = Reason.BELOW_MIN_SWEEP
            why = f"{fmt(amount)} is below MIN_SWEEP_USD {config.MIN_SWEEP_USD}; " + why
    return Decision(
        order=emit,
        product=product if emit else None,
        amount_usd=amount if emit else ZERO,
        cutoff_utc=cutoff,
        reason=reason,
        explanation=why,
        excess_usd=excess,
        buffer_usd=buffer,
        observed_var_bps=var_bps,
        var_limit_bps=limit,
        inputs=inputs,
        ladder_days=ladder if emit else None,
    )
