"""The asyncpg pool every component shares the shape of."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TypeAlias

import asyncpg

from storage.migrate import migrate

# Repositories take either, so a caller can run several of them inside one transaction.
Executor: TypeAlias = asyncpg.Connection | asyncpg.Pool


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb in and out as Python objects; decimals inside stay strings, never floats.
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def execute_many(db: Executor, command: str, rows: Sequence[Sequence[object]]) -> None:
    """``executemany``, and nothing at all for no rows: the product's only way to run it.

    asyncpg prepares a statement it has not cached with Parse, Describe and Flush, leaving the Sync
    to the Bind and Execute that follow; with no rows none follow, so the session stays inside the
    implicit transaction the Parse opened, its snapshot taken. The connection's next statement runs
    in it: ``BEGIN ISOLATION LEVEL REPEATABLE READ`` fails ("SET TRANSACTION ISOLATION LEVEL must be
    called before any query"), a plain ``BEGIN`` silently joins it. This is what failed the VaR
    scheduler's history reads after a job with nothing to write (asyncpg 0.32)."""
    if rows:
        await db.executemany(command, rows)


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 4, run_migrations: bool = True) -> asyncpg.Pool:
    """Open a pool (migrating first, so no part ever runs against an old schema)."""
    if run_migrations:
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn)
        finally:
            await conn.close()
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection, command_timeout=30
    )
    assert pool is not None
    return pool
