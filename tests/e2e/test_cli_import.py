"""`mnemograph users import` as an operator runs it, each step its own process: export a
user, delete them, import the file back (`--undelete` required: deletion is final unless an
administrator lifts it), compare the exports, import again (nothing changes), chat on (the
thread resumes); a bad file is one error line and writes nothing (issue 16, item 16)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from tests.conftest import cli_env
from tests.e2e.test_cli import assert_one_error_line, mg


def export(who: str, env: dict[str, str]) -> dict[str, Any]:
    res = mg("users", "export", "--user", who, env=env)
    assert res.returncode == 0, res.stderr
    doc: dict[str, Any] = json.loads(res.stdout)
    doc.pop("exported_at")
    return doc


def test_export_delete_import_round_trip(pg_url: str, data_dir: Path, tmp_path: Path) -> None:
    env = cli_env(pg_url, data_dir)
    name = f"imp-{uuid.uuid4().hex[:6]}"
    created = mg("users", "create", name, env=env)
    assert created.returncode == 0, created.stderr
    user_id = dict(line.split(": ", 1) for line in created.stdout.splitlines())["user_id"]
    thread = f"t-{uuid.uuid4().hex[:8]}"
    for text in ("my cat is called Miso", "she likes tuna"):
        res = mg("chat", "--user", name, "--thread", thread, "-m", text, env=env)
        assert res.returncode == 0, res.stderr
    res = mg("memories", "add", "--user", name, "--text", "Miso the cat likes tuna", env=env)
    assert res.returncode == 0, res.stderr
    before = export(name, env)
    assert before["threads"][0]["turns"] == 2 and before["memories"], before
    backup = tmp_path / "backup.json"
    res = mg("users", "export", "--user", name, env=env)
    backup.write_text(res.stdout)

    res = mg("users", "delete", "--user", name, "--yes", env=env)
    assert res.returncode == 0, res.stderr
    # without --undelete a deleted user stays deleted
    res = mg("users", "import", str(backup), env=env)
    assert_one_error_line(res, "was deleted", "--undelete")
    assert res.returncode == 1
    assert export(user_id, env)["threads"] == []

    res = mg("users", "import", str(backup), "--undelete", env=env)
    assert res.returncode == 0, res.stderr
    assert "threads_restored" in res.stdout and user_id in res.stdout, res.stdout
    assert export(user_id, env) == before
    # twice: nothing changes
    res = mg("users", "import", str(backup), "--undelete", env=env)
    assert res.returncode == 0, res.stderr
    assert export(user_id, env) == before

    # the thread resumes where it was
    res = mg("chat", "--user", user_id, "--thread", thread, "-m", "what is her name?", env=env)
    assert res.returncode == 0, res.stderr
    history = mg("history", "--user", user_id, "--thread", thread, "--json", env=env)
    assert history.returncode == 0, history.stderr
    said = [m["content"] for m in json.loads(history.stdout)["messages"]]
    assert said[:4] == [m["content"] for m in before["threads"][0]["messages"]], said
    assert said[-2:] == ["what is her name?", "echo: what is her name?"], said


def test_a_bad_file_is_one_error_line(pg_url: str, data_dir: Path, tmp_path: Path) -> None:
    env = cli_env(pg_url, data_dir)
    user = f"u-{uuid.uuid4().hex[:8]}"
    bad = tmp_path / "bad.json"
    for content, needle in (
        ("{not json", "not a valid export document"),
        (json.dumps({"user_id": "bad id", "threads": []}), "user_id"),
        (json.dumps({"user_id": user, "threads": [], "surprise": 1}), "surprise"),
    ):
        bad.write_text(content)
        res = mg("users", "import", str(bad), env=env)
        assert_one_error_line(res, needle)
        assert res.returncode == 2
    res = mg("users", "import", str(tmp_path / "missing.json"), env=env)
    assert_one_error_line(res, "cannot read")
    assert res.returncode == 2
    assert export(user, env)["threads"] == []
