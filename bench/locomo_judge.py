"""Scoring a LoCoMo answer the way peers publish it: the mem0 LLM judge (J), token F1 and BLEU-1.

J is only comparable across systems when the judge prompt is the same word for word: audits
of the published LoCoMo numbers show the judge and answer model alone move J by 4+ points. So
the prompt below is mem0's evaluation prompt as published, not a paraphrase, and F1 and
BLEU-1 follow the same evaluation's definitions (mem0's ``evaluation/metrics/utils.py``,
itself taken from A-Mem): F1 over *sets* of lower-cased tokens with ``. , ! ?`` removed, and
sentence BLEU with unigram weight only.

Re-judging an existing results file with another judge (the answers are kept, only the
verdicts change): ``python -m bench.locomo_judge --in bench/results/locomo_qa.jsonl --out
bench/results/locomo_qa_judge2.jsonl --judge-model gpt-4o``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JUDGE_PROMPT = """
Your task is to label an answer to a question as ’CORRECT’ or ’WRONG’. You will be given the following data:
    (1) a question (posed by one user to another user), 
    (2) a ’gold’ (ground truth) answer, 
    (3) a generated answer
which you will score as CORRECT/WRONG.

The point of the question is to ask about something one user should know about the other user based on their prior conversations.
The gold answer will usually be a concise and short answer that includes the referenced topic, for example:
Question: Do you remember what I got the last time I went to Hawaii?
Gold answer: A shell necklace
The generated answer might be much longer, but you should be generous with your grading - as long as it touches on the same topic as the gold answer, it should be counted as CORRECT. 

For time related questions, the gold answer will be a specific date, month, year, etc. The generated answer might be much longer or use relative time references (like "last Tuesday" or "next month"), but you should be generous with your grading - as long as it refers to the same date or time period as the gold answer, it should be counted as CORRECT. Even if the format differs (e.g., "May 7th" vs "7 May"), consider it CORRECT if it's the same date.

Now it's time for the real question:
Question: {question}
Gold answer: {gold_answer}
Generated answer: {generated_answer}

First, provide a short (one sentence) explanation of your reasoning, then finish with CORRECT or WRONG. 
Do NOT include both CORRECT and WRONG in your response, or it will break the evaluation script.

Just return the label CORRECT or WRONG in a json format with the key as "label".
"""  # noqa: E501, W291
"""mem0's ``ACCURACY_PROMPT`` (github.com/mem0ai/mem0, ``evaluation/metrics/llm_judge.py``,
Apache-2.0), verbatim, trailing spaces and typographic quotes included: the number it
produces is only comparable to the published J scores if nothing here differs. mem0 sends it
as the only (user) message, at temperature 0, asking for a JSON object."""

JUDGE_MAX_TOKENS = 300
"""mem0 sets no bound; a small local judge under a JSON grammar can ramble, so cap the
explanation (the label is parsed from whatever text comes back, see :func:`parse_label`)."""

_LABEL = re.compile(r"\b(CORRECT|WRONG)\b")


def parse_label(text: str | None) -> bool | None:
    """The judge's verdict: ``True`` for CORRECT, ``False`` for WRONG, ``None`` if neither.

    mem0 reads ``json.loads(...)["label"] == "CORRECT"``. Weaker judges wrap the JSON in
    prose or code fences, or answer with the bare word, so: the ``label`` of the first JSON
    object in the text when there is one, else the *last* CORRECT/WRONG word (the prompt asks
    for the reasoning first and the label last). Case and surrounding quotes are ignored.
    """
    if not text:
        return None
    for start in (i for i, ch in enumerate(text) if ch == "{"):
        try:
            obj, _ = json.JSONDecoder().raw_decode(text[start:])
        except ValueError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get("label"), str):
            label = obj["label"].strip().strip("'\"’‘ .").upper()
            if label in ("CORRECT", "WRONG"):
                return label == "CORRECT"
    words = _LABEL.findall(text.upper())
    return words[-1] == "CORRECT" if words else None


def f1_tokens(text: str) -> list[str]:
    """mem0's ``simple_tokenize``: lower case, ``. , ! ?`` become spaces, split on spaces."""
    out = str(text).lower()
    for ch in ".,!?":
        out = out.replace(ch, " ")
    return out.split()


def f1_score(prediction: str, gold: str) -> float:
    """Token F1 over the *sets* of tokens (mem0's definition; duplicates do not count)."""
    pred, ref = set(f1_tokens(prediction)), set(f1_tokens(gold))
    common = pred & ref
    if not pred or not ref or not common:
        return 0.0
    precision, recall = len(common) / len(pred), len(common) / len(ref)
    return 2 * precision * recall / (precision + recall)


_BLEU_TOKEN = re.compile(r"\w+(?=n't)|n't|'\w+|\w+|[^\w\s]")
"""Close to NLTK's Treebank ``word_tokenize`` (what mem0 uses) without its data files:
words, ``n't`` and ``'s``-style clitics, and each punctuation mark as its own token."""


