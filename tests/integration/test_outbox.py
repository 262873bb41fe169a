"""The graph outbox: a graph outage never loses a triple, and replay keeps write order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from graph.facts import Triple
from stores.knowledge.arcadedb import start_arcadedb
from stores.knowledge.bolt import GraphStore
from stores.knowledge.outbox import GraphOutbox, write_or_enqueue


def T(s: str, p: str, o: str) -> Triple:
    return Triple(subject=s, predicate=p, object=o, confidence=0.9)


def spo(facts: Any) -> set[tuple[str, str, str]]:
    return {(f["subject"], f["predicate"], f["object"]) for f in facts}


async def test_outage_queues_then_replays_in_order(
    dead_graph_store: GraphStore, graph_store: GraphStore, outbox: GraphOutbox, kg_user: str
) -> None:
    for i, city in enumerate(["Paris", "Berlin"]):
        outcome = await write_or_enqueue(
            dead_graph_store,
            outbox,
            kg_user,
            [T("I", "lives in", city)],
            thread_id="t",
            message_id=f"m{i}",
            at_ms=1000 * (i + 1),
        )
        assert outcome == "outbox"
    assert await outbox.count(kg_user) == 2
    assert await graph_store.current_facts(kg_user) == []

    # Still down: replay stops at once and keeps everything.
    stalled = await outbox.replay(dead_graph_store)
    assert (stalled.replayed, stalled.remaining) == (0, 2)

    result = await outbox.replay(graph_store)
    assert (result.replayed, result.remaining, result.failed) == (2, 0, 0)
    assert spo(await graph_store.current_facts(kg_user)) == {("user", "lives_in", "berlin")}
    paris = [f for f in await graph_store.history(kg_user) if f["object"] == "paris"]
    assert paris[0]["invalid_at"] == 2000 and paris[0]["source_message"] == "m0"


async def test_write_after_outage_goes_behind_the_queue(
    dead_graph_store: GraphStore, graph_store: GraphStore, outbox: GraphOutbox, kg_user: str
) -> None:
    await write_or_enqueue(
        dead_graph_store,
        outbox,
        kg_user,
        [T("I", "works at", "Acme")],
        thread_id="t",
        message_id="m1",
        at_ms=1000,
    )
    # The server is back: the queued write is applied first, then the new one.
    outcome = await write_or_enqueue(
        graph_store,
        outbox,
        kg_user,
        [T("I", "works at", "Globex")],
        thread_id="t",
        message_id="m2",
        at_ms=2000,
    )
    assert outcome == "graph"
    assert await outbox.count(kg_user) == 0
    assert spo(await graph_store.current_facts(kg_user)) == {("user", "works_at", "globex")}


async def test_outbox_delete_user(outbox: GraphOutbox, kg_user: str) -> None:
    await outbox.enqueue(
        kg_user, [T("I", "likes", "tea")], thread_id=None, message_id=None, at_ms=1
    )
    await outbox.enqueue(
        kg_user + "-b", [T("I", "likes", "tea")], thread_id=None, message_id=None, at_ms=1
    )
    assert await outbox.delete_user(kg_user) == 1
    assert await outbox.count(kg_user) == 0
    assert await outbox.count(kg_user + "-b") == 1
    await outbox.setup()  # idempotent


async def test_server_killed_mid_conversation_loses_nothing(
    tmp_path: Path, outbox: GraphOutbox, kg_user: str
) -> None:
    """kill -9 the graph server between two turns, restart it on the same port, replay."""
    server = start_arcadedb(tmp_path / "arcadedb", join=False)
    graph = await GraphStore.open(
        server.uri,
        server.user,
        server.password,
        server.database,
        connect_timeout_s=1.0,
        op_timeout_s=5.0,
    )
    try:
        await graph.setup()
        first = await write_or_enqueue(
            graph,
            outbox,
            kg_user,
            [T("I", "lives in", "Lisbon")],
            thread_id="t",
            message_id="m1",
            at_ms=1000,
        )
        assert first == "graph"
        server.kill()
        second = await write_or_enqueue(
            graph,
            outbox,
            kg_user,
            [T("I", "lives in", "Porto"), T("I", "likes", "fado")],
            thread_id="t",
            message_id="m2",
            at_ms=2000,
        )
        assert second == "outbox"
        server = start_arcadedb(tmp_path / "arcadedb", bolt_port=server.bolt_port, join=False)
        result = await outbox.replay(graph)
        assert (result.replayed, result.remaining) == (1, 0)
        assert spo(await graph.current_facts(kg_user)) == {
            ("user", "lives_in", "porto"),
            ("user", "likes", "fado"),
        }
        assert len(await graph.history(kg_user)) == 3  # Lisbon survived the crash, closed
    finally:
        await graph.close()
        server.stop()
