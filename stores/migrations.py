"""The schema version gate: a start whose schema is current runs no DDL.

Every table, index, trigger and extension Mnemograph keeps in PostgreSQL is created by the
stores' ``setup`` steps (LangGraph's saver and store run their own migration lists inside
theirs). Running them on every process start cost ~40 statements per CLI call, some taking
ACCESS EXCLUSIVE locks on hot tables. Now ``open_services`` reads the version recorded in
``mnemo_migrations`` first (a plain SELECT) and runs the setup steps only when it is behind,
under the setup advisory lock, recording :data:`SCHEMA_VERSION` afterwards.

Bump :data:`SCHEMA_VERSION` with every change to any store's DDL; ``mnemograph migrate``
brings a database up to date explicitly.
"""

from __future__ import annotations

from typing import Any

from psycopg_pool import AsyncConnectionPool

SCHEMA_VERSION = 1
"""The schema this code expects; raise it whenever any store's DDL changes."""

TABLE = "mnemo_migrations"


async def current_version(pool: AsyncConnectionPool[Any]) -> int | None:
    """The newest version recorded in this database, ``None`` before the first setup."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT to_regclass(%s) IS NOT NULL AS present", (TABLE,))
        row = await cur.fetchone()
        if row is None or not row["present"]:
            return None
        cur = await conn.execute(f"SELECT max(version) AS version FROM {TABLE}")
        row = await cur.fetchone()
    return None if row is None or row["version"] is None else int(row["version"])


async def record_version(pool: AsyncConnectionPool[Any], version: int = SCHEMA_VERSION) -> None:
    """Record that the setup steps of ``version`` have run."""
    async with pool.connection() as conn:
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} ("
            " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        await conn.execute(
            f"INSERT INTO {TABLE} (version) VALUES (%s) ON CONFLICT DO NOTHING", (version,)
        )
