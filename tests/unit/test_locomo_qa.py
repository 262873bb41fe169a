"""The end-to-end LoCoMo QA bench without a model: scoring (F1, BLEU-1), reading the judge's
verdict, choosing questions under ``--limit-turns``, the resume file, the summary and the
full-context cut. The model-driven run is ``tests/e2e/test_locomo_qa_smoke.py``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from bench.locomo_judge import JUDGE_PROMPT, bleu1, f1_score, parse_label, rejudge
from bench.locomo_qa import (
    ANSWER_HINT,
    ANSWER_RESERVE,
    AnswerModel,
    BenchState,
    ResultLog,
    UserState,
    answerable,
    fit_turns,
    full_context_messages,
    parse_node_seconds,
    parse_turn_counts,
    question_message,
    questions_from_data,
    score_record,
    select,
    summarize,
    turn_message,
)
from bench.locomo_recall import Question, load_turns


def _conversation() -> dict[str, Any]:
    """A two-session conversation in the locomo10 schema, with one question per category."""
    return {
        "sample_id": "conv-x",
        "conversation": {
            "speaker_a": "Ann", "speaker_b": "Bo",
            "session_1_date_time": "1:56 pm on 8 May, 2023",
            "session_1": [
                {"speaker": "Ann", "dia_id": "D1:1", "text": "I went hiking yesterday."},
                {"speaker": "Bo", "dia_id": "D1:2", "text": "Nice! Where?",
                 "blip_caption": "a photo of a trail"},
                {"speaker": "Ann", "dia_id": "D1:3", "text": "Mount Tam, with my sister Cleo."},
            ],
            "session_2_date_time": "10:00 am on 20 May, 2023",
            "session_2": [
                {"speaker": "Bo", "dia_id": "D2:1", "text": "I adopted a cat named Miso."},
                {"speaker": "Ann", "dia_id": "D2:2", "text": "Cleo loves cats too."},
            ],
            "session_3_date_time": "9:00 am on 1 June, 2023",  # a date with no turns
        },
        "qa": [
            {"question": "When did Ann go hiking?", "answer": "7 May 2023",
             "evidence": ["D1:1"], "category": 2},
            {"question": "What is Bo's cat called?", "answer": "Miso",
             "evidence": ["D2:1"], "category": 4},
            {"question": "Who likes cats and hiking?", "answer": "Cleo",
             "evidence": ["D1:3; D2:2"], "category": 1},
            {"question": "What is Ann's dog called?", "adversarial_answer": "Rex",
             "evidence": ["D1:1"], "category": 5},
        ],
    }  # fmt: skip


def _record(system: str, qa: int, category: int, judge: bool | None, **extra: Any) -> dict:
    return score_record({
        "kind": "answer", "system": system, "sample_id": "conv-x", "qa_index": qa,
        "category": category, "question": "q", "gold": "7 May 2023", "answer": "7 May 2023",
        "judge": judge, "judge_model": "judge", "prompt_tokens": 100 * (qa + 1),
        "latency_s": float(qa + 1), **extra,
    })  # fmt: skip


# ------------------------------------------------------------------------------- scoring
def test_f1_is_mem0s_set_of_tokens_f1() -> None:
    assert f1_score("7 May 2023", "7 May 2023") == 1.0
    # Case, and the four punctuation marks mem0 strips, do not matter.
    assert f1_score("May 7, 2023!", "7 may 2023") == 1.0
    # Sets, not bags: a repeated word is one token on each side.
    assert f1_score("cats cats cats", "cats") == 1.0
    # precision 1/4, recall 1/1.
    assert f1_score("she adopted a cat", "cat") == pytest.approx(2 * 0.25 / 1.25)
    assert f1_score("", "cat") == 0.0
    assert f1_score("dog", "cat") == 0.0


def test_bleu1_is_clipped_unigram_precision_times_brevity_penalty() -> None:
    assert bleu1("7 May 2023", "7 May 2023") == 1.0
    # Shorter than the reference: precision 1, penalty exp(1 - 3/2).
    assert bleu1("May 2023", "7 May 2023") == pytest.approx(math.exp(1 - 3 / 2))
    # Longer: no penalty; 3 of 6 tokens match.
    assert bleu1("on 7 May 2023 she went", "7 May 2023") == pytest.approx(0.5)
    # A repeated word only counts as often as the reference has it.
    assert bleu1("the the the", "the cat") == pytest.approx(1 / 3)
    # Punctuation and clitics are tokens of their own, as in NLTK's Treebank tokenizer.
    assert bleu1("Caroline's", "caroline") == pytest.approx(0.5)
    assert bleu1("dog", "cat") == 0.0
    assert bleu1("", "cat") == 0.0


def test_judge_prompt_is_mem0s_and_formats() -> None:
    text = JUDGE_PROMPT.format(question="Q?", gold_answer="G", generated_answer="A")
    assert "Question: Q?\nGold answer: G\nGenerated answer: A\n" in text
    assert "’CORRECT’ or ’WRONG’" in text  # the published typographic quotes
    assert text.rstrip().endswith('in a json format with the key as "label".')


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"label": "CORRECT"}', True),
        ('{"label": "WRONG"}', False),
        ('```json\n{"explanation": "same date", "label": "correct"}\n```', True),
        ('{"label": "’CORRECT’"}', True),
        ("The generated answer names the same date. CORRECT", True),
        # Reasoning first, label last: the last word wins.
        ("It is not WRONG to say May; the answer is CORRECT", True),
        ("Different city. WRONG.", False),
        ("The answer is incorrect", None),  # 'incorrect' is not the label
        ('{"label": "maybe"}', None),
        ("", None),
        (None, None),
    ],
)
def test_judge_verdict_parsing(raw: str | None, expected: bool | None) -> None:
    assert parse_label(raw) is expected


async def test_rejudging_keeps_answers_and_restates_the_judge() -> None:
    class Scripted:
        model = "judge-2"

        async def __call__(self, question: str, gold: str, answer: str) -> Any:
            from bench.locomo_judge import Verdict

            return Verdict(answer == gold, "scripted")

        async def close(self) -> None:
            return None

    rows = [{"kind": "config", "judge_model": "judge-1"}, _record("mnemograph", 0, 2, False)]
    out = await rejudge(rows, Scripted(), "http://judge")  # type: ignore[arg-type]
    assert out[0]["judge_model"] == "judge-2" and out[0]["judge_endpoint"] == "http://judge"
    assert out[1]["judge"] is True and out[1]["answer"] == rows[1]["answer"]


# ------------------------------------------------------------------------------- questions
def test_questions_from_the_conversation_file_split_joined_evidence_and_drop_adversarial() -> None:
    questions, answers = questions_from_data([_conversation()])
    assert [q.qa_index for q in questions] == [0, 1, 2]
    assert questions[2].evidence == ["D1:3", "D2:2"]
    assert answers[("conv-x", 1)] == "Miso"


def test_limit_turns_keeps_only_questions_whose_evidence_was_ingested() -> None:
    data = [_conversation()]
    questions, answers = questions_from_data(data)
    assert answerable(questions[0], {"D1:1"})
    assert not answerable(questions[2], {"D1:1", "D1:3"})  # D2:2 missing
    assert not answerable(Question("conv-x", 9, 4, "q", []), {"D1:1"})  # no evidence at all

    (conv,) = select(data, questions, answers, limit_turns=3)
    assert [t.dia_id for t in conv.turns] == ["D1:1", "D1:2", "D1:3"]
    assert conv.total_turns == 5
    assert [c.question.qa_index for c in conv.cases] == [0]
    assert conv.cases[0].gold == "7 May 2023" and conv.speakers == ("Ann", "Bo")

    (full,) = select(data, questions, answers)
    assert [c.question.qa_index for c in full.cases] == [0, 1, 2]
    (two,) = select(data, questions, answers, limit_questions=2)
    assert [c.question.qa_index for c in two.cases] == [0, 1]
    # A conversation left with no question is not ingested at all.
    assert select(data, questions, answers, limit_turns=0) == []
    assert select(data, questions, answers, only=["conv-y"]) == []
    # Adversarial questions never get in, even from a questions file that includes them.
    adversarial = [Question("conv-x", 3, 5, "What is Ann's dog called?", ["D1:1"])]
    assert select(data, adversarial, answers) == []


def test_a_question_stays_one_question_so_the_agent_files_nothing_from_it() -> None:
    """The answer-style hint is a prefix: with it after the question, the agent's
    extractors would see a statement and might store the instruction as a memory."""
    from graph.render import worth_extracting

    message = question_message("When did Ann go hiking?", ANSWER_HINT)
    assert message == f"{ANSWER_HINT} When did Ann go hiking?"
    assert not worth_extracting(message)
    assert question_message("When did Ann go hiking?", "") == "When did Ann go hiking?"


def test_a_turn_goes_in_with_its_session_date_speaker_and_photo() -> None:
    turns = load_turns(_conversation()["conversation"])
    assert turn_message(turns[0]) == "[1:56 pm on 8 May, 2023] Ann: I went hiking yesterday."
    assert turn_message(turns[1]) == (
        "[1:56 pm on 8 May, 2023] Bo: Nice! Where? [shares a photo: a photo of a trail]"
    )


def test_the_answer_model_follows_the_agents_own_rule(tmp_path: Path) -> None:
    from stores.settings import Settings

    local = AnswerModel.from_settings(Settings(data_dir=tmp_path, model="gpt-4o-mini"))
    assert local.local and local.model == "local" and local.label.startswith("local:")
    hosted = AnswerModel.from_settings(
        Settings(data_dir=tmp_path, model="m", openai_base_url="http://llm:8000/v1")
    )
    assert not hosted.local and hosted.label == "m" and hosted.base_url == "http://llm:8000/v1"
    assert hosted.api_key == "not-needed"


# ------------------------------------------------------------------------------- resume
def test_results_file_resumes_what_was_done_and_survives_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    log = ResultLog(path)
    log.check_protocol({"answer_model": "m", "limit_turns": 5})
    log.append(_record("mnemograph", 0, 2, True))
    log.append({"kind": "ingest", "sample_id": "conv-x", "turns": 5, "seconds": 1.0})
    # A run killed while writing leaves half a line behind.
    with path.open("a") as fh:
        fh.write('{"kind": "answer", "system": "full-con')

    again = ResultLog(path)
    assert again.done() == {("conv-x", 0, "mnemograph")}
    assert set(again.ingested()) == {"conv-x"}
    again.check_protocol({"answer_model": "m", "limit_turns": 5})  # same protocol: fine
    again.append(_record("full-context", 0, 2, False))
    lines = path.read_text().splitlines()
    assert all(json.loads(line) for line in lines)  # every line parses again
    assert ResultLog(path).done() == {
        ("conv-x", 0, "mnemograph"), ("conv-x", 0, "full-context")
    }  # fmt: skip
    assert sum(1 for line in lines if '"config"' in line) == 1

    with pytest.raises(SystemExit, match="limit_turns"):
        ResultLog(path).check_protocol({"answer_model": "m", "limit_turns": 10})


def test_ingest_progress_round_trips(tmp_path: Path) -> None:
    state = BenchState.load(tmp_path / "users.json")
    assert state.users == {}
    state.users["conv-x"] = UserState("locomo-conv-x-abc", "u1", "key", ingested=3, ingest_s=9.5)
    state.save()
    again = BenchState.load(tmp_path / "users.json")
    assert again.users["conv-x"].ingested == 3 and again.users["conv-x"].api_key == "key"


# ------------------------------------------------------------------------------- summary
def test_summary_per_category_counts_an_unreadable_verdict_as_wrong() -> None:
    data = [_conversation()]
    convs = select(data, *questions_from_data(data))
    records = [
        {"kind": "config"},
        _record("mnemograph", 0, 2, True),
        _record("mnemograph", 1, 4, None),
        _record("mnemograph", 2, 1, False),
        _record("full-context", 0, 2, True, context_turns=3, total_turns=5),
        _record("full-context", 1, 4, True, context_turns=5, total_turns=5),
        _record("mnemograph", 7, 4, True),  # not selected: left out
    ]
    out = summarize(records, convs)
    agent = out["mnemograph"]
    assert agent["categories"]["overall"]["n"] == 3
    assert agent["categories"]["overall"]["J"] == pytest.approx(1 / 3)
    assert agent["categories"]["temporal"] == {"n": 1, "J": 1.0, "F1": 1.0, "BLEU1": 1.0}
    assert "open-domain" not in agent["categories"]
    assert agent["judge_unparsed"] == 1
    assert agent["prompt_tokens"]["mean"] == pytest.approx(200)
    assert agent["latency_s"] == {"p50": 2.0, "p95": 3.0}
    full = out["full-context"]
    assert full["categories"]["overall"]["J"] == 1.0
    assert full["truncated"] == {"questions": 1, "kept_turn_share": pytest.approx(0.8)}


# ------------------------------------------------------------------------------- baseline
def test_full_context_cuts_the_oldest_turns_first() -> None:
    data = [_conversation()]
    (conv,) = select(data, *questions_from_data(data))
    assert fit_turns(conv.turns, 10_000) == 5
    assert fit_turns(conv.turns, 0) == 0
    two = fit_turns(conv.turns, 30)
    assert 0 < two < 5
    system, human = full_context_messages(conv, "What is Bo's cat called?", "Briefly:", 2)
    assert system[0] == "system" and "Ann and Bo" in system[1]
    text = human[1]
    assert "Session 2 (10:00 am on 20 May, 2023):\nBo: I adopted a cat named Miso." in text
    assert "hiking" not in text  # session 1 was cut
    assert text.endswith("Question: Briefly: What is Bo's cat called?")
    everything = full_context_messages(conv, "q", "", 5)[1][1]
    assert everything.index("Session 1") < everything.index("Session 2")
    assert ANSWER_RESERVE > 0


def test_server_counters_are_read_from_prometheus_text() -> None:
    text = "\n".join([
        "# HELP mnemograph_turns_total Graph runs of turns, by door and outcome",
        "# TYPE mnemograph_turns_total counter",
        'mnemograph_turns_total{door="openai",outcome="ok"} 7.0',
        'mnemograph_turns_total{door="openai",outcome="error"} 1.0',
        'mnemograph_turns_total{door="cli",outcome="ok"} 4.0',
        'mnemograph_turns_created{door="openai",outcome="ok"} 1.7e9',
        "# HELP mnemograph_node_duration_seconds Time of each node",
        "# TYPE mnemograph_node_duration_seconds histogram",
        'mnemograph_node_duration_seconds_bucket{le="+Inf",node="call_model"} 4.0',
        'mnemograph_node_duration_seconds_count{node="call_model"} 4.0',
        'mnemograph_node_duration_seconds_sum{node="call_model"} 10.0',
        "",
    ])  # fmt: skip
    counts = parse_turn_counts(text)
    assert (counts.total, counts.errors) == (8, 1)
    assert parse_node_seconds(text) == {"call_model": 2.5}
