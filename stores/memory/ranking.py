"""How recalled memories are ranked: fusion of the two retrievers, recency and the final blend.

These are pure functions over plain values (scores by key, the stored JSON of candidates) so
the ranking can be read, tested and tuned without Postgres (``tests/unit/test_memory_ranking``)
and reused by benches that try variants of one step. :class:`stores.memory.store.MemoryStore`
fetches the candidates and calls them in this order:

1. :func:`fuse_scores`: BM25 (divided by the best BM25) mixed 2:1 with cosine (scaled below
   the best hit over at least ``cos_min_span``); on LoCoMo this beat reciprocal-rank fusion on
   MRR (0.556 vs 0.537) at the same recall;
2. :func:`relevance`: the fused values divided by the best, so relevance is in [0, 1];
   then :func:`replies_inherit`: a conversation turn that answers a question ranks at least
   as high as the question (LoCoMo, tuned on two conversations: R@10 +0.025, MRR +0.025);
3. :func:`rank`: ``w_rel·relevance + w_imp·importance + w_rec·recency``, recency halving every
   ``half_life_days`` since ``last_seen_at`` (:func:`recency`), best first;
4. ``graph.budget.fit_to_budget``: the lines of the best hits that fit a token budget (the
   same rule as for graph facts).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any, NamedTuple

from stores.memory.model import parse_dt


class Ranked(NamedTuple):
    """One candidate's final score and its parts, by store key."""

    score: float
    relevance: float
    recency: float
    key: str


def order(scores: Mapping[str, float]) -> list[str]:
    """Keys best first, ties by key: the order both retrievers' SQL returns."""
    return sorted(scores, key=lambda key: (-scores[key], key))


def fuse_scores(
    bm25: Mapping[str, float],
    cos: Mapping[str, float],
    *,
    vector_weight: float,
    cos_min_span: float,
) -> dict[str, float]:
    """Each candidate's fused score: max-normalised BM25 mixed with cosine scaled to its span.

    ``bm25`` and ``cos`` hold each retriever's candidates (a key may be in one or both); the
    vector side weighs ``vector_weight`` against full text's 1. Without vector hits the fused
    score is the normalised BM25 alone.
    """
    b_top = max(bm25.values(), default=0.0) or 1.0
    c_hi = max(cos.values(), default=1.0)
    c_lo = min(min(cos.values(), default=0.0), c_hi - cos_min_span)
    span = (c_hi - c_lo) or 1.0
    a = vector_weight / (1.0 + vector_weight)
    fused: dict[str, float] = {}
    for key in dict.fromkeys([*order(bm25), *order(cos)]):
        b = bm25.get(key, 0.0) / b_top
        c = (cos[key] - c_lo) / span if key in cos else 0.0
        fused[key] = (1 - a) * b + a * c if cos else b
    return fused


def relevance(fused: Mapping[str, float]) -> dict[str, float]:
    """Fused scores divided by the best one, so the best candidate has relevance 1."""
    top = max(fused.values(), default=0.0) or 1.0
    return {key: f / top for key, f in fused.items()}


def position(value: Mapping[str, Any] | None) -> tuple[Any, int] | None:
    """(session, position) of a conversation turn item, from ``metadata.session`` and
    ``metadata.position`` (what transcript imports record); ``None`` for other items."""
    meta = (value or {}).get("metadata") or {}
    pos = meta.get("position")
    if meta.get("session") is None or not isinstance(pos, int) or isinstance(pos, bool):
        return None
    return (meta["session"], pos)


def replies_inherit(
    relevances: Mapping[str, float],
    values: Mapping[str, Mapping[str, Any]],
    *,
    share: float,
    penalty: float,
) -> dict[str, float]:
    """Lift the reply to a question to (``share`` of) the question's relevance.

    A question's words are in the turn that asks it ("How did the kids handle the
    accident?"); the answer is the next turn ("They were scared but …"), which shares few of
    them. Among the candidates, a turn with '?' in its own text passes its relevance on to
    the turn right after it in the same session (when that is a candidate too; the indexing
    context usually makes it one) and keeps ``1 - penalty`` of its own. Items without a
    session position are untouched.
    """
    if share <= 0 and penalty <= 0:
        return dict(relevances)
    at = {pos: key for key in relevances if (pos := position(values.get(key))) is not None}
    asked = [
        (key, reply)
        for (session, n), key in at.items()
        if (reply := at.get((session, n + 1))) is not None
        and "?" in str(values[key].get("text", ""))
    ]
    out = dict(relevances)
    for key, reply in asked:
        out[reply] = max(out[reply], share * relevances[key])
    for key, _ in asked:
        out[key] *= 1 - penalty
    return out


def recency(seen_at: datetime, now: datetime, half_life_days: float) -> float:
    """1 for an item seen now, halving every ``half_life_days`` (future times count as now)."""
    half_life_s = max(half_life_days, 1e-6) * 86400.0
    return float(0.5 ** (max(0.0, (now - seen_at).total_seconds()) / half_life_s))


def blend(
    weights: tuple[float, float, float], relevance: float, importance: float, recency: float
) -> float:
    """The final score: (relevance, importance, recency) weighted by ``weights``."""
    w_rel, w_imp, w_rec = weights
    return w_rel * relevance + w_imp * importance + w_rec * recency


def rank(
    relevances: Mapping[str, float],
    values: Mapping[str, Mapping[str, Any]],
    *,
    weights: tuple[float, float, float],
    half_life_days: float,
    now: datetime,
    kinds: Collection[str] | None = None,
) -> list[Ranked]:
    """Score every candidate from its stored value, best first (ties: relevance, then key).

    ``values`` are the candidates' stored JSON by key; a key without one (deleted meanwhile)
    or of a kind outside ``kinds`` is left out. Scoring works on the raw values, so only the
    hits finally returned need to become :class:`MemoryItem` objects.
    """
    scored: list[Ranked] = []
    for key, rel in relevances.items():
        value = values.get(key)
        if value is None:
            continue
        if kinds is not None and str(value.get("kind", "fact")) not in kinds:
            continue
        seen_at = parse_dt(value.get("last_seen_at")) or now
        rec = recency(seen_at, now, half_life_days)
        importance = float(value.get("importance", 0.5))
        scored.append(Ranked(blend(weights, rel, importance, rec), rel, rec, key))
    scored.sort(key=lambda r: (-r.score, -r.relevance, r.key))
    return scored
