"""``CashPosition``: the live position of one account, published for QuantEngine.

Keyed by account on a compacted topic, so a new consumer reads the latest position of every
account without replaying history. ``invested_usd`` is how QuantEngine reads the investment book
from Kafka (docs/settlement.md); the ladder itself is ``GET /investments``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from schemas.types import AccountId, BalanceAmount, Bps, EventId, NonNegativeAmount, TraceId, UtcDatetime


class CashPosition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, title="CashPosition")

    account_id: AccountId
    as_of_ts: UtcDatetime
    available_usd: BalanceAmount
    booked_usd: BalanceAmount | None = None
    pending_sweeps_usd: NonNegativeAmount = Field(
        description="Orders this balance cannot show yet: unsettled ones, and settled ones booked after it")
    min_balance_usd: NonNegativeAmount
    excess_usd: BalanceAmount = Field(description="available - pending sweeps - minimum balance")
    var_usd: NonNegativeAmount | None = None
    var_bps: Bps | None = None
    invested_usd: NonNegativeAmount | None = Field(
        default=None, description="Principal of the account's OPEN investments (settled sweeps not yet matured)")
    source_event_id: EventId
    updated_ts: UtcDatetime
    trace_id: TraceId | None = None
