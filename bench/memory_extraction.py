"""Memory extraction quality: precision, recall and F1 of memory items on labelled sentences.

Run ``python -m bench.memory_extraction [--model scripted|local|openai] [--data PATH]
[--limit N] [--json OUT]`` (default report: ``bench/results/memory_extraction_<model>.json``).

Why this exists: ``nodes.write_memory`` stores whatever ``extract_memories`` returns after every
turn, so a bad extractor fills long-term memory with noise (or forgets the user's life). This
bench runs the *real* ``extract_memories(extractor, messages)`` on each labelled sentence, with the
messages built as the node builds them (``exchange_messages``: the assistant's question, the user's
message with an id, the assistant's reply), and scores the items the node would store.

Data: ``bench/data/extraction_heldout.jsonl`` (the held-out set, never used for tuning; see
``bench.kg_extraction``). Each sentence lists the memories a correct extractor records, each as
1-3 lowercase keywords that any correct sentence for that fact must contain (``["lisbon"]`` for
"User lives in Lisbon", ``["sister", "nurse"]``).

Models are those of ``bench.kg_extraction`` and built by it: ``scripted`` replays the
hand-written, model-like ``scripted_memories`` of each sentence as the ``ExtractedMemories``
tool call (imperfect on purpose: combined items, hallucinated world knowledge, an item sourced
from the assistant's reply that the node drops, memories recorded from requests); ``local`` is
the packaged llama.cpp model built exactly as the app builds it; ``openai`` the configured
endpoint.

Scoring (micro-averaged over all sentences):

* An item *covers* an expected memory if its text, lowercased and with accents removed,
  contains all of that memory's keywords. One item may cover several memories ("User's sister
  Ines is a nurse in Porto").
* **recall** = expected memories covered by some item / expected memories.
* **precision** = items matched / items, where items and expected memories are paired one to
  one (a maximum matching): each expected memory credits at most one item, so a duplicate or
  an item that covers nothing is a false positive.
* Keywords cannot see polarity: "User eats meat" covers ``["meat"]`` as well as "User no longer
  eats meat" does. Read the per-sentence report for negations and updates.
* Unlike the graph node, the memory node calls the model on every turn (even "ok"), so every
  sentence is a model call and counts in the latency percentiles; items returned for sentences
  with nothing to remember are reported separately.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import unicodedata
from collections.abc import Iterable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from rich.console import Console

from bench.kg_extraction import (
    HELDOUT,
    RawOutputRecorder,
    ScriptedExtractionModel,
    build_live_model,
    latency_line,
    percentile,
    scores_table,
    set_label,
    write_report,
)
from graph.render import worth_extracting
from graph.structured import structured
from nodes.write_memory import ExtractedMemories, exchange_messages, extract_memories

RESULTS = Path(__file__).parent / "results"
QUESTION_ID, USER_ID, REPLY_ID = "m1", "m2", "m3"
"""Message ids as the extractor sees them; scripted items cite them in ``source_ids``."""


@dataclass
class MemorySentence:
    """One labelled user message, the assistant turns around it, and its expected memories."""

    id: str
    text: str
    memories: list[list[str]]
    note: str = ""
    question: str = ""
    reply: str = ""
    scripted: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class MemoryOutcome:
    """Per-sentence result, written to the JSON report so failures can be read one by one."""

    id: str
    text: str
    expected: list[list[str]]
    predicted: list[str] = field(default_factory=list)
    raw: list[dict[str, Any]] = field(default_factory=list)
    tp: int = 0
    """Items matched one to one with an expected memory."""
    fp: int = 0
    """Items matched with none (noise, duplicates, hallucinations)."""
    covered: int = 0
    """Expected memories some item covers."""
    fn: int = 0
    """Expected memories no item covers."""
    latency_s: float | None = None
    error: str | None = None


def fold(text: str) -> str:
    """Lowercase without accents, so "Valparaíso" and "valparaiso" are the same keyword."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def load_memory_sentences(path: Path = HELDOUT) -> list[MemorySentence]:
    """Read the memory labels of a labelled set; a file without them is a usage error, and a
    keyword list that could never be matched (empty, too long, not lowercase) a data bug."""
    sentences: list[MemorySentence] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if "memories" not in row:
            raise ValueError(f"{path}:{n}: no 'memories' labels (use {HELDOUT.name})")
        memories: list[list[str]] = []
        for keywords in row["memories"]:
            if not 1 <= len(keywords) <= 3 or any(
                not k.strip() or k != k.lower() for k in keywords
            ):
                raise ValueError(f"{path}:{n}: bad memory keywords {keywords!r}")
            memories.append(list(keywords))
        sentences.append(
            MemorySentence(
                id=row["id"],
                text=row["text"],
                memories=memories,
                note=row.get("note", ""),
                question=row.get("question", ""),
                reply=row.get("reply", ""),
                scripted=row.get("scripted_memories", []),
            )
        )
    return sentences


