"""The held-out extraction set and the two extraction benches (triples and memories).

The scripted model only exercises the pipeline around the model (normalization, grounding,
the node's source filter, scoring); the figures worth quoting come from ``--model local`` or
``openai``, which these tests never run. These tests keep the held-out set loadable, fresh and
labelled, and check the scoring reacts to wrong output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import kg_extraction, memory_extraction
from bench.kg_extraction import DATA, HELDOUT, load_sentences, set_label
from bench.memory_extraction import MemoryOutcome, load_memory_sentences, match, score


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _rotated(tmp_path: Path, field: str, n: int = 5) -> Path:
    """The first ``n`` held-out rows with ``field`` (scripted output) moved one sentence on:
    every sentence gets a neighbour's answer, which a working scorer must punish."""
    rows = _rows(HELDOUT)[:n]
    outputs = [row[field] for row in rows]
    for i, row in enumerate(rows):
        row[field] = outputs[(i + 1) % n]
    path = tmp_path / "wrong.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


def test_heldout_set_is_large_labelled_and_not_the_tuned_one() -> None:
    triples = load_sentences(HELDOUT)  # raises on a label that could never match
    memories = load_memory_sentences(HELDOUT)  # raises on bad keyword lists
    assert len(triples) == len(memories) >= 64
    assert sum(1 for s in triples if not s.expected) >= 10
    assert sum(1 for s in memories if not s.memories) >= 8
    assert len({s.id for s in triples}) == len(triples)
    tuned = {s.text.casefold() for s in load_sentences(DATA)}
    assert not tuned & {s.text.casefold() for s in triples}
    assert set_label(HELDOUT) == "held-out" and set_label(DATA) == "tuned"
    assert all(s.scripted_raw or not s.expected for s in triples[:5])


def test_memory_matching_pairs_items_and_facts_one_to_one() -> None:
    expected = [["sister", "nurse"], ["porto"]]
    # One item may cover two facts; a second item for an already credited fact is noise.
    assert match(["User's sister is a nurse in Porto."], expected) == (1, 2)
    assert match(["User lives in Porto.", "User really lives in Porto."], expected) == (1, 1)
    # Maximum matching: the first item must not steal the only fact the second one covers.
    assert match(["Sister, nurse, Porto.", "User lives in Porto."], expected) == (2, 2)
    assert match(["User lives in Valparaiso."], [["valparaíso"]]) == (1, 1)  # accents fold
    out = MemoryOutcome(id="x", text="", expected=expected, predicted=["User likes tea."])
    score(out)
    assert (out.tp, out.fp, out.covered, out.fn) == (0, 1, 0, 2)


def test_kg_bench_scores_the_heldout_set(tmp_path: Path) -> None:
    report = tmp_path / "kg.json"
    argv = ["--model", "scripted", "--data", str(HELDOUT), "--limit", "5"]
    stats = kg_extraction.main([*argv, "--json", str(report)])
    assert stats["sentences"] == 5 and stats["errors"] == 0 and stats["set"] == "held-out"
    assert 0 < stats["precision"] <= 1 and 0 < stats["recall"] <= 1
    written = json.loads(report.read_text(encoding="utf-8"))
    assert written["set"] == "held-out" and len(written["sentences"]) == 5
    assert written["summary"]["recall"] == stats["recall"]

    wrong = kg_extraction.main(
        ["--model", "scripted", "--data", str(_rotated(tmp_path, "scripted_triples"))]
    )
    assert wrong["recall"] < stats["recall"]


def test_memory_bench_scores_the_heldout_set(tmp_path: Path) -> None:
    report = tmp_path / "memory.json"
    argv = ["--model", "scripted", "--data", str(HELDOUT), "--limit", "5"]
    stats = memory_extraction.main([*argv, "--json", str(report)])
    assert stats["sentences"] == 5 and stats["errors"] == 0 and stats["set"] == "held-out"
    assert stats["model_calls"] == 5
    assert 0 < stats["precision"] <= 1 and 0 < stats["recall"] <= 1
    written = json.loads(report.read_text(encoding="utf-8"))
    assert written["model"] == "scripted" and len(written["sentences"]) == 5
    assert written["summary"]["precision"] == stats["precision"]
    # h01's reply-sourced item ("Porto is in Portugal", cites only the reply) is dropped.
    first = written["sentences"][0]
    assert len(first["raw"][0]["items"]) == 2 and first["predicted"] == ["User lives in Porto."]

    wrong_data = _rotated(tmp_path, "scripted_memories")
    wrong = memory_extraction.main(
        ["--model", "scripted", "--data", str(wrong_data), "--json", str(tmp_path / "w.json")]
    )
    assert wrong["recall"] < stats["recall"] and wrong["precision"] < stats["precision"]
