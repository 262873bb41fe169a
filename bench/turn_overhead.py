"""Mnemograph's own cost per turn, with a zero-latency model, as a thread grows.

Times each node and the checkpointer's writes at chosen turn numbers of one long thread, plus
the embedded Postgres start time and checkpoint bytes per thread. Run:

    python -m bench.turn_overhead [--turns 500] [--at 10,500] [--strategy summary_buffer]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage
from rich.console import Console
from rich.table import Table

from bench.common import TimedSaver, Timings, checkpoint_bytes, pct, timed_pipeline
from graph.builder import build_graph
from graph.context import STRATEGIES, Context
from stores.fake_llm import EchoChatModel
from stores.services import open_services
from stores.settings import Settings


async def run(args: argparse.Namespace) -> dict[str, Any]:
    marks = sorted({int(x) for x in args.at.split(",")})
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="mg-bench-"))
    settings = Settings(data_dir=data_dir, model="fake")
    results: dict[str, Any] = {"strategy": args.strategy, "turns": args.turns, "marks": {}}
    async with open_services(settings, chat_model=EchoChatModel()) as services:
        results["embedded_pg_start_s"] = services.embedded_pg_start_s
        assert services.pool is not None
        sink: Timings = defaultdict(list)
        saver = TimedSaver(conn=services.pool)
        saver.sink = sink
        graph = build_graph(saver, services.store, pipeline=timed_pipeline(sink))
        thread = f"bench-{uuid.uuid4().hex[:8]}"
        ctx = Context(user_id="bench", strategy=args.strategy, services=services)
        config: Any = {"configurable": {"thread_id": thread}}
        raw_bytes = 0
        window = args.window
        per_turn: dict[int, dict[str, float]] = {}
        for turn in range(1, args.turns + 1):
            sink.clear()
            text = f"turn {turn}: " + "some words about my day " * 4
            t0 = time.perf_counter()
            out = await graph.ainvoke(
                {"messages": [HumanMessage(content=text)]},
                config,
                context=ctx,
                durability=args.durability,
            )
            total = (time.perf_counter() - t0) * 1000
            raw_bytes += len(text.encode()) + len(out["messages"][-1].text.encode())
            row = {name: sum(v) for name, v in sink.items()}
            row["call_model_framework"] = row.get("call_model", 0.0)
            row["turn_total"] = total
            per_turn[turn] = row
        for mark in marks:
            rows = [
                per_turn[t] for t in range(max(1, mark - window + 1), mark + 1) if t in per_turn
            ]
            keys = sorted({k for r in rows for k in r})
            results["marks"][mark] = {
                k: {
                    "p50": statistics.median([r.get(k, 0.0) for r in rows]),
                    "p95": pct([r.get(k, 0.0) for r in rows], 0.95),
                }
                for k in keys
            }
        results["checkpoint_bytes"] = await checkpoint_bytes(services.pool, thread)
        results["raw_message_bytes"] = raw_bytes
    return results


def render(results: dict[str, Any]) -> None:
    console = Console()
    table = Table(
        title=f"Per-turn cost, ms, zero-latency model, strategy={results['strategy']} "
        f"(p50 / p95 over the {results.get('window', '')} turns ending at each mark)"
    )
    table.add_column("component")
    marks = list(results["marks"])
    for mark in marks:
        table.add_column(f"turn {mark}", justify="right")
    keys = sorted({k for m in results["marks"].values() for k in m})
    for key in keys:
        cells = []
        for mark in marks:
            v = results["marks"][mark].get(key)
            cells.append(f"{v['p50']:.2f} / {v['p95']:.2f}" if v else "-")
        table.add_row(key, *cells)
    console.print(table)
    start = results["embedded_pg_start_s"]
    console.print(f"embedded PostgreSQL start: {start:.2f} s" if start else "external Postgres")
    console.print(
        f"checkpoint bytes for the thread after {results['turns']} turns: "
        f"{results['checkpoint_bytes']:,} (raw message bytes {results['raw_message_bytes']:,}, "
        f"ratio {results['checkpoint_bytes'] / max(1, results['raw_message_bytes']):.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=500)
    parser.add_argument("--at", default="10,500", help="turn numbers to report")
    parser.add_argument("--window", type=int, default=10, help="turns aggregated per mark")
    parser.add_argument("--strategy", default="summary_buffer", choices=STRATEGIES)
    parser.add_argument("--durability", default="async", choices=["sync", "async", "exit"])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--json", default=None, help="also write results to this file")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    results["window"] = args.window
    render(results)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
