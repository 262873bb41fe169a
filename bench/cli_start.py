"""How long a user waits before the model starts working: first start and warm start of the CLI.

Run ``python -m bench.cli_start [--model local|fake] [--runs 5] [--json OUT]``.

A fresh data dir, nothing configured (embedded PostgreSQL, embedded graph server, and with
``--model local`` the packaged llama.cpp model), exactly as a new user runs it:

1. **first start**: ``mnemograph chat -m "…"`` on the empty data dir; the keeper starts every
   embedded service (and assembles and loads the model); reported as the keeper's own start
   time and as the CLI's overhead before its turn began;
2. **warm start**: ``--runs`` more calls of ``mnemograph chat -m "…"`` in new processes, each
   a new thread; the **overhead** is the time from spawning the process until the turn starts
   (``MNEMOGRAPH_TIMINGS`` marks), i.e. everything before the model's own time: Python
   start-up and imports, joining the warm services, opening the pools, the embedder.

The turn itself (model time plus memory work) and the shutdown after it are shown apart.
The issue's goal: warm overhead ≤ 5 s. ``mnemograph stop`` ends the run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
MARK = re.compile(r"timing: (\w+)=([\d.]+)")


def _env(data_dir: Path, model: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "MNEMOGRAPH_", "NEO4J_")) and k != "DATABASE_URL"
    }
    env.update(MNEMOGRAPH_DATA_DIR=str(data_dir), MNEMOGRAPH_TIMINGS="1")
    if model == "fake":
        env["MNEMOGRAPH_MODEL"] = "fake"
    return env


def one_call(env: dict[str, str], thread: str, text: str) -> dict[str, float]:
    """Run one ``chat -m`` and split its wall time by the CLI's timing marks."""
    t0 = time.time()
    res = subprocess.run(
        [
            sys.executable, "-m", "mnemograph.cli",
            "chat", "--user", "bench", "--thread", thread, "-m", text,
        ],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    t_exit = time.time()
    if res.returncode != 0:
        raise SystemExit(f"mnemograph chat failed:\n{res.stderr[-2000:]}")
    marks = {k: float(v) for k, v in MARK.findall(res.stderr)}
    return {
        "overhead_s": marks["turn_start"] - t0,
        "turn_s": marks["turn_end"] - marks["turn_start"],
        "exit_s": t_exit - marks["turn_end"],
        "wall_s": t_exit - t0,
    }


def run(model: str, runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mnemograph-cli-start-") as tmp:
        data_dir = Path(tmp) / ".mnemograph"
        env = _env(data_dir, model)
        try:
            first = one_call(env, "first", "Hi, I live in Porto.")
            keeper = json.loads((data_dir / "warm.json").read_text(encoding="utf-8"))
            warm = [one_call(env, f"warm-{i}", "What is a good name for a cat?")
                    for i in range(runs)]  # fmt: skip
        finally:
            subprocess.run([sys.executable, "-m", "mnemograph.cli", "stop"], env=env, cwd=ROOT,
                           capture_output=True, timeout=300)  # fmt: skip
    return {
        "model": model,
        "first": {**first, "services_start_s": keeper.get("started_in_s")},
        "warm": warm,
        "warm_overhead_p50_s": statistics.median(w["overhead_s"] for w in warm),
        "warm_overhead_max_s": max(w["overhead_s"] for w in warm),
    }


def print_table(result: dict[str, Any], console: Console) -> None:
    table = Table(title=f"CLI start ({result['model']} model)")
    for col in ("call", "overhead before the turn (s)", "turn (s)", "exit (s)", "wall (s)"):
        table.add_column(col)
    rows = [("first start", result["first"])] + [
        (f"warm #{i + 1}", w) for i, w in enumerate(result["warm"])
    ]
    for name, r in rows:
        table.add_row(name, f"{r['overhead_s']:.2f}", f"{r['turn_s']:.2f}",
                      f"{r['exit_s']:.2f}", f"{r['wall_s']:.2f}")  # fmt: skip
    console.print(table)
    console.print(
        f"services started by the keeper in {result['first']['services_start_s']} s; "
        f"warm overhead p50 {result['warm_overhead_p50_s']:.2f} s, "
        f"max {result['warm_overhead_max_s']:.2f} s (goal ≤ 5 s)"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("local", "fake"), default="local")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    result = run(args.model, args.runs)
    print_table(result, Console())
    out = args.json or ROOT / "bench" / "results" / f"cli_start_{args.model}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
