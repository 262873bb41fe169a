"""Research variants of long-term memory ranking, for ablations on LoCoMo only.

The product ranks with score fusion, embeds each item with its indexing context, and boosts
nothing (``stores.memory.ranking``). The knobs below exist for ablations only, so they live
here, bench-side, and the product carries none of them:

- ``fusion="rrf"``: reciprocal-rank fusion instead of score fusion (MRR 0.537 vs 0.556);
- ``embed_context=False``: embed the item's own text only (the context is still searched as
  full text);
- ``session_prior``, ``follow_share``, ``prf_weight``, ``neighbour_penalty``: the session
  prior, topic continuation, vector pseudo-relevance feedback and neighbour diversity that
  ``bench.locomo_ablation`` measured and the product left out (README, "Recall ablations").

:class:`VariantMemoryStore` is a :class:`MemoryStore` whose two ranking hooks follow a
:class:`Variant`; with the default variant it ranks exactly as the product does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

from langchain_core.embeddings import Embeddings

from stores.memory import ranking
from stores.memory.model import MemoryConfig
from stores.memory.store import MemoryStore


@dataclass(frozen=True)
class Variant:
    """The research knobs; the defaults are the product's behaviour."""

    fusion: Literal["rrf", "score"] = "score"
    """'rrf' fuses ranks; 'score' is the product's fusion (stores.memory.ranking)."""
    rrf_k: float = 60.0
    embed_context: bool = True
    """Whether the embedding sees the indexing context too, or the item's own text only."""
    session_prior: float = 0.0
    """Share of relevance taken from the item's session (``metadata.session``): the mean of
    the best three candidate relevances in it. A session that matches the question as a
    whole lifts its turns, as a session summary would."""
    follow_share: float = 0.0
    """A speaker's next turn (within two positions) gets at least this share of the
    relevance of the turn that opened the topic."""
    prf_weight: float = 0.0
    """Pseudo-relevance feedback on the vector side: search again with the query vector
    plus this weight times the mean vector of the first search's best ``prf_docs`` items."""
    prf_docs: int = 3
    neighbour_penalty: float = 0.0
    """Score lost by an item within two turns of a better-ranked one of the same session:
    neighbours share indexing context and crowd the top k with one passage."""


def split_overrides(overrides: Mapping[str, Any]) -> tuple[MemoryConfig, Variant]:
    """``--config`` JSON as (product config, research variant): each key goes to the one
    that has it; an unknown key is an error."""
    mine = {f.name for f in fields(Variant)}
    theirs = {f.name for f in fields(MemoryConfig)}
    unknown = set(overrides) - mine - theirs
    if unknown:
        raise ValueError(f"unknown ranking knobs: {', '.join(sorted(unknown))}")
    return (
        MemoryConfig(**{k: v for k, v in overrides.items() if k in theirs}),
        Variant(**{k: v for k, v in overrides.items() if k in mine}),
    )


def rrf(
    bm25: Mapping[str, float], cos: Mapping[str, float], *, rrf_k: float, vector_weight: float
) -> dict[str, float]:
    """Reciprocal-rank fusion of the two retrievers (ranks as ``ranking.order`` gives them)."""
    bm25_rank = {key: i for i, key in enumerate(ranking.order(bm25))}
    vec_rank = {key: i for i, key in enumerate(ranking.order(cos))}
    fused: dict[str, float] = {}
    for key in dict.fromkeys([*bm25_rank, *vec_rank]):
        s = 0.0
        if key in bm25_rank:
            s += 1.0 / (rrf_k + 1 + bm25_rank[key])
        if key in vec_rank:
            s += vector_weight / (rrf_k + 1 + vec_rank[key])
        fused[key] = s
    return fused


def _session(value: Mapping[str, Any] | None) -> Any:
    return ((value or {}).get("metadata") or {}).get("session")


def session_prior(
    relevances: Mapping[str, float], values: Mapping[str, Mapping[str, Any]], share: float
) -> dict[str, float]:
    """Mix each item's relevance with its session's: mean of the session's best three."""
    if share <= 0:
        return dict(relevances)
    by_session: dict[Any, list[float]] = {}
    for key, rel in relevances.items():
        by_session.setdefault(_session(values.get(key)), []).append(rel)
    group = {s: sum(sorted(r, reverse=True)[:3]) / 3 for s, r in by_session.items()}
    return {
        key: (1 - share) * rel + share * group[_session(values.get(key))]
        for key, rel in relevances.items()
    }


_position = ranking.position


