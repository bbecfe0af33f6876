"""Accounts the orchestrator may sweep; an event for any other account is refused."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg

from storage.db import Executor, execute_many


@dataclass(frozen=True)
class Account:
    account_id: str
    esg_pref: bool = False
    min_balance_usd: Decimal = Decimal("0")
    aml_tags: dict[str, Any] = field(default_factory=dict)


def _from_row(row: asyncpg.Record) -> Account:
    return Account(row["account_id"], row["esg_pref"], row["min_balance_usd"], dict(row["aml_tags"]))


async def upsert(db: Executor, accounts: Iterable[Account]) -> None:
    rows = [(a.account_id, a.esg_pref, a.min_balance_usd, a.aml_tags) for a in accounts]
    await execute_many(
        db,
        "INSERT INTO account (account_id, esg_pref, min_balance_usd, aml_tags) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (account_id) DO UPDATE SET esg_pref = EXCLUDED.esg_pref,"
        " min_balance_usd = EXCLUDED.min_balance_usd, aml_tags = EXCLUDED.aml_tags",
        rows,
    )


async def get_many(db: Executor, account_ids: Sequence[str]) -> dict[str, Account]:
    rows = await db.fetch("SELECT * FROM account WHERE account_id = ANY($1::varchar[])", list(account_ids))
    return {row["account_id"]: _from_row(row) for row in rows}


async def list_all(db: Executor) -> list[Account]:
    return [_from_row(row) for row in await db.fetch("SELECT * FROM account ORDER BY account_id")]
