"""The migration list: a fresh database gets the whole schema, a current one runs no DDL at all
(counted by an event trigger), a database the version gate recorded at version 1 runs
nothing, a migration appended later runs alone and once, and a host's start on a current
schema runs no DDL and still works."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest
from langchain_core.messages import HumanMessage
from psycopg.conninfo import make_conninfo

from graph.builder import build_graph
from graph.context import Context
from mnemograph.services import open_services
from stores.memory.store import MemoryStore
from stores.postgres.migrations import (
    MIGRATIONS,
    SCHEMA_VERSION,
    TABLE,
    Step,
    Target,
    current_version,
    migrate,
    run_steps,
)
from stores.postgres.savers import open_pool
from stores.settings import Settings

COUNT_DDL = """
CREATE TABLE ddl_seen (tag text NOT NULL);
CREATE FUNCTION count_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO ddl_seen (tag) VALUES (tg_tag); END $$;
CREATE EVENT TRIGGER count_ddl ON ddl_command_start EXECUTE FUNCTION count_ddl();
"""

MNEMO_TABLES = (
    "mnemo_memory_index",
    "mnemo_memory_stats",
    "mnemo_memory_postings",
    "mnemo_threads",
    "mnemo_users",
    "mnemo_api_keys",
    "mnemo_graph_outbox",
    TABLE,
)
VECTOR_TABLES = ("mnemo_memory_vectors", "mnemo_memory_vector_state")
DIMS = 384


def _fresh_database(pg_url: str) -> str:
    """A new, empty database on the embedded server that counts every DDL command."""
    name = f"mig_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = make_conninfo(pg_url, dbname=name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(COUNT_DDL)
    return url


def _seen(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM ddl_seen").fetchone()
    return int(row[0]) if row else 0


def _present(url: str, names: Sequence[str]) -> dict[str, bool]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {
            n: bool(conn.execute("SELECT to_regclass(%s) IS NOT NULL", (n,)).fetchone()[0])  # type: ignore[index]
            for n in names
        }


def _recorded(url: str) -> list[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        return [int(r[0]) for r in conn.execute(f"SELECT version FROM {TABLE} ORDER BY version")]


async def test_a_fresh_database_gets_everything_then_nothing(pg_url: str) -> None:
    url = _fresh_database(pg_url)
    pool = await open_pool(url, max_size=2)
    try:
        assert await current_version(pool) is None
        assert await migrate(pool, dims=DIMS, pgvector=True) == list(range(1, SCHEMA_VERSION + 1))
        first = _seen(url)
        assert first >= 30  # tables, indexes, triggers, functions, the extension
        assert all(_present(url, [*MNEMO_TABLES, *VECTOR_TABLES, "store"]).values())
        assert _recorded(url) == list(range(1, SCHEMA_VERSION + 1))
        assert await current_version(pool) == SCHEMA_VERSION

        assert await migrate(pool, dims=DIMS, pgvector=True) == []
        assert _seen(url) == first  # a current schema: one SELECT, no DDL

        memory = MemoryStore(pool, None, dims=DIMS)
        await memory.setup()
        await memory.add("mig-user", "The user's cat is called Miso")
        hits = await memory.search("mig-user", "cat name")
        assert hits and "Miso" in hits[0].item.text
        assert _seen(url) == first
    finally:
        await pool.close()


async def test_without_pgvector_there_is_no_vector_table(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = _fresh_database(pg_url)
    pool = await open_pool(url, max_size=2)
    try:
        assert await migrate(pool, dims=DIMS, pgvector=False) == list(
            range(1, SCHEMA_VERSION + 1)
        )
        assert all(_present(url, MNEMO_TABLES).values())
        assert not any(_present(url, VECTOR_TABLES).values())
        memory = MemoryStore(pool, None, dims=DIMS)
        with caplog.at_level(logging.WARNING, logger="stores.memory.store"):
            await memory.setup()
        assert memory.vector_enabled is False
        assert any("full-text" in r.getMessage() for r in caplog.records)
    finally:
        await pool.close()


async def test_the_memory_store_refuses_an_unmigrated_database(pg_url: str) -> None:
    url = _fresh_database(pg_url)
    pool = await open_pool(url, max_size=2)
    try:
        with pytest.raises(RuntimeError, match="migrat"):
            await MemoryStore(pool, None).setup()
        assert _seen(url) == 0
    finally:
        await pool.close()


async def test_a_database_at_version_1_runs_nothing(pg_url: str) -> None:
    """What the version gate (before the migration list) left behind: its setup steps, which
    are migration 1's, and version 1 recorded in a table of the same shape."""
    url = _fresh_database(pg_url)
    pool = await open_pool(url, max_size=2)
    try:
        from langgraph.store.postgres.aio import AsyncPostgresStore

        await AsyncPostgresStore(conn=pool).setup()
        async with pool.connection() as conn:
            await run_steps(conn, MIGRATIONS[0](Target(dims=DIMS, pgvector=True)))
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} ("
                " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            await conn.execute(f"INSERT INTO {TABLE} (version) VALUES (1)")
        before = _seen(url)
        applied = await migrate(pool, dims=DIMS, pgvector=True)
        assert applied == list(range(2, SCHEMA_VERSION + 1))
        if SCHEMA_VERSION == 1:
            assert _seen(url) == before
    finally:
        await pool.close()


async def test_an_appended_migration_runs_once_and_a_failed_one_not_at_all(pg_url: str) -> None:
    url = _fresh_database(pg_url)
    pool = await open_pool(url, max_size=2)
    looked: list[Target] = []

    def v_next(target: Target) -> list[Step]:
        looked.append(target)

        async def fill(conn: Any) -> None:
            await conn.execute("INSERT INTO mnemo_extra (note) VALUES ('added')")

        return ["CREATE TABLE mnemo_extra (note text NOT NULL)", fill]

    def v_broken(target: Target) -> list[Step]:
        return ["CREATE TABLE mnemo_half (x int)", "SELECT no_such_function()"]

    try:
        await migrate(pool, dims=DIMS, pgvector=False)
        before = _seen(url)
        longer = (*MIGRATIONS, v_next)
        assert await migrate(pool, dims=DIMS, pgvector=False, migrations=longer) == [
            SCHEMA_VERSION + 1
        ]
        assert _seen(url) == before + 1 and looked == [Target(dims=DIMS, pgvector=False)]
        assert await migrate(pool, dims=DIMS, pgvector=False, migrations=longer) == []
        assert _recorded(url)[-1] == SCHEMA_VERSION + 1

        with pytest.raises(psycopg.Error):
            await migrate(pool, dims=DIMS, pgvector=False, migrations=(*longer, v_broken))
        assert _recorded(url)[-1] == SCHEMA_VERSION + 1  # the failed version is not recorded
        assert _present(url, ["mnemo_half"]) == {"mnemo_half": False}  # and left nothing
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT note FROM mnemo_extra").fetchall() == [("added",)]
    finally:
        await pool.close()


async def test_a_start_on_a_current_schema_runs_no_ddl(pg_url: str, data_dir: Path) -> None:
    url = _fresh_database(pg_url)
    settings = Settings(data_dir=data_dir, database_url=url, model="fake")  # type: ignore[arg-type]

    async with open_services(settings, with_graph=False, with_memory=False):
        pass  # a host that uses no memory still creates the whole schema
    first = _seen(url)
    assert first >= 30
    assert all(_present(url, [*MNEMO_TABLES, *VECTOR_TABLES]).values())

    async with open_services(settings, with_graph=False) as services:
        assert _seen(url) == first  # nothing: the version says the schema is current
        assert services.memory is not None and services.threads is not None
        await services.threads.claim("mig-user", "mig-thread")
        await services.memory.add("mig-user", "The user's cat is called Miso", kind="fact")
        hits = await services.memory.search("mig-user", "cat name")
        assert hits and "Miso" in hits[0].item.text
        graph = build_graph(services.checkpointer, services.store)
        ctx = Context(user_id="mig-user", services=services)
        out = await graph.ainvoke(
            {"messages": [HumanMessage(content="hello")]},
            {"configurable": {"thread_id": "mig-thread"}},
            context=ctx,
        )
        assert out["messages"][-1].text == "echo: hello"
    assert _seen(url) == first
    assert _recorded(url) == list(range(1, SCHEMA_VERSION + 1))

    # `mnemograph migrate` on a current schema: nothing of Mnemograph's is pending.
    async with open_services(settings, with_graph=False, migrate=True):
        pass
    assert _recorded(url) == list(range(1, SCHEMA_VERSION + 1))
