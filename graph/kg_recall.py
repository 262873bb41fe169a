"""Knowledge-graph recall for ``load_memory``: current facts about what the message names.

Entities are found in two steps: an exact match of normalized entity names in the message
(cheap, precise, covers "I"/"my" meaning the user), then embedding similarity between the
message and the user's entity names for the paraphrases exact matching misses. Only still
valid relations (``invalid_at IS NULL``) are returned, best first, within a token budget.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

from graph.kg import FIRST_PERSON, USER_ENTITY, Fact, fact_line, fit_to_budget, match_key
from graph.state import Recalled

log = logging.getLogger(__name__)

MAX_SEMANTIC_SEEDS = 3
MIN_SIMILARITY = 0.55
"""Cosine floor for an embedding-matched entity (MiniLM, normalized vectors)."""
_USER_CACHE_SIZE = 256
_NAMES_PER_USER = 5000


class EntityEmbeddingCache:
    """Per-process, bounded cache of entity-name vectors: user -> (names, matrix).

    Entity names change slowly and embedding them is the expensive part of recall, so each
    name is embedded once; the user's names are kept as one normalized numpy matrix so that
    scoring a message against thousands of names is a single matrix-vector product.
    Least recently used users are dropped beyond ``max_users``.
    """

    def __init__(self, max_users: int = _USER_CACHE_SIZE) -> None:
        self._max_users = max_users
        self._users: OrderedDict[str, tuple[list[str], np.ndarray]] = OrderedDict()
        self._lock = asyncio.Lock()

    async def matrix(
        self, embeddings: Embeddings, user_id: str, names: Sequence[str]
    ) -> tuple[list[str], np.ndarray]:
        wanted = list(names)[:_NAMES_PER_USER]
        async with self._lock:
            cached = self._users.get(user_id)
            if cached is not None and cached[0] == wanted:
                self._users.move_to_end(user_id)
                return cached
            if cached is not None and cached[0] == wanted[: len(cached[0])]:
                # The common case: names were only appended. Embed just those.
                added = wanted[len(cached[0]) :]
                vectors = await embeddings.aembed_documents(added)
                rows = [_unit(np.asarray(v, dtype=np.float32)) for v in vectors]
                matrix = np.vstack([cached[1], *rows]) if rows else cached[1]
                self._users[user_id] = (wanted, matrix)
                self._users.move_to_end(user_id)
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
            self._users.move_to_end(user_id)
            while len(self._users) > self._max_users:
                self._users.popitem(last=False)
            return wanted, matrix

    def has(self, user_id: str) -> bool:
        return user_id in self._users

    def forget(self, user_id: str) -> None:
        self._users.pop(user_id, None)


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm else vector


_cache = EntityEmbeddingCache()
_NAMES_TTL_S = 30.0
"""How often a process looks for entities that other processes created."""
_NAMES_FULL_S = 600.0
"""How often the whole list is re-read, dropping deleted names and catching late writes."""
_SINCE_MARGIN_MS = 300_000
"""Look-back for the incremental read, so clock skew between writers loses no entity."""


@dataclass
class _NameList:
    names: list[str]
    known: set[str]
    newest_ms: int
    check_at: float
    full_at: float


_names: OrderedDict[str, _NameList] = OrderedDict()


async def _entity_names(graph: Any, user_id: str) -> list[str]:
    """The user's entity names, kept current incrementally and off the reply path.

    Reading thousands of names costs more than the rest of recall together (132 ms for 3.3k
    on ArcadeDB), so the list is read whole only on first use and then every few minutes.
    Writes in this process add their names at once (:func:`names_added`); every
    ``_NAMES_TTL_S`` one cheap query picks up entities other processes created. Those
    refreshes run in the background: the turn that finds the list due answers from the list
    it has, seconds stale at worst, instead of waiting 9-130 ms for the graph server.
    """
    hit = _names.get(user_id)
    if hit is None:
        hit = await _read_all(graph, user_id)
        _remember(user_id, hit)
        return hit.names
    now = time.monotonic()
    if hit.check_at <= now and user_id not in _refreshing:
        hit.check_at = now + _NAMES_TTL_S
        task = asyncio.create_task(_refresh(graph, user_id, hit), name=f"names:{user_id}")
        _refreshing[user_id] = task
        task.add_done_callback(lambda done: _refreshed(user_id, done))
    _names.move_to_end(user_id)
    return hit.names


_refreshing: dict[str, asyncio.Task[None]] = {}


def _refreshed(user_id: str, task: asyncio.Task[None]) -> None:
    _refreshing.pop(user_id, None)
    if not task.cancelled() and task.exception() is not None:  # recall serves the old list
        log.warning("entity names refresh failed for a user: %r", task.exception())


async def _read_all(graph: Any, user_id: str) -> _NameList:
    now, started_ms = time.monotonic(), int(time.time() * 1000)
    names: list[str] = await graph.entity_names(user_id)
    return _NameList(names, set(names), started_ms, now + _NAMES_TTL_S, now + _NAMES_FULL_S)


async def _refresh(graph: Any, user_id: str, hit: _NameList) -> None:
    if hit.full_at <= time.monotonic() or not hasattr(graph, "entity_names_since"):
        fresh_list = await _read_all(graph, user_id)
        if _names.get(user_id) is hit:  # not forgotten (or replaced) meanwhile
            _remember(user_id, fresh_list)
        return
    rows = await graph.entity_names_since(user_id, hit.newest_ms - _SINCE_MARGIN_MS)
    fresh = [name for name, _ in rows if name not in hit.known]
    if fresh:
        hit.names = [*hit.names, *fresh]
        hit.known.update(fresh)
    hit.newest_ms = max([hit.newest_ms, *(at for _, at in rows)])


def _remember(user_id: str, entry: _NameList) -> None:
    _names[user_id] = entry
    _names.move_to_end(user_id)
    while len(_names) > _USER_CACHE_SIZE:
        _names.popitem(last=False)


def names_added(user_id: str, names: Iterable[str]) -> None:
    """Call after this process wrote a user's graph, so the next recall sees new entities."""
    hit = _names.get(user_id)
    if hit is None:
        return
    fresh = [name for name in dict.fromkeys(names) if name and name not in hit.known]
    if fresh:
        hit.names = [*hit.names, *fresh]
        hit.known.update(fresh)


