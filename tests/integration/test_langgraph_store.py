"""HybridMemoryStore: LangGraph's ``BaseStore`` over the hybrid long-term memory.

Three kinds of proof, on a database of their own (embedded PostgreSQL + pgvector, MiniLM):

* LangGraph's own store tests (``libs/checkpoint-postgres/tests/test_store.py`` and
  ``test_async_store.py`` upstream: batch order, get/put/search/list ops, basic ops,
  namespace listing, search with filters and paging, sync calls off the loop), run against
  the new class for ordinary namespaces, and in their memory form for ``(user, "memories")``;
* the memories namespace really is the hybrid memory: ranked search with scores, dedup,
  edits that re-index, deletes that cascade, and the same value whichever path reads it;
* an agent built by ``langgraph.prebuilt.create_react_agent`` whose tool calls
  ``get_store().asearch(...)`` finds a memory, driven by the scripted fake model.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from langchain_core.embeddings import Embeddings
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.config import get_config, get_store
from langgraph.store.base import (
    GetOp,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    SearchItem,
    SearchOp,
)
from langgraph.store.postgres.aio import AsyncPostgresStore
from psycopg.conninfo import make_conninfo

from stores.errors import InvalidInput
from stores.memory.langgraph_store import HybridMemoryStore, matches_filter, memory_user
from stores.memory.store import MemoryStore
from stores.postgres.savers import make_store, open_pool
from tests.fakes import ScriptedChatModel
from tests.fixtures_memory import DIMS, prepare_schema


def _uid() -> str:
    return f"u-{uuid.uuid4().hex[:10]}"


def _mem(user: str) -> tuple[str, str]:
    return (user, "memories")


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
async def db_url(pg_url: str) -> AsyncIterator[str]:
    """A database of this module's own: LangGraph's tests count every namespace there is."""
    name = f"lgstore_{uuid.uuid4().hex[:10]}"
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        await conn.execute(f"CREATE DATABASE {name}")
    yield make_conninfo(pg_url, dbname=name)
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module")
async def parts(db_url: str, minilm: Embeddings) -> AsyncIterator[tuple[Any, MemoryStore]]:
    """The pool (schema made as a host's first start makes it) and the MemoryStore."""
    pool = await open_pool(db_url, max_size=6)
    await prepare_schema(pool, minilm)
    memory = MemoryStore(pool, minilm, dims=DIMS)
    await memory.setup()
    yield pool, memory
    await pool.close()


@pytest.fixture
async def postgres(parts: tuple[Any, MemoryStore]) -> AsyncPostgresStore:
    """LangGraph's store as ``make_store`` builds it (the wrapped store)."""
    return await make_store(parts[0], create=False)


@pytest.fixture
async def store(
    parts: tuple[Any, MemoryStore], postgres: AsyncPostgresStore
) -> AsyncIterator[HybridMemoryStore]:
    """The class under test, on an empty ``store`` table (deleting rows cascades to the
    memory index, so every test starts from nothing, as LangGraph's do)."""
    async with parts[0].connection() as conn:
        await conn.execute("DELETE FROM store")
    yield HybridMemoryStore(postgres, parts[1])


async def _index_rows(store: HybridMemoryStore, user: str) -> dict[str, int]:
    async with store.memory._pool.connection() as conn:
        cur = await conn.execute(
            "SELECT (SELECT count(*) FROM mnemo_memory_index WHERE user_id = %(u)s) AS i, "
            "(SELECT count(*) FROM mnemo_memory_vectors WHERE user_id = %(u)s) AS v",
            {"u": user},
        )
        row = await cur.fetchone()
    assert row is not None
    return {"index": int(row["i"]), "vectors": int(row["v"])}


# ----------------------------------------------- make_store: no LangGraph vector index
async def test_make_store_configures_no_vector_index(
    parts: tuple[Any, MemoryStore], postgres: AsyncPostgresStore
) -> None:
    """``prepare_schema`` ran ``make_store`` with embeddings, as hosts call it: still no
    LangGraph index, so no ``store_vectors`` table and no embedding on put."""
    assert postgres.index_config is None and postgres.embeddings is None
    async with parts[0].connection() as conn:
        cur = await conn.execute(
            "SELECT to_regclass('store_vectors') IS NULL AS none, "
            "to_regclass('vector_migrations') IS NULL AS no_migrations, "
            "EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector') AS pgvector, "
            "to_regclass('mnemo_memory_vectors') IS NOT NULL AS ours"
        )
        row = await cur.fetchone()
    assert row == {"none": True, "no_migrations": True, "pgvector": True, "ours": True}


# ------------------------------------------ LangGraph's store tests, ordinary namespaces
async def test_abatch_order(store: HybridMemoryStore) -> None:
    await store.aput(("test", "foo"), "key1", {"data": "value1"})
    await store.aput(("test", "bar"), "key2", {"data": "value2"})

    ops: list[Op] = [
        GetOp(namespace=("test", "foo"), key="key1"),
        PutOp(namespace=("test", "bar"), key="key2", value={"data": "value2"}),
        SearchOp(namespace_prefix=("test",), filter={"data": "value1"}, limit=10, offset=0),
        ListNamespacesOp(match_conditions=None, max_depth=None, limit=10, offset=0),
        GetOp(namespace=("test",), key="key3"),
    ]
    results: list[Any] = await store.abatch(ops)
    assert len(results) == 5
    assert isinstance(results[0], Item)
    assert results[0].value == {"data": "value1"} and results[0].key == "key1"
    assert results[1] is None
    assert isinstance(results[2], list) and len(results[2]) == 1
    assert isinstance(results[3], list)
    assert ("test", "foo") in results[3] and ("test", "bar") in results[3]
    assert results[4] is None

    ops_reordered: list[Op] = [
        SearchOp(namespace_prefix=("test",), filter=None, limit=5, offset=0),
        GetOp(namespace=("test", "bar"), key="key2"),
        ListNamespacesOp(match_conditions=None, max_depth=None, limit=5, offset=0),
        PutOp(namespace=("test",), key="key3", value={"data": "value3"}),
        GetOp(namespace=("test", "foo"), key="key1"),
    ]
    results = await store.abatch(ops_reordered)
    assert isinstance(results[0], list) and len(results[0]) == 2
    assert isinstance(results[1], Item) and results[1].value == {"data": "value2"}
    assert isinstance(results[2], list)
    assert ("test", "foo") in results[2] and ("test", "bar") in results[2]
    assert results[3] is None
    assert isinstance(results[4], Item) and results[4].key == "key1"


async def test_batch_get_put_search_list_ops(store: HybridMemoryStore) -> None:
    results: list[Any] = await store.abatch(
        [
            PutOp(namespace=("test",), key="key1", value={"data": "value1"}),
            PutOp(namespace=("test",), key="key2", value={"data": "value2"}),
            PutOp(namespace=("test",), key="key3", value=None),
        ]
    )
    assert results == [None, None, None]
    got: list[Any] = await store.abatch(
        [GetOp(("test",), "key1"), GetOp(("test",), "key2"), GetOp(("test",), "key3")]
    )
    assert [g.key if g else None for g in got] == ["key1", "key2", None]

    for namespace, key, value in [
        (("test", "foo"), "key1", {"data": "value1", "tag": "a"}),
        (("test", "bar"), "key2", {"data": "value2", "tag": "a"}),
        (("test", "baz"), "key3", {"data": "value3", "tag": "b"}),
    ]:
        await store.aput(namespace, key, value)
    found: list[Any] = await store.abatch(
        [
            SearchOp(namespace_prefix=("test",), filter={"tag": "a"}, limit=10, offset=0),
            SearchOp(namespace_prefix=("test",), filter=None, limit=2, offset=0),
            SearchOp(namespace_prefix=("test", "foo"), filter=None, limit=10, offset=0),
        ]
    )
    assert len(found[0]) == 2 and all(i.value["tag"] == "a" for i in found[0])
    assert len(found[1]) == 2
    assert [i.namespace for i in found[2]] == [("test", "foo")]

    listed: list[Any] = await store.abatch(
        [
            ListNamespacesOp(match_conditions=None, max_depth=None, limit=10, offset=0),
            ListNamespacesOp(match_conditions=None, max_depth=1, limit=10, offset=0),
            ListNamespacesOp(
                match_conditions=(MatchCondition("suffix", ("foo",)),), limit=10, offset=0
            ),
        ]
    )
    assert set(listed[0]) == {("test",), ("test", "foo"), ("test", "bar"), ("test", "baz")}
    assert listed[1] == [("test",)]
    assert listed[2] == [("test", "foo")]


async def test_basic_store_ops(store: HybridMemoryStore) -> None:
    namespace = ("test", "documents")
    value = {"title": "Test Document", "content": "Hello, World!"}
    await store.aput(namespace, "doc1", value)
    item = await store.aget(namespace, "doc1")
    assert item and item.namespace == namespace and item.key == "doc1" and item.value == value

    updated = {"title": "Updated Document", "content": "Hello, Updated!"}
    await store.aput(namespace, "doc1", updated)
    again = await store.aget(namespace, "doc1")
    assert again and again.value == updated and again.updated_at > item.updated_at
    assert await store.aget(("test", "other_documents"), "doc1") is None

    await store.adelete(namespace, "doc1")
    assert await store.aget(namespace, "doc1") is None


async def test_list_namespaces(store: HybridMemoryStore) -> None:
    namespaces = [
        ("test", "documents", "public"),
        ("test", "documents", "private"),
        ("test", "images", "public"),
        ("test", "images", "private"),
        ("prod", "documents", "public"),
        ("prod", "documents", "private"),
    ]
    for namespace in namespaces:
        await store.aput(namespace, "dummy", {"content": "dummy"})
    assert len(await store.alist_namespaces()) == len(namespaces)
    test_ns = await store.alist_namespaces(prefix=("test",))
    assert len(test_ns) == 4 and all(ns[0] == "test" for ns in test_ns)
    public = await store.alist_namespaces(suffix=("public",))
    assert len(public) == 3 and all(ns[-1] == "public" for ns in public)
    assert all(len(ns) <= 2 for ns in await store.alist_namespaces(max_depth=2))
    assert len(await store.alist_namespaces(limit=3)) == 3
    for namespace in namespaces:
        await store.adelete(namespace, "dummy")
    assert await store.alist_namespaces() == []


async def test_search(store: HybridMemoryStore) -> None:
    data = [
        (("test", "docs"), "doc1", {"title": "First Doc", "author": "Alice", "tags": ["a"]}),
        (("test", "docs"), "doc2", {"title": "Second Doc", "author": "Bob", "tags": ["b"]}),
        (("test", "images"), "img1", {"title": "Image 1", "author": "Alice", "tags": ["c"]}),
    ]
    for namespace, key, value in data:
        await store.aput(namespace, key, value)
    assert len(await store.asearch(("test",))) == 3
    docs = await store.asearch(("test", "docs"))
    assert len(docs) == 2 and all(i.namespace == ("test", "docs") for i in docs)
    alice = await store.asearch(("test",), filter={"author": "Alice"})
    assert len(alice) == 2 and all(i.value["author"] == "Alice" for i in alice)
    assert len(await store.asearch(("test",), limit=2)) == 2
    assert len(await store.asearch(("test",), offset=2)) == 1


async def test_sync_calls_refuse_the_loop_and_work_from_a_thread(
    store: HybridMemoryStore,
) -> None:
    """As LangGraph's async stores: sync methods on the event loop raise, in a thread work."""
    user = _uid()
    for call in (
        lambda: store.put(("foo", "bar"), "baz", {"val": "baz"}),
        lambda: store.get(("foo", "bar"), "baz"),
        lambda: store.search(_mem(user), query="anything"),
        lambda: store.list_namespaces(prefix=("foo",)),
        lambda: store.batch([PutOp(_mem(user), "k1", {"text": "User owns a kayak"})]),
    ):
        with pytest.raises(asyncio.InvalidStateError):
            call()
    with ThreadPoolExecutor(max_workers=2) as executor:
        run = asyncio.get_running_loop().run_in_executor
        await run(executor, lambda: store.put(("foo", "bar"), "baz", {"val": "baz"}))
        got = await run(executor, lambda: store.get(("foo", "bar"), "baz"))
        assert got is not None and got.value == {"val": "baz"}
        await run(executor, lambda: store.put(_mem(user), "k1", {"text": "User owns a kayak"}))
        hits = await run(executor, lambda: store.search(_mem(user), query="boat"))
        assert [h.key for h in hits] == ["k1"] and hits[0].score is not None
        listed = await run(executor, lambda: store.list_namespaces(prefix=("foo",)))
        assert listed == [("foo", "bar")]


async def test_concurrent_batches_on_both_paths(store: HybridMemoryStore) -> None:
    """A small form of LangGraph's ``test_large_batches_async``, half on memories."""
    user = _uid()
    coros: list[Any] = []
    for i in range(20):
        ns = ("test", "foo", str(i % 2))
        coros += [
            store.aput(ns, f"key{i}", {"foo": f"bar{i}"}),
            store.aget(ns, f"key{i}"),
            store.alist_namespaces(prefix=None, max_depth=2),
            store.asearch(("test",)),
            store.aput(_mem(user), f"m{i}", {"text": f"museum visit {i}", "kind": "turn"}),
            store.asearch(_mem(user), query="museum"),
        ]
    results = await asyncio.gather(*coros)
    assert len(results) == 120
    assert len(await store.asearch(("test",), limit=100)) == 20
    assert await store.memory.count(user) == 20


# -------------------------------------- the same patterns in the memories namespace
async def test_memory_basic_ops(store: HybridMemoryStore) -> None:
    """``test_basic_store_ops`` for a memories namespace: the value takes the memory shape."""
    user = _uid()
    ns = _mem(user)
    await store.aput(ns, "doc1", {"title": "Test Document", "content": "User is learning Go"})
    item = await store.aget(ns, "doc1")
    assert item and item.namespace == ns and item.key == "doc1"
    assert item.value["text"] == "User is learning Go"
    assert item.value["kind"] == "fact" and item.value["importance"] == 0.5
    assert item.value["metadata"] == {"title": "Test Document"}
    assert item.value["seen_count"] == 1

    await store.aput(ns, "doc1", {"text": "User is learning Rust", "importance": 0.8})
    again = await store.aget(ns, "doc1")
    assert again and again.value["text"] == "User is learning Rust"
    assert again.value["importance"] == 0.8 and again.updated_at > item.updated_at
    assert again.created_at == item.created_at  # an edit, not a new memory
    assert again.value["metadata"] == {"title": "Test Document"}  # absent: kept
    assert await store.aget(_mem(_uid()), "doc1") is None

    await store.adelete(ns, "doc1")
    assert await store.aget(ns, "doc1") is None
    await store.adelete(ns, "doc1")  # deleting what is gone is no error, as in LangGraph
    assert await _index_rows(store, user) == {"index": 0, "vectors": 0}


async def test_memory_batch_order_and_listing(store: HybridMemoryStore) -> None:
    """``test_abatch_order`` mixing both paths in one batch; the memories namespace is
    listed like any other (it lives in the same table)."""
    user = _uid()
    await store.aput(_mem(user), "m1", {"text": "User's dog is a beagle named Rex"})
    await store.aput(("test", "foo"), "key1", {"data": "value1"})
    results: list[Any] = await store.abatch(
        [
            GetOp(_mem(user), "m1"),
            SearchOp(_mem(user), query="what pet does the user have", limit=5),
            PutOp(_mem(user), "m2", {"text": "User plays the cello"}),
            ListNamespacesOp(match_conditions=None, max_depth=None, limit=10, offset=0),
            GetOp(("test", "foo"), "key1"),
            SearchOp(_mem(user), filter=None, limit=10),
            GetOp(_mem(user), "m3"),
        ]
    )
    assert isinstance(results[0], Item) and results[0].value["text"].endswith("Rex")
    assert [i.key for i in results[1]] == ["m1"]
    assert results[2] is None
    assert set(results[3]) == {("test", "foo"), _mem(user)}
    assert isinstance(results[4], Item) and results[4].value == {"data": "value1"}
    assert [i.key for i in results[5]] == ["m1"]  # reads first
    assert results[6] is None
    assert (await store.aget(_mem(user), "m2")) is not None  # then the write
    assert await store.alist_namespaces(prefix=(user,)) == [_mem(user)]
    assert await store.alist_namespaces(suffix=("memories",)) == [_mem(user)]


async def test_memory_listing_filters_and_pages(store: HybridMemoryStore) -> None:
    user = _uid()
    ns = _mem(user)
    texts = [
        "User has two cats",
        "User prefers aisle seats on trains",
        "User runs marathons in autumn",
        "User likes jazz more than rock",
        "User's sister is called Ana",
        "User prefers tea to coffee",
    ]
    for i, text in enumerate(texts):  # distinct statements: none merges into another
        kind = "preference" if i % 2 else "fact"
        value = {"text": text, "kind": kind, "importance": i / 10, "metadata": {"session": i % 3}}
        await store.aput(ns, f"n{i}", value)
    everything = await store.asearch(ns, limit=100)
    assert [i.key for i in everything] == [f"n{i}" for i in reversed(range(6))]  # newest first
    assert all(isinstance(i, SearchItem) and i.score is None for i in everything)
    assert [i.key for i in await store.asearch(ns, limit=2, offset=1)] == ["n4", "n3"]
    prefs = await store.asearch(ns, filter={"kind": "preference"}, limit=100)
    assert [i.key for i in prefs] == ["n5", "n3", "n1"]
    second = await store.asearch(ns, filter={"kind": "preference"}, offset=1, limit=1)
    assert [i.key for i in second] == ["n3"]
    heavy = await store.asearch(ns, filter={"importance": {"$gte": 0.3}}, limit=100)
    assert sorted(i.key for i in heavy) == ["n3", "n4", "n5"]
    nested = await store.asearch(ns, filter={"metadata": {"session": 0}}, limit=100)
    assert sorted(i.key for i in nested) == ["n0", "n3"]
    assert await store.asearch(ns, filter={"kind": "semantic"}) == []
    assert await store.asearch(ns, query="   ", limit=100) == everything  # blank: a listing


async def test_memory_search_is_hybrid_ranked(
    store: HybridMemoryStore, postgres: AsyncPostgresStore
) -> None:
    """``store.asearch((user, "memories"), query=...)`` ranks by meaning and words, with
    scores; the plain LangGraph store (no index) would answer newest-first instead."""
    user = _uid()
    ns = _mem(user)
    await store.aput(ns, "allergy", {"text": "User is allergic to peanuts", "importance": 0.7})
    for key, text in [
        ("band", "User's favourite band is Radiohead"),
        ("job", "User works as a nurse in Lisbon"),
        ("sport", "User plays tennis on Fridays"),
        ("pet", "User's dog is a beagle named Rex"),
    ]:
        await store.aput(ns, key, {"text": text})

    hits = await store.asearch(ns, query="food intolerance", limit=3)
    assert hits[0].key == "allergy", [(h.key, h.score) for h in hits]
    assert all(isinstance(h, SearchItem) and h.score is not None for h in hits)
    scores = [h.score for h in hits if h.score is not None]
    assert scores == sorted(scores, reverse=True) and 0 < scores[-1] <= scores[0] <= 1
    assert (await store.asearch(ns, query="what pet do I have"))[0].key == "pet"
    assert (await store.asearch(ns, query="Radiohead"))[0].key == "band"  # a rare word

    page = await store.asearch(ns, query="food intolerance", limit=2, offset=1)
    assert [h.key for h in page] == [h.key for h in hits[1:3]]
    only_band = await store.asearch(ns, query="Radiohead", filter={"text": {"$ne": "x"}}, limit=1)
    assert [h.key for h in only_band] == ["band"]
    none = await store.asearch(ns, query="food intolerance", filter={"kind": "preference"})
    assert none == []

    # The wrapped store alone ignores the query: newest first, the allergy last.
    plain = await postgres.asearch(ns, query="food intolerance", limit=10)
    assert plain[0].key != "allergy" and plain[-1].key == "allergy"
    assert await store.asearch(_mem(_uid()), query="food intolerance") == []


async def test_memory_value_is_the_same_on_both_paths(
    store: HybridMemoryStore, postgres: AsyncPostgresStore
) -> None:
    user = _uid()
    ns = _mem(user)
    await store.aput(
        ns, "m1",
        {"text": "User moved to Porto", "kind": "fact", "importance": 0.9,
         "event_at": "2024-03-01T10:00:00+00:00", "provenance": ["msg-1"],
         "subject": "user.home_city", "metadata": {"source": "chat"}, "context": "moving"},
    )  # fmt: skip
    mine = await store.aget(ns, "m1")
    theirs = await postgres.aget(ns, "m1")
    assert mine is not None and theirs is not None
    assert mine.value == theirs.value
    assert set(mine.value) == {
        "text", "kind", "importance", "event_at", "created_at", "last_seen_at",
        "provenance", "metadata", "subject", "seen_count", "context",
    }  # fmt: skip
    assert mine.value["event_at"] == "2024-03-01T10:00:00+00:00"
    assert mine.value["provenance"] == ["msg-1"] and mine.value["context"] == "moving"
    via_prefix = await store.asearch((user,))  # delegated: a prefix, not the namespace
    hybrid = await store.asearch(ns, query="Porto")
    assert [i.value for i in via_prefix] == [i.value for i in hybrid] == [mine.value]
    assert (await store.memory.get(user, "m1")).to_json()["text"] == "User moved to Porto"

    # What get returns can be changed and put back as it is (read-modify-write).
    value = dict(mine.value, text="User moved to Braga")
    await store.aput(ns, "m1", value)
    edited = await store.aget(ns, "m1")
    assert edited is not None and edited.value["text"] == "User moved to Braga"
    assert edited.value["seen_count"] == 1 and edited.value["created_at"] == value["created_at"]
    assert edited.value["importance"] == 0.9


async def test_memory_put_dedups_and_the_key_wins(store: HybridMemoryStore) -> None:
    user = _uid()
    ns = _mem(user)
    await store.aput(ns, "first", {"text": "User likes green tea", "provenance": ["m1"]})
    await store.aput(ns, "second", {"text": "User likes green tea.", "provenance": ["m2"]})
    assert await store.aget(ns, "first") is None  # merged, and moved to the new key
    merged = await store.aget(ns, "second")
    assert merged is not None
    assert merged.value["seen_count"] == 2 and merged.value["provenance"] == ["m1", "m2"]
    assert merged.value["importance"] == pytest.approx(0.6)  # bumped
    assert [i.key for i in await store.asearch(ns, query="tea")] == ["second"]
    assert await _index_rows(store, user) == {"index": 1, "vectors": 1}

    # Same subject: the new value replaces the old, under the new key.
    await store.aput(ns, "home1", {"text": "User lives in Paris", "subject": "user.city"})
    await store.aput(ns, "home2", {"text": "User lives in Berlin", "subject": "user.city"})
    hits = await store.asearch(ns, query="where does the user live")
    assert [(h.key, h.value["text"]) for h in hits if "lives" in h.value["text"]] == [
        ("home2", "User lives in Berlin")
    ]
    # Turns are never merged.
    await store.aput(ns, "t1", {"text": "A: hello there", "kind": "turn"})
    await store.aput(ns, "t2", {"text": "A: hello there", "kind": "turn"})
    assert await store.aget(ns, "t1") is not None and await store.aget(ns, "t2") is not None


async def test_memory_edit_reindexes(store: HybridMemoryStore) -> None:
    user = _uid()
    ns = _mem(user)
    await store.aput(ns, "m1", {"text": "User owns a red bicycle"})
    await store.aput(ns, "m1", {"text": "User owns a blue canoe"})
    assert [h.key for h in await store.asearch(ns, query="canoe")] == ["m1"]
    async with store.memory._pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM mnemo_memory_postings "
            "WHERE user_id = %s AND lexeme = 'bicycl'",
            (user,),
        )
        row = await cur.fetchone()
    assert row == {"n": 0}  # the old words left the full-text index
    assert await _index_rows(store, user) == {"index": 1, "vectors": 1}