def spread_neighbours(
    ranked: list[ranking.Ranked], values: Mapping[str, Mapping[str, Any]], penalty: float
) -> list[ranking.Ranked]:
    """Greedy re-rank: an item within two turns of an already chosen one of the same
    session loses ``penalty`` of its score (once), then waits its turn again."""
    if penalty <= 0:
        return ranked
    pending = list(ranked)
    chosen: list[ranking.Ranked] = []
    taken: list[tuple[Any, int]] = []
    while pending:
        best_i, best = 0, None
        for i, r in enumerate(pending[:60]):
            pos = _position(values.get(r.key))
            near = pos is not None and any(
                p[0] == pos[0] and abs(p[1] - pos[1]) <= 2 for p in taken
            )
            s = r.score * (1 - penalty) if near else r.score
            if best is None or s > best:
                best_i, best = i, s
        r = pending.pop(best_i)
        chosen.append(r)
        pos = _position(values.get(r.key))
        if pos is not None:
            taken.append(pos)
    return chosen


def follow_topic(
    relevances: Mapping[str, float], values: Mapping[str, Mapping[str, Any]], share: float
) -> dict[str, float]:
    """The same speaker's turns just after a matching one often hold the details."""
    if share <= 0:
        return dict(relevances)
    at = {pos: key for key in relevances if (pos := _position(values.get(key))) is not None}
    out = dict(relevances)
    for key, rel in relevances.items():
        value = values.get(key) or {}
        pos = _position(value)
        if pos is None:
            continue
        speaker = (value.get("metadata") or {}).get("speaker")
        for d in (1, 2):
            nxt = at.get((pos[0], pos[1] + d))
            if nxt is not None and (values[nxt].get("metadata") or {}).get("speaker") == speaker:
                out[nxt] = max(out[nxt], share * rel)
    return out


class VariantMemoryStore(MemoryStore):
    """A :class:`MemoryStore` ranking by a research :class:`Variant`."""

    def __init__(
        self,
        pool: Any,
        embeddings: Embeddings | None,
        *,
        variant: Variant | None = None,
        config: MemoryConfig | None = None,
        dims: int = 384,
    ) -> None:
        super().__init__(pool, embeddings, config=config, dims=dims)
        self.variant = variant or Variant()

    async def search(self, user_id: str, query: str, k: int = 10, **kw: Any) -> list[Any]:
        v = self.variant
        if v.prf_weight <= 0 or kw.get("query_vector") is not None:
            return await super().search(user_id, query, k, **kw)
        import asyncio

        import numpy as np

        qvec = await self._embed_query(query)
        if qvec is None:
            return await super().search(user_id, query, k, **kw)

        async def given(vec: Any) -> Any:
            return vec

        first = await super().search(user_id, query, max(k, 10), query_vector=given(qvec), **kw)
        keys = [h.item.id for h in first[: v.prf_docs]]
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT embedding::text AS e FROM mnemo_memory_vectors "
                "WHERE user_id = %s AND key = ANY(%s)",
                (user_id, keys),
            )
            rows = await cur.fetchall()
        if not rows:
            return first[:k]
        docs = np.asarray([[float(x) for x in r["e"].strip("[]").split(",")] for r in rows])
        q = np.asarray(qvec, dtype=np.float64)
        q = q / np.linalg.norm(q) + v.prf_weight * docs.mean(axis=0)
        q = (q / np.linalg.norm(q)).tolist()
        await asyncio.sleep(0)
        return await super().search(user_id, query, k, query_vector=given(q), **kw)

    def _embedding_text(self, text: str, context: str | None) -> str:
        return super()._embedding_text(text, context if self.variant.embed_context else None)

    def _relevance(
        self,
        query: str,
        bm25: Mapping[str, float],
        cos: Mapping[str, float],
        values: Mapping[str, Mapping[str, Any]],
    ) -> dict[str, float]:
        v = self.variant
        if v.fusion == "rrf":
            fused = rrf(bm25, cos, rrf_k=v.rrf_k, vector_weight=self.config.vector_weight)
            relevances = ranking.relevance(fused)
        else:
            relevances = super()._relevance(query, bm25, cos, values)
        relevances = follow_topic(relevances, values, v.follow_share)
        return session_prior(relevances, values, v.session_prior)

    def _rank(
        self, ranked: list[ranking.Ranked], values: Mapping[str, Mapping[str, Any]]
    ) -> list[ranking.Ranked]:
        return spread_neighbours(ranked, values, self.variant.neighbour_penalty)
