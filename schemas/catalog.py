"""The checked-in JSON Schema files and the models they are generated from.

Each file carries its semantic version in ``$id`` and ``version``: bump the minor version for an
added optional field, the major version for anything a consumer could trip over.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from schemas.balance_event import BalanceEvent
from schemas.cash_position import CashPosition
from schemas.config_update import ConfigUpdate
from schemas.statement_entry import StatementEntry
from schemas.sweep_order import SweepOrder

SCHEMA_DIR = Path(__file__).resolve().parent
DIALECT = "https://json-schema.org/draft/2020-12/schema"


@dataclass(frozen=True)
class Contract:
    name: str
    model: type[BaseModel]
    version: str

    @property
    def path(self) -> Path:
        return SCHEMA_DIR / f"{self.name}.schema.json"

    def schema(self) -> dict[str, Any]:
        body = self.model.model_json_schema(mode="validation")
        return {
            "$schema": DIALECT,
            "$id": f"urn:treasury-orch:schema:{self.name}:{self.version}",
            "version": self.version,
            **body,
        }

    def rendered(self) -> str:
        return json.dumps(self.schema(), indent=2, sort_keys=True) + "\n"


CONTRACTS: tuple[Contract, ...] = (
    # 1.1.0: risk_checks.observed_var_bps may be null (no VaR yet); decision_key, trace_id added
    # 1.2.0: aml_tags, signature and signing_key_version added (Vault Transit signing)
    Contract("sweep_order", SweepOrder, "1.2.0"),
    Contract("balance_event", BalanceEvent, "1.0.0"),
    # 1.1.0: invested_usd added (the investment book, issue 16)
    Contract("cash_position", CashPosition, "1.1.0"),
    Contract("config_update", ConfigUpdate, "1.0.0"),
    Contract("statement_entry", StatementEntry, "1.0.0"),
)

VERSIONS = {c.model.__name__: c.version for c in CONTRACTS}


def write_all() -> list[Path]:
    for contract in CONTRACTS:
        contract.path.write_text(contract.rendered())
    return [c.path for c in CONTRACTS]


def stale() -> list[str]:
    """Names whose checked-in file differs from what the model generates now."""
    return [c.name for c in CONTRACTS if not c.path.exists() or c.path.read_text() != c.rendered()]
