"""The long-term memory store: per-user items in Postgres, written with dedup, recalled by
hybrid search (BM25-style full text + pgvector).

:class:`MemoryStore` is the one class that reads and writes long-term memory; how the data
is laid out, and why, is told in :mod:`stores.memory`. Around it: the records and checks in
:mod:`stores.memory.model`, the candidate fetch in :mod:`stores.memory.retrieval`, the pure
ranking in :mod:`stores.memory.ranking`, the query text in :mod:`stores.memory.sql`; the
tables are made by migration 1 in :mod:`stores.postgres.migrations`.

Writes should go through :class:`MemoryStore` (a plain LangGraph ``store.aput`` does not
refresh the derived index); LangGraph code gets
:class:`stores.memory.langgraph_store.HybridMemoryStore`, a ``BaseStore`` that routes the
memories namespace here (:meth:`MemoryStore.put` is its write). On a Postgres without
pgvector the vector table is absent and search runs on full text alone, with one warning
logged at setup.
"""

from __future__ import annotations

import builtins
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from langchain_core.embeddings import Embeddings
from psycopg_pool import AsyncConnectionPool

from graph.budget import fit_to_budget
from stores.errors import InvalidInput, NotFound
from stores.ids import check_id
from stores.memory import cues, ranking, retrieval, sql
from stores.memory.model import (
    MemoryConfig,
    MemoryItem,
    NewMemory,
    ScoredItem,
    aware,
    check_kind,
    check_text,
    clamp01,
    embedding_text,
    item_from,
    now,
    render_memory,
    store_prefix,
    value_of,
    vector_text,
)

if TYPE_CHECKING:
    from graph.ports import QueryVector, Recalled
    from stores.memory.vector_cache import VectorCache

__all__ = ["MemoryStore"]

log = logging.getLogger(__name__)


