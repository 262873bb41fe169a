"""Mnemograph against the LangGraph a user would write from the docs, in one run.

Three systems, the same embedded PostgreSQL, the same embedder and the same zero-latency
echo model, each driven for ``--turns`` turns on one new thread after ``--warmup`` turns on it,
once ``--process-warmup`` turns (100) on a throwaway thread have warmed the processes (at 10
turns the graph server's JIT still cost 10 ms of CPU a turn, 4 once warm):

* **bare**: ``StateGraph(MessagesState)``, one model node, the stock ``AsyncPostgresSaver``
  on a pool opened as LangGraph's docs open it;
* **store pattern**: the same plus LangGraph's long-term memory pattern: an
  ``AsyncPostgresStore`` with a vector index (the same embedder), ``asearch`` (k=5) before
  the model, the hits in the system message, one ``aput`` after; its user holds as many
  items as Mnemograph's;
* **mnemograph**: ``TurnRunner`` with every memory kind on (hybrid recall, graph recall,
  summary, memory and knowledge writes) for a user seeded with ``--memories`` memories and
  ``--triples`` triples. The reply path is what the caller waits for; the whole turn
  includes the post-reply memory work.

Machine CPU per turn is read from ``/proc/stat`` (every process: Python, PostgreSQL, the
graph server's JVM), so run it on a quiet machine; the goals of issue 18 are ratios within
one run. ``python -m bench.vs_langgraph [--turns 100] [--warmup 10] [--process-warmup 100]
[--memories 10000] [--triples 5000] [--json OUT]``.

``--http`` adds the HTTP pair: ``--clients`` concurrent clients (100), each with its own user
and thread, drive ``mnemograph serve`` and then ``bench.bare_app`` (the bare graph behind a
minimal FastAPI app: same PostgreSQL, same stock saver, same uvicorn settings: one worker,
no access log) through the same client code (``bench.load.level``); turns/s, latency and
errors for each, and the ratio the issue sets (≥ 0.5).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.store.postgres.aio import AsyncPostgresStore
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from rich.console import Console
from rich.table import Table

from bench.common import pct
from bench.turn_overhead import message, seed, synthetic_memories
from mnemograph.runner import TurnRunner
from mnemograph.services import Services, open_services
from stores.models.fake_llm import EchoChatModel
from stores.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
Turn = Callable[[int, str], Awaitable[dict[str, float]]]
"""One turn: its number (which picks the message) and the thread it goes to."""


def cpu_jiffies() -> int:
    """Busy CPU time of the whole machine so far, in jiffies (every process counts)."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields[:8]) - idle


async def drive(turn: Turn, turns: int, warmup: int, process_warmup: int = 0) -> dict[str, Any]:
    """Run ``warmup`` then ``turns`` turns on one new thread; latency percentiles and CPU per
    measured turn. ``process_warmup`` turns go first to a thread of their own: they warm the
    processes (the graph server's JIT, caches, pools) without making the measured thread
    longer, which would slow the bare graph, whose checkpoints carry every message."""
    warm = f"warm-{uuid.uuid4().hex[:8]}"
    for n in range(process_warmup):
        await turn(n, warm)
    thread = f"run-{uuid.uuid4().hex[:8]}"
    for n in range(warmup):
        await turn(n, thread)
    samples: dict[str, list[float]] = {}
    cpu0 = cpu_jiffies()
    for n in range(warmup, warmup + turns):
        for name, ms in (await turn(n, thread)).items():
            samples.setdefault(name, []).append(ms)
    cpu_ms = (cpu_jiffies() - cpu0) * 1000 / _hz() / turns
    out: dict[str, Any] = {"cpu_ms_per_turn": cpu_ms}
    for name, values in samples.items():
        out[name] = {"p50": pct(values, 0.5), "p95": pct(values, 0.95)}
    return out


def _hz() -> int:
    import os

    return int(os.sysconf("SC_CLK_TCK"))


async def stock_pool(url: str) -> AsyncConnectionPool[Any]:
    """A pool as LangGraph's docs open one for ``AsyncPostgresSaver``/``AsyncPostgresStore``."""
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        conninfo=url, max_size=10, open=False,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
    )  # fmt: skip
    await pool.open(wait=True)
    return pool


def bare_graph(model: BaseChatModel, saver: AsyncPostgresSaver) -> Any:
    async def call_model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("call_model", call_model)
    builder.add_edge(START, "call_model")
    return builder.compile(checkpointer=saver)


