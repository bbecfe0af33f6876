"""The asyncpg pool every component shares the shape of."""

from __future__ import annotations

import json
from typing import TypeAlias

import asyncpg

from storage.migrate import migrate

# Repositories take either, so a caller can run several of them inside one transaction.
Executor: TypeAlias = asyncpg.Connection | asyncpg.Pool


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb in and out as Python objects; decimals inside stay strings, never floats.
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """A released connection goes back as it is: asyncpg has already rolled back a transaction
    left open, which is the only state this code leaves behind.

    The default reset (``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``) is one more
    round trip on every release, about a third of a shard's Postgres calls: none of what it undoes
    is ever created on a pooled connection (no session ``SET``, advisory lock, ``LISTEN`` or
    ``WITH HOLD`` cursor; temporary tables are ``ON COMMIT DROP``; the migrations' advisory lock is
    taken on a connection of their own). ``tests/unit/test_pooled_sessions.py`` keeps it so."""


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 4, run_migrations: bool = True) -> asyncpg.Pool:
    """Open a pool (migrating first, so no part ever runs against an old schema)."""
    if run_migrations:
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn)
        finally:
            await conn.close()
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection, reset=_keep_session, command_timeout=30
    )
    assert pool is not None
    return pool
