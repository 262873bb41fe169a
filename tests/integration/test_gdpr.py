"""GDPR: export returns everything, then `DELETE /me` and `mnemograph users delete` leave zero
rows in every table that can hold a user's data, and zero graph nodes and relations."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from neo4j import AsyncGraphDatabase

from mnemograph.services import Services
from server import create_app
from stores.ids import thread_key
from stores.knowledge.arcadedb import EmbeddedGraphServer
from tests.conftest import cli_env
from tests.fakes import ScriptedChatModel, extraction_replies

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
async def gdpr_app(services: Services) -> AsyncIterator[tuple[FastAPI, ScriptedChatModel]]:
    model = ScriptedChatModel()
    application = create_app(dataclasses.replace(services, _chat_model=model))
    async with application.router.lifespan_context(application):
        yield application, model


async def _populate(
    app: FastAPI, model: ScriptedChatModel, name: str
) -> tuple[str, str, list[str]]:
    """A user with two threads, memories, graph facts and a pending outbox row."""
    user, key = await app.state.users.create(name)
    headers = {"Authorization": f"Bearer {key}"}
    marker = f"gd{uuid.uuid4().hex[:8]}"
    threads = [f"g-{uuid.uuid4().hex[:10]}" for _ in range(2)]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=120) as client:
        for i, thread in enumerate(threads):
            model.tool_replies = extraction_replies(
                memories=[{"type": "fact", "text": f"The user owns boat {marker}{i}",
                           "importance": 0.6}],
                triples=[{"subject": "I", "predicate": "owns", "object": f"{marker}{i}"}],
            )  # fmt: skip
            body = {"input": {"messages": [{"type": "human",
                                            "content": f"I own boat {marker}{i}, Miami"}]},
                    "config": {"configurable": {"thread_id": thread, "strategy": "summary",
                                                "summary_trigger_tokens": 20}}}  # fmt: skip
            for _ in range(2):
                res = await client.post("/agent/invoke", json=body, headers=headers)
                assert res.status_code == 200, res.text
            drain = getattr(app.state.runner, "drain", None)
            if drain is not None:
                await drain()
    services: Services = app.state.services
    assert services.outbox is not None
    await services.outbox.enqueue(
        user.user_id, [{"subject": "I", "predicate": "likes", "object": "sailing"}],
        thread_id=threads[0], message_id="m-1", at_ms=int(time.time() * 1000),
    )  # fmt: skip
    return user.user_id, key, threads


async def _leftovers(services: Services, graph: EmbeddedGraphServer, user: str,
                     threads: list[str]) -> dict[str, int]:  # fmt: skip
    """Rows per table (every table with a user_id, thread_id or prefix column) and graph
    nodes/relations still tied to ``user`` or its threads (by id or by storage key)."""
    assert services.pool is not None
    threads = [*threads, *(thread_key(user, t) for t in threads)]
    left: dict[str, int] = {}
    async with services.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() "
            "AND column_name IN ('user_id', 'thread_id', 'prefix')"
        )
        columns = await cur.fetchall()
        assert {"checkpoints", "checkpoint_blobs", "checkpoint_writes", "store",
                "mnemo_threads", "mnemo_users", "mnemo_api_keys", "mnemo_memory_index",
                "mnemo_graph_outbox"} <= {c["table_name"] for c in columns}  # fmt: skip
        for c in columns:
            table, column = c["table_name"], c["column_name"]
            if table.startswith("mnemo_deleted_"):
                continue  # the tombstones: ids kept so nothing can be written for them again
            if column == "user_id":
                where, args = f"{column} = %s", [user]
            elif column == "thread_id":
                where, args = f"{column} = ANY(%s)", [threads]
            else:
                where, args = f"({column} = %s OR {column} LIKE %s)", [user, user + ".%"]
            cur = await conn.execute(f"SELECT count(*) AS n FROM {table} WHERE {where}", args)
            row = await cur.fetchone()
            left[f"{table}.{column}"] = int(row["n"]) if row else 0
    driver = AsyncGraphDatabase.driver(graph.uri, auth=(graph.user, graph.password))
    try:
        async with driver.session(database=graph.database) as session:
            res = await session.run("MATCH (n) WHERE n.user_id = $u RETURN count(n) AS n", u=user)
            left["graph.nodes"] = (await res.single() or {"n": 0})["n"]
            res = await session.run(
                "MATCH (a)-[r]->(b) WHERE a.user_id = $u OR b.user_id = $u "
                "OR r.source_thread IN $t RETURN count(r) AS n", u=user, t=threads,
            )  # fmt: skip
            left["graph.relations"] = (await res.single() or {"n": 0})["n"]
    finally:
        await driver.close()
    return left


async def test_export_then_delete_me(
    gdpr_app: tuple[FastAPI, ScriptedChatModel], graph_server: EmbeddedGraphServer
) -> None:
    app, model = gdpr_app
    user, key, threads = await _populate(app, model, f"gdpr-{uuid.uuid4().hex[:6]}")
    services: Services = app.state.services
    before = await _leftovers(services, graph_server, user, threads)
    for table in ("checkpoints.thread_id", "checkpoint_blobs.thread_id", "store.prefix",
                  "checkpoint_writes.thread_id", "mnemo_memory_index.user_id",
                  "mnemo_graph_outbox.user_id", "mnemo_threads.user_id",
                  "mnemo_api_keys.user_id", "graph.nodes", "graph.relations"):  # fmt: skip
        assert before[table] > 0, (table, before)

    headers = {"Authorization": f"Bearer {key}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=120) as client:
        doc = (await client.get("/me/export", headers=headers)).json()
        assert sorted(t["thread_id"] for t in doc["threads"]) == sorted(threads)
        assert all(t["messages"] for t in doc["threads"])
        assert all(t["summary"] for t in doc["threads"])
        assert doc["memories"]  # near-identical items may merge (dedup)
        assert doc["graph"]["relations"] or doc["graph"]["entities"]
        assert doc["graph_outbox"] >= 1
        res = await client.delete("/me", headers=headers)
        assert res.status_code == 200, res.text
        print("DELETE /me:", res.json())
        assert (await client.get("/threads", headers=headers)).status_code == 401
    left = await _leftovers(services, graph_server, user, threads)
    print("rows left after DELETE /me:", left)
    assert not any(left.values()), left


async def test_cli_users_delete(
    gdpr_app: tuple[FastAPI, ScriptedChatModel], graph_server: EmbeddedGraphServer,
    pg_url: str, data_dir: Path,
) -> None:  # fmt: skip
    app, model = gdpr_app
    name = f"gdprcli-{uuid.uuid4().hex[:6]}"
    user, _key, threads = await _populate(app, model, name)
    services: Services = app.state.services
    res: Any = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "mnemograph.cli", "users", "export", "--user", name],
        env=cli_env(pg_url, data_dir), cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert all(t in res.stdout for t in threads)
    res = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "mnemograph.cli", "users", "delete", "--user", name, "--yes"],
        env=cli_env(pg_url, data_dir), cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    left = await _leftovers(services, graph_server, user, threads)
    print("rows left after users delete:", left)
    assert not any(left.values()), left
