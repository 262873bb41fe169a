"""GraphStore against the embedded ArcadeDB: the same Cypher must hold on Neo4j 5."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from neo4j import AsyncGraphDatabase

from stores.errors import ServiceUnavailable
from stores.knowledge.arcadedb import EmbeddedGraphServer
from stores.knowledge.bolt import GraphStore


def T(s: str, p: str, o: str, c: float = 0.9) -> dict[str, Any]:
    return {"subject": s, "predicate": p, "object": o, "confidence": c}


def spo(facts: Any) -> set[tuple[str, str, str]]:
    return {(f["subject"], f["predicate"], f["object"]) for f in facts}


async def raw_count(server: EmbeddedGraphServer, query: str, **params: Any) -> int:
    """Count with a separate driver, so the check does not trust GraphStore itself."""
    async with AsyncGraphDatabase.driver(server.uri, auth=(server.user, server.password)) as d:
        records, _, _ = await d.execute_query(query, params, database_=server.database)
        return int(records[0]["n"])


async def test_upsert_keeps_provenance_and_normalizes(
    graph_store: GraphStore, kg_user: str
) -> None:
    result = await graph_store.upsert_triples(
        kg_user,
        [T("I", "Lives In", "Berlin"), T("me", "works for", "Acme Corp", 0.7)],
        thread_id="t-1",
        message_id="m-1",
        at_ms=1_700_000_000_000,
    )
    assert result.created == 2
    facts = {f["predicate"]: f for f in await graph_store.current_facts(kg_user)}
    assert set(facts) == {"lives_in", "works_at"}
    home = facts["lives_in"]
    assert (home["subject"], home["object"], home["object_display"]) == ("user", "berlin", "Berlin")
    assert home["source_thread"] == "t-1" and home["source_message"] == "m-1"
    assert home["created_at"] == home["valid_from"] == 1_700_000_000_000
    assert home["invalid_at"] is None
    assert facts["works_at"]["confidence"] == pytest.approx(0.7)
    assert sorted(await graph_store.entity_names(kg_user)) == ["acme corp", "berlin", "user"]

    # Saying it again refreshes the relation instead of duplicating it.
    again = await graph_store.upsert_triples(
        kg_user,
        [T("i", "live_in", "berlin")],
        thread_id="t-2",
        message_id="m-2",
        at_ms=1_700_000_100_000,
    )
    assert (again.created, again.refreshed, again.invalidated) == (0, 1, 0)
    assert len(await graph_store.history(kg_user)) == 2


async def test_single_valued_fact_is_invalidated_not_deleted(
    graph_store: GraphStore, kg_user: str
) -> None:
    await graph_store.upsert_triples(
        kg_user,
        [T("I", "lives_in", "Paris"), T("I", "likes", "jazz")],
        thread_id="t-1",
        message_id="m-1",
        at_ms=1000,
    )
    result = await graph_store.upsert_triples(
        kg_user,
        [T("I", "moved to", "Berlin"), T("I", "likes", "rock")],
        thread_id="t-2",
        message_id="m-2",
        at_ms=2000,
    )
    assert result.invalidated == 1
    assert spo(await graph_store.current_facts(kg_user)) == {
        ("user", "lives_in", "berlin"),
        ("user", "likes", "jazz"),
        ("user", "likes", "rock"),
    }
    history = {(f["object"]): f for f in await graph_store.history(kg_user)}
    assert history["paris"]["invalid_at"] == 2000  # kept, closed at the contradiction
    assert history["paris"]["source_message"] == "m-1"
    assert history["berlin"]["invalid_at"] is None and history["berlin"]["valid_from"] == 2000

    # Moving back re-opens Paris as a new relation; both old ones stay in history.
    await graph_store.upsert_triples(
        kg_user, [T("I", "live in", "Paris")], thread_id="t-3", message_id="m-3", at_ms=3000
    )
    current = [f for f in await graph_store.current_facts(kg_user) if f["predicate"] == "lives_in"]
    assert [(f["object"], f["valid_from"]) for f in current] == [("paris", 3000)]
    assert len([f for f in await graph_store.history(kg_user) if f["predicate"] == "lives_in"]) == 3


async def test_neighbourhood_one_and_two_hops(graph_store: GraphStore, kg_user: str) -> None:
    await graph_store.upsert_triples(
        kg_user,
        [
            T("I", "works_at", "Acme"),
            T("Acme", "located_in", "London"),
            T("London", "located_in", "England"),
            T("Bob", "likes", "golf"),
        ],
        thread_id="t",
        message_id="m",
        at_ms=1000,
    )
    await graph_store.upsert_triples(
        kg_user, [T("I", "works_at", "Globex")], thread_id="t", message_id="m2", at_ms=2000
    )
    one = await graph_store.neighbourhood(kg_user, ["I"], hops=1)
    assert spo(one) == {("user", "works_at", "globex")}  # the Acme job is no longer current
    await graph_store.upsert_triples(
        kg_user,
        [T("Globex", "located_in", "Paris"), T("Paris", "located_in", "France")],
        thread_id="t",
        message_id="m3",
        at_ms=3000,
    )
    two = await graph_store.neighbourhood(kg_user, ["my"], hops=2)
    assert spo(two) == {("user", "works_at", "globex"), ("globex", "located_in", "paris")}
    assert {f["object"]: f["hop"] for f in two} == {"globex": 1, "paris": 2}
    around_acme = await graph_store.neighbourhood(kg_user, ["ACME "], hops=1)
    assert spo(around_acme) == {("acme", "located_in", "london")}
    assert await graph_store.neighbourhood(kg_user, ["nobody"], hops=2) == []
    with pytest.raises(ValueError):
        await graph_store.neighbourhood(kg_user, ["I"], hops=3)


async def test_user_isolation(graph_store: GraphStore, kg_user: str) -> None:
    other = kg_user + "-b"
    await graph_store.upsert_triples(
        kg_user,
        [T("I", "lives_in", "Oslo"), T("Oslo", "located_in", "Norway")],
        thread_id="ta",
        message_id="ma",
        at_ms=1000,
    )
    await graph_store.upsert_triples(
        other, [T("I", "lives_in", "Rome")], thread_id="tb", message_id="mb", at_ms=1000
    )
    b_views = [
        await graph_store.current_facts(other),
        await graph_store.history(other),
        await graph_store.neighbourhood(other, ["I", "Oslo", "Norway"], hops=2),
    ]
    for view in b_views:
        assert spo(view) == {("user", "lives_in", "rome")}
    assert "oslo" not in await graph_store.entity_names(other)
    exported = await graph_store.export_user(other)
    assert "oslo" not in str(exported).casefold()
    # A's contradiction never touches B's single-valued fact with the same predicate.
    await graph_store.upsert_triples(
        kg_user, [T("I", "lives_in", "Bergen")], thread_id="ta", message_id="ma2", at_ms=2000
    )
    assert spo(await graph_store.current_facts(other)) == {("user", "lives_in", "rome")}
    await graph_store.delete_user(kg_user)
    assert spo(await graph_store.current_facts(other)) == {("user", "lives_in", "rome")}


async def test_delete_user_leaves_zero_nodes(
    graph_store: GraphStore, graph_server: EmbeddedGraphServer, kg_user: str
) -> None:
    triples = [T("I", "likes", f"thing {i}") for i in range(30)] + [T("I", "lives_in", "Oslo")]
    await graph_store.upsert_triples(kg_user, triples[:20], thread_id="t", message_id="m", at_ms=1)
    await graph_store.upsert_triples(kg_user, triples[20:], thread_id="t", message_id="m2", at_ms=2)
    counts = await graph_store.delete_user(kg_user, batch=7)
    assert counts == {"graph_nodes": 32, "graph_relations": 31}
    q_nodes = "MATCH (e:Entity) WHERE e.user_id = $uid RETURN count(e) AS n"
    q_rels = "MATCH ()-[r:REL]->() WHERE r.user_id = $uid RETURN count(r) AS n"
    assert await raw_count(graph_server, q_nodes, uid=kg_user) == 0
    assert await raw_count(graph_server, q_rels, uid=kg_user) == 0
    assert await graph_store.export_user(kg_user) == {"entities": [], "relations": []}
    assert await graph_store.delete_user(kg_user) == {"graph_nodes": 0, "graph_relations": 0}


async def test_cypher_injection_text_is_stored_as_data(
    graph_store: GraphStore, graph_server: EmbeddedGraphServer, kg_user: str
) -> None:
    bystander = kg_user + "-x"
    await graph_store.upsert_triples(
        bystander, [T("I", "likes", "tea")], thread_id="t", message_id="m", at_ms=1
    )
    evil = "x'}) MATCH (n) DETACH DELETE n //"
    await graph_store.upsert_triples(
        kg_user,
        [
            T(evil, "REL]->() DETACH DELETE n; //", "`}) RETURN 1 //"),
            T("I", "likes", '"; DROP TABLE x; {name: $uid}'),
        ],
        thread_id="t'; --",
        message_id='m"})',
        at_ms=1,
    )
    facts = await graph_store.history(kg_user)
    assert len(facts) == 2
    by_pred = {f["predicate"]: f for f in facts}
    assert "rel_detach_delete_n" in by_pred  # predicates are snake_cased identifiers
    weird = by_pred["rel_detach_delete_n"]
    assert weird["subject_display"] == evil
    assert weird["source_thread"] == "t'; --"
    assert "DROP TABLE x; {name: $uid" in by_pred["likes"]["object_display"]
    assert spo(await graph_store.current_facts(bystander)) == {("user", "likes", "tea")}
    assert await raw_count(graph_server, "MATCH (n:Entity) RETURN count(n) AS n") > 0


async def test_concurrent_upserts_of_the_same_new_entity(
    graph_store: GraphStore, kg_user: str
) -> None:
    """ArcadeDB raises ConstraintError on racing MERGEs of one new key; the store retries."""
    await asyncio.gather(
        *[
            graph_store.upsert_triples(
                kg_user,
                [T("I", "likes", "Brand New Thing"), T("Brand New Thing", "located_in", "X")],
                thread_id="t",
                message_id=f"m{i}",
                at_ms=10 + i,
            )
            for i in range(8)
        ]
    )
    assert sorted(await graph_store.entity_names(kg_user)) == ["brand new thing", "user", "x"]
    assert len(await graph_store.current_facts(kg_user)) == 2


async def test_unreachable_graph_raises_service_unavailable(dead_graph_store: GraphStore) -> None:
    with pytest.raises(ServiceUnavailable):
        await dead_graph_store.ping()
    with pytest.raises(ServiceUnavailable):
        await dead_graph_store.upsert_triples(
            "someone", [T("I", "likes", "tea")], thread_id=None, message_id=None, at_ms=1
        )


async def test_setup_is_idempotent_and_detects_arcadedb(graph_store: GraphStore) -> None:
    await graph_store.setup()
    assert graph_store.dialect == "arcadedb" and graph_store.ready
    assert await graph_store.ping() < 5
