"""Knowledge-graph extraction quality: precision, recall and F1 of triples on labelled sentences.

Run ``python -m bench.kg_extraction [--model scripted|local|openai] [--data PATH] [--limit N]
[--json out]``.

Why this exists: the graph is only as good as what ``nodes.extract_knowledge.extract_triples``
puts into it, and that depends on the model, the prompt, normalization and grounding together.
This bench runs the *real* ``extract_triples`` on hand-written labelled sentences and compares
what would be stored (after ``stores.knowledge.rules.prepare``, exactly as the graph store
receives it) with
the labelled triples.

Data sets (``--data``):

* ``bench/data/kg_sentences.jsonl`` (default, reported as **tuned**): the set the extraction
  prompt and normalization rules were tuned on. Its figures are optimistic by construction.
* ``bench/data/extraction_heldout.jsonl`` (reported as **held-out**): written afterwards with
  other names, places, employers and phrasings, and never used for tuning. Quote this one.
  It also carries memory labels for ``bench.memory_extraction``. Its triples are written the
  way a person would (``["I", "lives_in", "Porto"]``) and normalized on load; the tuned file
  keeps labels already in canonical form (``expected``).

Models:

* ``scripted`` replays hand-written, model-like raw output per sentence (the ``scripted_raw``
  or ``scripted_triples`` field: un-normalized entities, predicate variants, hallucinated and
  low-confidence triples, misses). It measures the normalization + grounding pipeline
  deterministically, in seconds; it says nothing about how good a real model is.
* ``local`` starts the packaged offline llama.cpp model (needs the ``local`` extra) through
  ``stores.models.llm.build_chat_model``, exactly as the app does (same client, timeouts,
  retries and
  sampling: no temperature is set, so the server's default applies), with two threads and the
  model in ``MNEMOGRAPH_BENCH_MODEL_DIR`` (a data dir's ``models`` folder); it is stopped at the
  end. Expect 30-50 s per sentence on two cores.
* ``openai`` uses the configured endpoint (``stores.models.llm.build_chat_model``).

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

from graph.facts import ExtractedTriples, normalize_entity, normalize_object, normalize_predicate
from graph.render import worth_extracting
from graph.structured import structured
from nodes.extract_knowledge import extract_triples
from stores.knowledge.rules import prepare

DATA = Path(__file__).parent / "data" / "kg_sentences.jsonl"
"""The tuned set: the sentences the extraction prompt was developed against."""
HELDOUT = Path(__file__).parent / "data" / "extraction_heldout.jsonl"
"""The held-out set: never used for tuning; also labelled for memory extraction."""
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


def set_label(path: Path) -> str:
    """How reports name a data set: "tuned", "held-out", or the file's stem for any other."""
    resolved = path.resolve()
    if resolved == DATA.resolve():
        return "tuned"
    if resolved == HELDOUT.resolve():
        return "held-out"
    return path.stem


def _label(row: dict[str, Any], where: str) -> list[SPO]:
    """The row's expected triples in canonical form.

    ``expected`` (tuned file) must already be canonical; ``triples`` (held-out file) is written
    as a person would ("I", "Porto") and normalized here. Either way a label that could never
    be matched is a data bug, so it fails loudly instead of silently lowering recall: a
    canonical label normalization would change, an empty part, or a predicate that is not
    spelled canonically (a synonym such as ``resides_in`` in a label would hide how the
    pipeline maps it).
    """
    labels: list[SPO] = []
    if "expected" in row:
        for s, p, o in row["expected"]:
            if (normalize_entity(s), normalize_predicate(p), normalize_entity(o)) != (s, p, o):
                raise ValueError(f"{where}: label {(s, p, o)} is not in canonical form")
            labels.append((s, p, o))
        return labels
    for s, p, o in row["triples"]:
        pred = normalize_predicate(p)
        spo = (normalize_entity(s), pred, normalize_object(pred, normalize_entity(o)))
        if pred != p or not all(spo):
            raise ValueError(f"{where}: label {(s, p, o)} normalizes to {spo}")
        labels.append(spo)
    return labels


def load_sentences(path: Path = DATA) -> list[Sentence]:
    """Read a labelled set (either file format) and check every label can be matched."""
    sentences: list[Sentence] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        sentences.append(
            Sentence(
                id=row["id"],
                text=row["text"],
                expected=_label(row, f"{path}:{n}"),
                note=row.get("note", ""),
                question=row.get("question", ""),
                reply=row.get("reply", ""),
                scripted_raw=row.get("scripted_raw", row.get("scripted_triples", [])),
            )
        )
    return sentences


