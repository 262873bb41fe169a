"""``bench.locomo_ablation`` runs as documented on a slice of the dev data: the first two
sessions of each conversation, tuned on two and reported on the third.

The bench runs as its own process on the test PostgreSQL (pgvector) with the packaged
embedder; the summary must hold every variant with both splits, and the shipped ranking must
find the evidence it finds on the whole data (R@10 0.81 there; a slice has fewer
distractors). A missing benchmark data file fails the test; it never skips.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHDATA = ROOT.parent / "shared" / "benchdata"
pytestmark = pytest.mark.timeout(600)
SESSIONS = 2


def _slice(tmp_path: Path) -> tuple[Path, Path]:
    """The first sessions of every conversation and the questions answered within them."""
    data = json.loads((BENCHDATA / "locomo10_dev.json").read_text())
    for conv in data:
        c = conv["conversation"]
        for key in list(c):
            m = re.fullmatch(r"session_(\d+)(_date_time)?", key)
            if m and int(m.group(1)) > SESSIONS:
                del c[key]
    questions = json.loads((BENCHDATA / "locomo_dev_questions.json").read_text())
    questions["questions"] = [
        q for q in questions["questions"]
        if q["included"] and all(int(e[1:].split(":")[0]) <= SESSIONS for e in q["evidence"])
    ]  # fmt: skip
    (tmp_path / "data.json").write_text(json.dumps(data))
    (tmp_path / "questions.json").write_text(json.dumps(questions))
    return tmp_path / "data.json", tmp_path / "questions.json"


def test_ablation_reports_each_variant_on_both_splits(tmp_path: Path, pg_url: str) -> None:
    data, questions = _slice(tmp_path)
    variants = tmp_path / "variants.json"
    variants.write_text(json.dumps({
        "product": {},
        "before issue 17": {"context_weight": 0.4, "reply_share": 0.0, "question_penalty": 0.0,
                            "time_boost": 0.0, "speaker_boost": 0.0},
    }))  # fmt: skip
    summary = tmp_path / "summary.json"
    env = dict(os.environ, DATABASE_URL=pg_url)
    cmd = [
        sys.executable, "-m", "bench.locomo_ablation", "--data", str(data),
        "--questions", str(questions), "--variants", str(variants), "--summary", str(summary),
    ]  # fmt: skip
    res = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=540)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "reported on conv-48 (untouched)" in res.stdout
    out = json.loads(summary.read_text())
    assert out["tune"] == ["conv-26", "conv-41"] and out["report"] == ["conv-48"]
    assert set(out["variants"]) == {"product", "before issue 17"}
    for row in out["variants"].values():
        for split in ("tune", "report"):
            assert row[split]["n"] > 5
            assert all(0.0 <= row[split][m] <= 1.0 for m in ("R@10", "MRR@10", "R@512t"))
    assert out["variants"]["product"]["tune"]["R@10"] >= 0.8


def test_a_conversation_in_both_splits_is_refused() -> None:
    cmd = [
        sys.executable, "-m", "bench.locomo_ablation", "--data", "x", "--questions", "y",
        "--tune", "conv-26,conv-41", "--report", "conv-41",
    ]  # fmt: skip
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "must not share a conversation" in res.stderr
