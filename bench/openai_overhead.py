"""What the OpenAI-compatible door costs over LangServe's ``/agent/invoke``, in one run.

Starts ``mnemograph serve`` with the zero-latency model (a subprocess on 127.0.0.1, like
``bench.load``), creates one user, and alternates turns on three series, each on its own
thread, through the same ``httpx`` client so only the server differs:

* ``/agent/invoke``: LangServe's door;
* ``/v1 new only``: ``POST /v1/chat/completions`` with just the new user message;
* ``/v1 full history``: the same, the client resending the whole conversation each time,
  as most OpenAI clients do (the server checks it against the stored thread).

Run ``python -m bench.openai_overhead [--turns 200] [--warmup 20] [--json OUT]``. The goal
(issue 15): ``/v1`` non-streaming p50 within 10% of ``/agent/invoke``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from bench.common import pct
from bench.load import create_keys, free_port, start_server, wait_ready

ROOT = Path(__file__).resolve().parents[1]
SERIES = ("/agent/invoke", "/v1 new only", "/v1 full history")


async def drive(url: str, key: str, turns: int, warmup: int) -> dict[str, list[float]]:
    """Interleave the three series turn by turn, so drift hits them alike."""
    headers = {"Authorization": f"Bearer {key}"}
    stamp = int(time.time())
    history: list[dict[str, str]] = []
    samples: dict[str, list[float]] = {name: [] for name in SERIES}
    async with httpx.AsyncClient(base_url=url, timeout=60, headers=headers) as client:
        for t in range(warmup + turns):
            text = f"turn {t}: hello"
            calls = {
                "/agent/invoke": ("/agent/invoke", {
                    "input": {"messages": [{"type": "human", "content": text}]},
                    "config": {"configurable": {"thread_id": f"bench-ls-{stamp}"}}}, {}),
                "/v1 new only": ("/v1/chat/completions", {
                    "model": "mnemograph", "messages": [{"role": "user", "content": text}]},
                    {"X-Thread-Id": f"bench-v1-{stamp}"}),
                "/v1 full history": ("/v1/chat/completions", {
                    "model": "mnemograph",
                    "messages": [*history, {"role": "user", "content": text}]},
                    {"X-Thread-Id": f"bench-v1h-{stamp}"}),
            }  # fmt: skip
            for name, (path, body, extra) in calls.items():
                t0 = time.perf_counter()
                res = await client.post(path, json=body, headers=extra)
                ms = (time.perf_counter() - t0) * 1000
                res.raise_for_status()
                if name == "/v1 full history":
                    reply = res.json()["choices"][0]["message"]["content"]
                    history += [{"role": "user", "content": text},
                                {"role": "assistant", "content": reply}]  # fmt: skip
                if t >= warmup:
                    samples[name].append(ms)
    return samples


def summarize(samples: dict[str, list[float]]) -> dict[str, Any]:
    base = pct(samples["/agent/invoke"], 0.5)
    return {
        name: {"n": len(v), "p50_ms": pct(v, 0.5), "p95_ms": pct(v, 0.95),
               "p50_ratio": pct(v, 0.5) / base if base else 0.0}
        for name, v in samples.items()
    }  # fmt: skip


def print_table(result: dict[str, Any], console: Console) -> None:
    table = Table(title="OpenAI-compatible door vs /agent/invoke (zero-latency model)")
    for column in ("door", "turns", "p50 ms", "p95 ms", "p50 / invoke"):
        table.add_column(column, justify="right" if column != "door" else "left")
    for name, row in result["series"].items():
        table.add_row(name, str(row["n"]), f"{row['p50_ms']:.1f}", f"{row['p95_ms']:.1f}",
                      f"{row['p50_ratio']:.3f}")  # fmt: skip
    console.print(table)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mnemo-oai-") as tmp:
        data_dir = Path(tmp)
        key = create_keys(1, data_dir, "oai-bench")[0]
        port = free_port()
        server = start_server(data_dir, port, workers=1)
        try:
            url = f"http://127.0.0.1:{port}"
            asyncio.run(wait_ready(url))
            samples = asyncio.run(drive(url, key, args.turns, args.warmup))
        finally:
            server.terminate()
            server.wait(60)
    result = {"turns": args.turns, "warmup": args.warmup, "series": summarize(samples)}
    print_table(result, Console())
    out = args.json or ROOT / "bench" / "results" / "openai_overhead.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