def store_graph(model: BaseChatModel, saver: AsyncPostgresSaver, user: str) -> Any:
    """LangGraph's long-term memory pattern, as its docs show it (search, prompt, put)."""

    from langgraph.config import get_store

    async def call_model(state: MessagesState) -> dict[str, Any]:
        store = get_store()
        namespace = ("memories", user)
        last = state["messages"][-1].text
        hits = await store.asearch(namespace, query=last, limit=5)
        memories = "\n".join(str(h.value["text"]) for h in hits)
        system = SystemMessage(content=f"You are a helpful assistant.\nUser info: {memories}")
        reply = await model.ainvoke([system, *state["messages"]])
        await store.aput(namespace, str(uuid.uuid4()), {"text": last})
        return {"messages": [reply]}

    builder = StateGraph(MessagesState)
    builder.add_node("call_model", call_model)
    builder.add_edge(START, "call_model")
    return builder


async def seed_store(store: AsyncPostgresStore, user: str, n: int) -> None:
    """The same synthetic memories Mnemograph's user gets, in batches (embedded in bulk)."""
    import random

    from langgraph.store.base import PutOp

    texts = synthetic_memories(n, random.Random(7))
    for start in range(0, n, 500):
        await store.abatch([
            PutOp(("memories", user), f"seed-{i}", {"text": text})
            for i, text in enumerate(texts[start : start + 500], start)
        ])  # fmt: skip


async def run(args: argparse.Namespace) -> dict[str, Any]:
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="mg-vs-"))
    settings = Settings(data_dir=data_dir, model="fake")
    model = EchoChatModel()
    results: dict[str, Any] = {"turns": args.turns, "warmup": args.warmup,
                               "process_warmup": args.process_warmup,
                               "memories": args.memories, "triples": args.triples}  # fmt: skip
    async with open_services(settings, chat_model=model) as services:
        url = str(services.postgres().conninfo)
        embeddings = services.embeddings
        assert embeddings is not None
        await embeddings.aembed_query("warm up")
        pool = await stock_pool(url)
        try:
            saver = AsyncPostgresSaver(conn=pool)
            await saver.setup()
            results["bare"] = await _bare(model, saver, args)
            results["store pattern"] = await _store(model, saver, pool, embeddings, args)
            results["mnemograph"] = await _mnemograph(services, args)
        finally:
            await pool.close()
    if args.http:
        results["http"] = await _http_pair(args)
    return results


async def _bare(model: BaseChatModel, saver: AsyncPostgresSaver, args: argparse.Namespace) -> Any:
    graph = bare_graph(model, saver)

    async def turn(n: int, thread: str) -> dict[str, float]:
        config: Any = {"configurable": {"thread_id": f"bare-{thread}"}}
        t0 = time.perf_counter()
        await graph.ainvoke({"messages": [HumanMessage(content=message(n, _rng(n)))]}, config)
        return {"reply": (time.perf_counter() - t0) * 1000}

    return await drive(turn, args.turns, args.warmup, args.process_warmup)


async def _store(
    model: BaseChatModel,
    saver: AsyncPostgresSaver,
    pool: AsyncConnectionPool[Any],
    embeddings: Embeddings,
    args: argparse.Namespace,
) -> Any:
    store = AsyncPostgresStore(pool, index={"dims": 384, "embed": embeddings, "fields": ["text"]})
    await store.setup()
    user = f"store-{uuid.uuid4().hex[:8]}"
    t0 = time.perf_counter()
    await seed_store(store, user, args.memories)
    seeded_s = time.perf_counter() - t0
    graph = store_graph(model, saver, user).compile(checkpointer=saver, store=store)

    async def turn(n: int, thread: str) -> dict[str, float]:
        config: Any = {"configurable": {"thread_id": f"store-{thread}"}}
        t0 = time.perf_counter()
        await graph.ainvoke({"messages": [HumanMessage(content=message(n, _rng(n)))]}, config)
        return {"reply": (time.perf_counter() - t0) * 1000}

    out = await drive(turn, args.turns, args.warmup, args.process_warmup)
    out["seed_s"] = seeded_s
    return out


async def _mnemograph(services: Services, args: argparse.Namespace) -> Any:
    account, _key = await services.user_registry().create(f"vs-{uuid.uuid4().hex[:6]}")
    user = account.user_id
    seeded = await seed(services, user, args.memories, args.triples)
    runner = TurnRunner(services)

    async def turn(n: int, thread: str) -> dict[str, float]:
        t0 = time.perf_counter()
        await runner.invoke(user, thread, [{"type": "human", "content": message(n, _rng(n))}])
        reply = (time.perf_counter() - t0) * 1000
        await runner.drain()
        return {"reply": reply, "whole_turn": (time.perf_counter() - t0) * 1000}

    out = await drive(turn, args.turns, args.warmup, args.process_warmup)
    out["seed_s"] = seeded
    return out


def start_bare_server(port: int) -> Any:
    """``bench.bare_app`` under uvicorn with serve's settings (one worker, no access log)."""
    import subprocess
    import sys

    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.bare_app:app", "--port", str(port),
         "--workers", "1", "--log-level", "warning", "--no-access-log"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


