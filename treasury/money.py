"""Money is ``decimal.Decimal`` everywhere; floats are for risk measures only.

Orders are quantized to 4 places and always rounded *down*: rounding up could sweep a
fraction of a cent more than the account holds.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal, InvalidOperation

CENT_4DP = Decimal("0.0001")
ZERO = Decimal("0")
# Above this no single account balance or order is plausible; it guards against unit errors
# (cents sent as dollars, an extra 10**6) and stays well inside numeric(20,4).
MAX_ABS_USD = Decimal("1000000000000000")  # 10**15


def to_decimal(value: object, field: str = "amount") -> Decimal:
    """Parse ``value`` as an exact Decimal; refuses floats' binary noise by going through ``str``."""
    if isinstance(value, bool):
        raise ValueError(f"{field}: expected a decimal amount, got a boolean")
    try:
        result = Decimal(str(value).strip().replace("_", ""))
    except (InvalidOperation, ValueError) as exc:
        raise ValueError(f"{field}: {value!r} is not a decimal amount") from exc
    if not result.is_finite():
        raise ValueError(f"{field}: {value!r} is not a finite amount")
    return result


def quantize_down(amount: Decimal) -> Decimal:
    """4 decimal places, rounded toward zero, so a sweep never exceeds what is there."""
    return amount.quantize(CENT_4DP, rounding=ROUND_DOWN)


def fmt(amount: Decimal) -> str:
    """A 4-dp decimal string, the wire form of every amount this service emits."""
    return str(quantize_down(amount))