async def test_memory_puts_refuse_bad_values(store: HybridMemoryStore) -> None:
    ns = _mem(_uid())
    with pytest.raises(InvalidInput, match="text"):
        await store.aput(ns, "k", {"title": "no text at all"})
    with pytest.raises(InvalidInput):
        await store.aput(ns, "k", {"text": "   "})
    with pytest.raises(InvalidInput):
        await store.aput(ns, "k", {"text": "x", "kind": "gossip"})
    with pytest.raises(InvalidInput):
        await store.aput(ns, "k", {"text": "x", "importance": "high"})
    with pytest.raises(InvalidInput):
        await store.aput(ns, "bad key/..", {"text": "x"})
    with pytest.raises(InvalidInput):
        await store.aput(("bad user!", "memories"), "k", {"text": "x"})
    assert await store.asearch(ns) == []


async def test_structured_content_is_stored_as_json_text(store: HybridMemoryStore) -> None:
    """LangMem-style values: ``{"content": ...}``, possibly a structured object."""
    ns = _mem(_uid())
    await store.aput(ns, "k1", {"content": "User prefers window seats"})
    await store.aput(ns, "k2", {"content": {"name": "Ana", "relation": "sister"}})
    got = await store.aget(ns, "k2")
    assert got is not None and got.value["text"] == '{"name": "Ana", "relation": "sister"}'
    assert (await store.asearch(ns, query="sister"))[0].key == "k2"
    assert (await store.asearch(ns, query="aeroplane seat"))[0].key == "k1"