class MemoryStore:
    """Long-term memories of every user, one ``(user_id, "memories")`` namespace each.

    Every public method takes the ``user_id`` first and every query filters on it: no call can
    read or change another user's items. Implements ``graph.ports.MemoryPort``.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        embeddings: Embeddings | None,
        *,
        config: MemoryConfig | None = None,
        dims: int = 384,
    ) -> None:
        self._pool = pool
        self._embeddings = embeddings
        self.config = config or MemoryConfig()
        self._dims = dims
        self.vector_enabled = False
        self._ready = False
        self._vector_cache: VectorCache | None = None

    # ----------------------------------------------------------------- setup
    async def setup(self) -> None:
        """Prepare this process's side of the store; runs no DDL.

        The tables come from ``stores.postgres.migrations.migrate``, which must have run on
        this database. This looks whether the vector table exists (it does where pgvector
        was available at migration time), and with embeddings configured turns vector search
        and the in-process vector cache on. Idempotent; logs why search is text-only if so.
        """
        async with self._pool.connection() as conn:
            cur = await conn.execute(sql.SCHEMA_PRESENT)
            row = await cur.fetchone()
        if row is None or not row["ready"]:
            raise RuntimeError(
                "the long-term memory tables are missing: run the schema migrations first "
                "(stores.postgres.migrations.migrate, or `mnemograph migrate`)"
            )
        vectors = bool(row["vectors"])
        self.vector_enabled = vectors and self._embeddings is not None
        self._vector_cache = None
        if self.vector_enabled and self.config.vector_cache_rows > 0:
            from stores.memory.vector_cache import VectorCache

            self._vector_cache = VectorCache(
                self._pool,
                dims=int(self._dims),
                min_rows=self.config.vector_cache_min_rows,
                max_rows=self.config.vector_cache_rows,
            )
        if not row["available"]:
            log.warning(
                "PostgreSQL has no pgvector extension: long-term memory search uses full-text "
                "search only (install pgvector for semantic recall)"
            )
        elif not vectors:
            log.warning(
                "the schema was made without pgvector (no mnemo_memory_vectors table): "
                "long-term memory search uses full-text search only"
            )
        elif self._embeddings is None:
            log.warning("no embedding model configured: memory search uses full-text only")
        self._ready = True

    def recheck_size(self, user_id: str) -> None:
        """Make the next search of ``user_id`` ask again whether to serve their vectors from
        memory: a user found small is otherwise searched in SQL for up to 30 s, which is
        slow right after a bulk load grows them past the threshold (``add_many`` calls this)."""
        if self._vector_cache is not None:
            self._vector_cache.recheck(user_id)

    def vector_cache_stats(self) -> dict[str, int] | None:
        """The in-process vector cache's lookups by result (``hit``, ``miss``, ``sql``)
        since start; ``None`` when this store has no cache."""
        cache = self._vector_cache
        return dict(cache.lookups) if cache is not None else None

    def _require_ready(self) -> None:
        if not self._ready:
            raise RuntimeError("MemoryStore.setup() must run before use")

    # ---------------------------------------------------------------- embedding
    def _embedding_text(self, text: str, context: str | None) -> str:
        """What an item's embedding sees (a hook: benches try other choices)."""
        return embedding_text(text, context)

    async def _embed_docs(self, texts: list[str]) -> list[list[float]] | None:
        if not self.vector_enabled or self._embeddings is None or not texts:
            return None
        return await self._embeddings.aembed_documents(texts)

    async def _embed_query(self, text: str) -> list[float] | None:
        if not self.vector_enabled or self._embeddings is None:
            return None
        return await self._embeddings.aembed_query(text)

    # ----------------------------------------------------------------- writes
    async def add(
        self,
        user_id: str,
        text: str,
        *,
        kind: str = "fact",
        importance: float = 0.5,
        event_at: datetime | None = None,
        provenance: Sequence[str] = (),
        metadata: Mapping[str, Any] | None = None,
        subject: str | None = None,
        context: str | None = None,
        dedup: bool | None = None,
    ) -> MemoryItem:
        """Add one memory, or merge it into a near-duplicate.

        A duplicate is an item of the same user with the same ``subject`` (the new text
        replaces the old: the subject's value changed), or with cosine ≥ the dedup threshold
        (same statement again). Merging bumps importance and ``last_seen_at`` and unions the
        provenance, so repetition makes a memory stronger instead of cluttering recall.
        Dedup is on by default except for raw ``turn`` items, which are distinct by nature.
        """
        self._require_ready()
        check_id("user id", user_id)
        text = check_text(text)
        check_kind(kind)
        importance = clamp01(importance)
        if dedup is None:
            dedup = kind != "turn"
        vectors = await self._embed_docs([self._embedding_text(text, context)])
        vector = vectors[0] if vectors else None
        at = now()
        async with self._pool.connection() as conn, conn.transaction():
            existing: MemoryItem | None = None
            if dedup:
                existing = await self._find_duplicate(conn, user_id, text, subject, vector)
            if existing is not None:
                item = self._merged(
                    existing, text, importance, event_at, provenance, metadata, subject,
                    context, at,
                )  # fmt: skip
            else:
                item = MemoryItem(
                    id=uuid.uuid4().hex,
                    user_id=user_id,
                    text=text,
                    kind=kind,
                    importance=importance,
                    event_at=aware(event_at),
                    created_at=at,
                    last_seen_at=at,
                    provenance=[str(p) for p in provenance],
                    metadata=dict(metadata or {}),
                    subject=subject,
                    context=context,
                )
            await self._write(conn, [item], [vector] if vector is not None else None)
        return item

    def _merged(
        self,
        existing: MemoryItem,
        text: str,
        importance: float,
        event_at: datetime | None,
        provenance: Sequence[str],
        metadata: Mapping[str, Any] | None,
        subject: str | None,
        context: str | None,
        at: datetime,
    ) -> MemoryItem:
        """``existing`` with a repeated statement merged in (see :meth:`add`)."""
        item = existing
        item.importance = min(
            1.0, max(existing.importance, importance) + self.config.importance_bump
        )
        item.last_seen_at = at
        item.seen_count += 1
        item.text = text
        item.event_at = aware(event_at) or existing.event_at
        item.provenance = list(dict.fromkeys([*existing.provenance, *provenance]))
        item.metadata = {**existing.metadata, **dict(metadata or {})}
        item.subject = subject or existing.subject
        item.context = context or existing.context
        return item

    async def put(
        self,
        user_id: str,
        key: str,
        text: str,
        *,
        kind: str | None = None,
        importance: float | None = None,
        event_at: datetime | None = None,
        provenance: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        subject: str | None = None,
        context: str | None = None,
        dedup: bool | None = None,
    ) -> MemoryItem:
        """Write one memory under a key the caller chose (LangGraph's ``BaseStore.put``).

        - **The key names an item of this user: it is edited in place.** The fields given
          replace the stored ones, those left ``None`` keep their value; ``created_at`` and
          ``seen_count`` stay, ``last_seen_at`` becomes now. No dedup: the caller named the
          item it means.
        - **Otherwise the memory is added as** :meth:`add` **adds it**, defaults and dedup
          included. When it merges into a duplicate stored under another key, the merged
          item *moves* to ``key`` (the duplicate's old key is gone, in the same
          transaction), so the item is always found under the key the caller chose.

        ``key`` follows the id alphabet (``stores.ids.check_id``), as generated ids do, so
        every item stays addressable by the CLI and REST.
        """
        self._require_ready()
        check_id("user id", user_id)
        check_id("memory key", key)
        text = check_text(text)
        if kind is not None:
            check_kind(kind)
        if importance is not None:
            importance = clamp01(importance)
        # Embed outside the transaction, with the context the item will have; an edit that
        # gives no context keeps the stored one (looked up first, re-checked under the lock).
        before = await self._get_row(user_id, key)
        planned = context if context is not None or before is None else before.context
        vector = await self._embed_one(text, planned)
        at = now()
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(sql.GET + " FOR UPDATE", (store_prefix(user_id), key))
            row = await cur.fetchone()
            if row is not None:  # an edit of this very item
                item = item_from(user_id, row["key"], row["value"])
                item.text = text
                item.kind = kind if kind is not None else item.kind
                item.importance = importance if importance is not None else item.importance
                item.event_at = aware(event_at) or item.event_at
                if provenance is not None:
                    item.provenance = [str(p) for p in provenance]
                if metadata is not None:
                    item.metadata = dict(metadata)
                item.subject = subject if subject is not None else item.subject
                item.context = context if context is not None else item.context
                item.last_seen_at = at
                if item.context != planned:  # changed since the look-up: embed what is stored
                    vector = await self._embed_one(text, item.context)
            else:
                kind = kind or "fact"
                importance = 0.5 if importance is None else importance
                if dedup is None:
                    dedup = kind != "turn"
                existing = None
                if dedup:
                    existing = await self._find_duplicate(conn, user_id, text, subject, vector)
                if existing is not None:
                    item = self._merged(
                        existing, text, importance, event_at, provenance or (), metadata,
                        subject, context, at,
                    )  # fmt: skip
                    await conn.execute(sql.DELETE, (store_prefix(user_id), existing.id))
                    item.id = key
                    if item.context != planned:
                        vector = await self._embed_one(text, item.context)
                else:
                    item = MemoryItem(
                        id=key,
                        user_id=user_id,
                        text=text,
                        kind=kind,
                        importance=importance,
                        event_at=aware(event_at),
                        created_at=at,
                        last_seen_at=at,
                        provenance=[str(p) for p in provenance or ()],
                        metadata=dict(metadata or {}),
                        subject=subject,
                        context=context,
                    )
            await self._write(conn, [item], [vector] if vector is not None else None)
        return item

    async def _get_row(self, user_id: str, key: str) -> MemoryItem | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(sql.GET, (store_prefix(user_id), key))
            row = await cur.fetchone()
        return None if row is None else item_from(user_id, row["key"], row["value"])

    async def _embed_one(self, text: str, context: str | None) -> list[float] | None:
        vectors = await self._embed_docs([self._embedding_text(text, context)])
        return vectors[0] if vectors else None

    async def _find_duplicate(
        self,
        conn: Any,
        user_id: str,
        text: str,
        subject: str | None,
        vector: list[float] | None,
    ) -> MemoryItem | None:
        prefix = store_prefix(user_id)
        row = None
        if subject:
            cur = await conn.execute(sql.SAME_SUBJECT, (user_id, prefix, subject))
            row = await cur.fetchone()
        if row is None and vector is not None:
            cur = await conn.execute(
                sql.NEAR_VECTOR,
                {"u": user_id, "p": prefix, "v": vector_text(vector),
                 "d": 1 - self.config.dedup_threshold},
            )  # fmt: skip
            row = await cur.fetchone()
        if row is None and vector is None:
            cur = await conn.execute(sql.SAME_TEXT, (user_id, prefix, text))
            row = await cur.fetchone()
        if row is None:
            return None
        return item_from(user_id, row["key"], row["value"])

    async def _write(
        self, conn: Any, items: Sequence[MemoryItem], vectors: Sequence[Sequence[float]] | None
    ) -> None:
        """Upsert store rows and their index rows; the caller holds the transaction."""
        store_rows = [
            (store_prefix(it.user_id), it.id, json.dumps(value_of(it)), it.created_at)
            for it in items
        ]
        base = [
            (store_prefix(it.user_id), it.id, it.user_id, it.kind, it.subject, it.text, it.context)
            for it in items
        ]
        async with conn.cursor() as cur:
            await cur.executemany(sql.UPSERT_STORE, store_rows)
            await cur.executemany(sql.UPSERT_INDEX, base)
            if vectors is not None and self.vector_enabled:
                await cur.executemany(
                    sql.UPSERT_VECTOR,
                    [
                        (b[0], b[1], b[2], vector_text(v))
                        for b, v in zip(base, vectors, strict=True)
                    ],
                )

    async def add_many(
        self,
        user_id: str,
        items: Sequence[NewMemory],
        *,
        batch_size: int = 256,
        vectors: Sequence[Sequence[float]] | None = None,
    ) -> list[MemoryItem]:
        """Insert many items without dedup: one embedding batch and one transaction per
        ``batch_size`` items. For imports of history, where every turn is its own item.

        ``vectors`` lets a caller that already has embeddings (same model) skip re-embedding.
        """
        self._require_ready()
        check_id("user id", user_id)
        if vectors is not None and len(vectors) != len(items):
            raise InvalidInput("vectors and items differ in length")
        out: list[MemoryItem] = []
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            at = now()
            built = [
                MemoryItem(
                    id=uuid.uuid4().hex,
                    user_id=user_id,
                    text=check_text(n.text),
                    kind=check_kind(n.kind),
                    importance=clamp01(n.importance),
                    event_at=aware(n.event_at),
                    created_at=at,
                    last_seen_at=at,
                    provenance=[str(p) for p in n.provenance],
                    metadata=dict(n.metadata or {}),
                    subject=n.subject,
                    context=n.context,
                )
                for n in chunk
            ]
            chunk_vectors: Sequence[Sequence[float]] | None
            if not self.vector_enabled:
                chunk_vectors = None
            elif vectors is not None:
                chunk_vectors = vectors[start : start + batch_size]
            else:
                chunk_vectors = await self._embed_docs(
                    [self._embedding_text(b.text, b.context) for b in built]
                )
            async with self._pool.connection() as conn, conn.transaction():
                await self._write(conn, built, chunk_vectors)
            out.extend(built)
        self.recheck_size(user_id)  # it may have crossed the cache threshold
        return out

    # ----------------------------------------------------------------- reads
    async def get(self, user_id: str, memory_id: str) -> MemoryItem:
        """One item of this user; another user's id is simply not found."""
        check_id("user id", user_id)
        async with self._pool.connection() as conn:
            cur = await conn.execute(sql.GET, (store_prefix(user_id), memory_id))
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"memory {memory_id!r} not found")
        return item_from(user_id, row["key"], row["value"])

    async def list(
        self, user_id: str, *, limit: int = 1000, offset: int = 0
    ) -> builtins.list[MemoryItem]:
        """The user's items, most recently seen first."""
        check_id("user id", user_id)
        async with self._pool.connection() as conn:
            cur = await conn.execute(sql.LIST, (store_prefix(user_id), limit, offset))
            rows = await cur.fetchall()
        return [item_from(user_id, r["key"], r["value"]) for r in rows]

    async def count(self, user_id: str) -> int:
        check_id("user id", user_id)
        async with self._pool.connection() as conn:
            cur = await conn.execute(sql.COUNT, (store_prefix(user_id),))
            row = await cur.fetchone()
        return int(row["n"]) if row else 0

    async def export_user(self, user_id: str) -> builtins.list[dict[str, Any]]:
        """Every item of the user as plain JSON, oldest first (for the export document), with
        its indexing ``context``: what :meth:`import_user` needs to index it as before."""
        items = await self.list(user_id, limit=1_000_000)
        return [
            {**it.to_json(), "context": it.context}
            for it in sorted(items, key=lambda i: (i.created_at, i.id))
        ]

    async def import_user(
        self, user_id: str, items: Sequence[MemoryItem], *, batch_size: int = 256
    ) -> dict[str, int]:
        """Write exported items back under their own ids (a restore), as they were: no
        dedup, no merge, no importance bump, their own timestamps and counts.

        An item whose id already holds exactly this value is left alone (nothing is
        re-embedded or rewritten, so a second import of one file changes nothing); any other
        value under that id is replaced. Every item is checked before the first is written.
        Returns counts: ``created``, ``updated``, ``unchanged``.
        """
        self._require_ready()
        check_id("user id", user_id)
        seen: set[str] = set()
        for it in items:
            check_id("memory id", it.id)
            if it.user_id != user_id:
                raise InvalidInput(f"memory {it.id!r} belongs to another user")
            if it.id in seen:
                raise InvalidInput(f"memory {it.id!r} appears twice")
            seen.add(it.id)
            if check_text(it.text) != it.text:
                raise InvalidInput(f"memory {it.id!r}: its text is not in stored form")
            check_kind(it.kind)
            if clamp01(it.importance) != it.importance:
                raise InvalidInput(f"memory {it.id!r}: importance must be in [0, 1]")
        prefix = store_prefix(user_id)
        stored: dict[str, Any] = {}
        async with self._pool.connection() as conn:
            for start in range(0, len(items), 10_000):
                keys = [it.id for it in items[start : start + 10_000]]
                cur = await conn.execute(sql.GET_MANY, (prefix, keys))
                stored.update({r["key"]: r["value"] for r in await cur.fetchall()})
        changed = [it for it in items if stored.get(it.id) != json.loads(json.dumps(value_of(it)))]
        for start in range(0, len(changed), batch_size):
            chunk = changed[start : start + batch_size]
            vectors = await self._embed_docs(
                [self._embedding_text(it.text, it.context) for it in chunk]
            )
            async with self._pool.connection() as conn, conn.transaction():
                await self._write(conn, chunk, vectors)
        if changed:
            self.recheck_size(user_id)
        updated = sum(1 for it in changed if it.id in stored)
        return {
            "created": len(changed) - updated,
            "updated": updated,
            "unchanged": len(items) - len(changed),
        }

    async def delete(self, user_id: str, memory_id: str) -> None:
        """Delete one item (its index row goes with it by cascade)."""
        check_id("user id", user_id)
        async with self._pool.connection() as conn:
            cur = await conn.execute(sql.DELETE, (store_prefix(user_id), memory_id))
            if cur.rowcount == 0:
                raise NotFound(f"memory {memory_id!r} not found")

    async def delete_user(self, user_id: str) -> int:
        """Delete every memory of the user; returns how many items went."""
        check_id("user id", user_id)
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(sql.DELETE_INDEX_OF_USER, (user_id,))
            cur = await conn.execute(sql.DELETE_USER, (store_prefix(user_id),))
        if self._vector_cache is not None:  # no copy of a deleted user's vectors stays behind
            self._vector_cache.forget(user_id)
        return int(cur.rowcount)

    async def reindex_user(self, user_id: str) -> int:
        """Rebuild the derived index rows of one user from the store (the source of truth)."""
        items = await self.list(user_id, limit=1_000_000)
        vectors = await self._embed_docs([self._embedding_text(i.text, i.context) for i in items])
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(sql.DELETE_INDEX_OF_USER, (user_id,))
            if items:
                await self._write(conn, items, vectors)
        return len(items)

    # ----------------------------------------------------------------- recall
    async def recall(
        self,
        user_id: str,
        text: str,
        *,
        k: int,
        token_budget: int,
        query_vector: QueryVector | None = None,
    ) -> builtins.list[Recalled]:
        """The user's top memories for ``text``, rendered for the prompt, best first, within
        ``token_budget`` (``graph.ports.MemoryPort``).

        Items that do not fit are skipped (a shorter, lower-ranked one may still fit), so the
        budget is never exceeded and one long item cannot starve the rest.
        """
        if not text.strip() or k <= 0 or token_budget <= 0:
            return []
        hits = await self.search(user_id, text, k=k, query_vector=query_vector)
        lines = [render_memory(hit.item) for hit in hits]
        out: builtins.list[Recalled] = []
        for i in fit_to_budget(lines, token_budget):
            hit = hits[i]
            out.append(
                {"kind": "memory", "text": lines[i], "score": round(hit.score, 4),
                 "source": hit.item.id}
            )  # fmt: skip
        return out

    # ----------------------------------------------------------------- search
    async def search(
        self,
        user_id: str,
        query: str,
        k: int = 10,
        *,
        weights: tuple[float, float, float] | None = None,
        kinds: Sequence[str] | None = None,
        query_vector: QueryVector | None = None,
    ) -> builtins.list[ScoredItem]:
        """Hybrid search within one user: BM25 full text + vector, fused, then scored.

        ``weights`` = (relevance, importance, recency) overrides the configured defaults.
        ``query_vector`` lets a caller that embeds the query anyway (turn recall does, for
        the graph too) share that one embedding; it must come from this store's embedder.
        """
        self._require_ready()
        check_id("user id", user_id)
        query = " ".join(str(query).split())
        if "\x00" in query:  # PostgreSQL text cannot hold it: a clear 4xx, not a 500
            raise InvalidInput("the query contains a NUL character")
        if not query or k <= 0:
            return []
        cfg = self.config
        params = {"p": store_prefix(user_id), "u": user_id, "n": max(cfg.candidates, k)}
        bm25_fetched, vec_fetched = await self._candidates(query, params, query_vector)
        values = {r["key"]: r["value"] for r in bm25_fetched}
        values.update((r["key"], r["value"]) for r in vec_fetched)
        bm25 = {r["key"]: float(r["score"]) for r in bm25_fetched}
        cos = {r["key"]: float(r["cos"]) for r in vec_fetched if r["cos"] is not None}
        if not bm25 and not cos:
            return []
        bm25_rank = {key: i for i, key in enumerate(ranking.order(bm25))}
        vec_rank = {key: i for i, key in enumerate(ranking.order(cos))}
        ranked = self._rank(
            ranking.rank(
                self._relevance(query, bm25, cos, values),
                values,
                weights=weights or cfg.weights,
                half_life_days=cfg.recency_half_life_days,
                now=now(),
                kinds=kinds,
            ),
            values,
        )
        # Only the final k become MemoryItems (building one per candidate cost ~4 ms).
        return [
            ScoredItem(
                item=item_from(user_id, r.key, values[r.key]),
                score=r.score,
                relevance=r.relevance,
                recency=r.recency,
                bm25_rank=bm25_rank.get(r.key),
                vector_rank=vec_rank.get(r.key),
            )
            for r in ranked[:k]
        ]

    def _relevance(
        self,
        query: str,
        bm25: Mapping[str, float],
        cos: Mapping[str, float],
        values: Mapping[str, Mapping[str, Any]],
    ) -> dict[str, float]:
        """Each candidate's relevance in [0, 1] from both retrievers' scores (a hook: benches
        try other fusions; ``query`` and the stored ``values`` are there for them)."""
        cfg = self.config
        fused = ranking.fuse_scores(
            bm25, cos, vector_weight=cfg.vector_weight, cos_min_span=cfg.cos_min_span
        )
        relevances = ranking.replies_inherit(
            ranking.relevance(fused), values,
            share=cfg.reply_share, penalty=cfg.question_penalty,
        )  # fmt: skip
        relevances = cues.boost_time(query, relevances, values, cfg.time_boost)
        relevances = cues.boost_speaker(query, relevances, values, cfg.speaker_boost)
        return ranking.relevance(relevances)  # back to [0, 1], the best at 1, no ties made

    def _rank(
        self, ranked: builtins.list[ranking.Ranked], values: Mapping[str, Mapping[str, Any]]
    ) -> builtins.list[ranking.Ranked]:
        """The final order of the scored candidates (a hook: benches try re-rankings)."""
        return ranked

    async def _candidates(
        self, query: str, params: Mapping[str, Any], query_vector: QueryVector | None
    ) -> tuple[builtins.list[Any], builtins.list[Any]]:
        """(BM25 rows, vector rows), each with the candidates' stored values."""
        shared = query_vector is not None and self.vector_enabled
        embedding = (
            query_vector if shared and query_vector is not None else self._embed_query(query)
        )
        return await retrieval.candidates(
            self._pool, self.config, self._vector_cache, query, params, embedding, shared=shared
        )