def messages_for(sentence: MemorySentence) -> list[BaseMessage]:
    """The conversation tail as ``write_memory`` hands it to the extractor."""
    history: list[BaseMessage] = []
    if sentence.question:
        history.append(AIMessage(content=sentence.question, id=QUESTION_ID))
    history.append(HumanMessage(content=sentence.text, id=USER_ID))
    if sentence.reply:
        history.append(AIMessage(content=sentence.reply, id=REPLY_ID))
    return exchange_messages(history)


class ScriptedMemoryModel(ScriptedExtractionModel):
    """``bench.kg_extraction``'s scripted model, answering ``ExtractedMemories`` instead: the
    sentence is found on the prompt's ``<id>: user: <text>`` line, the reply is
    ``{"items": scripted_memories}``."""

    args_key: str = "items"

    def user_text(self, prompt: str) -> str:
        marker = f"{USER_ID}: user: "
        for line in prompt.splitlines():
            if line.startswith(marker):
                return line[len(marker) :]
        return ""


def match(items: Sequence[str], expected: Sequence[Sequence[str]]) -> tuple[int, int]:
    """(items matched one to one with an expected memory, expected memories covered)."""
    folded = [fold(t) for t in items]
    covers = [
        [j for j, keywords in enumerate(expected) if all(fold(k) in text for k in keywords)]
        for text in folded
    ]
    covered = len({j for c in covers for j in c})
    owner: dict[int, int] = {}  # expected memory -> item, grown by augmenting paths

    def augment(i: int, seen: set[int]) -> bool:
        for j in covers[i]:
            if j in seen:
                continue
            seen.add(j)
            if j not in owner or augment(owner[j], seen):
                owner[j] = i
                return True
        return False

    matched = sum(1 for i in range(len(items)) if augment(i, set()))
    return matched, covered


def score(out: MemoryOutcome) -> None:
    """Fill tp/fp (items) and covered/fn (expected memories) of one outcome."""
    out.tp, out.covered = match(out.predicted, out.expected)
    out.fp = len(out.predicted) - out.tp
    out.fn = len(out.expected) - out.covered


async def run_one(
    model: BaseChatModel, sentence: MemorySentence, recorder: RawOutputRecorder
) -> MemoryOutcome:
    """Extract and score one sentence, never letting one failure stop the run."""
    out = MemoryOutcome(id=sentence.id, text=sentence.text, expected=sentence.memories)
    recorder.last = []
    if not worth_extracting(sentence.text):  # the node skips these before the model
        score(out)
        return out
    started = time.perf_counter()
    try:
        extractor = structured(model, ExtractedMemories)
        items = await extract_memories(extractor, messages_for(sentence))
    except Exception as exc:  # a malformed local-model answer counts as nothing extracted
        items = []
        out.error = f"{type(exc).__name__}: {str(exc)[:300]}"
    out.latency_s = time.perf_counter() - started
    out.raw = recorder.last
    out.predicted = [item.text for item in items]
    score(out)
    return out


