"""Deleting a user is final (issue 16, items 1 and 3), through a real `mnemograph serve` app
under uvicorn on 127.0.0.1 with a slow scripted model:

* a turn still running when the user is deleted, streamed (``/agent/stream``) or invoked,
  writes nothing afterwards: no checkpoint, memory, store item, outbox row or graph node;
* the same when the delete comes from another process (`mnemograph users delete`);
* the deleted user's thread id can be claimed and read by nobody;
* ``DELETE /me`` waits for this user's work only, not for other users' turns.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from langchain_core.messages import BaseMessage, HumanMessage

from mnemograph.services import Services
from server import create_app
from stores.ids import thread_key
from stores.knowledge.arcadedb import EmbeddedGraphServer
from tests.conftest import cli_env
from tests.fakes import ScriptedChatModel, extraction_replies
from tests.integration.test_gdpr import _leftovers
from tests.servers import serve_app

ROOT = Path(__file__).resolve().parents[2]


class SlowModel:
    """A scripted model whose reply to a message holding ``SLOW`` waits for :attr:`go` (the
    turn is in flight meanwhile); every extraction finds a memory and a fact."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.waiting = asyncio.Event()
        marker = uuid.uuid4().hex[:8]
        self.model = ScriptedChatModel(
            replies=self._reply,
            tool_replies=extraction_replies(
                memories=[{"type": "fact", "text": f"The user owns boat {marker}",
                           "importance": 0.7}],
                triples=[{"subject": "I", "predicate": "owns", "object": f"boat {marker}"}],
            ),
        )  # fmt: skip

    def _reply(self, messages: list[BaseMessage]) -> Any:
        last = next((m for m in reversed(messages) if isinstance(m, HumanMessage)), None)
        text = last.text if last is not None else ""

        async def answer() -> str:
            if "SLOW" in text:
                self.waiting.set()
                await asyncio.wait_for(self.go.wait(), 60)
            return f"noted: {text}"

        return answer()


@asynccontextmanager
async def serving(
    services: Services, model: ScriptedChatModel
) -> AsyncIterator[tuple[str, FastAPI]]:
    """The production app, with ``model``, under uvicorn on this loop."""
    app = create_app(dataclasses.replace(services, _chat_model=model))
    async with serve_app(app) as url:
        yield url, app


def body(thread: str, text: str) -> dict[str, Any]:
    return {"input": {"messages": [{"type": "human", "content": text}]},
            "config": {"configurable": {"thread_id": thread}}}  # fmt: skip


async def new_user(services: Services) -> tuple[str, dict[str, str]]:
    user, key = await services.user_registry().create(f"df-{uuid.uuid4().hex[:8]}")
    return user.user_id, {"Authorization": f"Bearer {key}"}


async def streamed(http: httpx.AsyncClient, path: str, payload: Any, headers: Any) -> str:
    """A streamed turn read to its end (or to the server cutting it)."""
    text = ""
    try:
        async with http.stream("POST", path, json=payload, headers=headers) as res:
            async for piece in res.aiter_text():
                text += piece
    except httpx.HTTPError as exc:
        text += f"[{type(exc).__name__}]"
    return text


async def settle(app: FastAPI) -> None:
    """Let anything the turn could still write land (it must not)."""
    await app.state.runner.drain()
    await asyncio.sleep(1.0)
    await app.state.runner.drain()


async def assert_gone_for_good(
    http: httpx.AsyncClient, services: Services, graph: EmbeddedGraphServer,
    user: str, thread: str,
) -> None:  # fmt: skip
    left = await _leftovers(services, graph, user, [thread])
    assert not any(left.values()), left
    # another user using the same thread id gets a new thread, with nothing of what was in it
    _other, headers = await new_user(services)
    res = await http.post("/threads", json={"thread_id": thread}, headers=headers)
    assert res.status_code == 200, res.text
    res = await http.post("/api/threads", json={"thread_id": thread}, headers=headers)
    assert res.status_code == 201, res.text
    res = await http.get(f"/threads/{thread}/state", headers=headers)
    assert res.status_code == 200 and not res.json()["values"].get("messages"), res.text
    res = await http.post("/agent/invoke", json=body(thread, "what was said?"), headers=headers)
    assert res.status_code == 200, res.text
    said = [m["content"] for m in res.json()["output"]["messages"]]
    assert len(said) == 2 and said[0] == "what was said?", said  # nothing of the old thread
    left = await _leftovers(services, graph, user, [thread])
    assert not any(left.values()), left


