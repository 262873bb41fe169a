"""The KG extraction bench's data and scoring, and the normalization rules it motivated.

The bench numbers themselves are reported by ``python -m bench.kg_extraction``, not asserted
here: these tests only keep the labelled set loadable and the scoring honest.
"""

from __future__ import annotations

from bench.kg_extraction import DATA, Outcome, canonical, load_sentences, prf, run, score
from graph.facts import Triple, normalize_object, normalize_predicate
from stores.knowledge.rules import prepare


def test_labelled_set_is_large_canonical_and_not_its_own_answer() -> None:
    sentences = load_sentences()  # raises if any label is not in canonical form
    assert len(sentences) >= 40
    assert sum(1 for s in sentences if not s.expected) >= 5  # nothing-to-extract cases
    raw_equal = 0
    for s in sentences:
        raw = {
            (r["s"], r["p"], r["o"])
            for r in prepare([Triple.model_validate(t) for t in s.scripted_raw])
        }
        raw_equal += raw == set(s.expected)
    assert raw_equal < len(sentences) * 0.8  # the scripted model must not replay the labels


def test_scoring_treats_symmetric_and_inverse_relations_as_one_fact() -> None:
    assert canonical(("user", "sibling_of", "ana")) == canonical(("ana", "sibling_of", "user"))
    assert canonical(("user", "parent_of", "leo")) == ("leo", "child_of", "user")
    out = Outcome(
        id="x",
        text="",
        expected=[("ana", "sibling_of", "user"), ("ana", "occupation", "doctor")],
        predicted=[("user", "sibling_of", "ana"), ("ana", "works_at", "doctor")],
    )
    score(out)
    assert (out.tp, out.fp, out.fn) == (1, 1, 1)
    assert (out.relaxed_tp, out.relaxed_fp, out.relaxed_fn) == (2, 0, 0)
    assert prf(1, 1, 1) == (0.5, 0.5, 0.5)


def test_age_units_and_favourite_spelling_normalize() -> None:
    assert normalize_object("age", "29 years old") == "29"
    assert normalize_object("age", "twenty years") == "twenty years"
    assert normalize_object("lives_in", "29 years old") == "29 years old"
    assert normalize_predicate("favorite band") == "favourite_band"
    assert normalize_predicate("can't stand") == "dislikes"


async def test_scripted_bench_runs_end_to_end() -> None:
    stats = await run("scripted", 10, None, DATA)
    assert stats["sentences"] == 10 and stats["errors"] == 0
    assert 0 < stats["precision"] <= 1 and 0 < stats["recall"] <= 1
