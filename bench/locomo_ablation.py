"""LoCoMo recall ablations with a tune/report split: each ranking change's effect, measured
on conversations it was tuned on and on one it never saw.

Issue 17 asks for honest tuning: choose settings on two dev conversations (``--tune``) and
report the third (``--report``) untouched, every time. This bench ingests every conversation
once through the real :class:`MemoryStore` (exactly as ``bench.locomo_recall`` does), then runs
every variant's searches over the same rows, so a table of ten variants costs one ingest.
A variant is a name and the JSON overrides ``bench.locomo_recall --config`` takes (product
``MemoryConfig`` fields and research ``bench.recall_variants.Variant`` knobs); the first row,
``product``, is the shipped ranking with no override.

Run: ``python -m bench.locomo_ablation --data ../shared/benchdata/locomo10_dev.json
--questions ../shared/benchdata/locomo_dev_questions.json``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.locomo_recall import (
    CATEGORY,
    DIMS,
    RANKED_DEPTH,
    CachedEmbeddings,
    Question,
    Ranked,
    Scores,
    _mean,
    load_questions,
    load_turns,
    memories_for,
    percentile,
    score,
)

DEFAULT_VARIANTS: dict[str, dict[str, Any]] = {
    "product": {},
    "before issue 17": {
        "context_weight": 0.4, "reply_share": 0.0, "question_penalty": 0.0,
        "time_boost": 0.0, "speaker_boost": 0.0,
    },
    "no reply lift": {"reply_share": 0.0, "question_penalty": 0.0},
    "context weight 0.4": {"context_weight": 0.4},
    "rrf fusion": {"fusion": "rrf"},
    "vector weight 0.35": {"vector_weight": 0.35},
    "candidates 100": {"candidates": 100},
    "no when-boost": {"time_boost": 0.0},
    "session prior 0.15": {"session_prior": 0.15},
    "no speaker boost": {"speaker_boost": 0.0},
    "topic follow 0.8": {"follow_share": 0.8},
    "vector PRF 0.6": {"prf_weight": 0.6},
    "neighbour diversity 0.3": {"neighbour_penalty": 0.3},
}  # fmt: skip
"""Ablations run by default: one change each against the product row."""

METRICS = ("R@10", "MRR@10", "R@512t")
GOALS = {"R@10": 0.80, "MRR@10": 0.60, "R@512t": 0.80, "multi-hop": 0.55, "open-domain": 0.55}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Ingest once, search with every variant, score per split and category."""
    from psycopg_pool import AsyncConnectionPool
    from rich.console import Console

    from bench.recall_variants import VariantMemoryStore, split_overrides
    from stores.memory.model import render_memory
    from stores.models.minilm_onnx import OnnxMiniLM
    from stores.postgres.embedded import start_embedded_postgres
    from stores.postgres.migrations import migrate
    from stores.postgres.savers import has_pgvector, make_checkpointer, make_store, open_pool
    from stores.settings import Settings

    console = Console(width=max(Console().width, 150))
    tune: list[str] = args.tune.split(",")
    report_ids: list[str] = args.report.split(",")
    split_of = {**{c: "tune" for c in tune}, **{c: "report" for c in report_ids}}
    data = [c for c in args.loaded_data if c["sample_id"] in split_of]
    questions = [q for q in args.loaded_questions if q.sample_id in split_of]
    by_conv: dict[str, list[Question]] = defaultdict(list)
    for q in questions:
        by_conv[q.sample_id].append(q)
    variants: dict[str, dict[str, Any]] = args.loaded_variants

    embeddings = CachedEmbeddings(
        OnnxMiniLM(Settings().model_cache_dir, threads=1),
        Path(args.embed_cache) if args.embed_cache else None,
    )
    tmp: tempfile.TemporaryDirectory[str] | None = None
    url = os.environ.get("DATABASE_URL")
    if not url:
        tmp = tempfile.TemporaryDirectory(prefix="mnemo-ablation-")
        embedded = start_embedded_postgres(Path(tmp.name) / "pg", keep_running=False)
        url = embedded.url
    pool: AsyncConnectionPool[Any] = await open_pool(url, max_size=4)
    pgvector = await has_pgvector(pool)
    await make_checkpointer(pool)
    await make_store(pool, embeddings=embeddings if pgvector else None, dims=DIMS)
    await migrate(pool, dims=DIMS, pgvector=pgvector)
    base = VariantMemoryStore(pool, embeddings, dims=DIMS)
    await base.setup()
    run_id = uuid.uuid4().hex[:8]
    users: dict[str, str] = {}
    for conv in data:
        sid = conv["sample_id"]
        users[sid] = f"ablation-{sid}-{run_id}"
        await base.add_many(users[sid], memories_for(load_turns(conv["conversation"])))
    await asyncio.to_thread(embeddings.save)

    results: dict[str, dict[str, Scores]] = {}
    latency: dict[str, list[float]] = {}
    for name, overrides in variants.items():
        config, variant = split_overrides(overrides)
        store = VariantMemoryStore(pool, embeddings, config=config, variant=variant, dims=DIMS)
        await store.setup()
        per_split = {"tune": Scores(), "report": Scores()}
        latency[name] = []
        for sid, user in users.items():
            await store.search(user, "hello", k=10)
            for q in by_conv[sid]:
                t0 = time.perf_counter()
                hits = await store.search(user, q.question, k=RANKED_DEPTH)
                latency[name].append((time.perf_counter() - t0) * 1000)
                ranked = [Ranked(render_memory(h.item), h.item.provenance) for h in hits]
                per_split[split_of[sid]].add(
                    CATEGORY.get(q.category, str(q.category)), score(ranked, q.evidence)
                )
        results[name] = per_split
        console.print(f"[dim]{name}: done[/dim]")
    for user in users.values():
        await base.delete_user(user)
    await pool.close()
    if tmp is not None:
        embedded.release()  # stopped before its files are removed
        tmp.cleanup()
    return summarise(console, results, latency, tune, report_ids)


