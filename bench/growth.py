"""Does a turn get slower, or a thread heavier, as the conversation grows?

For each short-term strategy, with and without ``DeltaChannel``, one thread runs to the last
mark with the zero-latency model, through the same TurnRunner the server uses (memory work and
checkpoint compaction included); at each mark it reports the per-turn latency (median and p95
over the preceding ``--window`` turns) and the thread's checkpoint bytes against the raw bytes
of the messages exchanged so far. Run:

    python -m bench.growth [--marks 10,100,1000,2000] [--strategies summary_buffer,buffer]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.common import checkpoint_bytes, pct
from graph.builder import build_graph
from graph.context import STRATEGIES
from mnemograph.runner import TurnRunner
from mnemograph.services import Services, open_services
from stores.models.fake_llm import EchoChatModel
from stores.settings import Settings

TEXT = "Today I talked with my sister about the garden, the new job and our trip plans. "


async def one_run(
    services: Services, strategy: str, delta: bool, marks: list[int], window: int
) -> list[dict[str, Any]]:
    runner = TurnRunner(
        services, build_graph(services.checkpointer, services.store, delta_messages=delta)
    )
    thread = f"growth-{strategy}-{int(delta)}-{uuid.uuid4().hex[:6]}"
    lat: list[float] = []
    raw = 0
    rows = []
    for turn in range(1, marks[-1] + 1):
        text = f"[{turn}] {TEXT}"
        t0 = time.perf_counter()
        out = await runner.invoke(
            "bench-growth", thread, [{"type": "human", "content": text}], strategy=strategy
        )
        await runner.drain()  # the whole turn, memory work included
        lat.append((time.perf_counter() - t0) * 1000)
        raw += len(text.encode()) + len(out["messages"][-1].text.encode())
        if turn in marks:
            recent = lat[-window:]
            assert services.pool is not None
            size = await checkpoint_bytes(services.pool, thread)
            rows.append(
                {
                    "strategy": strategy,
                    "delta": delta,
                    "turn": turn,
                    "p50_ms": statistics.median(recent),
                    "p95_ms": pct(recent, 0.95),
                    "checkpoint_bytes": size,
                    "raw_bytes": raw,
                    "ratio": size / max(1, raw),
                    "messages_in_state": len(out["messages"]),
                }
            )
    return rows


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    marks = sorted({int(x) for x in args.marks.split(",")})
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="mg-growth-"))
    settings = Settings(data_dir=data_dir, model="fake")
    if args.compact_every is not None:
        settings.compact_every_turns = args.compact_every
    rows: list[dict[str, Any]] = []
    async with open_services(
        settings, chat_model=EchoChatModel(), with_graph=False, with_memory=False
    ) as services:  # growth of the short-term layer only
        for strategy in args.strategies.split(","):
            for delta in (True, False):
                rows += await one_run(services, strategy, delta, marks, args.window)
                Console(stderr=True).print(f"[dim]done {strategy} delta={delta}[/dim]")
    return rows


def render(rows: list[dict[str, Any]]) -> None:
    table = Table(title="Growth: per-turn latency and checkpoint size along one thread")
    for col in ("strategy", "delta", "turn", "p50 ms", "p95 ms", "ckpt bytes", "raw bytes",
                "ratio", "msgs in state"):  # fmt: skip
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r["strategy"], "yes" if r["delta"] else "no", str(r["turn"]),
            f"{r['p50_ms']:.2f}", f"{r['p95_ms']:.2f}", f"{r['checkpoint_bytes']:,}",
            f"{r['raw_bytes']:,}", f"{r['ratio']:.2f}", str(r["messages_in_state"]),
        )  # fmt: skip
    Console().print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--marks", default="10,100,1000,2000")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument(
        "--compact-every", type=int, default=None, help="override MNEMOGRAPH_COMPACT_EVERY_TURNS"
    )
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--json", default="bench/results/growth.json")
    args = parser.parse_args()
    rows = asyncio.run(run(args))
    render(rows)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
