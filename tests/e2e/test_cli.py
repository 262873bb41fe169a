"""The CLI's promises: one clear error line and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import cli_env

ROOT = Path(__file__).resolve().parents[2]


def mg(
    *args: str, env: dict[str, str], entry: str = "mnemograph.cli"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", entry, *args],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def assert_one_error_line(res: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert res.returncode != 0
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error:"), res.stderr
    assert "Traceback" not in res.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_chat_once_threads_and_history(pg_url: str, data_dir: Path, uid: str, tid: str) -> None:
    env = cli_env(pg_url, data_dir)
    res = mg("chat", "--user", uid, "--thread", tid, "-m", "hello there", env=env)
    assert res.returncode == 0, res.stderr
    assert "echo: hello there" in res.stdout
    listed = mg("threads", "--user", uid, env=env)
    assert tid in listed.stdout
    hist = mg("history", "--user", uid, "--thread", tid, "--json", env=env)
    doc = json.loads(hist.stdout)
    assert [m["type"] for m in doc["messages"]] == ["human", "ai"]
    assert doc["user_id"] == uid
    plain = mg("history", "--user", uid, "--thread", tid, env=env)
    assert "hello there" in plain.stdout


def test_unknown_thread(pg_url: str, data_dir: Path) -> None:
    env = cli_env(pg_url, data_dir)
    res = mg("history", "--user", "u", "--thread", "no-such-thread", env=env)
    assert_one_error_line(res, "not found")


def test_thread_ids_are_per_user(pg_url: str, data_dir: Path, uid: str, tid: str) -> None:
    """Another user's thread id is a thread of one's own: it neither fails nor shows theirs."""
    env = cli_env(pg_url, data_dir)
    res = mg("history", "--user", "intruder", "--thread", tid, env=env)
    assert_one_error_line(res, "not found")  # before: as free as any id
    assert mg("chat", "--user", uid, "--thread", tid, "-m", "mine", env=env).returncode == 0
    res = mg("history", "--user", "intruder", "--thread", tid, env=env)
    assert_one_error_line(res, "not found")  # after: still nothing to see
    res = mg("chat", "--user", "intruder", "--thread", tid, "-m", "let me in", env=env)
    assert res.returncode == 0, res.stderr
    theirs = json.loads(
        mg("history", "--user", "intruder", "--thread", tid, "--json", env=env).stdout
    )
    assert [m["content"] for m in theirs["messages"]] == ["let me in", "echo: let me in"]
    mine = json.loads(mg("history", "--user", uid, "--thread", tid, "--json", env=env).stdout)
    assert [m["content"] for m in mine["messages"]] == ["mine", "echo: mine"]


@pytest.mark.parametrize("bad", ["../etc", "a b", "x;DROP TABLE", "", "a" * 200, "é"])
def test_bad_ids(pg_url: str, data_dir: Path, bad: str) -> None:
    res = mg("chat", "--user", "ok", "--thread", bad, "-m", "x", env=cli_env(pg_url, data_dir))
    assert_one_error_line(res, "invalid thread id")
    assert res.returncode == 2


def test_unreachable_database_url(data_dir: Path) -> None:
    env = cli_env("postgresql://someone:s3cret-pw@127.0.0.1:9/nodb", data_dir)
    res = mg("threads", "--user", "alice", env=env)
    assert_one_error_line(res, "PostgreSQL is unavailable", "127.0.0.1:9")
    assert "s3cret-pw" not in res.stderr + res.stdout


def test_unknown_strategy(pg_url: str, data_dir: Path, uid: str, tid: str) -> None:
    res = mg("chat", "--user", uid, "--thread", tid, "--strategy", "nope", "-m", "x",
             env=cli_env(pg_url, data_dir))  # fmt: skip
    assert_one_error_line(res, "unknown strategy")


def test_no_model_configured(pg_url: str, data_dir: Path, uid: str, tid: str) -> None:
    """Without an endpoint and without the [local] extra, one line says what to do."""
    env = cli_env(pg_url, data_dir, MNEMOGRAPH_MODEL="gpt-4o-mini")
    res = mg("chat", "--user", uid, "--thread", tid, "-m", "x", env=env, entry="tests.no_local")
    assert_one_error_line(res, "no chat model configured", "OPENAI_API_KEY")


def test_memories_and_users_commands(pg_url: str, data_dir: Path, tmp_path: Path) -> None:
    env = cli_env(pg_url, data_dir)
    created = mg("users", "create", f"cli-{tmp_path.name[-12:]}", env=env)
    assert created.returncode == 0, created.stderr
    fields = dict(line.split(": ", 1) for line in created.stdout.splitlines() if ": " in line)
    user_id, key = fields["user_id"], fields["api_key"]
    assert key.startswith("mg_")
    listed = mg("users", "list", env=env)
    assert user_id in listed.stdout and key not in listed.stdout

    added = mg("memories", "add", "--user", user_id, "--text", "My cat Miso likes tuna", env=env)
    assert added.returncode == 0, added.stderr
    history = tmp_path / "turns.jsonl"
    history.write_text(
        '{"text": "I am training for the Berlin marathon", "speaker": "Ana", "id": "d1"}\n'
        '{"text": "My brother lives in Lisbon", "at": "2024-05-01T10:00:00", "id": "d2"}\n'
    )
    imported = mg("memories", "import", "--user", user_id, str(history), env=env)
    assert imported.returncode == 0, imported.stderr
    assert "imported 2" in imported.stdout
    found = mg("memories", "search", "--user", user_id, "marathon", env=env)
    assert "Berlin marathon" in found.stdout

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{not json}\n')
    res = mg("memories", "import", "--user", user_id, str(bad), env=env)
    assert_one_error_line(res, "line 2")
    res = mg("memories", "import", "--user", user_id, str(tmp_path / "missing.jsonl"), env=env)
    assert_one_error_line(res, "no such file")
    res = mg("memories", "add", "--user", "bad id", "--text", "x", env=env)
    assert_one_error_line(res, "invalid user id")

    exported = mg("users", "export", "--user", user_id, env=env)
    doc = json.loads(exported.stdout)
    assert len(doc["memories"]) == 3
    deleted = mg("users", "delete", "--user", user_id, "--yes", env=env)
    assert deleted.returncode == 0, deleted.stderr
    again = json.loads(mg("users", "export", "--user", user_id, env=env).stdout)
    assert again["memories"] == [] and again["threads"] == []


def test_graph_command(pg_url: str, data_dir: Path, uid: str) -> None:
    res = mg("graph", "--user", uid, "--json", env=cli_env(pg_url, data_dir))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == []
    res = mg("graph", "--user", "no/slash", env=cli_env(pg_url, data_dir))
    assert_one_error_line(res, "invalid user id")