def summarise(
    console: Any,
    results: dict[str, dict[str, Scores]],
    latency: dict[str, list[float]],
    tune: Sequence[str],
    report_ids: Sequence[str],
) -> dict[str, Any]:
    """One table: per variant and split, the goal metrics overall and the two weak categories,
    and the change against the first (product) row."""
    from rich.table import Table

    cols = [*METRICS, "multi-hop", "open-domain"]

    def values(s: Scores) -> dict[str, float]:
        out = {m: _mean(s.rows.get("overall", []), m) for m in METRICS}
        for cat in ("multi-hop", "open-domain", "temporal", "single-hop"):
            out[cat] = _mean(s.rows.get(cat, []), "R@10")
        return out

    table = Table(
        title=f"LoCoMo recall ablations: tuned on {', '.join(tune)}; "
        f"reported on {', '.join(report_ids)} (untouched)"
    )
    table.add_column("variant")
    table.add_column("split")
    for c in cols:
        table.add_column(c if c in METRICS else f"{c} R@10", justify="right")
    table.add_column("p95 ms", justify="right")
    summary: dict[str, Any] = {"tune": list(tune), "report": list(report_ids), "variants": {}}
    first = next(iter(results), None)
    for name, per_split in results.items():
        entry: dict[str, Any] = {"latency_p95_ms": percentile(latency[name], 95)}
        for i, split in enumerate(("tune", "report")):
            v = values(per_split[split])
            entry[split] = {**v, "n": len(per_split[split].rows.get("overall", []))}
            cells = []
            for c in cols:
                cell = f"{v[c]:.3f}"
                if name != first and first is not None:
                    delta = v[c] - values(results[first][split])[c]
                    cell += f" ({delta:+.3f})"
                cells.append(cell)
            table.add_row(
                name if i == 0 else "",
                split,
                *cells,
                f"{percentile(latency[name], 95):.1f}" if i == 0 else "",
                end_section=i == 1,
            )
        summary["variants"][name] = entry
    console.print(table)
    console.print(
        "goals: " + ", ".join(f"{k} ≥ {v:.2f}" for k, v in GOALS.items()) + "; the weak "
        "categories are R@10. Choose on the tune rows; the report rows are the claim."
    )
    return summary


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--questions", required=True)
    parser.add_argument("--tune", default="conv-26,conv-41", help="conversations to tune on")
    parser.add_argument("--report", default="conv-48", help="conversations reported untouched")
    parser.add_argument("--variants", default=None, help="JSON file: {name: overrides}")
    parser.add_argument("--embed-cache", default=None, help="pickle cache of vectors (dev)")
    parser.add_argument("--summary", default="bench/results/locomo_ablation.json")
    args = parser.parse_args(argv)
    if set(args.tune.split(",")) & set(args.report.split(",")):
        parser.error("--tune and --report must not share a conversation")
    args.loaded_data = json.loads(Path(args.data).read_text())
    args.loaded_questions = load_questions(Path(args.questions))
    args.loaded_variants = (
        json.loads(Path(args.variants).read_text()) if args.variants else DEFAULT_VARIANTS
    )
    summary = asyncio.run(run(args))
    out = Path(args.summary)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
