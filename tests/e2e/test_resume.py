"""A conversation survives SIGKILL: a fresh process finds its turns and summary."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import cli_env

CLI = [sys.executable, "-m", "mnemograph.cli"]
ROOT = Path(__file__).resolve().parents[2]


def _read_until(proc: subprocess.Popen[bytes], marker: bytes, timeout: float = 60.0) -> bytes:
    assert proc.stdout is not None
    buf = b""
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()
    while marker not in buf:
        left = deadline - time.monotonic()
        assert left > 0, f"timed out waiting for {marker!r}; got {buf!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 4096)
            assert chunk, f"process ended early: {buf!r}"
            buf += chunk
    return buf


def test_thread_resumes_after_sigkill(pg_url: str, data_dir: Path, uid: str, tid: str) -> None:
    env = cli_env(pg_url, data_dir)
    proc = subprocess.Popen(
        [*CLI, "chat", "--user", uid, "--thread", tid, "--strategy", "summary_buffer",
         "--summary-trigger", "60", "--buffer-tokens", "30"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT,
    )  # fmt: skip
    assert proc.stdin is not None
    try:
        _read_until(proc, b"you> ")
        for i in range(4):
            proc.stdin.write(f"I keep pet number {i} called zebra{i}\n".encode())
            proc.stdin.flush()
            out = _read_until(proc, b"you> ")
            assert f"echo: I keep pet number {i}".encode() in out
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL

    fresh = subprocess.run(
        [*CLI, "history", "--thread", tid, "--user", uid, "--json"],
        env=env, cwd=ROOT, capture_output=True, timeout=120,
    )  # fmt: skip
    assert fresh.returncode == 0, fresh.stderr.decode()
    doc = json.loads(fresh.stdout)
    assert doc["turns"] == 4
    # Early turns were folded into the summary; the latest is still verbatim.
    assert "zebra" in doc["summary"]
    assert doc["messages"][-1]["content"] == "echo: I keep pet number 3 called zebra3"
    assert len(doc["messages"]) < 8

    # The same thread carries on in yet another process.
    more = subprocess.run(
        [*CLI, "chat", "--user", uid, "--thread", tid, "-m", "still there?"],
        env=env, cwd=ROOT, capture_output=True, timeout=120,
    )  # fmt: skip
    assert more.returncode == 0, more.stderr.decode()
    assert b"echo: still there?" in more.stdout