async def entities_written(
    embeddings: Embeddings | None, user_id: str, names: Iterable[str]
) -> None:
    """After a graph write in this process: list the new names and embed them now.

    Runs after the reply, so the next turn's recall neither re-reads the name list nor
    embeds the new names on its own critical path.
    """
    names_added(user_id, names)
    hit = _names.get(user_id)
    if embeddings is not None and hit is not None and _cache.has(user_id):
        await _cache.matrix(embeddings, user_id, hit.names)


def forget_user(user_id: str) -> None:
    """Drop a deleted user's cached names and vectors."""
    _cache.forget(user_id)
    _names.pop(user_id, None)


def _message_key(text: str) -> str:
    """The message as space-separated match tokens, first-person words mapped to the user."""
    tokens = re.findall(r"\w+", text.casefold())
    return " ".join(USER_ENTITY if t in FIRST_PERSON else t for t in tokens)


def _entity_key(name: str) -> str:
    # "user's sister" must match "my sister" -> "user sister": drop the possessive "s".
    return re.sub(rf"\b{USER_ENTITY} s\b", USER_ENTITY, match_key(name))


@functools.lru_cache(maxsize=100_000)
def _cached_entity_key(name: str) -> str:
    return _entity_key(name)


class _MentionIndex:
    """Entity match keys -> positions in the name list, for one name list.

    A message has a few dozen word spans; a user has thousands of entities. Looking the
    spans up costs microseconds where testing every name against the message cost 1.5 ms
    at 3.3k names.
    """

    def __init__(self, names: Sequence[str]) -> None:
        self.by_key: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            key = _cached_entity_key(name)
            if key and len(key) > 1:
                self.by_key.setdefault(key, []).append(i)
        self.longest = max((key.count(" ") + 1 for key in self.by_key), default=0)

    def find(self, tokens: Sequence[str]) -> list[int]:
        hits: set[int] = set()
        for i in range(len(tokens)):
            for j in range(i + 1, min(len(tokens), i + self.longest) + 1):
                hits.update(self.by_key.get(" ".join(tokens[i:j]), ()))
        return sorted(hits)


_indexes: OrderedDict[int, tuple[Sequence[str], _MentionIndex]] = OrderedDict()


def _mention_index(names: Sequence[str]) -> _MentionIndex:
    """The index of this exact list object (cached lists are replaced, never mutated)."""
    hit = _indexes.get(id(names))
    if hit is not None and hit[0] is names:
        _indexes.move_to_end(id(names))
        return hit[1]
    index = _MentionIndex(names)
    _indexes[id(names)] = (names, index)  # holding the list keeps its id from being reused
    while len(_indexes) > _USER_CACHE_SIZE:
        _indexes.popitem(last=False)
    return index


def mentioned_entities(text: str, names: Sequence[str]) -> list[str]:
    """Entity names that occur as whole words in the message (plus the user, if "I"/"my")."""
    tokens = _message_key(text).split(" ")
    found = [names[i] for i in _mention_index(names).find(tokens)]
    if USER_ENTITY in tokens and USER_ENTITY not in found:
        found.append(USER_ENTITY)
    return found


async def similar_entities(
    embeddings: Embeddings,
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
    if not names:
        return {}
    ordered, matrix = await _cache.matrix(embeddings, user_id, names)
    if not ordered:
        return {}
    vector = await query_vector if query_vector is not None else None
    if vector is None:
        vector = await embeddings.aembed_query(text)
    query = _unit(np.asarray(vector, dtype=np.float32))
    sims = matrix @ query
    top = np.argsort(-sims)[:k]
    return {ordered[i]: float(sims[i]) for i in top if sims[i] >= min_similarity}


async def recall_facts(
    graph: Any,
    embeddings: Embeddings | None,
    user_id: str,
    text: str,
    *,
    hops: int = 1,
    token_budget: int = 300,
    limit: int = 50,
    query_vector: Awaitable[Sequence[float] | None] | None = None,
) -> list[Recalled]:
    """Current facts around the entities the message names, best first, within budget.

    ``graph`` is a ``stores.graph_store.GraphStore``. Score = relation confidence x how
    surely the entity was named (1 for an exact mention, the cosine for a semantic one),
    halved for facts one hop further out.
    """
    if not text.strip() or token_budget <= 0:
        return []
    names = await _entity_names(graph, user_id)
    if not names:
        return []
    seeds: dict[str, float] = dict.fromkeys(mentioned_entities(text, names), 1.0)
    if embeddings is not None:
        similar = await similar_entities(
            embeddings, user_id, text, names, query_vector=query_vector
        )
        for name, sim in similar.items():
            seeds.setdefault(name, sim)
    if not seeds:
        return []
    facts: list[Fact] = await graph.neighbourhood(
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
    lines = fit_to_budget([fact_line(f) for _, f in scored], token_budget)
    return [
        Recalled(kind="fact", text=line, score=score, source=f"kg:{fact['id']}")
        for line, (score, fact) in zip(lines, scored, strict=False)
    ]