def test_routing_and_filters_are_plain_rules() -> None:
    assert memory_user(("u1", "memories")) == "u1"
    assert memory_user(("u1",)) is None and memory_user(("u1", "memories", "x")) is None
    assert memory_user(("u1", "profile")) is None
    value = {"kind": "fact", "importance": 0.4, "metadata": {"s": 1}, "flag": True}
    assert matches_filter(value, {"kind": "fact", "importance": {"$lt": 0.5, "$gt": 0.1}})
    assert not matches_filter(value, {"flag": 1})  # jsonb: true is not 1
    assert matches_filter(value, {"metadata": {"s": 1}})
    assert not matches_filter(value, {"missing": {"$gt": 1}})
    with pytest.raises(ValueError, match="Unsupported operator"):
        matches_filter(value, {"kind": {"$regex": "f"}})


# ------------------------------------------------------------ an agent uses the store
async def test_react_agent_tool_finds_a_memory_through_get_store(
    store: HybridMemoryStore,
) -> None:
    """``create_react_agent`` compiled with the hybrid store; its tool calls
    ``get_store().asearch((user, "memories"), query=...)``. The scripted model asks for the
    tool, then answers with what the tool returned."""
    from langgraph.prebuilt import create_react_agent

    user = _uid()
    await store.aput(_mem(user), "rex", {"text": "User's dog is a beagle named Rex"})
    await store.aput(_mem(user), "tea", {"text": "User drinks green tea every morning"})
    await store.aput(_mem(user), "job", {"text": "User works as a nurse in Lisbon"})

    @tool
    async def search_memories(query: str) -> str:
        """Search the user's long-term memories."""
        user_id = get_config()["configurable"]["user_id"]
        items = await get_store().asearch((user_id, "memories"), query=query, limit=1)
        return "\n".join(item.value["text"] for item in items) or "nothing found"

    def script(messages: list[BaseMessage]) -> AIMessage:
        last = messages[-1]
        if isinstance(last, ToolMessage):
            return AIMessage(content=f"From memory: {last.content}")
        call = {"name": "search_memories", "args": {"query": "what pet do I have"}, "id": "c1"}
        return AIMessage(content="", tool_calls=[call])

    model = ScriptedChatModel(tool_replies={"search_memories": script})
    agent = create_react_agent(model, [search_memories], store=store)
    out = await agent.ainvoke(
        {"messages": [("user", "What is my pet called?")]},
        config={"configurable": {"user_id": user}},
    )
    tool_messages = [m for m in out["messages"] if isinstance(m, ToolMessage)]
    assert [m.content for m in tool_messages] == ["User's dog is a beagle named Rex"]
    assert out["messages"][-1].content == "From memory: User's dog is a beagle named Rex"
    assert model.asked == ["search_memories", "search_memories"]


