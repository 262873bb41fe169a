"""``GET /metrics`` (issue 16 item 13): Prometheus' text format from an app-scoped registry,
open to scrapers, with server-wide figures only: request latency per route template, turns by
door and outcome, node latency, 429s by limit, outbox depth and age, vector-cache lookups.
Every run's metadata carries the user id and thread id (what traces are filtered by)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import httpx
import prometheus_client
import pytest
from fastapi import FastAPI
from langchain_core.callbacks import AsyncCallbackHandler
from prometheus_client.parser import text_string_to_metric_families

from mnemograph.runner import TurnRunner
from mnemograph.services import Services
from server import create_app
from stores.memory.model import MemoryConfig, NewMemory
from stores.memory.store import MemoryStore
from tests.servers import serve_app


@asynccontextmanager
async def serving(services: Services) -> AsyncIterator[tuple[str, FastAPI]]:
    """The production app under uvicorn on this loop, and the app (for its state); the
    per-user limit stays on (its 429s are counted)."""
    app = create_app(services)
    async with serve_app(app, per_user_limit=True) as url:
        yield url, app


@pytest.fixture(scope="module")
async def served(services: Services) -> AsyncIterator[tuple[str, FastAPI]]:
    async with serving(services) as pair:
        yield pair


async def new_key(services: Services) -> tuple[str, str]:
    user, key = await services.user_registry().create(f"mx-{uuid.uuid4().hex[:8]}")
    return user.user_id, key


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of the exposition by (name, labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    """The sample's value, 0 if absent."""
    return found.get((name, frozenset(labels.items())), 0.0)


