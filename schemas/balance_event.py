"""``BalanceEvent``: one balance of one account at one moment, normalised from the bank's feed.

Prior-day statements (camt.053) arrive as ``PRIOR_DAY``, intraday reports (camt.052) as
``INTRADAY``. A message may carry the available balance, the booked balance, or both; only the
available balance moves the live position the sweep decision uses.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.types import (
    AccountId,
    BalanceAmount,
    Currency,
    EventId,
    NonNegativeAmount,
    TraceId,
    UtcDatetime,
)


class BalanceKind(StrEnum):
    PRIOR_DAY = "PRIOR_DAY"
    INTRADAY = "INTRADAY"


class BalanceCode(StrEnum):
    """ISO 20022 balance type codes (ExternalBalanceType1Code) the feed may carry."""

    OPBD = "OPBD"
    PRCD = "PRCD"
    CLBD = "CLBD"
    CLAV = "CLAV"
    OPAV = "OPAV"
    ITBD = "ITBD"
    ITAV = "ITAV"
    FWAV = "FWAV"
    XPCD = "XPCD"
    INFO = "INFO"


def _given(name: str) -> dict[str, Any]:
    return {"required": [name], "properties": {name: {"not": {"type": "null"}}}}


# The rule ``_has_a_balance`` enforces, stated in the JSON Schema (and so in the OpenAPI document).
ONE_BALANCE_AT_LEAST: dict[str, Any] = {"anyOf": [_given("available_usd"), _given("booked_usd")]}


class BalanceEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, title="BalanceEvent", json_schema_extra=ONE_BALANCE_AT_LEAST)

    event_id: EventId = Field(description="Unique per account; a repeat is a duplicate and is ignored")
    account_id: AccountId
    as_of_ts: UtcDatetime = Field(description="When the bank says the balance held (UTC)")
    kind: BalanceKind
    balance_code: BalanceCode | None = Field(default=None, description="ISO 20022 code when known")
    available_usd: BalanceAmount | None = Field(default=None, description="Available balance")
    booked_usd: BalanceAmount | None = Field(default=None, description="Booked (ledger) balance")
    currency: Currency = "USD"
    projected_outflows_24h_usd: NonNegativeAmount | None = Field(
        default=None, description="Forecast outflows over the next 24 h, if the bank sends one"
    )
    trace_id: TraceId | None = None

    @model_validator(mode="after")
    def _has_a_balance(self) -> BalanceEvent:
        if self.available_usd is None and self.booked_usd is None:
            raise ValueError("one of available_usd or booked_usd is required")
        return self
