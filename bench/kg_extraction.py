"""Knowledge-graph extraction quality: precision, recall and F1 of triples on labelled sentences.

Run ``python -m bench.kg_extraction [--model scripted|local|openai] [--limit N] [--json out]``.

Why this exists: the graph is only as good as what ``nodes.extract_knowledge.extract_triples``
puts into it, and that depends on the model, the prompt, normalization and grounding together.
This bench runs the *real* ``extract_triples`` on the hand-written sentences in
``bench/data/kg_sentences.jsonl`` and compares what would be stored (after ``graph.kg.prepare``,
exactly as the graph store receives it) with the labelled triples.

Models:

* ``scripted`` replays hand-written, model-like raw output per sentence (the ``scripted_raw``
  field: un-normalized entities, predicate variants, hallucinated and low-confidence triples,
  misses). It measures the normalization + grounding pipeline deterministically, in seconds.
* ``local`` starts the packaged offline llama.cpp model (needs the ``local`` extra) with two
  threads, and stops it at the end. Expect 30-50 s per sentence on two cores.
* ``openai`` uses the configured endpoint (``stores.llm.build_chat_model``).

Scoring:

* **exact**: a predicted (subject, predicate, object) equals a labelled one after
  normalization. Symmetric predicates (married_to, sibling_of, friend_of) match in either
  direction and ``a parent_of b`` equals ``b child_of a``: those are one fact, whichever way
  round the model phrased it.
* **relaxed**: the same entity pair with any predicate (direction ignored); it separates
  "found the fact but named the relation differently" from "missed it".
* Micro-averaged over all sentences; sentences with nothing to extract count through their
  false positives. Latency percentiles cover only sentences that reached the model (the node
  skips pleasantries before calling it, and so does this bench).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections.abc import Iterable, Sequence
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult, LLMResult
from rich.console import Console
from rich.table import Table

from graph.kg import normalize_entity, normalize_predicate, prepare
from nodes.extract_knowledge import extract_triples, worth_extracting

DATA = Path(__file__).parent / "data" / "kg_sentences.jsonl"
DEFAULT_LOCAL_MODEL_DIR = Path("/tmp/localtest/.mnemograph/models")

SYMMETRIC = frozenset({"married_to", "sibling_of", "friend_of"})
INVERSE = {"parent_of": "child_of"}
"""``a parent_of b`` is scored as ``b child_of a``: one canonical direction per fact."""

SPO = tuple[str, str, str]


@dataclass
class Sentence:
    """One labelled sentence: what the user said (and the assistant turns around it)."""

    id: str
    text: str
    expected: list[SPO]
    note: str = ""
    question: str = ""
    reply: str = ""
    scripted_raw: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Outcome:
    """Per-sentence result, written to the JSON report so failures can be read one by one."""

    id: str
    text: str
    expected: list[SPO]
    predicted: list[SPO] = field(default_factory=list)
    raw: list[dict[str, Any]] = field(default_factory=list)
    tp: int = 0
    fp: int = 0
    fn: int = 0
    relaxed_tp: int = 0
    relaxed_fp: int = 0
    relaxed_fn: int = 0
    latency_s: float | None = None
    skipped: bool = False
    error: str | None = None


def canonical(triple: Sequence[str]) -> SPO:
    """One direction per fact, so equivalent phrasings score as the same triple."""
    s, p, o = triple[0], triple[1], triple[2]
    if p in INVERSE:
        s, p, o = o, INVERSE[p], s
    if p in SYMMETRIC and o < s:
        s, o = o, s
    return (s, p, o)


def load_sentences(path: Path = DATA) -> list[Sentence]:
    """Read the labelled set and check every label is already in canonical form.

    A label that normalization would change could never be matched, so it is a data bug:
    fail loudly instead of silently lowering recall.
    """
    sentences: list[Sentence] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        expected: list[SPO] = []
        for s, p, o in row["expected"]:
            if (normalize_entity(s), normalize_predicate(p), normalize_entity(o)) != (s, p, o):
                raise ValueError(f"{path}:{n}: label {(s, p, o)} is not in canonical form")
            expected.append((s, p, o))
        sentences.append(
            Sentence(
                id=row["id"],
                text=row["text"],
                expected=expected,
                note=row.get("note", ""),
                question=row.get("question", ""),
                reply=row.get("reply", ""),
                scripted_raw=row.get("scripted_raw", []),
            )
        )
    return sentences


class ScriptedExtractionModel(BaseChatModel):
    """Deterministic stand-in LLM: answers the extraction tool call with the sentence's
    hand-written raw output, so the bench measures normalization and grounding, not a model.

    The sentence is recognised by its text inside the prompt's ``<user>`` block; every reply
    is a fresh ``AIMessage`` with its own id, as a real model's would be.
    """

    replies: dict[str, list[dict[str, Any]]]
    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "kg-bench-scripted"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        from langchain_core.utils.function_calling import convert_to_openai_tool

        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.calls += 1
        prompt = str(messages[-1].content)
        start, end = prompt.find("<user>\n"), prompt.find("\n</user>")
        text = prompt[start + len("<user>\n") : end] if 0 <= start < end else ""
        tools = kwargs.get("tools") or []
        name = tools[0]["function"]["name"] if tools else "ExtractedTriples"
        reply = AIMessage(
            content="",
            id=f"scripted-{self.calls}",
            tool_calls=[
                {
                    "name": name,
                    "args": {"triples": self.replies.get(text, [])},
                    "id": f"call-{self.calls}",
                }
            ],
        )
        return ChatResult(generations=[ChatGeneration(message=reply)])


class RawOutputRecorder(BaseCallbackHandler):
    """Keeps the model's raw tool-call arguments of the last call, for the per-sentence report
    (why a triple was lost: never produced, badly normalized, or dropped by grounding)."""

    def __init__(self) -> None:
        self.last: list[dict[str, Any]] = []

    def on_llm_end(
        self,
        response: LLMResult,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        for generations in response.generations:
            for generation in generations:
                message = getattr(generation, "message", None)
                if isinstance(message, AIMessage):
                    self.last = [dict(call.get("args", {})) for call in message.tool_calls]
                    if not self.last and message.content:
                        self.last = [{"content": message.text}]


def score(out: Outcome) -> None:
    """Fill exact and relaxed tp/fp/fn of one outcome."""
    predicted = {canonical(t) for t in out.predicted}
    expected = {canonical(t) for t in out.expected}
    out.tp = len(predicted & expected)
    out.fp = len(predicted - expected)
    out.fn = len(expected - predicted)
    pairs_pred = {frozenset((s, o)) for s, _, o in predicted}
    pairs_exp = {frozenset((s, o)) for s, _, o in expected}
    out.relaxed_tp = len(pairs_pred & pairs_exp)
    out.relaxed_fp = len(pairs_pred - pairs_exp)
    out.relaxed_fn = len(pairs_exp - pairs_pred)


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Micro precision, recall, F1 (0 when undefined)."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


async def run_one(model: BaseChatModel, sentence: Sentence, recorder: RawOutputRecorder) -> Outcome:
    """Extract, normalize and score one sentence, never letting one failure stop the run."""
    out = Outcome(id=sentence.id, text=sentence.text, expected=sentence.expected)
    if not worth_extracting(sentence.text):  # the node skips these before the LLM
        out.skipped = True
        score(out)
        return out
    recorder.last = []
    started = time.perf_counter()
    try:
        kept = await extract_triples(model, sentence.text, sentence.reply, sentence.question)
    except Exception as exc:  # a malformed local-model answer counts as a miss
        kept = []
        out.error = f"{type(exc).__name__}: {str(exc)[:300]}"
    out.latency_s = time.perf_counter() - started
    out.raw = recorder.last
    out.predicted = [(r["s"], r["p"], r["o"]) for r in prepare(kept)]
    score(out)
    return out


def summary(outcomes: Iterable[Outcome]) -> dict[str, Any]:
    """Micro-averaged scores and latency over all outcomes."""
    items = list(outcomes)
    tp, fp, fn = (sum(getattr(o, k) for o in items) for k in ("tp", "fp", "fn"))
    rtp, rfp, rfn = (
        sum(getattr(o, k) for o in items) for k in ("relaxed_tp", "relaxed_fp", "relaxed_fn")
    )
    latencies = [o.latency_s for o in items if o.latency_s is not None]
    p, r, f = prf(tp, fp, fn)
    rp, rr, rf = prf(rtp, rfp, rfn)
    return {
        "sentences": len(items),
        "model_calls": len(latencies),
        "errors": sum(1 for o in items if o.error),
        "expected": tp + fn,
        "predicted": tp + fp,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": p,
        "recall": r,
        "f1": f,
        "relaxed_precision": rp,
        "relaxed_recall": rr,
        "relaxed_f1": rf,
        "latency_p50_s": percentile(latencies, 50),
        "latency_p95_s": percentile(latencies, 95),
        "latency_mean_s": statistics.fmean(latencies) if latencies else 0.0,
    }


def print_table(model_name: str, stats: dict[str, Any], console: Console) -> None:
    """The bench's one table: exact and relaxed P/R/F1, counts and latency."""
    table = Table(title=f"KG extraction — model={model_name}, {stats['sentences']} sentences")
    for column in ("match", "precision", "recall", "F1", "tp", "fp", "fn"):
        table.add_column(column, justify="right" if column != "match" else "left")
    table.add_row(
        "exact (s,p,o)",
        f"{stats['precision']:.3f}",
        f"{stats['recall']:.3f}",
        f"{stats['f1']:.3f}",
        str(stats["tp"]),
        str(stats["fp"]),
        str(stats["fn"]),
    )
    relaxed = [stats[k] for k in ("relaxed_precision", "relaxed_recall", "relaxed_f1")]
    table.add_row("relaxed (s,o)", *(f"{v:.3f}" for v in relaxed), "", "", "")
    console.print(table)
    console.print(
        f"model calls {stats['model_calls']}, errors {stats['errors']}; latency per sentence "
        f"p50 {stats['latency_p50_s']:.2f} s, p95 {stats['latency_p95_s']:.2f} s, "
        f"mean {stats['latency_mean_s']:.2f} s"
    )


