"""``/stats`` shows the caller's own figures only (issue 16 item 10): their threads,
memories, current graph facts and queued graph writes, and nothing drawn from other users'
traffic (server-wide figures are on ``/metrics``)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from mnemograph.services import Services
from server import create_app
from stores.models.fake_llm import EchoChatModel


@pytest.fixture(scope="module")
async def app(services: Services) -> AsyncIterator[FastAPI]:
    services.set_chat_model(EchoChatModel())
    application = create_app(services)
    async with application.router.lifespan_context(application):
        yield application


async def caller(app: FastAPI) -> tuple[str, dict[str, str]]:
    user, key = await app.state.users.create(f"st-{uuid.uuid4().hex[:8]}")
    return user.user_id, {"Authorization": f"Bearer {key}"}


async def test_stats_shows_the_callers_own_figures_only(app: FastAPI, services: Services) -> None:
    assert services.memory is not None and services.graph is not None
    alice, alice_headers = await caller(app)
    _bob, bob_headers = await caller(app)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=60) as http:
        for _ in range(2):
            thread = f"st-{uuid.uuid4().hex[:8]}"
            body = {"input": {"messages": [{"type": "human", "content": "hello"}]},
                    "config": {"configurable": {"thread_id": thread}}}  # fmt: skip
            res = await http.post("/agent/invoke", json=body, headers=alice_headers)
            assert res.status_code == 200, res.text
        await app.state.runner.drain()
        await services.memory.add(alice, "User's favourite tea is sencha")
        await services.graph.upsert_triples(
            alice, [{"subject": "I", "predicate": "likes", "object": "sencha"}],
            thread_id=None, message_id=None, at_ms=int(time.time() * 1000),
        )  # fmt: skip
        mine = (await http.get("/stats", headers=alice_headers)).json()
        theirs = (await http.get("/stats", headers=bob_headers)).json()
    # bob sees his own (empty) figures and nothing of alice's traffic
    assert theirs == {"user": {"threads": 0, "memories": 0, "facts": 0, "graph_outbox": 0}}
    assert mine == {"user": {
        "threads": 2, "memories": await services.memory.count(alice),
        "facts": await services.graph.count_facts(alice), "graph_outbox": 0,
    }}  # fmt: skip
    assert mine["user"]["memories"] >= 1 and mine["user"]["facts"] >= 1
