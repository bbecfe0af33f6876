"""``SweepOrder`` exactly as spec section 3.1.

Amounts are emitted as JSON strings (``"750000.0000"``) so no consumer reads them through a
binary float; JSON numbers are accepted on input, so the spec's own example validates.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from schemas.types import AccountId, Bps, OrderAmount, TraceId, UtcDatetime


class Product(StrEnum):
    FED_RRP = "FED_RRP"
    TBILL_4W = "TBILL_4W"
    CARBON_NOTE = "CARBON_NOTE"


class RiskChecks(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    var_limit_bps: Bps = Field(description="VAR_LIMIT_BPS in force when the order was decided")
    observed_var_bps: Bps | None = Field(
        description="1-day 99% VaR over the available balance, in bps; null when no VaR exists yet "
        "(the order is then the overnight FED_RRP fallback)"
    )
    var_history_days: int | None = Field(
        default=None, ge=0, description="Days of cash-flow history behind the VaR (window is 250)"
    )


# BSA/AML tags the Bank-Connector copies into pain.001's additional information (max 140 chars each).
AmlTagName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$")]
AmlTagValue = Annotated[str, Field(max_length=140)]


class SweepOrder(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, title="SweepOrder")

    order_id: str = Field(
        min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$", description="UUIDv7 (or ULID)"
    )
    source_account: AccountId = Field(description="Finastra DDA the cash leaves")
    target_product: Product
    amount_usd: OrderAmount = Field(description="decimal(20,4), never more than the account's excess")
    cutoff_utc: UtcDatetime = Field(description="Submission window the order is meant for")
    risk_checks: RiskChecks
    created_ts: UtcDatetime
    decision_key: str | None = Field(
        default=None, max_length=200, description="account + source event; one order per key, ever"
    )
    trace_id: TraceId | None = None
    aml_tags: dict[AmlTagName, AmlTagValue] = Field(
        default_factory=dict, max_length=20,
        description="the source account's BSA/AML tags, for pain.001 additionalInfo",
    )
    signature: str | None = Field(
        default=None, max_length=512,
        description="'<issuer>:v<n>:<base64 ed25519>' over the RFC 8785 canonical JSON of every other field "
        "except signing_key_version",
    )
    signing_key_version: int | None = Field(default=None, ge=1, description="Transit key version that signed")
