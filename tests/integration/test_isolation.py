"""Isolation: 10,000 randomized cross-user probes over every id-taking route and LangServe,
and recall (long-term memory and knowledge graph) never crosses users.

Thread ids are per user, so a probe that names another user's thread id works on a thread of
the prober's own (found, created or run as such): it must never see or change the victim's."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from mnemograph.services import Services
from server import create_app
from tests.fakes import ScriptedChatModel, extraction_replies

PROBES = 10_000
USERS = 3
THREADS_PER_USER = 6


async def memories_and_facts(services: Services, user: str) -> str:
    """Everything long-term memory and the graph hold for ``user``, as one string."""
    assert services.memory is not None and services.graph is not None
    items = [i.to_json() for i in await services.memory.list(user, limit=10_000)]
    facts = await services.graph.history(user)
    return json.dumps({"memories": items, "facts": facts}, default=str)


@dataclass
class Tenant:
    user_id: str
    headers: dict[str, str]
    marker: str
    threads: list[str] = field(default_factory=list)
    memory_ids: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
async def scribe_app(services: Services) -> AsyncIterator[tuple[FastAPI, ScriptedChatModel]]:
    model = ScriptedChatModel()
    application = create_app(dataclasses.replace(services, _chat_model=model))
    async with application.router.lifespan_context(application):
        application.state.limiter.per_min = 0  # probes would trip the per-user limit
        yield application, model


async def _drain(app: FastAPI) -> None:
    drain = getattr(app.state.runner, "drain", None)
    if drain is not None:
        await drain()


def _body(thread: str, text: str) -> dict[str, Any]:
    return {
        "input": {"messages": [{"type": "human", "content": text}]},
        "config": {"configurable": {"thread_id": thread}},
    }


async def test_cross_user_probes_and_recall(
    scribe_app: tuple[FastAPI, ScriptedChatModel],
) -> None:
    app, model = scribe_app
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=120) as client:
        tenants: list[Tenant] = []
        for n in range(USERS):
            user, key = await app.state.users.create(f"iso-{n}-{uuid.uuid4().hex[:6]}")
            marker = f"mk{uuid.uuid4().hex[:10]}"
            tenants.append(Tenant(user.user_id, {"Authorization": f"Bearer {key}"}, marker))
        for t in tenants:
            for i in range(THREADS_PER_USER):
                thread = f"iso-{uuid.uuid4().hex[:10]}-{i}"
                text = f"Zanzibar has code {t.marker} and my secret pet giraffe is {t.marker}"
                model.tool_replies = extraction_replies(
                    memories=[{"type": "fact", "text": f"The secret pet giraffe is {t.marker}",
                               "importance": 0.6}],
                    triples=[{"subject": "Zanzibar", "predicate": "has_code",
                              "object": t.marker}],
                )  # fmt: skip
                res = await client.post("/agent/invoke", json=_body(thread, text),
                                        headers=t.headers)  # fmt: skip
                assert res.status_code == 200, res.text
                await _drain(app)
                t.threads.append(thread)
            res = await client.get("/memories", headers=t.headers)
            t.memory_ids = [m["id"] for m in res.json()]
            assert t.memory_ids and t.marker in res.text
            assert t.marker in (await client.get("/graph", headers=t.headers)).text

        # Recall: B asks about what A stored; nothing of A may reach B's prompt.
        model.tool_replies = extraction_replies()
        for t in tenants:
            model.calls.clear()
            res = await client.post(
                "/agent/invoke",
                json=_body(t.threads[0], "Tell me about Zanzibar and my secret pet giraffe"),
                headers=t.headers,
            )
            assert res.status_code == 200, res.text
            await _drain(app)
            seen = "\n".join(m.text for prompt in model.chats for m in prompt)
            assert t.marker in seen  # recall works for the owner ...
            for other in tenants:
                if other is not t:  # ... and never crosses users
                    assert other.marker not in seen
                    assert other.marker not in res.text

        async def originals(t: Tenant) -> dict[str, Any]:
            docs = [(await client.get(f"/api/threads/{th}", headers=t.headers)).json()
                    for th in t.threads]  # fmt: skip
            return {d["thread_id"]: d["messages"] for d in docs}

        before = {t.user_id: await originals(t) for t in tenants}
        rng = random.Random(7)
        sem = asyncio.Semaphore(8)
        leaks: list[str] = []
        counts: dict[str, int] = {}

        async def probe(i: int) -> None:
            me = rng.choice(tenants)
            victim = rng.choice([t for t in tenants if t is not me])
            thread = rng.choice(victim.threads)
            kind = rng.randrange(13)
            expect: tuple[int, ...] = (200,)  # a thread of the prober's own, by that id
            if kind == 0:
                req = ("GET", f"/threads/{thread}", None)
                expect = (200, 404)  # the prober's own, if an earlier probe made it
            elif kind == 1:
                req = ("DELETE", f"/threads/{thread}", None)
                expect = (204, 404)
            elif kind == 2:
                req = ("POST", "/threads", {"thread_id": thread})
                expect = (200, 409)  # 409: the prober already has one by that id
            elif kind == 3:
                req = ("DELETE", f"/memories/{rng.choice(victim.memory_ids)}", None)
                expect = (404,)
            elif kind in (4, 5, 6):
                endpoint = ("invoke", "stream", "stream_events")[kind - 4]
                req = ("POST", f"/agent/{endpoint}", _body(thread, "show me everything"))
            elif kind == 7:
                req = ("POST", "/agent/batch", {
                    "inputs": [{"messages": [{"type": "human", "content": "x"}]}],
                    "config": {"configurable": {"thread_id": thread}}})  # fmt: skip
            elif kind == 8:
                req = ("GET", f"/memories?query={victim.marker}", None)
                expect = (200,)
            else:
                path = ("/threads", "/graph", "/graph/history", "/me/export")[kind - 9]
                req = ("GET", path, None)
                expect = (200,)
            method, path, body = req
            async with sem:
                res = await client.request(method, path, json=body, headers=me.headers)
            key = f"{method} {path.split('?')[0].rsplit('/', 1)[0] or path}"
            counts[key] = counts.get(key, 0) + 1
            text = res.text
            if res.status_code not in expect or victim.marker in text:
                leaks.append(f"{i}: {method} {path} -> {res.status_code} {text[:200]}")

        t0 = time.perf_counter()
        await asyncio.gather(*(probe(i) for i in range(PROBES)))
        took = time.perf_counter() - t0
        print(f"isolation: {PROBES} probes in {took:.0f} s, {len(leaks)} leaks; {counts}")
        assert not leaks, leaks[:5]

        # Nothing the probes attempted changed a victim's data.
        await _drain(app)
        for t in tenants:
            assert await originals(t) == before[t.user_id]
            res = await client.get("/memories", headers=t.headers)
            assert sorted(m["id"] for m in res.json()) == sorted(t.memory_ids)
