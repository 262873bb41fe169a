"""Throughput over HTTP: N concurrent users, each on its own thread, against `mnemograph serve`.

Starts the server as a subprocess on 127.0.0.1 with the zero-latency model (unless --url is
given), creates one user per client, and drives `/agent/invoke` for a bounded number of turns
and seconds per level. Traffic goes to loopback only. Run:

    python -m bench.load [--levels 1,10,100] [--turns 5] [--seconds 60] [--workers 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from bench.common import pct


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(data_dir: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, MNEMOGRAPH_DATA_DIR=str(data_dir), MNEMOGRAPH_MODEL="fake")
    cmd = [
        sys.executable, "-m", "mnemograph.cli",
        "serve", "--port", str(port), "--workers", str(workers),
    ]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def wait_ready(url: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get(url + "/health", timeout=2)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.5)
    raise RuntimeError("server did not become healthy")


def create_keys(n: int, data_dir: Path, prefix: str) -> list[str]:
    """API keys through the real CLI, so the bench uses the same auth path as users."""
    env = dict(os.environ, MNEMOGRAPH_DATA_DIR=str(data_dir), MNEMOGRAPH_MODEL="fake")
    code = (
        "import asyncio,sys\n"
        "from mnemograph.services import open_services\n"
        "async def main():\n"
        "    async with open_services(with_graph=False) as s:\n"
        f"        for i in range({n}):\n"
        f"            _, key = await s.users.create(f'{prefix}-{{i}}')\n"
        "            print(key)\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=300)  # fmt: skip
    return out.stdout.split()


async def level(url: str, keys: list[str], turns: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    kinds: dict[str, int] = {}
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=len(keys) + 10, max_keepalive_connections=len(keys))

    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def user(i: int, key: str) -> None:
            nonlocal errors
            headers = {"Authorization": f"Bearer {key}"}
            thread = f"load-{i}-{int(time.time() * 1000) % 10_000_000}"
            for t in range(turns):
                if time.monotonic() > deadline:
                    return
                body = {
                    "input": {"messages": [{"type": "human", "content": f"turn {t}: hello"}]},
                    "config": {"configurable": {"thread_id": thread}},
                }
                t0 = time.perf_counter()
                try:
                    res = await client.post("/agent/invoke", json=body, headers=headers)
                    ok = res.status_code == 200
                    kind = f"HTTP {res.status_code}: {res.text[:120]}"
                except httpx.HTTPError as exc:
                    ok = False
                    kind = type(exc).__name__
                if not ok:
                    kinds[kind] = kinds.get(kind, 0) + 1
                latencies.append((time.perf_counter() - t0) * 1000)
                errors += 0 if ok else 1

        t0 = time.perf_counter()
        await asyncio.gather(*(user(i, k) for i, k in enumerate(keys)))
        wall = time.perf_counter() - t0
    return {
        "concurrency": len(keys),
        "turns": len(latencies),
        "errors": errors,
        "turns_per_s": len(latencies) / wall if wall else 0.0,
        "p50_ms": pct(latencies, 0.5),
        "p95_ms": pct(latencies, 0.95),
        "wall_s": wall,
        "error_kinds": kinds,
    }


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    levels = [int(x) for x in args.levels.split(",")]
    proc = None
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="mg-load-"))
    url = args.url
    if url is None:
        keys_all = create_keys(sum(levels), data_dir, f"load{int(time.time())}")
        port = free_port()
        proc = start_server(data_dir, port, args.workers)
        url = f"http://127.0.0.1:{port}"
    else:
        keys_all = args.keys.split(",")
    try:
        await wait_ready(url)
        results = []
        offset = 0
        for n in levels:
            keys = keys_all[offset : offset + n] if proc else (keys_all * n)[:n]
            offset += n
            results.append(await level(url, keys, args.turns, args.seconds))
            Console(stderr=True).print(f"[dim]level {n} done[/dim]")
        return results
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--levels", default="1,10,100")
    parser.add_argument("--turns", type=int, default=5, help="turns per user per level")
    parser.add_argument("--seconds", type=float, default=60.0, help="time cap per level")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--url", default=None, help="an already running server")
    parser.add_argument("--keys", default="", help="API keys for --url, comma-separated")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--json", default="bench/results/load.json")
    args = parser.parse_args()
    rows = asyncio.run(run(args))
    table = Table(title=f"HTTP load, /agent/invoke, zero-latency model, workers={args.workers}")
    for col in ("users", "turns", "errors", "turns/s", "p50 ms", "p95 ms"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            str(r["concurrency"]), str(r["turns"]), str(r["errors"]),
            f"{r['turns_per_s']:.1f}", f"{r['p50_ms']:.1f}", f"{r['p95_ms']:.1f}",
        )  # fmt: skip
    Console().print(table)
    for r in rows:
        for kind, count in r["error_kinds"].items():
            Console().print(f"  {r['concurrency']} users: {count} x {kind}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
