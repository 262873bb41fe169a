"""Every list route pages (issue 16 item 14): ``limit`` and an opaque cursor on threads,
memories, graph facts and graph history; the pages together hold every item exactly once,
and a cursor the server did not issue is a 422."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from graph.facts import Triple
from mnemograph.services import Services
from tests.servers import new_key, serve


@pytest.fixture(scope="module")
async def base(services: Services) -> AsyncIterator[str]:
    async with serve(services) as url:
        yield url


async def pages(http: httpx.AsyncClient, path: str, key: str | None, limit: int) -> list[Any]:
    """Follow the cursors from the first page to the last; each page's length is checked."""
    got: list[list[Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        res = await http.get(path, params=params)
        assert res.status_code == 200, res.text
        body = res.json()
        items = body["facts"] if key == "facts" else body
        cursor = body["next_cursor"] if key == "facts" else res.headers.get("x-next-cursor")
        got.append(items)
        if cursor is None:
            break
        assert len(items) == limit
        assert len(got) < 50, "the cursors never end"
    return [item for page in got for item in page]


async def test_threads_memories_and_facts_page(base: str, services: Services) -> None:
    user, key = await new_key(services)
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as http:
        tids = {f"page-{n}-{uuid.uuid4().hex[:6]}" for n in range(7)}
        for tid in tids:
            assert (await http.post("/api/threads", json={"thread_id": tid})).status_code == 201
        threads = await pages(http, "/api/threads", None, 3)
        assert [t["thread_id"] for t in threads if t["thread_id"] in tids] == [
            t["thread_id"] for t in threads]  # fmt: skip
        assert sorted(t["thread_id"] for t in threads) == sorted(tids)

        memory = services.memory
        assert memory is not None
        for n in range(5):
            await memory.add(user, f"paging fact number {n} about {uuid.uuid4().hex}", dedup=False)
        memories = await pages(http, "/memories", None, 2)
        assert len(memories) == 5 and len({m["id"] for m in memories}) == 5

        graph = services.graph
        assert graph is not None
        triples = [Triple(subject="I", predicate="likes", object=f"thing{n}") for n in range(6)]
        await graph.upsert_triples(user, triples, thread_id=None, message_id=None, at_ms=1000)
        await graph.upsert_triples(
            user, [Triple(subject="I", predicate="lives in", object="Porto")],
            thread_id=None, message_id=None, at_ms=2000,
        )  # fmt: skip
        await graph.upsert_triples(
            user, [Triple(subject="I", predicate="lives in", object="Lisbon")],
            thread_id=None, message_id=None, at_ms=3000,
        )  # fmt: skip
        current = await pages(http, "/graph", "facts", 3)
        history = await pages(http, "/graph/history", "facts", 3)
        assert len(current) == 7 and len(history) == 8
        assert current == await graph.current_facts(user)
        assert history == await graph.history(user)


async def test_bad_paging_is_a_422(base: str, services: Services) -> None:
    _user, key = await new_key(services)
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as http:
        for path in ("/api/threads", "/memories", "/graph", "/graph/history"):
            for params in ({"limit": 0}, {"limit": 100_000}, {"cursor": "bm90LWEtY3Vyc29y"},
                           {"cursor": "../../etc"}):  # fmt: skip
                res = await http.get(path, params=params)
                assert res.status_code == 422, (path, params, res.text)
                assert "not-a-cursor" not in res.text  # the input is never echoed
