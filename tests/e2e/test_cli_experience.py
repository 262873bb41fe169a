"""What a CLI user sees: the conversation on stdout, warnings in a log file with one pointer
line, one notice when memory was not saved, and embedded services kept warm between calls.

Each command is a separate ``mnemograph`` process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import cli_env
from tests.openai_stub import openai_stub

ROOT = Path(__file__).resolve().parents[2]


def mg(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mnemograph.cli", *args],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def test_a_failed_memory_write_is_one_notice_not_a_log_in_the_reply(
    pg_url: str, data_dir: Path, uid: str, tid: str
) -> None:
    broken = {"ExtractedMemories": [{"items": "not a list"}]}
    with openai_stub(["Nice to meet you, Ada."], tool_replies=broken) as stub:
        env = cli_env(pg_url, data_dir, MNEMOGRAPH_MODEL="stub-model",
                      OPENAI_BASE_URL=stub.base_url, OPENAI_API_KEY="sk-test")  # fmt: skip
        res = mg("chat", "--user", uid, "--thread", tid, "-m", "I live in Paris.", env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "Nice to meet you, Ada."  # the conversation, nothing else
    log_file = data_dir / "logs" / "mnemograph.log"
    lines = res.stderr.strip().splitlines()
    assert lines == [
        f"(warnings are logged to {log_file})",
        "note: the long-term memory was not updated this turn (ValidationError)",
    ], res.stderr
    assert "memory write skipped: ValidationError" in log_file.read_text()
    # The knowledge graph, whose call succeeded, was still written.
    assert stub.streamed_tool_requests == 0 and len(stub.tool_requests) == 2


def test_chat_help_names_the_log_file(pg_url: str, data_dir: Path) -> None:
    res = mg("chat", "--help", env=cli_env(pg_url, data_dir))
    assert res.returncode == 0
    assert "logs/mnemograph.log" in " ".join(res.stdout.split())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_gone(pid: int, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.2)
    return False


def test_embedded_services_stay_warm_between_calls_until_stopped(
    pg_url: str, tmp_path: Path, uid: str
) -> None:
    """The graph server is the embedded part here (PostgreSQL comes from DATABASE_URL): the
    first call starts it through the keeper and says so, the next joins it silently,
    ``mnemograph stop`` stops it, and an idle keeper stops by itself."""
    data = tmp_path / "warm"
    env = cli_env(pg_url, data, MNEMOGRAPH_KEEP_WARM_S="600")
    first = mg("chat", "--user", uid, "--thread", "t1", "-m", "hello", env=env)
    assert first.returncode == 0, first.stderr
    assert "starting the graph server…" in first.stderr
    assert "services ready in" in first.stderr
    keeper = json.loads((data / "warm.json").read_text())
    graph = json.loads((data / "arcadedb" / "server.json").read_text())
    assert keeper["ready"] and _alive(keeper["pid"]) and _alive(graph["pid"])

    second = mg("chat", "--user", uid, "--thread", "t1", "-m", "again", env=env)
    assert second.returncode == 0, second.stderr
    assert "starting" not in second.stderr and "echo: again" in second.stdout
    assert json.loads((data / "warm.json").read_text())["pid"] == keeper["pid"]
    assert json.loads((data / "arcadedb" / "server.json").read_text())["pid"] == graph["pid"]

    stopped = mg("stop", env=env)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert _wait_gone(keeper["pid"]) and _wait_gone(graph["pid"])
    assert not (data / "warm.json").exists()
    assert "nothing was running" in mg("stop", env=env).stdout

    # An idle keeper stops by itself (its log says when), and a new call starts a new one.
    idle_env = {**env, "MNEMOGRAPH_KEEP_WARM_S": "3"}
    third = mg("chat", "--user", uid, "--thread", "t1", "-m", "idle", env=idle_env)
    assert third.returncode == 0, third.stderr
    log = data / "logs" / "warm.log"
    deadline = time.monotonic() + 60
    while log.read_text().count("stopped") < 2:
        assert time.monotonic() < deadline, "an idle keeper must stop by itself"
        time.sleep(0.2)
    assert not (data / "warm.json").exists()


@pytest.mark.parametrize("bad", ["-1", "soon"])
def test_a_bad_keep_warm_setting_is_one_error_line(
    pg_url: str, tmp_path: Path, uid: str, bad: str
) -> None:
    env = cli_env(pg_url, tmp_path / "bad", MNEMOGRAPH_KEEP_WARM_S=bad)
    res = mg("chat", "--user", uid, "--thread", "t1", "-m", "hi", env=env)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [res.stderr.strip()]  # one line
    assert res.stderr.startswith("error: invalid setting MNEMOGRAPH_KEEP_WARM_S")
    assert bad not in res.stderr  # the input is not echoed