def build_model(name: str, sentences: Sequence[Sentence], stack: AsyncExitStack) -> BaseChatModel:
    """The chat model under test; any server it starts is stopped by ``stack``."""
    if name == "scripted":
        return ScriptedExtractionModel(replies={s.text: s.scripted_raw for s in sentences})
    if name == "local":
        from langchain_openai import ChatOpenAI

        from stores.llama_server import local_llm_available, start_llama_server

        if not local_llm_available():
            raise SystemExit("the local model needs the [local] extra (llama_cpp + model parts)")
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        model_dir = Path(os.environ.get("MNEMOGRAPH_BENCH_MODEL_DIR", DEFAULT_LOCAL_MODEL_DIR))
        server = start_llama_server(model_dir, threads=2, timeout_s=600)
        stack.callback(server.stop)
        return ChatOpenAI(
            base_url=server.base_url,
            api_key="local",  # type: ignore[arg-type]
            model="local",
            temperature=0,
            timeout=600,
            max_retries=0,
        )
    from stores.llm import build_chat_model
    from stores.settings import get_settings

    settings = get_settings()
    if settings.openai_api_key is None and settings.openai_base_url is None:
        raise SystemExit("--model openai needs OPENAI_API_KEY (and optionally OPENAI_BASE_URL)")
    return build_chat_model(settings, stack=stack)