@pytest.mark.parametrize("path", ["/agent/stream", "/agent/invoke"])
async def test_delete_me_during_a_turn_leaves_nothing(
    services: Services, graph_server: EmbeddedGraphServer, path: str
) -> None:
    slow = SlowModel()
    async with serving(services, slow.model) as (base, app):
        async with httpx.AsyncClient(base_url=base, timeout=120) as http:
            user, headers = await new_user(services)
            thread = f"df-{uuid.uuid4().hex[:10]}"
            turn = asyncio.create_task(
                streamed(http, path, body(thread, "SLOW I own a boat"), headers)
            )
            await asyncio.wait_for(slow.waiting.wait(), 30)
            t0 = time.perf_counter()
            delete = asyncio.create_task(http.delete("/me", headers=headers))
            await asyncio.wait({delete}, timeout=5)
            took = time.perf_counter() - t0
            slow.go.set()  # had the turn not been stopped, it would now write everything
            res = await delete
            assert res.status_code == 200, res.text
            answer = await asyncio.wait_for(turn, 60)
            await settle(app)
            print(f"DELETE /me during a {path} turn: {took * 1000:.0f} ms; turn saw {answer!r}")
            await assert_gone_for_good(http, services, graph_server, user, thread)


async def test_cli_delete_from_another_process_during_a_turn_leaves_nothing(
    services: Services, graph_server: EmbeddedGraphServer, pg_url: str, data_dir: Path
) -> None:
    slow = SlowModel()
    async with serving(services, slow.model) as (base, app):
        async with httpx.AsyncClient(base_url=base, timeout=120) as http:
            user, headers = await new_user(services)
            thread = f"df-{uuid.uuid4().hex[:10]}"
            # a first, finished turn: there is data to delete
            res = await http.post(
                "/agent/invoke", json=body(thread, "I own a boat"), headers=headers
            )
            assert res.status_code == 200, res.text
            await app.state.runner.drain()
            turn = asyncio.create_task(
                streamed(http, "/agent/stream", body(thread, "SLOW and a car"), headers)
            )
            await asyncio.wait_for(slow.waiting.wait(), 30)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "mnemograph.cli", "users", "delete", "--user", user, "--yes",
                env=cli_env(pg_url, data_dir), cwd=ROOT,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            # the CLI waits for the turn it cannot cancel (it runs in this process); let the
            # turn go on once the CLI has tombstoned the user
            deadline = time.monotonic() + 120
            while not await _tombstoned(services, user):
                assert proc.returncode is None and time.monotonic() < deadline
                await asyncio.sleep(0.1)
            slow.go.set()
            _out, err = await asyncio.wait_for(proc.communicate(), 300)
            assert proc.returncode == 0, err.decode()[-2000:]
            await asyncio.wait_for(turn, 60)
            await settle(app)
            await assert_gone_for_good(http, services, graph_server, user, thread)


async def _tombstoned(services: Services, user: str) -> bool:
    async with services.postgres().connection() as conn:
        cur = await conn.execute("SELECT to_regclass('mnemo_deleted_users') IS NOT NULL AS t")
        row = await cur.fetchone()
        if not row or not row["t"]:  # a schema without tombstones: wait for the CLI itself
            cur = await conn.execute(
                "SELECT NOT EXISTS (SELECT 1 FROM mnemo_users WHERE user_id = %s) AS t", (user,)
            )
            row = await cur.fetchone()
            return bool(row and row["t"])
        cur = await conn.execute(
            "SELECT EXISTS (SELECT 1 FROM mnemo_deleted_users WHERE user_id = %s) AS t", (user,)
        )
        row = await cur.fetchone()
    return bool(row and row["t"])


