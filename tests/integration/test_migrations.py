"""The schema version gate: the first start creates every table, a start on a current schema
runs no DDL at all (counted by an event trigger), and everything still works."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
from langchain_core.messages import HumanMessage
from psycopg.conninfo import make_conninfo

from graph.builder import build_graph
from graph.context import Context
from stores.migrations import SCHEMA_VERSION
from stores.services import open_services
from stores.settings import Settings

COUNT_DDL = """
CREATE TABLE ddl_seen (tag text NOT NULL);
CREATE FUNCTION count_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO ddl_seen (tag) VALUES (tg_tag); END $$;
CREATE EVENT TRIGGER count_ddl ON ddl_command_start EXECUTE FUNCTION count_ddl();
"""


def _seen(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM ddl_seen").fetchone()
    return int(row[0]) if row else 0


async def test_a_start_on_a_current_schema_runs_no_ddl(pg_url: str, data_dir: Path) -> None:
    name = f"mig_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = make_conninfo(pg_url, dbname=name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(COUNT_DDL)
    settings = Settings(data_dir=data_dir, database_url=url, model="fake")  # type: ignore[arg-type]

    async with open_services(settings, with_graph=False, with_memory=False):
        pass  # a host that uses no memory still creates the whole schema
    first = _seen(url)
    assert first >= 30  # tables, indexes, triggers, functions, the extension

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
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT max(version) FROM mnemo_migrations").fetchone()
        assert row is not None and row[0] == SCHEMA_VERSION
        outbox = conn.execute("SELECT to_regclass('mnemo_graph_outbox')").fetchone()
        assert outbox is not None and outbox[0] is not None

    # `migrate` (or a version behind) runs the setup steps again, idempotently.
    async with open_services(settings, with_graph=False, migrate=True):
        pass
    assert _seen(url) > first
