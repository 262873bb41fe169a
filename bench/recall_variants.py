"""Research variants of long-term memory ranking, for ablations on LoCoMo only.

The product ranks with score fusion, embeds each item with its indexing context, and boosts
nothing (``stores.memory.ranking``). The knobs below exist for ablations only, so they live
here, bench-side, and the product carries none of them:

- ``fusion="rrf"``: reciprocal-rank fusion instead of score fusion (MRR 0.537 vs 0.556);
- ``time_boost``: extra relevance for items with a time expression when the question asks
  "when";
- ``embed_context=False``: embed the item's own text only (the context is still searched as
  full text).

:class:`VariantMemoryStore` is a :class:`MemoryStore` whose two ranking hooks follow a
:class:`Variant`; with the default variant it ranks exactly as the product does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

from langchain_core.embeddings import Embeddings

from stores.memory import ranking
from stores.memory.model import MemoryConfig
from stores.memory.store import MemoryStore

# When-questions: the answer is usually in a turn that carries a time expression.
WHEN_Q = re.compile(r"^\s*(when|what (year|month|day|date|time)|how long ago)\b", re.I)
TIME_WORDS = re.compile(
    r"\b(yesterday|today|tonight|tomorrow|last|next|ago|weekend|week|month|year|since|"
    r"morning|evening|monday|tuesday|wednesday|thursday|friday|saturday|sunday|january|"
    r"february|march|april|may|june|july|august|september|october|november|december|"
    r"19\d\d|20\d\d)\b",
    re.I,
)


@dataclass(frozen=True)
class Variant:
    """The research knobs; the defaults are the product's behaviour."""

    fusion: Literal["rrf", "score"] = "score"
    """'rrf' fuses ranks; 'score' is the product's fusion (stores.memory.ranking)."""
    rrf_k: float = 60.0
    time_boost: float = 0.0
    """Extra relevance for items with time expressions when the query asks 'when'."""
    embed_context: bool = True
    """Whether the embedding sees the indexing context too, or the item's own text only."""


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


def boost_time(
    query: str,
    relevances: Mapping[str, float],
    values: Mapping[str, Mapping[str, Any]],
    boost: float,
) -> dict[str, float]:
    """For a when-question, raise (up to 1) the relevance of items naming a time."""
    out = dict(relevances)
    if boost <= 0 or not WHEN_Q.search(query):
        return out
    for key, rel in relevances.items():
        value = values.get(key)
        if value is not None and TIME_WORDS.search(str(value.get("text", ""))):
            out[key] = min(1.0, rel + boost)
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
        return boost_time(query, relevances, values, v.time_boost)
