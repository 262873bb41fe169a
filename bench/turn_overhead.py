"""Mnemograph's own cost per turn, with a zero-latency model, split by node.

For each long-term memory size (default 1,000 and 10,000 items per user, plus 5,000 triples),
one user is seeded, then ``--turns`` turns run through the same ``TurnRunner`` the server
uses. It reports p50/p95/p99 of every node, of checkpoint writes, of the reply path (what a
caller waits for: the turn until its reply is durable) and of the whole turn including the
background memory work; with ``--http`` also ``/agent/invoke`` over real HTTP on 127.0.0.1.
With ``--long`` it instead runs one long thread and reports turn 10 against turn N.

    python -m bench.turn_overhead [--memories 1000,10000] [--triples 5000] [--turns 100] [--http]
    python -m bench.turn_overhead --long 500
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.common import TimedSaver, Timings, checkpoint_bytes, summarize_ms, timed_pipeline
from graph.builder import build_graph
from mnemograph.runner import TurnRunner
from mnemograph.services import Services, open_services
from stores.models.fake_llm import EchoChatModel
from stores.settings import Settings

WARMUP = 10
"""Turns left out of the figures: the graph server's JIT and the caches warm up on them."""

PLACES = ["Lisbon", "Berlin", "Osaka", "Lima", "Oslo", "Cairo", "Quito", "Perth", "Accra", "Riga"]
THINGS = ["tea", "chess", "jazz", "hiking", "sushi", "Python", "poetry", "cycling", "bees", "golf"]
PEOPLE = ["Ana", "Ben", "Chloe", "Dev", "Eli", "Farah", "Gus", "Hana", "Ivan", "Juno"]
PREDICATES = ["likes", "visited", "knows", "plays", "owns", "studies", "met", "reads"]


def synthetic_memories(n: int, rng: random.Random) -> list[str]:
    out = []
    for i in range(n):
        p, t, c = rng.choice(PEOPLE), rng.choice(THINGS), rng.choice(PLACES)
        out.append(
            f"User's friend {p} {i} enjoys {t} and once travelled to {c} in spring {i % 30}."
        )
    return out


async def seed(services: Services, user: str, memories: int, triples: int) -> dict[str, float]:
    """Give ``user`` the requested store sizes; returns how long seeding took."""
    from graph.facts import Triple
    from stores.memory.model import NewMemory

    rng = random.Random(7)
    t0 = time.perf_counter()
    assert services.memory is not None
    texts = synthetic_memories(memories, rng)
    for start in range(0, len(texts), 1000):
        chunk = [
            NewMemory(text=t, kind="fact", importance=0.5) for t in texts[start : start + 1000]
        ]
        await services.memory.add_many(user, chunk)
    t1 = time.perf_counter()
    if services.graph is not None and triples:
        batch = []
        for i in range(triples):
            subject = f"{rng.choice(PEOPLE)} {i % 700}"
            obj = rng.choice(PLACES + THINGS) + f" {i % 97}"
            batch.append(Triple(subject=subject, predicate=rng.choice(PREDICATES), object=obj,
                                confidence=0.9))  # fmt: skip
            if len(batch) == 50:
                await services.graph.upsert_triples(
                    user, batch, thread_id="seed", message_id=f"s{i}", at_ms=1_700_000_000_000
                )
                batch = []
    t2 = time.perf_counter()
    # What autovacuum does to a store that has been in use: statistics for the planner and
    # a visibility map, so the postings are read by index-only scans.
    assert services.pool is not None
    async with services.pool.connection() as conn:
        for table in ("mnemo_memory_index", "mnemo_memory_vectors", "mnemo_memory_postings"):
            await conn.execute(f"VACUUM ANALYZE {table}")
    return {"memories_s": t1 - t0, "triples_s": t2 - t1}


def message(turn: int, rng: random.Random) -> str:
    return (f"Turn {turn}: today I talked with {rng.choice(PEOPLE)} {turn % 700} about "
            f"{rng.choice(THINGS)} and a trip to {rng.choice(PLACES)}.")  # fmt: skip


async def measure(
    services: Services, user: str, key: str, turns: int, http: bool
) -> dict[str, Any]:
    sink: Timings = defaultdict(list)
    assert services.pool is not None
    saver = TimedSaver(conn=services.pool)
    saver.sink = sink
    runner = TurnRunner(services, build_graph(saver, services.store, pipeline=timed_pipeline(sink)))
    rng = random.Random(11)
    rows: dict[str, list[float]] = defaultdict(list)
    thread = f"bench-{uuid.uuid4().hex[:8]}"
    for turn in range(1, turns + 1):
        sink.clear()
        t0 = time.perf_counter()
        await runner.invoke(user, thread, [{"type": "human", "content": message(turn, rng)}])
        rows["reply_path"].append((time.perf_counter() - t0) * 1000)
        await runner.drain()
        rows["whole_turn"].append((time.perf_counter() - t0) * 1000)
        for name, values in sink.items():
            rows[name].append(sum(values))
    result = {
        name: summarize_ms(values[min(WARMUP, len(values) - 1) :]) for name, values in rows.items()
    }
    if http:
        result["http_invoke"] = summarize_ms(await measure_http(services, key, turns))
    return result


