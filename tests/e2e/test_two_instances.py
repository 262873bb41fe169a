"""Two ``mnemograph serve`` processes, as two hosts would run them: separate data dirs, one
PostgreSQL and one graph server (issue 16 item 17). Turns on the same threads alternate
between them under load; the checkpoint chain never forks and no acknowledged turn is lost;
a memory written through one is found through the other; a user deleted through one is gone
from the other at once."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx

from mnemograph.services import Services
from stores.knowledge.arcadedb import EmbeddedGraphServer
from tests.conftest import cli_env
from tests.servers import serve_process

THREADS, TURNS = 4, 8


def turn(thread_id: str, text: str) -> dict[str, Any]:
    return {"input": {"messages": [{"type": "human", "content": text}]},
            "config": {"configurable": {"thread_id": thread_id}}}  # fmt: skip


async def forks(services: Services, thread_id: str) -> int:
    """Checkpoints of the thread that share a parent: a forked chain."""
    async with services.postgres().connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM (SELECT parent_checkpoint_id FROM checkpoints "
            "WHERE thread_id = %s AND checkpoint_ns = '' AND parent_checkpoint_id IS NOT NULL "
            "GROUP BY parent_checkpoint_id HAVING count(*) > 1) AS f",
            (thread_id,),
        )
        row = await cur.fetchone()
    return int(row["n"]) if row else 0


async def test_two_instances_one_database(
    services: Services, pg_url: str, graph_server: EmbeddedGraphServer, tmp_path: Path
) -> None:
    graph = {"NEO4J_URI": graph_server.uri, "NEO4J_USER": graph_server.user,
             "NEO4J_PASSWORD": graph_server.password,
             "MNEMOGRAPH_NEO4J_DATABASE": graph_server.database}  # fmt: skip
    env_a = cli_env(pg_url, tmp_path / "a", **graph)
    env_b = cli_env(pg_url, tmp_path / "b", **graph)
    account, key = await services.user_registry().create(f"two-{uuid.uuid4().hex[:6]}")
    user = account.user_id
    headers = {"Authorization": f"Bearer {key}"}
    async with (
        serve_process(env_a, tmp_path / "a.log") as a,
        serve_process(env_b, tmp_path / "b.log") as b,
        httpx.AsyncClient(timeout=120, headers=headers) as http,
    ):
        tids = [f"two-{n}-{uuid.uuid4().hex[:6]}" for n in range(THREADS)]

        async def one_thread(tid: str) -> None:
            # Two turns of the thread in flight at once, one on each instance.
            for t in range(0, TURNS, 2):
                first, second = await asyncio.gather(
                    http.post(f"{a}/agent/invoke", json=turn(tid, f"{tid} turn {t}")),
                    http.post(f"{b}/agent/invoke", json=turn(tid, f"{tid} turn {t + 1}")),
                )
                assert first.status_code == 200, first.text
                assert second.status_code == 200, second.text

        await asyncio.gather(*(one_thread(tid) for tid in tids))
        for n, tid in enumerate(tids):
            reader = a if n % 2 else b
            res = await http.get(f"{reader}/api/threads/{tid}")
            messages = [m["content"] for m in res.json()["messages"]]
            assert len(messages) == 2 * TURNS, messages
            for t in range(TURNS):  # every acknowledged turn, once, followed by its reply
                at = messages.index(f"{tid} turn {t}")
                assert messages[at + 1] == f"echo: {tid} turn {t}"
            assert await forks(services, tid) == 0

        # A memory written through one instance is found through the other, whose caches
        # were warmed by a search before the write.
        query = {"query": "favourite heron colour", "k": 5}
        assert (await http.get(f"{b}/memories", params=query)).status_code == 200
        put = await http.put(f"{a}/store/items", json={
            "namespace": [user, "memories"], "key": "heron",
            "value": {"text": "My favourite heron colour is slate grey"}})  # fmt: skip
        assert put.status_code == 204, put.text
        found = (await http.get(f"{b}/memories", params=query)).json()
        assert any("slate grey" in m["text"] for m in found), found

        # Deleted through one instance: gone from the other at once.
        assert (await http.delete(f"{a}/me")).status_code == 200
        for url in (a, b):
            assert (await http.get(f"{url}/memories")).status_code == 401
            assert (await http.get(f"{url}/api/threads/{tids[0]}")).status_code == 401
    assert await services.memory.list(user) == []  # type: ignore[union-attr]
    assert await services.graph.history(user) == []  # type: ignore[union-attr]
    async with services.postgres().connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM checkpoints WHERE thread_id = ANY(%s)", (tids,)
        )
        assert (await cur.fetchone())["n"] == 0  # type: ignore[index]
