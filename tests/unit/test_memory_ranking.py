"""Long-term memory ranking without a database: fusion, relevance, recency, the final blend,
token-budget packing, the item model's checks, and the bench-side research variants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from langchain_core.messages.utils import count_tokens_approximately

from bench.recall_variants import Variant, VariantMemoryStore, rrf, split_overrides
from graph.budget import fit_to_budget
from graph.ports import MemoryPort
from stores.errors import InvalidInput
from stores.memory import ranking
from stores.memory.cues import boost_speaker, boost_time
from stores.memory.model import (
    MemoryConfig,
    MemoryItem,
    NewMemory,
    check_text,
    clamp01,
    embedding_text,
    item_from,
    render_memory,
    store_prefix,
    value_of,
    with_neighbour_context,
)
from stores.memory.store import MemoryStore

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def _value(
    text: str = "x", *, importance: float = 0.5, days: float = 0, kind: str = "fact"
) -> dict[str, Any]:
    return {
        "text": text,
        "kind": kind,
        "importance": importance,
        "last_seen_at": (NOW - timedelta(days=days)).isoformat(),
    }


def test_order_is_best_first_with_ties_by_key() -> None:
    assert ranking.order({"b": 1.0, "a": 1.0, "c": 2.0}) == ["c", "a", "b"]


def test_full_text_alone_is_divided_by_the_best_hit() -> None:
    fused = ranking.fuse_scores({"a": 4.0, "b": 1.0}, {}, vector_weight=0.5, cos_min_span=0.25)
    assert fused == {"a": 1.0, "b": 0.25}


def test_fusion_mixes_full_text_two_to_one_with_cosine() -> None:
    fused = ranking.fuse_scores(
        {"a": 2.0, "b": 1.0}, {"b": 0.9, "c": 0.4}, vector_weight=0.5, cos_min_span=0.25
    )
    # cosine spans 0.4..0.9; a has no vector hit, c no full-text hit
    assert fused["a"] == pytest.approx(2 / 3)
    assert fused["b"] == pytest.approx(2 / 3 * 0.5 + 1 / 3 * 1.0)
    assert fused["c"] == pytest.approx(0.0)
    assert list(fused) == ["a", "b", "c"]


def test_near_equal_cosines_are_not_stretched_to_the_full_range() -> None:
    fused = ranking.fuse_scores({}, {"a": 0.80, "b": 0.79}, vector_weight=0.5, cos_min_span=0.25)
    # scaled over at least 0.25 below the best: 0.79 is close to the top, not at 0
    assert fused["a"] == pytest.approx(1 / 3)
    assert fused["b"] == pytest.approx(1 / 3 * (0.79 - 0.55) / 0.25)


def test_relevance_puts_the_best_at_one_and_survives_all_zero() -> None:
    assert ranking.relevance({"a": 0.5, "b": 0.25}) == {"a": 1.0, "b": 0.5}
    assert ranking.relevance({"a": 0.0}) == {"a": 0.0}
    assert ranking.relevance({}) == {}


def test_recency_halves_every_half_life() -> None:
    assert ranking.recency(NOW, NOW, 30) == 1.0
    assert ranking.recency(NOW - timedelta(days=30), NOW, 30) == pytest.approx(0.5)
    assert ranking.recency(NOW - timedelta(days=60), NOW, 30) == pytest.approx(0.25)
    assert ranking.recency(NOW + timedelta(days=5), NOW, 30) == 1.0  # the future is now
    assert ranking.recency(NOW - timedelta(days=1), NOW, 0) == 0.0  # guarded, no div by zero


def test_blend_weights_the_three_parts() -> None:
    assert ranking.blend((0.5, 0.3, 0.2), 1.0, 0.5, 0.25) == pytest.approx(0.5 + 0.15 + 0.05)


def test_rank_orders_by_score_then_relevance_then_key() -> None:
    values = {
        "old": _value(days=120),
        "new": _value(days=0),
        "tie-b": _value(importance=0.4),
        "tie-a": _value(importance=0.4),
    }
    relevances = {"old": 1.0, "new": 1.0, "tie-b": 0.5, "tie-a": 0.5}
    ranked = ranking.rank(relevances, values, weights=(0.5, 0.3, 0.2), half_life_days=30, now=NOW)
    assert [r.key for r in ranked] == ["new", "old", "tie-a", "tie-b"]
    assert ranked[0].score == pytest.approx(0.5 + 0.15 + 0.2)
    assert ranked[1].recency == pytest.approx(0.5**4)


def test_rank_weights_can_make_importance_decide() -> None:
    values = {"low": _value(importance=0.1), "high": _value(importance=0.9)}
    relevances = {"low": 1.0, "high": 0.2}
    by_default = ranking.rank(
        relevances, values, weights=(0.5, 0.3, 0.2), half_life_days=30, now=NOW
    )
    assert [r.key for r in by_default] == ["low", "high"]
    only_importance = ranking.rank(
        relevances, values, weights=(0.0, 1.0, 0.0), half_life_days=30, now=NOW
    )
    assert [r.key for r in only_importance] == ["high", "low"]


def test_rank_leaves_out_vanished_items_and_other_kinds() -> None:
    values = {"fact": _value(kind="fact"), "turn": _value(kind="turn")}
    relevances = {"fact": 1.0, "turn": 1.0, "deleted": 1.0}
    ranked = ranking.rank(
        relevances, values, weights=(0.5, 0.3, 0.2), half_life_days=30, now=NOW, kinds=["fact"]
    )
    assert [r.key for r in ranked] == ["fact"]
    missing_fields = ranking.rank(
        {"bare": 1.0}, {"bare": {}}, weights=(0.5, 0.3, 0.2), half_life_days=30, now=NOW
    )
    assert missing_fields[0].score == pytest.approx(0.5 + 0.15 + 0.2)  # importance 0.5, now


def test_budget_skips_what_does_not_fit_and_keeps_order() -> None:
    """One rule for memories and facts: a line that does not fit is skipped, not a stop."""
    short, long = "User likes tea", "User " + "really " * 80 + "likes coffee"
    lines = [short, long, short, short]
    cost = count_tokens_approximately([short])
    kept = fit_to_budget(lines, token_budget=2 * cost)
    assert kept == [0, 2]
    assert fit_to_budget(lines, token_budget=0) == []
    assert fit_to_budget(lines, token_budget=10_000) == [0, 1, 2, 3]


def test_text_checks() -> None:
    assert check_text("  User   likes\n tea ") == "User likes tea"
    with pytest.raises(InvalidInput):
        check_text("   ")
    with pytest.raises(InvalidInput):
        check_text("x" * 8001)
    with pytest.raises(InvalidInput, match="NUL"):  # found by the OpenAPI fuzzer: was a 500
        check_text("tea\x00time")
    assert clamp01(1.5) == 1.0 and clamp01(-1) == 0.0
    with pytest.raises(InvalidInput):
        clamp01(float("nan"))


def test_stored_value_round_trips() -> None:
    item = MemoryItem(
        id="k1", user_id="u1", text="User lives in Porto", kind="fact", importance=0.7,
        event_at=NOW, created_at=NOW, last_seen_at=NOW, provenance=["m1"],
        metadata={"a": 1}, subject="home", seen_count=2, context="around",
    )  # fmt: skip
    value = value_of(item)
    assert "id" not in value and "user_id" not in value and value["context"] == "around"
    assert item_from("u1", "k1", value) == item
    assert store_prefix("u1") == "u1.memories"
    assert render_memory(item) == "[01 Jun 2026] User lives in Porto"
    assert embedding_text("text", "around") == "text\naround"
    assert embedding_text("text", None) == "text"


def test_neighbour_context_stays_within_its_session() -> None:
    turns = [
        NewMemory(text=t, metadata={"session": s})
        for t, s in (("a", 1), ("b", 1), ("c", 1), ("d", 2))
    ]
    out = with_neighbour_context(turns, window=1)
    assert [t.context for t in out] == ["b", "a c", "b", None]
    assert [t.text for t in out] == ["a", "b", "c", "d"]


def test_memory_store_is_a_memory_port() -> None:
    port: MemoryPort = MemoryStore(cast(Any, None), None)  # checked by mypy
    assert callable(port.recall)


# ------------------------------------------------------------- bench-side research variants
def _variant_store(variant: Variant) -> VariantMemoryStore:
    return VariantMemoryStore(cast(Any, None), None, variant=variant)


def test_the_default_variant_ranks_as_the_product() -> None:
    bm25, cos = {"a": 3.0, "b": 1.0, "c": 0.5}, {"b": 0.7, "d": 0.6}
    values = {k: _value(k) for k in "abcd"}
    product = MemoryStore(cast(Any, None), None)._relevance("q", bm25, cos, values)
    assert _variant_store(Variant())._relevance("q", bm25, cos, values) == product
    assert _variant_store(Variant())._embedding_text("t", "ctx") == "t\nctx"
    assert _variant_store(Variant(embed_context=False))._embedding_text("t", "ctx") == "t"


def test_rrf_fuses_ranks() -> None:
    fused = rrf({"a": 9.0, "b": 1.0}, {"b": 0.9}, rrf_k=60, vector_weight=0.5)
    assert fused == {"a": 1 / 61, "b": 1 / 62 + 0.5 / 61}


def test_time_boost_only_answers_when_questions() -> None:
    values = {"t": _value("We met last week"), "x": _value("We met")}
    relevances = {"t": 0.5, "x": 0.6}
    assert boost_time("When did we meet?", relevances, values, 0.2) == {"t": 0.7, "x": 0.6}
    assert boost_time("Where did we meet?", relevances, values, 0.2) == relevances
    assert boost_time("When did we meet?", relevances, values, 0.0) == relevances


def test_bench_overrides_split_between_product_and_variant() -> None:
    config, variant = split_overrides({"fusion": "rrf", "candidates": 100})
    assert config == MemoryConfig(candidates=100) and variant == Variant(fusion="rrf")
    with pytest.raises(ValueError, match="nonsense"):
        split_overrides({"nonsense": 1})


def _turn(text: str, session: int, position: int, speaker: str = "Ann") -> dict[str, Any]:
    return {
        **_value(text),
        "metadata": {"session": session, "position": position, "speaker": speaker},
    }


def test_a_reply_inherits_its_questions_relevance() -> None:
    values = {
        "q": _turn("Ann: How did the kids handle it?", 1, 4),
        "a": _turn("Bob: They were scared but fine.", 1, 5),
        "far": _turn("Bob: Unrelated.", 1, 9),
        "other": _turn("Bob: They were fine.", 2, 5),
        "plain": _value("no position?"),
    }
    relevances = {"q": 1.0, "a": 0.3, "far": 0.2, "other": 0.25, "plain": 0.5}
    out = ranking.replies_inherit(relevances, values, share=1.0, penalty=0.1)
    # The reply now outranks its question; turns of other sessions or positions and items
    # without a position are untouched.
    assert out == {"q": 0.9, "a": 1.0, "far": 0.2, "other": 0.25, "plain": 0.5}
    assert ranking.replies_inherit(relevances, values, share=0.0, penalty=0.0) == relevances
    # A statement passes nothing on.
    values["q"] = _turn("Ann: The kids handled it.", 1, 4)
    assert ranking.replies_inherit(relevances, values, share=1.0, penalty=0.1) == relevances


def test_a_position_needs_a_session_and_an_integer() -> None:
    assert ranking.position(_turn("x", 3, 7)) == (3, 7)
    assert ranking.position({"metadata": {"session": 3, "position": "7"}}) is None
    assert ranking.position({"metadata": {"session": 3, "position": True}}) is None
    assert ranking.position({"metadata": {"position": 7}}) is None
    assert ranking.position(None) is None


def test_speaker_boost_favours_what_the_named_person_said() -> None:
    values = {
        "ann": _turn("Ann: I paint.", 1, 0, "Ann Lee"),
        "bob": _turn("Bob: I paint too.", 1, 1, "Bob"),
        "none": _value("paint"),
    }
    relevances = {"ann": 0.9, "bob": 0.6, "none": 0.7}
    assert boost_speaker("What does ann paint?", relevances, values, 0.2) == pytest.approx({
        "ann": 1.1, "bob": 0.6, "none": 0.7,
    })  # fmt: skip
    assert boost_speaker("What does Annie paint?", relevances, values, 0.2) == relevances
    assert boost_speaker("What does Ann paint?", relevances, values, 0.0) == relevances


def test_search_applies_the_product_cues_in_order() -> None:
    """The product's relevance is fusion, then replies, then the when and speaker cues."""
    values = {
        "q": _turn("Ann: When did you go?", 1, 0),
        "a": _turn("Bob: Last week.", 1, 1, "Bob"),
    }
    store = _variant_store(Variant())
    out = store._relevance("When did Ann ask?", {"q": 2.0, "a": 0.5}, {}, values)
    # a: 0.25 fused, lifted to q's 1.0, plus the when-cue ("last week"): 1.1; q: 1.0 less the
    # question penalty, plus the speaker cue (Ann is named): 1.05; then divided by the best.
    assert out == pytest.approx({"q": 1.05 / 1.1, "a": 1.0})