async def measure_http(services: Services, key: str, turns: int) -> list[float]:
    """`/agent/invoke` latency from a client over real HTTP (uvicorn on 127.0.0.1)."""
    import httpx
    import uvicorn

    from server import create_app

    app = create_app(services)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.05)
    try:
        headers = {"Authorization": f"Bearer {key}"}
        rng = random.Random(5)
        out = []
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            thread = f"http-{uuid.uuid4().hex[:8]}"
            for turn in range(turns):
                body = {"input": {"messages": [{"type": "human", "content": message(turn, rng)}]},
                        "config": {"configurable": {"thread_id": thread}}}  # fmt: skip
                t0 = time.perf_counter()
                res = await client.post("/agent/invoke", json=body, headers=headers)
                out.append((time.perf_counter() - t0) * 1000)
                res.raise_for_status()
                await app.state.runner.drain()
        return out[WARMUP:]
    finally:
        server.should_exit = True
        await task


async def long_thread(services: Services, turns: int, marks: list[int]) -> dict[str, Any]:
    sink: Timings = defaultdict(list)
    assert services.pool is not None
    saver = TimedSaver(conn=services.pool)
    saver.sink = sink
    runner = TurnRunner(services, build_graph(saver, services.store, pipeline=timed_pipeline(sink)))
    rng = random.Random(3)
    per_turn: list[dict[str, float]] = []
    thread = f"long-{uuid.uuid4().hex[:8]}"
    raw = 0
    for turn in range(1, turns + 1):
        sink.clear()
        text = message(turn, rng)
        t0 = time.perf_counter()
        out = await runner.invoke("bench-long", thread, [{"type": "human", "content": text}])
        reply_ms = (time.perf_counter() - t0) * 1000
        await runner.drain()
        raw += len(text.encode()) + len(out["messages"][-1].text.encode())
        row = {name: sum(v) for name, v in sink.items()}
        row["reply_path"] = reply_ms
        per_turn.append(row)
    result: dict[str, Any] = {}
    for mark in marks:
        window = per_turn[max(0, mark - 10) : mark]
        keys = sorted({k for r in window for k in r})
        result[f"turn {mark}"] = {k: summarize_ms([r.get(k, 0.0) for r in window]) for k in keys}
    result["checkpoint_bytes"] = await checkpoint_bytes(services.pool, thread)
    result["raw_message_bytes"] = raw
    return result


def table(title: str, columns: dict[str, dict[str, dict[str, float]]]) -> Table:
    out = Table(title=title)
    out.add_column("component")
    for name in columns:
        out.add_column(name + " p50/p95/p99 ms", justify="right")
    keys = sorted({k for col in columns.values() for k in col})
    for key in keys:
        cells = []
        for col in columns.values():
            v = col.get(key)
            cells.append(f"{v['p50']:.1f} / {v['p95']:.1f} / {v['p99']:.1f}" if v else "-")
        out.add_row(key, *cells)
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="mg-bench-"))
    settings = Settings(data_dir=data_dir, model="fake")
    results: dict[str, Any] = {}
    async with open_services(settings, chat_model=EchoChatModel()) as services:
        results["embedded_pg_start_s"] = services.embedded_pg_start_s
        await services.embeddings.aembed_query("warm up") if services.embeddings else None
        if args.long:
            marks = sorted({10, args.long})
            results["long"] = await long_thread(services, args.long, marks)
            return results
        for n in [int(x) for x in args.memories.split(",")]:
            assert services.users is not None
            account, key = await services.users.create(f"bench-{n}-{uuid.uuid4().hex[:6]}")
            user = account.user_id  # the HTTP run authenticates as this same, seeded user
            results[f"seed {n}"] = await seed(services, user, n, args.triples)
            results[f"{n} memories"] = await measure(services, user, key, args.turns, args.http)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--memories", default="1000,10000")
    parser.add_argument("--triples", type=int, default=5000)
    parser.add_argument("--turns", type=int, default=110, help="turns per size (10 warm-up)")
    parser.add_argument("--http", action="store_true", help="also time /agent/invoke over HTTP")
    parser.add_argument("--long", type=int, default=0, help="one thread of N turns instead")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--json", default="bench/results/turn_overhead.json")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    console = Console()
    if args.long:
        long = results["long"]
        cols = {k: v for k, v in long.items() if k.startswith("turn ")}
        console.print(table(f"One thread, turn 10 vs turn {args.long} (zero-latency model)", cols))
        ratio = long["checkpoint_bytes"] / max(1, long["raw_message_bytes"])
        console.print(f"checkpoint bytes {long['checkpoint_bytes']:,} vs raw message bytes "
                      f"{long['raw_message_bytes']:,} (ratio {ratio:.2f})")  # fmt: skip
    else:
        cols = {k: v for k, v in results.items() if k.endswith(" memories")}
        console.print(
            table(f"Per-turn cost, zero-latency model, {args.triples} triples/user", cols)
        )
        for key, value in results.items():
            if key.startswith("seed"):
                console.print(f"{key}: {value}")
    start = results.get("embedded_pg_start_s")
    console.print(f"embedded PostgreSQL start: {start:.2f} s" if start else "external Postgres")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
