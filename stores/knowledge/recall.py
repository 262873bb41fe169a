"""Knowledge-graph recall for ``load_memory``: current facts about what the message names.

Entities are found in two steps: an exact match of normalized entity names in the message
(cheap, precise, covers "I"/"my" meaning the user), then embedding similarity between the
message and the user's entity names for the paraphrases exact matching misses. Only still
valid relations (``invalid_at IS NULL``) are returned, best first, within a token budget.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from cachetools import LRUCache
from langchain_core.embeddings import Embeddings

from graph.budget import fit_to_budget
from graph.ports import Recalled
from stores.knowledge.mentions import MentionIndex, mentioned_entities
from stores.knowledge.rules import Fact, fact_line

log = logging.getLogger(__name__)

MAX_SEMANTIC_SEEDS = 3
MIN_SIMILARITY = 0.55
"""Cosine floor for an embedding-matched entity (MiniLM, normalized vectors)."""
USERS_CACHED = 256
"""How many users' names and vectors one process keeps (least recently used go first)."""
NAMES_PER_USER = 5000
NAMES_TTL_S = 30.0
"""How often a process looks for entities that other processes created."""
NAMES_FULL_S = 600.0
"""How often the whole list is re-read, dropping deleted names and catching late writes."""
SINCE_MARGIN_MS = 300_000
"""Look-back for the incremental read, so clock skew between writers loses no entity."""


class EntityReader(Protocol):
    """What recall needs from the graph store (``stores.knowledge.bolt.GraphStore``)."""

    async def entity_names(self, user_id: str) -> list[str]: ...

    async def entity_names_since(self, user_id: str, since_ms: int) -> list[tuple[str, int]]: ...

    async def neighbourhood(
        self, user_id: str, names: Sequence[str], *, hops: int = 1, limit: int = 50
    ) -> list[Fact]: ...


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm else vector


class EntityEmbeddingCache:
    """Bounded cache of entity-name vectors: user -> (names, matrix).

    Entity names change slowly and embedding them is the expensive part of recall, so each
    name is embedded once; the user's names are kept as one normalized numpy matrix so that
    scoring a message against thousands of names is a single matrix-vector product.
    Least recently used users are dropped beyond ``max_users``.
    """

    def __init__(self, max_users: int = USERS_CACHED) -> None:
        self._users: LRUCache[str, tuple[list[str], np.ndarray]] = LRUCache(max_users)
        self._lock = asyncio.Lock()

    async def matrix(
        self, embeddings: Embeddings, user_id: str, names: Sequence[str]
    ) -> tuple[list[str], np.ndarray]:
        """The names (capped) and their unit vectors, embedding only names not seen yet."""
        wanted = list(names)[:NAMES_PER_USER]
        async with self._lock:
            cached = self._users.get(user_id)
            if cached is not None and cached[0] == wanted:
                return cached
            if cached is not None and cached[0] == wanted[: len(cached[0])]:
                # The common case: names were only appended. Embed just those.
                added = wanted[len(cached[0]) :]
                vectors = await embeddings.aembed_documents(added)
                rows = [_unit(np.asarray(v, dtype=np.float32)) for v in vectors]
                matrix = np.vstack([cached[1], *rows]) if rows else cached[1]
                self._users[user_id] = (wanted, matrix)
                return wanted, matrix
            known: dict[str, np.ndarray] = {}
            if cached is not None:
                known = dict(zip(cached[0], cached[1], strict=True))
            missing = [n for n in wanted if n not in known]
            if missing:
                vectors = await embeddings.aembed_documents(missing)
                for name, vector in zip(missing, vectors, strict=True):
                    known[name] = _unit(np.asarray(vector, dtype=np.float32))
            dims = len(next(iter(known.values()))) if known else 0
            matrix = (
                np.stack([known[n] for n in wanted])
                if wanted
                else np.zeros((0, dims), dtype=np.float32)
            )
            self._users[user_id] = (wanted, matrix)
            return wanted, matrix

    def has(self, user_id: str) -> bool:
        return user_id in self._users

    def forget(self, user_id: str) -> None:
        self._users.pop(user_id, None)


@dataclass
class NameList:
    """One user's entity names as this process knows them, with their mention index."""

    names: list[str]
    newest_ms: int
    check_at: float
    full_at: float
    known: set[str] = field(default_factory=set)
    index: MentionIndex = field(default_factory=MentionIndex)

    def __post_init__(self) -> None:
        self.known = set(self.names)
        self.index = MentionIndex(self.names)

    def add(self, names: Iterable[str]) -> None:
        """Append names not known yet. The list is replaced, never mutated, so a recall in
        flight keeps a consistent (names, index) pair."""
        fresh = [name for name in dict.fromkeys(names) if name and name not in self.known]
        if fresh:
            self.names = [*self.names, *fresh]
            self.known.update(fresh)
            self.index.extend(fresh)