async def _http_pair(args: argparse.Namespace) -> dict[str, Any]:
    """The two servers in turn on one embedded PostgreSQL, each driven by the same clients."""
    import os

    from bench.load import create_keys, free_port, level, start_server, wait_ready
    from stores.postgres.embedded import start_embedded_postgres

    data_dir = Path(tempfile.mkdtemp(prefix="mg-vs-http-"))
    pg = start_embedded_postgres(data_dir / "shared-pg", keep_running=False)
    previous = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = pg.url  # both servers and the key-making CLI use it
    out: dict[str, Any] = {"clients": args.clients, "turns_per_client": args.http_turns}
    try:
        keys = create_keys(args.clients, data_dir, f"vs{uuid.uuid4().hex[:6]}")
        port = free_port()
        proc = start_server(data_dir, port, 1)
        try:
            url = f"http://127.0.0.1:{port}"
            await wait_ready(url)
            await level(url, keys[:2], 2, 60)  # warm both code paths once
            out["mnemograph"] = await level(url, keys, args.http_turns, 600)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        port = free_port()
        bare = start_bare_server(port)
        try:
            url = f"http://127.0.0.1:{port}"
            await wait_ready(url)
            await level(url, keys[:2], 2, 60)
            out["bare"] = await level(url, keys, args.http_turns, 600)
        finally:
            bare.terminate()
            bare.wait(timeout=60)
    finally:
        if previous is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = previous
        pg.release()
    out["ratio"] = out["mnemograph"]["turns_per_s"] / out["bare"]["turns_per_s"]
    return out


def _rng(n: int) -> Any:
    import random

    return random.Random(n)


def print_table(results: dict[str, Any], console: Console) -> None:
    bare = results["bare"]
    table = Table(
        title=f"Per turn, zero-latency model, {results['memories']:,} memories "
        f"(+{results['triples']:,} triples for Mnemograph), {results['turns']} turns"
    )
    for column in ("system", "reply p50", "reply p95", "whole p50", "CPU ms/turn",
                   "p50 / bare", "p95 / bare", "CPU / bare"):  # fmt: skip
        table.add_column(column, justify="left" if column == "system" else "right")
    for name in ("bare", "store pattern", "mnemograph"):
        row = results[name]
        whole = row.get("whole_turn", row["reply"])
        table.add_row(
            name, f"{row['reply']['p50']:.1f}", f"{row['reply']['p95']:.1f}",
            f"{whole['p50']:.1f}", f"{row['cpu_ms_per_turn']:.1f}",
            f"{row['reply']['p50'] / bare['reply']['p50']:.2f}",
            f"{row['reply']['p95'] / bare['reply']['p95']:.2f}",
            f"{row['cpu_ms_per_turn'] / bare['cpu_ms_per_turn']:.2f}",
        )  # fmt: skip
    console.print(table)
    mg, store = results["mnemograph"], results["store pattern"]
    console.print(f"mnemograph reply p50 / store pattern p50: "
                  f"{mg['reply']['p50'] / store['reply']['p50']:.2f}")  # fmt: skip
    http = results.get("http")
    if http:
        table = Table(title=f"HTTP: {http['clients']} concurrent clients, one thread each, "
                            f"{http['turns_per_client']} turns each")  # fmt: skip
        for column in ("server", "turns/s", "p50 ms", "p95 ms", "errors"):
            table.add_column(column, justify="left" if column == "server" else "right")
        for name in ("bare", "mnemograph"):
            row = http[name]
            table.add_row(name, f"{row['turns_per_s']:.1f}", f"{row['p50_ms']:.0f}",
                          f"{row['p95_ms']:.0f}", str(row["errors"]))  # fmt: skip
        console.print(table)
        console.print(f"mnemograph turns/s / bare turns/s: {http['ratio']:.2f} (goal ≥ 0.5)")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument(
        "--process-warmup",
        type=int,
        default=100,
        help="turns on a throwaway thread first, per system (warms JIT and caches)",
    )
    parser.add_argument("--memories", type=int, default=10_000)
    parser.add_argument("--triples", type=int, default=5_000)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--http", action="store_true", help="add the HTTP pair")
    parser.add_argument("--clients", type=int, default=100, help="HTTP: concurrent clients")
    parser.add_argument("--http-turns", type=int, default=5, help="HTTP: turns per client")
    default_out = ROOT / "bench" / "results" / "vs_langgraph.json"
    parser.add_argument("--json", type=Path, default=default_out)
    args = parser.parse_args(argv)
    results = asyncio.run(run(args))
    print_table(results, Console())
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return results


if __name__ == "__main__":
    main()
