"""Message contracts: pydantic v2 models and the JSON Schema files generated from them."""

from schemas.balance_event import BalanceCode, BalanceEvent, BalanceKind
from schemas.cash_position import CashPosition
from schemas.config_update import ConfigUpdate
from schemas.errors import MessageRejected, decode
from schemas.sweep_order import Product, RiskChecks, SweepOrder

__all__ = [
    "BalanceCode",
    "BalanceEvent",
    "BalanceKind",
    "CashPosition",
    "ConfigUpdate",
    "MessageRejected",
    "Product",
    "RiskChecks",
    "SweepOrder",
    "decode",
]