class FactRecall:
    """Knowledge-graph recall with the caches it needs, owned by one object per process.

    Reading thousands of names costs more than the rest of recall together (132 ms for 3.3k
    on ArcadeDB), so a user's list is read whole only on first use and then every
    ``NAMES_FULL_S``. Writes in this process add their names at once
    (:meth:`entities_written`); every ``NAMES_TTL_S`` one cheap query picks up entities other
    processes created. Those refreshes run in the background: the turn that finds the list
    due answers from the list it has, seconds stale at worst. :meth:`forget` drops a user
    from every cache (GDPR deletion goes through it).
    """

    def __init__(
        self,
        graph: EntityReader,
        embeddings: Embeddings | None,
        *,
        max_users: int = USERS_CACHED,
    ) -> None:
        self._graph = graph
        self._embeddings = embeddings
        self._vectors = EntityEmbeddingCache(max_users)
        self._names: LRUCache[str, NameList] = LRUCache(max_users)
        self._refreshing: dict[str, asyncio.Task[None]] = {}

    async def recall(
        self,
        user_id: str,
        text: str,
        *,
        hops: int = 1,
        token_budget: int = 300,
        limit: int = 50,
        query_vector: Awaitable[Sequence[float] | None] | None = None,
    ) -> list[Recalled]:
        """Current facts around the entities the message names, best first, within budget.

        Score = relation confidence x how surely the entity was named (1 for an exact
        mention, the cosine for a semantic one), halved for facts one hop further out.
        """
        if not text.strip() or token_budget <= 0:
            return []
        entry = await self.names(user_id)
        names = entry.names
        if not names:
            return []
        seeds: dict[str, float] = dict.fromkeys(mentioned_entities(text, names, entry.index), 1.0)
        if self._embeddings is not None:
            similar = await self.similar_entities(user_id, text, names, query_vector=query_vector)
            for name, sim in similar.items():
                seeds.setdefault(name, sim)
        if not seeds:
            return []
        facts: list[Fact] = await self._graph.neighbourhood(
            user_id, list(seeds), hops=max(1, min(2, hops)), limit=limit
        )
        scored: list[tuple[float, Fact]] = []
        for fact in facts:
            weight = max(seeds.get(fact["subject"], 0.0), seeds.get(fact["object"], 0.0))
            hop = fact.get("hop", 1)
            if hop > 1 or weight == 0.0:
                weight = 0.5 * max(seeds.values())
            scored.append((round(fact["confidence"] * weight, 4), fact))
        scored.sort(key=lambda pair: (-pair[0], -pair[1]["created_at"]))
        lines = [fact_line(f) for _, f in scored]
        return [
            Recalled(
                kind="fact", text=lines[i], score=scored[i][0], source=f"kg:{scored[i][1]['id']}"
            )
            for i in fit_to_budget(lines, token_budget)
        ]

    async def similar_entities(
        self,
        user_id: str,
        text: str,
        names: Sequence[str],
        *,
        k: int = MAX_SEMANTIC_SEEDS,
        min_similarity: float = MIN_SIMILARITY,
        query_vector: Awaitable[Sequence[float] | None] | None = None,
    ) -> dict[str, float]:
        """Up to ``k`` entity names most similar to the message, above ``min_similarity``.

        ``query_vector``: the message's embedding when the caller already computes it.
        """
        embeddings = self._embeddings
        if embeddings is None or not names:
            return {}
        ordered, matrix = await self._vectors.matrix(embeddings, user_id, names)
        if not ordered:
            return {}
        vector = await query_vector if query_vector is not None else None
        if vector is None:
            vector = await embeddings.aembed_query(text)
        query = _unit(np.asarray(vector, dtype=np.float32))
        sims = matrix @ query
        top = np.argsort(-sims)[:k]
        return {ordered[i]: float(sims[i]) for i in top if sims[i] >= min_similarity}

    async def names(self, user_id: str) -> NameList:
        """The user's entity names, kept current incrementally and off the reply path."""
        hit = self._names.get(user_id)
        if hit is None:
            hit = await self._read_all(user_id)
            self._names[user_id] = hit
            return hit
        now = time.monotonic()
        if hit.check_at <= now and user_id not in self._refreshing:
            hit.check_at = now + NAMES_TTL_S
            task = asyncio.create_task(self._refresh(user_id, hit), name=f"names:{user_id}")
            self._refreshing[user_id] = task
            task.add_done_callback(lambda done: self._refreshed(user_id, done))
        return hit

    async def refreshes(self) -> None:
        """Wait for the background refreshes in flight (tests, shutdown)."""
        await asyncio.gather(*self._refreshing.values(), return_exceptions=True)

    def _refreshed(self, user_id: str, task: asyncio.Task[None]) -> None:
        self._refreshing.pop(user_id, None)
        if not task.cancelled() and task.exception() is not None:  # recall serves the old list
            log.warning("entity names refresh failed for a user: %r", task.exception())

    async def _read_all(self, user_id: str) -> NameList:
        now, started_ms = time.monotonic(), int(time.time() * 1000)
        names = await self._graph.entity_names(user_id)
        return NameList(names, started_ms, now + NAMES_TTL_S, now + NAMES_FULL_S)

    async def _refresh(self, user_id: str, hit: NameList) -> None:
        if hit.full_at <= time.monotonic():
            fresh_list = await self._read_all(user_id)
            if self._names.get(user_id) is hit:  # not forgotten (or replaced) meanwhile
                self._names[user_id] = fresh_list
            return
        rows = await self._graph.entity_names_since(user_id, hit.newest_ms - SINCE_MARGIN_MS)
        hit.add(name for name, _ in rows)
        hit.newest_ms = max([hit.newest_ms, *(at for _, at in rows)])

    async def entities_written(self, user_id: str, names: Iterable[str]) -> None:
        """After a graph write in this process: list the new names and embed them now.

        Runs after the reply, so the next turn's recall neither re-reads the name list nor
        embeds the new names on its own critical path.
        """
        hit = self._names.get(user_id)
        if hit is None:
            return
        hit.add(names)
        if self._embeddings is not None and self._vectors.has(user_id):
            await self._vectors.matrix(self._embeddings, user_id, hit.names)

    def forget(self, user_id: str) -> None:
        """Drop a deleted user's cached names and vectors (a refresh in flight included)."""
        self._vectors.forget(user_id)
        self._names.pop(user_id, None)
        task = self._refreshing.pop(user_id, None)
        if task is not None:
            task.cancel()

    async def aclose(self) -> None:
        """Cancel background refreshes (process shutdown)."""
        for task in list(self._refreshing.values()):
            task.cancel()
        await self.refreshes()