async def run(
    model_name: str, limit: int | None, json_path: Path | None, data: Path
) -> dict[str, Any]:
    """Run the bench; the JSON report is rewritten after every sentence, so a long local run
    that is interrupted still leaves everything measured so far."""
    console = Console()
    sentences = load_sentences(data)[: limit or None]
    recorder = RawOutputRecorder()
    outcomes: list[Outcome] = []
    async with AsyncExitStack() as stack:
        model = build_model(model_name, sentences, stack)
        model.callbacks = [recorder]
        for i, sentence in enumerate(sentences, 1):
            out = await run_one(model, sentence, recorder)
            outcomes.append(out)
            console.log(
                f"[{i}/{len(sentences)}] {out.id} tp={out.tp} fp={out.fp} fn={out.fn} "
                f"{'skipped' if out.skipped else f'{out.latency_s or 0:.1f}s'}"
                + (f" error={out.error}" if out.error else "")
            )
            if json_path is not None:
                _write_report(json_path, model_name, outcomes)
    stats = summary(outcomes)
    print_table(model_name, stats, console)
    if json_path is not None:
        _write_report(json_path, model_name, outcomes)
    return stats


def _write_report(path: Path, model_name: str, outcomes: list[Outcome]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "model": model_name,
        "summary": summary(outcomes),
        "sentences": [asdict(o) for o in outcomes],
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", choices=("scripted", "local", "openai"), default="scripted")
    parser.add_argument("--limit", type=int, default=None, help="first N sentences only")
    parser.add_argument("--json", type=Path, default=None, help="per-sentence results file")
    parser.add_argument("--data", type=Path, default=DATA, help="labelled sentences (JSONL)")
    args = parser.parse_args(argv)
    asyncio.run(run(args.model, args.limit, args.json, args.data))


if __name__ == "__main__":
    main()