def summary(outcomes: Iterable[MemoryOutcome]) -> dict[str, Any]:
    """Micro-averaged scores, volume, noise on empty sentences, and latency."""
    items = list(outcomes)
    tp, fp, covered, fn = (sum(getattr(o, k) for o in items) for k in ("tp", "fp", "covered", "fn"))
    predicted, expected = tp + fp, covered + fn
    precision = tp / predicted if predicted else 0.0
    recall = covered / expected if expected else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    empty = [o for o in items if not o.expected]
    latencies = [o.latency_s for o in items if o.latency_s is not None]
    return {
        "sentences": len(items),
        "model_calls": len(latencies),
        "errors": sum(1 for o in items if o.error),
        "expected": expected,
        "predicted": predicted,
        "tp": tp,
        "fp": fp,
        "covered": covered,
        "fn": fn,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "items_per_sentence": predicted / len(items) if items else 0.0,
        "empty_sentences": len(empty),
        "fp_on_empty": sum(len(o.predicted) for o in empty),
        "empty_sentences_with_items": sum(1 for o in empty if o.predicted),
        "latency_p50_s": percentile(latencies, 50),
        "latency_p95_s": percentile(latencies, 95),
        "latency_mean_s": statistics.fmean(latencies) if latencies else 0.0,
    }


def print_table(model_name: str, stats: dict[str, Any], console: Console) -> None:
    """The bench's table (tp/fp count items, fn expected memories) and its volume lines."""
    title = (
        f"Memory extraction — model={model_name}, set={stats.get('set') or '?'}, "
        f"{stats['sentences']} sentences"
    )
    row = (
        "keywords (micro)",
        stats["precision"],
        stats["recall"],
        stats["f1"],
        stats["tp"],
        stats["fp"],
        stats["fn"],
    )
    console.print(scores_table(title, [row]))
    console.print(
        f"expected memories {stats['expected']}, covered {stats['covered']}; items "
        f"{stats['predicted']} ({stats['items_per_sentence']:.2f} per sentence); "
        f"nothing-to-remember sentences {stats['empty_sentences']}: {stats['fp_on_empty']} "
        f"false items on {stats['empty_sentences_with_items']} of them"
    )
    console.print(latency_line(stats, unit="call"))


def build_model(
    name: str, sentences: Sequence[MemorySentence], stack: AsyncExitStack
) -> BaseChatModel:
    """The chat model under test; any server it starts is stopped by ``stack``."""
    if name == "scripted":
        return ScriptedMemoryModel(replies={s.text: s.scripted for s in sentences})
    return build_live_model(name, stack)


def default_report(model_name: str) -> Path:
    return RESULTS / f"memory_extraction_{model_name}.json"


async def run(
    model_name: str, limit: int | None, json_path: Path | None, data: Path = HELDOUT
) -> dict[str, Any]:
    """Run the bench; the JSON report is rewritten after every sentence, so a long local run
    that is interrupted still leaves everything measured so far."""
    console = Console()
    sentences = load_memory_sentences(data)[: limit or None]
    label = set_label(data)
    recorder = RawOutputRecorder()
    outcomes: list[MemoryOutcome] = []
    async with AsyncExitStack() as stack:
        model = build_model(model_name, sentences, stack)
        model.callbacks = [recorder]
        for i, sentence in enumerate(sentences, 1):
            out = await run_one(model, sentence, recorder)
            outcomes.append(out)
            console.log(
                f"[{i}/{len(sentences)}] {out.id} items={len(out.predicted)} tp={out.tp} "
                f"fp={out.fp} fn={out.fn} {out.latency_s or 0:.1f}s"
                + (f" error={out.error}" if out.error else "")
            )
            if json_path is not None:
                write_report(json_path, model_name, label, data, summary(outcomes), outcomes)
    stats = {"set": label, "data": str(data), **summary(outcomes)}
    print_table(model_name, stats, console)
    if json_path is not None:
        write_report(json_path, model_name, label, data, stats, outcomes)
        console.print(f"report: {json_path}")
    return stats


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line entry point; returns the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", choices=("scripted", "local", "openai"), default="scripted")
    parser.add_argument("--data", type=Path, default=HELDOUT, help="labelled sentences (JSONL)")
    parser.add_argument("--limit", type=int, default=None, help="first N sentences only")
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="per-sentence report (default bench/results/memory_extraction_<model>.json)",
    )
    args = parser.parse_args(argv)
    json_path = args.json if args.json is not None else default_report(args.model)
    return asyncio.run(run(args.model, args.limit, json_path, args.data))


if __name__ == "__main__":
    main()