async def test_langmem_tools_manage_and_search_hybrid_memories(
    store: HybridMemoryStore,
) -> None:
    """LangMem's ``create_manage_memory_tool`` / ``create_search_memory_tool`` (namespace
    ``("{langgraph_user_id}", "memories")``) in a ``create_react_agent`` on the hybrid store:
    a created memory is a real memory (hybrid-searchable, indexed), search ranks it, and
    update and delete by LangMem's uuid keys reach the same item."""
    import json

    from langgraph.func import entrypoint
    from langgraph.prebuilt import create_react_agent
    from langmem import create_manage_memory_tool, create_search_memory_tool

    user = _uid()
    await store.aput(_mem(user), "rex", {"text": "User's dog is a beagle named Rex"})
    namespace = ("{langgraph_user_id}", "memories")
    manage = create_manage_memory_tool(namespace=namespace)
    search = create_search_memory_tool(namespace=namespace)
    calls = iter(
        [
            ("manage_memory", {"content": "User prefers window seats on planes"}),
            ("search_memory", {"query": "what pet do I have", "limit": 2}),
            ("search_memory", {"query": "seat on a flight", "limit": 1}),
        ]
    )

    def script(messages: list[BaseMessage]) -> AIMessage:
        step = next(calls, None)
        if step is None:
            return AIMessage(content="done")
        call = {"name": step[0], "args": step[1], "id": f"call-{len(messages)}"}
        return AIMessage(content="", tool_calls=[call])

    model = ScriptedChatModel(tool_replies={"manage_memory": script})
    agent = create_react_agent(model, [manage, search], store=store)
    config: Any = {"configurable": {"langgraph_user_id": user}}
    out = await agent.ainvoke({"messages": [("user", "remember my seat")]}, config=config)
    created, pet, seat = (m for m in out["messages"] if isinstance(m, ToolMessage))
    key = str(created.content).split()[-1]
    uuid.UUID(key)  # LangMem's own key, kept
    item = await store.aget(_mem(user), key)
    assert item is not None and item.value["text"] == "User prefers window seats on planes"
    assert await _index_rows(store, user) == {"index": 2, "vectors": 2}
    assert [m["key"] for m in json.loads(str(pet.content))] == ["rex", key]
    found = json.loads(str(seat.content))
    assert [m["key"] for m in found] == [key] and found[0]["score"] > 0

    @entrypoint(store=store)
    async def manage_directly(args: dict[str, Any]) -> str:
        return str(await manage.ainvoke(args))

    args = {"content": "User prefers aisle seats", "action": "update", "id": key}
    await manage_directly.ainvoke(args, config)
    edited = await store.aget(_mem(user), key)
    assert edited is not None and edited.value["text"] == "User prefers aisle seats"
    assert edited.created_at == item.created_at
    await manage_directly.ainvoke({"action": "delete", "id": key}, config)
    assert await store.aget(_mem(user), key) is None
    assert [i.key for i in await store.asearch(_mem(user), query="seats")] == ["rex"]