def bleu_tokens(text: str) -> list[str]:
    return _BLEU_TOKEN.findall(str(text).lower())


def bleu1(prediction: str, gold: str) -> float:
    """Sentence BLEU with weights (1, 0, 0, 0) against one reference, as NLTK computes it:
    clipped unigram precision times the brevity penalty; 0 when no unigram matches (NLTK
    returns 0 then, whatever the smoothing)."""
    hyp, ref = bleu_tokens(prediction), bleu_tokens(gold)
    if not hyp or not ref:
        return 0.0
    ref_counts = Counter(ref)
    matches = sum(min(n, ref_counts[tok]) for tok, n in Counter(hyp).items())
    if matches == 0:
        return 0.0
    brevity = 1.0 if len(hyp) > len(ref) else math.exp(1 - len(ref) / len(hyp))
    return brevity * matches / len(hyp)


@dataclass(frozen=True)
class Verdict:
    """One judgement: the label (``None`` when the judge's text had none) and its raw text."""

    correct: bool | None
    raw: str


class Judge:
    """An OpenAI-compatible judge model called the way mem0's evaluation calls it.

    ``response_format={"type": "json_object"}`` is sent as mem0 does; an endpoint that
    refuses it (400) is asked again without it, and not offered it again.
    """

    def __init__(self, *, base_url: str | None, api_key: str, model: str) -> None:
        from openai import AsyncOpenAI

        self.model = model
        self.base_url = base_url
        self._client = AsyncOpenAI(base_url=base_url, api_key=api_key, timeout=600, max_retries=2)
        self._json_mode = True

    async def __call__(self, question: str, gold: str, answer: str) -> Verdict:
        import openai

        prompt = JUDGE_PROMPT.format(question=question, gold_answer=gold, generated_answer=answer)
        extra: dict[str, Any] = {"response_format": {"type": "json_object"}}
        for _ in range(2):
            try:
                resp = await self._client.chat.completions.create(
                    model=self.model,
                    messages=[{"role": "user", "content": prompt}],
                    temperature=0.0,
                    max_tokens=JUDGE_MAX_TOKENS,
                    **(extra if self._json_mode else {}),
                )
            except openai.BadRequestError:
                if not self._json_mode:
                    raise
                self._json_mode = False
                continue
            raw = (resp.choices[0].message.content or "") if resp.choices else ""
            return Verdict(parse_label(raw), raw)
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        await self._client.close()


def judge_settings(args: argparse.Namespace, *, base_url: str | None, model: str) -> Judge:
    """The judge the command line asks for; unset parts default to the answering endpoint."""
    key = (
        args.judge_api_key
        or os.environ.get("JUDGE_API_KEY")
        or os.environ.get("OPENAI_API_KEY", "not-needed")
    )
    return Judge(
        base_url=args.judge_base_url or base_url, api_key=key, model=args.judge_model or model
    )


def add_judge_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--judge-base-url",
        default=None,
        help="OpenAI-compatible judge endpoint (default: the answer model's)",
    )
    parser.add_argument(
        "--judge-model", default=None, help="judge model name (default: the answer model)"
    )
    parser.add_argument("--judge-api-key", default=None,
                        help="default: $JUDGE_API_KEY, else $OPENAI_API_KEY")  # fmt: skip


async def rejudge(
    rows: Sequence[dict[str, Any]], judge: Judge, endpoint: str
) -> list[dict[str, Any]]:
    """The same answers with this judge's verdicts (F1 and BLEU-1 do not depend on it)."""
    out = []
    for row in rows:
        if row.get("kind") == "config":  # the file now states the judge that graded it
            out.append({**row, "judge_model": judge.model, "judge_endpoint": endpoint})
            continue
        if row.get("kind") != "answer":
            out.append(row)
            continue
        verdict = await judge(row["question"], row["gold"], row["answer"])
        out.append({**row, "judge": verdict.correct, "judge_raw": verdict.raw,
                    "judge_model": judge.model})  # fmt: skip
    await judge.close()
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Re-judge a bench.locomo_qa results file.")
    parser.add_argument("--in", dest="src", required=True)
    parser.add_argument("--out", required=True)
    add_judge_args(parser)
    args = parser.parse_args(argv)
    rows = [json.loads(line) for line in Path(args.src).read_text().splitlines() if line.strip()]
    judge = judge_settings(
        args, base_url=os.environ.get("OPENAI_BASE_URL"),
        model=os.environ.get("MNEMOGRAPH_MODEL", "gpt-4o-mini"),
    )  # fmt: skip
    endpoint = args.judge_base_url or os.environ.get("OPENAI_BASE_URL") or "api.openai.com"
    rejudged = asyncio.run(rejudge(rows, judge, endpoint))
    Path(args.out).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejudged))
    print(f"{sum(1 for r in rejudged if r.get('kind') == 'answer')} answers re-judged by "
          f"{judge.model} into {args.out}")  # fmt: skip


if __name__ == "__main__":
    main()
