"""Field types shared by the contracts, so every message agrees on ids, money and time."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, Field, PlainSerializer

from treasury.clock import as_utc, iso_z
from treasury.money import MAX_ABS_USD

# Finastra DDA numbers, IBANs (<= 34) and other bank account ids; no spaces or control chars.
AccountId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")]
EventId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")]
TraceId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$")]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]

UtcDatetime = Annotated[
    AwareDatetime,
    AfterValidator(as_utc),
    PlainSerializer(iso_z, return_type=str, when_used="json"),
]

# A signed balance as a bank reports it: overdrafts are negative; more than 4 decimals are
# kept (camt files carry five) and only orders are quantized.
BalanceAmount = Annotated[
    Decimal, Field(ge=-MAX_ABS_USD, le=MAX_ABS_USD, max_digits=24, decimal_places=6, allow_inf_nan=False)
]
NonNegativeAmount = Annotated[
    Decimal, Field(ge=0, le=MAX_ABS_USD, max_digits=24, decimal_places=6, allow_inf_nan=False)
]
# decimal(20,4) as spec 3.1: strictly positive, never more than 4 places.
OrderAmount = Annotated[
    Decimal, Field(gt=0, le=MAX_ABS_USD, max_digits=20, decimal_places=4, allow_inf_nan=False)
]
Bps = Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False)]

