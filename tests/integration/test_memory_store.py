"""Long-term memory: per-user isolation, hybrid search, dedup-update, ordering by recency and
importance, token budgets, export/delete, and the full-text fallback without pgvector."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from langchain_core.messages.utils import count_tokens_approximately

from stores.errors import InvalidInput, NotFound
from stores.memory.model import MemoryConfig, NewMemory, with_neighbour_context
from stores.memory.store import MemoryStore


def _uid() -> str:
    return f"u-{uuid.uuid4().hex[:10]}"


async def _age(store: MemoryStore, user: str, memory_id: str, days: float) -> None:
    """Pretend an item was last seen ``days`` ago (the API always stamps 'now')."""
    then = (datetime.now(UTC) - timedelta(days=days)).isoformat()
    async with store._pool.connection() as conn:
        await conn.execute(
            "UPDATE store SET value = jsonb_set(value, '{last_seen_at}', to_jsonb(%s::text)) "
            "WHERE prefix = %s AND key = %s",
            (then, f"{user}.memories", memory_id),
        )


async def test_recall_is_per_user(memory_store: MemoryStore) -> None:
    alice, bob = _uid(), _uid()
    await memory_store.add(alice, "User's dog is a beagle named Rex", kind="fact")
    await memory_store.add(alice, "User prefers oat milk in coffee", kind="preference")
    hits = await memory_store.search(alice, "what is my dog called?", k=5)
    assert hits and "Rex" in hits[0].item.text
    assert all(h.item.user_id == alice for h in hits)
    assert await memory_store.search(bob, "what is my dog called?", k=5) == []
    assert await memory_store.recall(bob, "dog", k=5, token_budget=500) == []
    with pytest.raises(NotFound):
        await memory_store.get(bob, hits[0].item.id)
    with pytest.raises(NotFound):
        await memory_store.delete(bob, hits[0].item.id)


async def test_semantic_match_without_shared_words(memory_store: MemoryStore) -> None:
    user = _uid()
    await memory_store.add(user, "User is allergic to peanuts", kind="fact", importance=0.9)
    await memory_store.add(user, "User's favourite band is Radiohead", kind="preference")
    hits = await memory_store.search(user, "food intolerance", k=2)
    assert hits[0].item.text == "User is allergic to peanuts"
    assert hits[0].vector_rank is not None


async def test_a_shared_query_vector_gives_the_same_ranking(memory_store: MemoryStore) -> None:
    """Turn recall embeds the message once for memories and graph; passing that vector in
    must rank exactly as the store embedding the query itself, and a failed shared
    embedding must fail the search rather than silently drop the vector side."""
    import asyncio

    user = _uid()
    for text in ("User's dog is a beagle named Rex", "User drinks oat milk", "User hikes alps"):
        await memory_store.add(user, text)
    query = "which pet does the user have?"
    own = await memory_store.search(user, query, k=3)
    assert memory_store._embeddings is not None
    vector = asyncio.ensure_future(memory_store._embeddings.aembed_query(query))
    shared = await memory_store.search(user, query, k=3, query_vector=vector)
    assert [(h.item.id, round(h.score, 6), h.vector_rank) for h in shared] == [
        (h.item.id, round(h.score, 6), h.vector_rank) for h in own
    ]
    assert own[0].vector_rank == 0 and "Rex" in own[0].item.text

    async def broken() -> list[float]:
        raise RuntimeError("embedder down")

    with pytest.raises(RuntimeError, match="embedder down"):
        await memory_store.search(user, query, k=3, query_vector=asyncio.ensure_future(broken()))


async def test_near_duplicate_updates_existing(memory_store: MemoryStore) -> None:
    user = _uid()
    first = await memory_store.add(user, "User likes green tea", importance=0.4, provenance=["m1"])
    again = await memory_store.add(user, "User likes green tea.", importance=0.4, provenance=["m2"])
    assert again.id == first.id
    assert again.importance > first.importance - 1e-9 and again.importance == pytest.approx(0.5)
    assert again.seen_count == 2 and again.provenance == ["m1", "m2"]
    assert again.last_seen_at >= first.last_seen_at
    assert await memory_store.count(user) == 1
    stored = await memory_store.get(user, first.id)
    assert stored.provenance == ["m1", "m2"] and stored.seen_count == 2


async def test_same_subject_replaces_value(memory_store: MemoryStore) -> None:
    user = _uid()
    paris = await memory_store.add(user, "User lives in Paris", subject="user.home_city")
    berlin = await memory_store.add(user, "User lives in Berlin", subject="user.home_city")
    assert berlin.id == paris.id
    assert (await memory_store.get(user, paris.id)).text == "User lives in Berlin"
    hits = await memory_store.search(user, "where does the user live", k=5)
    assert [h.item.text for h in hits] == ["User lives in Berlin"]


async def test_distinct_facts_are_not_merged(memory_store: MemoryStore) -> None:
    user = _uid()
    await memory_store.add(user, "User's sister is called Ana")
    await memory_store.add(user, "User works as a nurse in Lisbon")
    assert await memory_store.count(user) == 2


async def test_importance_orders_similar_items(memory_store: MemoryStore) -> None:
    user = _uid()
    low = await memory_store.add(user, "User plays tennis on Fridays", importance=0.1)
    high = await memory_store.add(user, "User plays tennis on Mondays", importance=0.9)
    hits = await memory_store.search(user, "tennis", k=2)
    assert [h.item.id for h in hits] == [high.id, low.id]
    # Relevance alone does not decide it: with importance weighted out the order may differ.
    only_imp = await memory_store.search(user, "tennis", k=2, weights=(0.0, 1.0, 0.0))
    assert only_imp[0].item.id == high.id


async def test_recency_orders_similar_items(memory_store: MemoryStore) -> None:
    user = _uid()
    old = await memory_store.add(user, "User is reading Dune", importance=0.5)
    new = await memory_store.add(user, "User is reading Dune Messiah", importance=0.5)
    await _age(memory_store, user, new.id, days=0)
    await _age(memory_store, user, old.id, days=120)
    hits = await memory_store.search(user, "which book is the user reading", k=2)
    assert hits[0].item.id == new.id
    assert hits[0].recency > 0.99 > 0.1 > hits[1].recency
    # And the other way round once the newer one is the stale one.
    await _age(memory_store, user, new.id, days=365)
    await _age(memory_store, user, old.id, days=0)
    hits = await memory_store.search(user, "which book is the user reading", k=2)
    assert hits[0].item.id == old.id


async def test_event_time_is_kept_and_rendered(memory_store: MemoryStore) -> None:
    user = _uid()
    said = datetime(2023, 5, 8, 13, 56, tzinfo=UTC)
    await memory_store.add(user, "User went to a support group yesterday", event_at=said)
    recalled = await memory_store.recall(user, "support group", k=3, token_budget=200)
    assert recalled[0]["text"].startswith("[08 May 2023] ")
    assert recalled[0]["kind"] == "memory" and recalled[0]["source"]


async def test_token_budget_is_respected(memory_store: MemoryStore) -> None:
    user = _uid()
    await memory_store.add_many(
        user,
        [NewMemory(text=f"User visited museum number {i} in Rome", kind="fact") for i in range(20)],
    )
    for budget in (20, 60, 200):
        recalled = await memory_store.recall(user, "museum Rome", k=20, token_budget=budget)
        used = sum(count_tokens_approximately([r["text"]]) for r in recalled)
        assert recalled and used <= budget
    assert len(await memory_store.recall(user, "museum", k=3, token_budget=10_000)) == 3


async def test_neighbour_context_is_searched_not_returned(memory_store: MemoryStore) -> None:
    user = _uid()
    turns = [
        NewMemory(text="A: What did you do at the weekend?", provenance=["D1:1"]),
        NewMemory(text="B: We went kayaking on the lake!", provenance=["D1:2"]),
        NewMemory(text="A: Sounds fun.", provenance=["D1:3"]),
    ]
    await memory_store.add_many(user, with_neighbour_context(turns, window=1))
    # "weekend" is only in D1:1's own words, and in D1:2's context: own words rank first,
    # the neighbour is still found, and what comes back is its text alone.
    hits = await memory_store.search(user, "weekend", k=3)
    assert [h.item.provenance for h in hits[:2]] == [["D1:1"], ["D1:2"]]
    assert hits[1].item.text == "B: We went kayaking on the lake!"


async def test_export_and_delete_user_leave_nothing(memory_store: MemoryStore) -> None:
    user, other = _uid(), _uid()
    await memory_store.add(user, "User has two cats")
    await memory_store.add(user, "User runs marathons")
    await memory_store.add(other, "User has a parrot")
    exported = await memory_store.export_user(user)
    assert {e["text"] for e in exported} == {"User has two cats", "User runs marathons"}
    assert await memory_store.delete_user(user) == 2
    async with memory_store._pool.connection() as conn:
        cur = await conn.execute(
            "SELECT (SELECT count(*) FROM store WHERE prefix = %s) AS s, "
            "(SELECT count(*) FROM mnemo_memory_index WHERE user_id = %s) AS i",
            (f"{user}.memories", user),
        )
        row = await cur.fetchone()
    assert row == {"s": 0, "i": 0}
    assert await memory_store.count(other) == 1


async def test_single_delete_cascades_to_index(memory_store: MemoryStore) -> None:
    user = _uid()
    item = await memory_store.add(user, "User owns a red bicycle")
    await memory_store.delete(user, item.id)
    assert await memory_store.search(user, "red bicycle", k=3) == []


async def test_bad_input_is_refused(memory_store: MemoryStore) -> None:
    with pytest.raises(InvalidInput):
        await memory_store.add(_uid(), "   ")
    with pytest.raises(InvalidInput):
        await memory_store.add(_uid(), "text", kind="gossip")
    with pytest.raises(InvalidInput):
        await memory_store.add("bad user/../", "text")


async def test_full_text_fallback_without_pgvector(
    fts_memory_store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    store = fts_memory_store
    assert store.vector_enabled is False
    with caplog.at_level(logging.WARNING, logger="stores.memory.store"):
        await store.setup()  # idempotent, and says why search is text-only
    assert any("pgvector" in r.getMessage() for r in caplog.records)
    user, other = _uid(), _uid()
    await store.add(user, "User's daughter plays the violin", importance=0.7)
    await store.add(user, "User is training for a marathon", importance=0.5)
    again = await store.add(user, "user's daughter plays the violin")
    assert await store.count(user) == 2 and again.seen_count == 2
    hits = await store.search(user, "Which instrument does my daughter play?", k=5)
    assert hits and "violin" in hits[0].item.text and hits[0].vector_rank is None
    assert await store.search(other, "violin", k=5) == []
    recalled = await store.recall(user, "marathon training", k=3, token_budget=100)
    assert recalled and "marathon" in recalled[0]["text"]
    assert await store.delete_user(user) == 2


async def _stats_match_rows(store: MemoryStore, user: str) -> tuple[int, int]:
    """The trigger-kept BM25 statistics and postings equal a fresh count of the index rows."""
    async with store._pool.connection() as conn:
        cur = await conn.execute(
            "SELECT (SELECT count(*) FROM mnemo_memory_index WHERE user_id = %(u)s) AS n, "
            "(SELECT coalesce(sum(doc_len), 0) FROM mnemo_memory_index WHERE user_id = %(u)s) "
            "AS len, (SELECT n FROM mnemo_memory_stats WHERE user_id = %(u)s) AS sn, "
            "(SELECT total_len FROM mnemo_memory_stats WHERE user_id = %(u)s) AS slen, "
            "(SELECT coalesce(sum(length(tsv)), 0) FROM mnemo_memory_index "
            " WHERE user_id = %(u)s) AS lexemes, "
            "(SELECT count(*) FROM mnemo_memory_postings WHERE user_id = %(u)s) AS postings, "
            "(SELECT count(*) FROM mnemo_memory_vectors WHERE user_id = %(u)s) AS vectors, "
            "(SELECT coalesce(max(seq), 0) FROM mnemo_memory_vectors WHERE user_id = %(u)s) "
            "AS newest, (SELECT n FROM mnemo_memory_vector_state WHERE user_id = %(u)s) AS vn, "
            "(SELECT max_seq FROM mnemo_memory_vector_state WHERE user_id = %(u)s) AS vseq",
            {"u": user},
        )
        row = await cur.fetchone()
    assert row is not None
    assert row["postings"] == row["lexemes"], "one posting per item and distinct lexeme"
    if row["vectors"] == 0:
        assert row["vn"] is None, "an emptied user leaves no vector state behind"
    else:
        assert row["vn"] == row["vectors"] and row["vseq"] >= row["newest"] > 0
    if row["n"] == 0:
        assert row["sn"] is None, "an emptied user leaves no statistics row behind"
    else:
        assert (row["sn"], row["slen"]) == (row["n"], row["len"])
    return int(row["n"]), int(row["len"])


async def test_bm25_statistics_and_postings_follow_every_write(memory_store: MemoryStore) -> None:
    user, other = _uid(), _uid()
    first = await memory_store.add(user, "User keeps bees on the roof", kind="fact")
    assert await _stats_match_rows(memory_store, user) == (1, 4)  # user keep bee roof
    await memory_store.add_many(
        user, [NewMemory(text=f"Turn {i} about gardening and tomatoes") for i in range(5)]
    )
    await memory_store.add(other, "User has a parrot")
    assert (await _stats_match_rows(memory_store, user))[0] == 6
    # A same-subject merge rewrites the text: the length changes, the count does not.
    await memory_store.add(user, "User lives in Oslo", subject="home city")
    before = await _stats_match_rows(memory_store, user)
    await memory_store.add(user, "User moved to Bergen on the west coast", subject="home city")
    after = await _stats_match_rows(memory_store, user)
    assert after[0] == before[0] and after[1] > before[1]
    await memory_store.delete(user, first.id)
    assert (await _stats_match_rows(memory_store, user))[0] == 6
    await memory_store.delete_user(user)
    assert await _stats_match_rows(memory_store, user) == (0, 0)
    assert (await _stats_match_rows(memory_store, other))[0] == 1


async def test_in_memory_vector_copy_matches_sql_through_every_change(
    memory_store: MemoryStore,
) -> None:
    """Large users' vectors are searched in process memory. Whatever happens to the items
    (adds, a same-subject replacement, deletes, writes by another process), the copy must
    rank exactly like the SQL scan, and one user's copy never holds another's vectors."""
    from dataclasses import replace

    pool, embedder = memory_store._pool, memory_store._embeddings
    cached = MemoryStore(pool, embedder, config=replace(MemoryConfig(), vector_cache_min_rows=3))
    other_process = MemoryStore(
        pool, embedder, config=replace(MemoryConfig(), vector_cache_min_rows=3)
    )
    sql_only = MemoryStore(pool, embedder, config=replace(MemoryConfig(), vector_cache_rows=0))
    for store in (cached, other_process, sql_only):
        await store.setup()
    assert cached._vector_cache is not None and sql_only._vector_cache is None
    served: list[str] = []
    original = cached._vector_cache.current

    async def spy(user_id: str) -> object:
        copy = await original(user_id)
        served.append("memory" if copy is not None else "sql")
        return copy

    cached._vector_cache.current = spy  # type: ignore[method-assign]
    user, stranger = _uid(), _uid()
    await cached.add_many(
        user,
        [
            NewMemory(text=t)
            for t in (
                "User's dog is a beagle named Rex",
                "User drinks oat milk in coffee",
                "User hikes in the Alps every summer",
                "User's sister lives in Lisbon",
            )
        ],
    )
    await cached.add(stranger, "User's cat is called Mimi and is a pet")
    queries = ["which pet do I have?", "where does my sister live?", "summer plans", "dessert"]

    async def same() -> None:
        for q in queries:
            mine = await cached.search(user, q, k=4)
            truth = await sql_only.search(user, q, k=4)
            assert [h.item.id for h in mine] == [h.item.id for h in truth], q
            # numpy and pgvector round half floats differently: equal to ~1e-5
            assert [h.score for h in mine] == pytest.approx([h.score for h in truth], abs=1e-3)

    await same()
    assert served[-1] == "memory"
    await cached.add(user, "User's favourite food is sushi", subject="favourite food")
    await same()
    # Same subject: the item (and its vector) is replaced in place, with a new meaning.
    await cached.add(user, "User's favourite is chocolate cake", subject="favourite food")
    await same()
    await other_process.add(user, "User adopted a parrot as a second pet")  # not via `cached`
    await same()
    hits = await cached.search(user, "parrot pet", k=1)
    assert "parrot" in hits[0].item.text
    gone = hits[0].item.id
    await other_process.delete(user, gone)
    await same()
    assert all(h.item.id != gone for h in await cached.search(user, "parrot pet", k=5))
    assert all(h.item.user_id == user for h in await cached.search(user, "cat Mimi", k=5))
    assert set(served) == {"memory"}
    assert user in cached._vector_cache._users
    await cached.delete_user(user)
    assert user not in cached._vector_cache._users  # dropped at once, not at the next search
    assert await cached.search(user, "pet", k=5) == []


async def test_a_bulk_load_past_the_threshold_is_served_from_memory_at_once(
    memory_store: MemoryStore,
) -> None:
    """A user found small is searched in SQL for a while without asking again; a bulk load
    (import, add_many) that grows them past the threshold must not leave them there (the
    10k-memory search of bench.locomo_recall ran on the slow path for that reason)."""
    from dataclasses import replace

    pool, embedder = memory_store._pool, memory_store._embeddings
    store = MemoryStore(pool, embedder, config=replace(MemoryConfig(), vector_cache_min_rows=4))
    await store.setup()
    assert store._vector_cache is not None
    user = _uid()
    await store.add(user, "I keep bees in the garden", kind="turn")
    await store.search(user, "bees", k=3)
    assert store._vector_cache.lookups["sql"] == 1 and user in store._vector_cache._small
    await store.add_many(user, [NewMemory(text=f"note {i} about honey") for i in range(4)],
                         batch_size=4)  # fmt: skip
    hits = await store.search(user, "bees", k=3)
    assert hits[0].item.text == "I keep bees in the garden"
    assert store._vector_cache.lookups["sql"] == 1, "still searched in SQL after the load"
    assert user in store._vector_cache._users


async def test_bm25_takes_candidates_from_the_rarest_terms_within_the_budget(
    memory_store: MemoryStore,
) -> None:
    """Past ``bm25_budget`` postings, commoner query terms stop selecting candidates but still
    score the ones the rarer terms found; under it, every (non-common) term selects."""
    from dataclasses import replace

    from stores.memory import retrieval
    from stores.memory.model import store_prefix

    pool, store, user = memory_store._pool, memory_store, _uid()
    texts = [f"User ate an apple on day {i}" for i in range(6)]
    texts += ["User saw a zebra eating an apple", "User drew a zebra"]
    texts += [f"User met friend number {i} at the park" for i in range(30)]
    await store.add_many(user, [NewMemory(text=t) for t in texts])
    params = {"p": store_prefix(user), "u": user, "n": 50}

    async def bm25(budget: int) -> dict[str, float]:
        config = replace(MemoryConfig(), bm25_budget=budget)
        rows = await retrieval.bm25(pool, config, "zebra apple", params)
        return {r["value"]["text"]: float(r["score"]) for r in rows}

    wide, narrow = await bm25(1_000_000), await bm25(1)
    assert len(wide) == 8  # every item naming a zebra or an apple (7 of 38: not common)
    assert set(narrow) == {"User saw a zebra eating an apple", "User drew a zebra"}
    # The common term still scores what the rare one found: same scores either way.
    assert narrow == pytest.approx({t: wide[t] for t in narrow})
    assert max(narrow, key=narrow.__getitem__) == "User saw a zebra eating an apple"


async def test_the_bm25_query_is_never_a_prepared_statement(memory_store: MemoryStore) -> None:
    """psycopg prepares a statement after five runs, and PostgreSQL then may switch it to a
    generic plan, which for this query cannot see that a term's postings are a short index
    range: 430 ms a search at 10k items against 6 ms. The query must run unprepared."""
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    from stores.memory import retrieval
    from stores.memory.model import store_prefix

    user = _uid()
    await memory_store.add(user, "User keeps bees on the roof")
    conninfo = memory_store._pool.conninfo
    kwargs = {"autocommit": True, "row_factory": dict_row}
    async with AsyncConnectionPool(conninfo, min_size=1, max_size=1, kwargs=kwargs) as one:
        params = {"p": store_prefix(user), "u": user, "n": 5}
        for _ in range(8):
            rows = await retrieval.bm25(one, memory_store.config, "bees roof", params)
            assert [r["value"]["text"] for r in rows] == ["User keeps bees on the roof"]
        async with one.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*) AS n FROM pg_prepared_statements "
                "WHERE statement LIKE '%%mnemo_memory_postings%%'"
            )
            assert (await cur.fetchone())["n"] == 0  # type: ignore[index]