class ScriptedExtractionModel(BaseChatModel):
    """Deterministic stand-in LLM: answers the extraction tool call with the sentence's
    hand-written raw output, so the bench measures normalization and grounding, not a model.

    The sentence is recognised by its text inside the prompt's ``<user>`` block
    (:meth:`user_text`); the reply's tool arguments are ``{args_key: replies[text]}``. Every
    reply is a fresh ``AIMessage`` with its own id, as a real model's would be. Subclasses for
    other prompts override :meth:`user_text` and ``args_key``.
    """

    replies: dict[str, list[dict[str, Any]]]
    args_key: str = "triples"
    calls: int = 0

    def user_text(self, prompt: str) -> str:
        """The user's message inside the extraction prompt ('' if it cannot be found)."""
        start, end = prompt.find("<user>\n"), prompt.find("\n</user>")
        return prompt[start + len("<user>\n") : end] if 0 <= start < end else ""

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
        text = self.user_text(str(messages[-1].content))
        tools = kwargs.get("tools") or []
        name = tools[0]["function"]["name"] if tools else "ExtractedTriples"
        reply = AIMessage(
            content="",
            id=f"scripted-{self.calls}",
            tool_calls=[
                {
                    "name": name,
                    "args": {self.args_key: self.replies.get(text, [])},
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
        extractor = structured(model, ExtractedTriples)
        kept = await extract_triples(extractor, sentence.text, sentence.question)
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


def scores_table(title: str, rows: Sequence[Sequence[Any]]) -> Table:
    """A P/R/F1 table: each row is (match, precision, recall, F1, tp, fp, fn); floats are
    printed with three decimals, ``None`` as an empty cell."""
    table = Table(title=title)
    for column in ("match", "precision", "recall", "F1", "tp", "fp", "fn"):
        table.add_column(column, justify="right" if column != "match" else "left")
    for row in rows:
        table.add_row(
            *("" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v) for v in row)
        )
    return table


def latency_line(stats: dict[str, Any], unit: str = "sentence") -> str:
    """Model calls, errors and latency percentiles of a summary, as one line."""
    return (
        f"model calls {stats['model_calls']}, errors {stats['errors']}; latency per {unit} "
        f"p50 {stats['latency_p50_s']:.2f} s, p95 {stats['latency_p95_s']:.2f} s, "
        f"mean {stats['latency_mean_s']:.2f} s"
    )


def print_table(model_name: str, stats: dict[str, Any], console: Console) -> None:
    """The bench's one table: exact and relaxed P/R/F1, counts and latency."""
    data_set = stats.get("set", "")
    title = (
        f"KG extraction — model={model_name}, set={data_set or '?'}, {stats['sentences']} sentences"
    )
    relaxed = [stats[k] for k in ("relaxed_precision", "relaxed_recall", "relaxed_f1")]
    rows = [
        ("exact (s,p,o)", stats["precision"], stats["recall"], stats["f1"],
         stats["tp"], stats["fp"], stats["fn"]),
        ("relaxed (s,o)", *relaxed, None, None, None),
    ]  # fmt: skip
    console.print(scores_table(title, rows))
    console.print(latency_line(stats))


def build_live_model(name: str, stack: AsyncExitStack) -> BaseChatModel:
    """The ``local`` or ``openai`` chat model, built by ``stores.models.llm.build_chat_model``
    as the
    app builds it; any server it starts is stopped by ``stack``.

    ``local`` forces the offline llama.cpp path (an ``OPENAI_*`` endpoint in the environment
    is ignored) with two threads and the model in ``MNEMOGRAPH_BENCH_MODEL_DIR``; every other
    setting (timeout, retries, port) comes from the environment, as in the app.
    """
    from stores.models.llm import build_chat_model
    from stores.settings import Settings, get_settings

    if name == "local":
        from stores.models.llama_server import local_llm_available

        if not local_llm_available():
            raise SystemExit("the local model needs the [local] extra (llama_cpp + model parts)")
        model_dir = Path(os.environ.get("MNEMOGRAPH_BENCH_MODEL_DIR", DEFAULT_LOCAL_MODEL_DIR))
        if model_dir.name != "models":
            raise SystemExit(
                f"MNEMOGRAPH_BENCH_MODEL_DIR must be a data dir's 'models' folder, not {model_dir}"
            )
        settings = Settings(
            data_dir=model_dir.parent,
            model="local",
            openai_api_key=None,
            openai_base_url=None,
            local_llm_threads=2,
        )
        return build_chat_model(settings, stack=stack)
    settings = get_settings()
    if settings.openai_api_key is None and settings.openai_base_url is None:
        raise SystemExit("--model openai needs OPENAI_API_KEY (and optionally OPENAI_BASE_URL)")
    return build_chat_model(settings, stack=stack)


def build_model(name: str, sentences: Sequence[Sentence], stack: AsyncExitStack) -> BaseChatModel:
    """The chat model under test; any server it starts is stopped by ``stack``."""
    if name == "scripted":
        return ScriptedExtractionModel(replies={s.text: s.scripted_raw for s in sentences})
    return build_live_model(name, stack)


async def run(
    model_name: str, limit: int | None, json_path: Path | None, data: Path
) -> dict[str, Any]:
    """Run the bench; the JSON report is rewritten after every sentence, so a long local run
    that is interrupted still leaves everything measured so far."""
    console = Console()
    sentences = load_sentences(data)[: limit or None]
    label = set_label(data)
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
                write_report(json_path, model_name, label, data, summary(outcomes), outcomes)
    stats = {"set": label, "data": str(data), **summary(outcomes)}
    print_table(model_name, stats, console)
    if json_path is not None:
        write_report(json_path, model_name, label, data, stats, outcomes)
    return stats


def write_report(
    path: Path,
    model_name: str,
    label: str,
    data: Path,
    stats: dict[str, Any],
    outcomes: Sequence[Any],
) -> None:
    """Write the JSON report atomically: model, data set, summary and per-sentence outcomes
    (dataclasses)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "model": model_name,
        "set": label,
        "data": str(data),
        "summary": stats,
        "sentences": [asdict(o) for o in outcomes],
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line entry point; returns the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", choices=("scripted", "local", "openai"), default="scripted")
    parser.add_argument("--limit", type=int, default=None, help="first N sentences only")
    parser.add_argument("--json", type=Path, default=None, help="per-sentence results file")
    parser.add_argument(
        "--data",
        type=Path,
        default=DATA,
        help="labelled sentences (JSONL); default the tuned set, "
        "bench/data/extraction_heldout.jsonl is held out",
    )
    args = parser.parse_args(argv)
    return asyncio.run(run(args.model, args.limit, args.json, args.data))


if __name__ == "__main__":
    main()