def total(found: Samples, name: str, **labels: str) -> float:
    """The sum over every sample of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in found.items() if n == name and want <= ls)


async def scrape(http: httpx.AsyncClient, base: str) -> tuple[str, Samples]:
    res = await http.get(f"{base}/metrics")  # no key: scrapers have none
    assert res.status_code == 200, res.text
    assert res.headers["content-type"].startswith("text/plain"), res.headers
    return res.text, samples(res.text)


async def test_a_turn_moves_the_turn_counter_node_and_request_histograms(
    served: tuple[str, FastAPI], services: Services
) -> None:
    base, app = served
    user_id, key = await new_key(services)
    headers = {"Authorization": f"Bearer {key}"}
    thread = f"mx-{uuid.uuid4().hex[:10]}"
    async with httpx.AsyncClient(timeout=60) as http:
        _, before = await scrape(http, base)
        body = {"model": "mnemograph", "messages": [{"role": "user", "content": "hi"}]}
        res = await http.post(
            f"{base}/v1/chat/completions", json=body, headers={**headers, "X-Thread-Id": thread}
        )
        assert res.status_code == 200, res.text
        agent = {"input": {"messages": [{"type": "human", "content": "hello"}]},
                 "config": {"configurable": {"thread_id": thread + "b"}}}  # fmt: skip
        res = await http.post(f"{base}/agent/invoke", json=agent, headers=headers)
        assert res.status_code == 200, res.text
        res = await http.get(f"{base}/api/threads/{thread}", headers=headers)
        assert res.status_code == 200, res.text
        await app.state.runner.drain()  # post-reply nodes finish in the background
        text, after = await scrape(http, base)

    for door in ("openai", "langserve"):
        turns = value(after, "mnemograph_turns_total", door=door, outcome="ok")
        assert turns == value(before, "mnemograph_turns_total", door=door, outcome="ok") + 1
    for node in ("load_memory", "call_model", "write_memory", "summarize"):
        seen = value(after, "mnemograph_node_duration_seconds_count", node=node)
        assert seen >= value(before, "mnemograph_node_duration_seconds_count", node=node) + 2
        assert value(after, "mnemograph_node_duration_seconds_sum", node=node) > 0
    requests = "mnemograph_http_request_duration_seconds_count"
    for method, route in [("POST", "/v1/chat/completions"), ("POST", "/agent/invoke"),
                          ("GET", "/api/threads/{thread_id}"), ("GET", "/metrics")]:  # fmt: skip
        assert value(after, requests, method=method, route=route, status="2xx") >= 1, route
    # Server-wide figures only: no user id, thread id or key anywhere in the exposition.
    for secret in (user_id, thread, key):
        assert secret not in text
    routes = {dict(labels)["route"] for (name, labels) in after if name == requests}
    assert all(r in ("gate", "unmatched") or r.startswith("/") for r in routes), routes
    assert not any(thread in r for r in routes)


async def test_requests_over_a_users_rate_are_counted(
    served: tuple[str, FastAPI], services: Services
) -> None:
    base, app = served
    limiter = app.state.limiter
    kept, limiter.per_min = limiter.per_min, 3
    _user, key = await new_key(services)
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            _, before = await scrape(http, base)
            headers = {"Authorization": f"Bearer {key}"}
            codes = [(await http.get(f"{base}/api/threads", headers=headers)).status_code
                     for _ in range(6)]  # fmt: skip
            _, after = await scrape(http, base)
    finally:
        limiter.per_min = kept
    assert codes == [200] * 3 + [429] * 3, codes
    limited = "mnemograph_rate_limited_total"
    assert value(after, limited, limit="user") - value(before, limited, limit="user") == 3


async def test_a_401_storm_moves_the_rate_limited_counter(
    served: tuple[str, FastAPI], services: Services
) -> None:
    base, app = served
    limits = app.state.address_limits
    kept, limits.failed.per_min = limits.failed.per_min, 5
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            _, before = await scrape(http, base)
            bad = {"Authorization": "Bearer mg_wrong"}
            codes = [(await http.get(f"{base}/api/threads", headers=bad)).status_code
                     for _ in range(12)]  # fmt: skip
            _, after = await scrape(http, base)
    finally:
        limits.failed.per_min = kept
        limits.failed._buckets.clear()
    assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}, codes
    limited = "mnemograph_rate_limited_total"
    assert value(after, limited, limit="address") - value(before, limited, limit="address") == 7
    refused = "mnemograph_http_request_duration_seconds_count"
    assert value(after, refused, method="GET", route="gate", status="4xx") >= 12


async def test_outbox_depth_and_age_are_read_at_scrape_time(
    served: tuple[str, FastAPI], services: Services
) -> None:
    base, _app = served
    outbox = services.outbox
    assert outbox is not None and services.pool is not None
    user = f"mx-{uuid.uuid4().hex[:8]}"
    row = await outbox.enqueue(
        user, [{"subject": "I", "predicate": "likes", "object": "tea"}],
        thread_id=None, message_id=None, at_ms=0,
    )  # fmt: skip
    async with services.pool.connection() as conn:  # parked: the replayer leaves it alone
        await conn.execute(
            "UPDATE mnemo_graph_outbox SET attempts = 99, created_at = now() - interval '90 s' "
            "WHERE id = %s",
            (row,),
        )
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            _, found = await scrape(http, base)
        depth = await outbox.count()
        assert value(found, "mnemograph_graph_outbox_depth") == depth >= 1
        assert value(found, "mnemograph_graph_outbox_oldest_age_seconds") >= 90
        assert value(found, "mnemograph_graph_outbox_readable") == 1
    finally:
        await outbox.delete_user(user)


async def test_every_run_carries_the_user_and_thread_in_its_metadata(
    services: Services, uid: str, tid: str
) -> None:
    """What LangSmith and OpenTelemetry traces are filtered by: every run of the turn
    (graph, nodes, model call) has ``user_id`` and ``thread_id`` in its metadata."""

    class Recorder(AsyncCallbackHandler):
        def __init__(self) -> None:
            self.metadata: list[dict[str, Any]] = []

        async def on_chain_start(self, *args: Any, metadata: Any = None, **kw: Any) -> None:
            self.metadata.append(dict(metadata or {}))

        async def on_chat_model_start(self, *args: Any, metadata: Any = None, **kw: Any) -> None:
            self.metadata.append(dict(metadata or {}))

    recorder = Recorder()
    runner = TurnRunner(services)
    await runner.invoke(uid, tid, [{"type": "human", "content": "hi"}],
                        config={"callbacks": [recorder]})  # fmt: skip
    await runner.drain()
    assert len(recorder.metadata) > 5
    for metadata in recorder.metadata:
        assert metadata.get("user_id") == uid and metadata.get("thread_id") == tid, metadata


async def test_vector_cache_hits_and_misses_are_exported(memory_store: MemoryStore) -> None:
    from mnemograph.metrics import Metrics

    pool, embedder = memory_store._pool, memory_store._embeddings
    cached = MemoryStore(pool, embedder, config=replace(MemoryConfig(), vector_cache_min_rows=3))
    await cached.setup()
    big, small = f"mx-{uuid.uuid4().hex[:8]}", f"mx-{uuid.uuid4().hex[:8]}"
    facts = ("User's dog is Rex", "User drinks oat milk", "User hikes", "User's sister is Ana")
    await cached.add_many(big, [NewMemory(text=t) for t in facts])
    await cached.add(small, "User's cat is Mimi")
    metrics = Metrics()
    metrics.services = SimpleNamespace(memory=cached, outbox=None)  # type: ignore[assignment]
    try:
        await cached.search(big, "pets", k=2)  # first search: the copy is loaded whole
        await cached.search(big, "family", k=2)  # then served from memory
        await cached.search(small, "pets", k=2)  # a small user: SQL
        found = samples(metrics.exposition().decode())
    finally:
        await cached.delete_user(big)
        await cached.delete_user(small)
    name = "mnemograph_vector_cache_lookups_total"
    assert (value(found, name, result="miss"), value(found, name, result="hit"),
            value(found, name, result="sql")) == (1, 1, 1)  # fmt: skip


def test_two_apps_share_no_series_and_the_global_registry_holds_none(services: Services) -> None:
    one, two = create_app(services), create_app(services)
    assert one.state.metrics.registry is not two.state.metrics.registry
    one.state.metrics.turns.labels("openai", "ok").inc()
    assert 'door="openai"' not in two.state.metrics.exposition().decode()
    names = {m.name for m in prometheus_client.REGISTRY.collect()}
    assert not any(name.startswith("mnemograph") for name in names), names