async def test_delete_me_waits_for_this_users_work_only(
    services: Services, graph_server: EmbeddedGraphServer
) -> None:
    """Another user's turn (its memory work still running) does not hold up ``DELETE /me``,
    and it finishes undisturbed."""
    slow = SlowModel()
    async with serving(services, slow.model) as (base, app):
        async with httpx.AsyncClient(base_url=base, timeout=120) as http:
            _other, other_headers = await new_user(services)
            other_thread = f"df-{uuid.uuid4().hex[:10]}"
            busy = asyncio.create_task(
                http.post(
                    "/agent/invoke", json=body(other_thread, "SLOW busy"), headers=other_headers
                )
            )
            await asyncio.wait_for(slow.waiting.wait(), 30)
            user, headers = await new_user(services)
            thread = f"df-{uuid.uuid4().hex[:10]}"
            res = await http.post(
                "/agent/invoke", json=body(thread, "I own a boat"), headers=headers
            )
            assert res.status_code == 200, res.text
            t0 = time.perf_counter()
            try:
                res = await asyncio.wait_for(http.delete("/me", headers=headers), 10)
            finally:
                took = time.perf_counter() - t0
                slow.go.set()
            assert res.status_code == 200, res.text
            print(f"DELETE /me while another user's turn runs: {took * 1000:.0f} ms")
            assert took < 5, took
            res = await asyncio.wait_for(busy, 60)
            assert res.status_code == 200, res.text
            assert res.json()["output"]["messages"][-1]["content"] == "noted: SLOW busy"
            await settle(app)
            await assert_gone_for_good(http, services, graph_server, user, thread)


async def test_late_writes_of_another_process_are_refused_by_the_database(
    services: Services, graph_server: EmbeddedGraphServer
) -> None:
    """What a process that never heard of the delete would still try, straight at the stores,
    after it: every write fails (the database's tombstones), the graph write undoes itself,
    and nothing is left."""
    import psycopg
    from langgraph.checkpoint.base import empty_checkpoint

    from graph.facts import Triple
    from mnemograph.lifecycle import delete_user
    from stores.errors import Gone, NotFound
    from stores.knowledge.outbox import write_or_enqueue

    slow = SlowModel()
    async with serving(services, slow.model) as (base, app):
        async with httpx.AsyncClient(base_url=base, timeout=120) as http:
            user, headers = await new_user(services)
            thread = f"df-{uuid.uuid4().hex[:10]}"
            res = await http.post(
                "/agent/invoke", json=body(thread, "I own a boat"), headers=headers
            )
            assert res.status_code == 200, res.text
            await app.state.runner.drain()
            await delete_user(services, user)  # as the CLI does: no runner of this process
            assert services.memory is not None and services.checkpointer is not None
            with pytest.raises(psycopg.Error, match="was deleted"):
                await services.memory.add(user, "The user owns a late boat")
            config: Any = {"configurable": {"thread_id": thread_key(user, thread),
                                            "checkpoint_ns": ""}}  # fmt: skip
            with pytest.raises(psycopg.Error, match="was deleted"):
                await services.checkpointer.aput(config, empty_checkpoint(), {}, {})
            with pytest.raises(NotFound):
                await services.thread_registry().claim(user, f"df-{uuid.uuid4().hex[:10]}")
            assert services.facts is not None and services.graph is not None
            late = [Triple(subject="I", predicate="owns", object="late boat")]
            with pytest.raises(psycopg.Error, match="was deleted"):
                await write_or_enqueue(None, services.outbox, user, late,
                                       thread_id=thread, message_id="m", at_ms=1)  # fmt: skip
            with pytest.raises(Gone):
                await write_or_enqueue(services.graph, services.outbox, user, late,
                                       thread_id=thread, message_id="m", at_ms=1)  # fmt: skip
            await assert_gone_for_good(http, services, graph_server, user, thread)
