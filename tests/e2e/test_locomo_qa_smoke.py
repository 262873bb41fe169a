"""Smoke: ``bench.locomo_qa`` end to end on the packaged local model, then resumed.

The bench runs as its own process, exactly as documented: it starts the local llama.cpp
model, creates a user with ``mnemograph users create``, starts ``mnemograph serve`` and feeds
the first two turns of conv-48 through ``/v1/chat/completions`` with the ``openai`` client
(memory and graph extraction by the model), asks the two questions whose evidence lies in
those turns in new threads, answers them again with the whole (two-turn) conversation in the
prompt, and has the same model judge all four answers with mem0's prompt. A second run on the
same results file must find nothing to do. The figures are printed in the test summary; with a
1.5B model they are low, and only their shape and range are asserted.

Slow (about three minutes on two cores) and always run by ``.ci/run``: no fake model here.
A missing ``[local]`` extra or missing benchmark data fails the test; it never skips.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from stores.models.llama_server import local_llm_available
from tests.conftest import REPORT
from tests.servers import tail

ROOT = Path(__file__).resolve().parents[2]
BENCHDATA = ROOT.parent / "shared" / "benchdata"
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

TURNS = 2
QUESTIONS = {0: 2, 100: 4}
"""conv-48's questions with evidence in its first two turns: qa_index -> category. Each
ingested turn costs the local model three calls (reply, memory, graph), about 45 s here."""


def _bench(env: dict[str, str], out: Path, data_dir: Path) -> tuple[float, str]:
    cmd = [
        sys.executable, "-m", "bench.locomo_qa",
        "--data", str(BENCHDATA / "locomo10_dev.json"),
        "--questions", str(BENCHDATA / "locomo_dev_questions.json"),
        "--conversations", "conv-48", "--limit-turns", str(TURNS), "--limit-questions", "3",
        "--out", str(out), "--data-dir", str(data_dir),
    ]  # fmt: skip
    t0 = time.monotonic()
    res = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=840)
    took = time.monotonic() - t0
    log = data_dir / "serve.log"
    assert res.returncode == 0, (
        f"bench failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}\n"
        f"serve.log:\n{tail(log) if log.exists() else '(none)'}"
    )
    return took, res.stdout


def test_locomo_qa_smoke_runs_end_to_end_and_resumes(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    assert local_llm_available(), "the [local] extra (llama-cpp-python + model parts) is missing"
    assert (BENCHDATA / "locomo10_dev.json").exists(), f"no benchmark data in {BENCHDATA}"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "MNEMOGRAPH_", "NEO4J_", "JUDGE_")) and k != "DATABASE_URL"
    }
    out, data_dir = tmp_path / "qa.jsonl", tmp_path / "data"
    summary_path = tmp_path / "qa.summary.json"

    first_s, stdout = _bench(env, out, data_dir)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    summary: dict[str, Any] = json.loads(summary_path.read_text())

    config = rows[0]
    assert config["kind"] == "config" and config["answer_model"].startswith("local:")
    assert config["limit_turns"] == TURNS and config["judge_model"] == "local"
    (ingest,) = [r for r in rows if r["kind"] == "ingest"]
    assert ingest["sample_id"] == "conv-48" and ingest["turns"] == TURNS
    assert ingest["turn_errors_this_run"] == 0
    assert ingest["memories"] >= 1, ingest  # "I finished an electrical engineering project"
    answers = [r for r in rows if r["kind"] == "answer"]
    assert sorted((r["system"], r["qa_index"]) for r in answers) == sorted(
        (s, q) for s in ("mnemograph", "full-context") for q in QUESTIONS
    )
    for r in answers:
        assert r["category"] == QUESTIONS[r["qa_index"]]
        assert r["answer"].strip(), r
        assert r["judge"] in (True, False, None) and r["judge_raw"] is not None
        assert 0.0 <= r["f1"] <= 1.0 and 0.0 <= r["bleu1"] <= 1.0
        assert 0.0 < r["latency_s"] < 600
        assert r["prompt_tokens"] > 0
        if r["system"] == "full-context":  # two turns fit the local model's window
            assert r["context_turns"] == r["total_turns"] == TURNS

    systems = summary["systems"]
    for name in ("mnemograph", "full-context"):
        overall = systems[name]["categories"]["overall"]
        assert overall["n"] == 2
        assert all(0.0 <= overall[m] <= 1.0 for m in ("J", "F1", "BLEU1"))
        assert set(systems[name]["categories"]) == {"overall", "temporal", "single-hop"}
        lat = systems[name]["latency_s"]
        assert 0 < lat["p50"] <= lat["p95"]
    assert systems["full-context"]["truncated"]["questions"] == 0
    assert summary["run"]["new_turns"] == TURNS and summary["run"]["new_answers"] == 4
    assert summary["ingest"]["turns"] == TURNS
    assert "LoCoMo QA" in stdout

    # Resumed on the same file: nothing is redone, no server or model is started.
    before = out.read_bytes()
    serve_log = (data_dir / "serve.log").stat().st_size
    again_s, _ = _bench(env, out, data_dir)
    assert out.read_bytes() == before
    assert (data_dir / "serve.log").stat().st_size == serve_log
    again: dict[str, Any] = json.loads(summary_path.read_text())
    assert again["run"]["new_turns"] == 0 and again["run"]["new_answers"] == 0
    assert again["systems"] == summary["systems"]

    overall = {name: systems[name]["categories"]["overall"] for name in systems}
    request.config.stash.setdefault(REPORT, []).append((
        "LoCoMo QA smoke (conv-48, 2 turns, 2 questions, local 1.5B model answering and judging)",
        {
            **{f"{name} J/F1/BLEU-1": f"{o['J']:.2f} / {o['F1']:.2f} / {o['BLEU1']:.2f}"
               for name, o in overall.items()},
            **{f"{name} prompt tokens (mean)": round(systems[name]["prompt_tokens"]["mean"])
               for name in systems},
            **{f"{name} latency p50/p95 s": "{p50:.1f} / {p95:.1f}".format(
                **systems[name]["latency_s"]) for name in systems},
            "ingest s/turn": summary["ingest"]["seconds_per_turn"],
            "memories / facts": f"{summary['ingest']['memories']} / {summary['ingest']['facts']}",
            "node mean s": summary["run"]["node_seconds"],
            "phases s": summary["run"]["phases"],
            "answers": {f"{r['system']} q{r['qa_index']}": (r["answer"][:60], r["judge"])
                        for r in answers},
            "first run s": round(first_s, 1),
            "resumed run s": round(again_s, 1),
        },
    ))  # fmt: skip
