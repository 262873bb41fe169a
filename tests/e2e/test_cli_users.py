"""One `--user` rule for every command (issue 16 item 8): an account's name or its id means
that account, anything else is a user id of its own (a user without an account). So data
added through a name is the account's, and `users delete` by name removes it. A user can
never be named like another user's id."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from tests.conftest import cli_env
from tests.e2e.test_cli import assert_one_error_line, mg


def test_a_name_and_an_id_are_one_user_everywhere(pg_url: str, data_dir: Path) -> None:
    env = cli_env(pg_url, data_dir)
    name = f"henry-{uuid.uuid4().hex[:6]}"
    created = mg("users", "create", name, env=env)
    assert created.returncode == 0, created.stderr
    user_id = dict(line.split(": ", 1) for line in created.stdout.splitlines())["user_id"]
    thread = f"t-{uuid.uuid4().hex[:8]}"

    added = mg("memories", "add", "--user", name, "--text", "Henry's cat Miso likes tuna", env=env)
    assert added.returncode == 0, added.stderr
    chat = mg("chat", "--user", name, "--thread", thread, "-m", "hello from henry", env=env)
    assert chat.returncode == 0, chat.stderr
    # The same user whichever way it is named.
    by_id = mg("threads", "--user", user_id, env=env)
    assert thread in by_id.stdout, by_id.stdout
    history = mg("history", "--thread", thread, "--user", user_id, "--json", env=env)
    assert history.returncode == 0, history.stderr
    found = mg("memories", "search", "--user", user_id, "tuna", "--json", env=env)
    assert "Miso" in found.stdout, found.stdout
    doc = json.loads(mg("users", "export", "--user", name, env=env).stdout)
    assert doc["user_id"] == user_id
    assert [t["thread_id"] for t in doc["threads"]] == [thread]
    assert any("Miso" in m["text"] for m in doc["memories"]), doc["memories"]

    deleted = mg("users", "delete", "--user", name, "--yes", env=env)
    assert deleted.returncode == 0, deleted.stderr
    # Nothing survives, under the name or the id.
    for who in (name, user_id):
        left = json.loads(mg("users", "export", "--user", who, env=env).stdout)
        assert left["memories"] == [] and left["threads"] == [], (who, left)
        found = mg("memories", "search", "--user", who, "tuna", "--json", env=env)
        assert "Miso" not in found.stdout, (who, found.stdout)


def test_names_cannot_look_like_user_ids(pg_url: str, data_dir: Path) -> None:
    env = cli_env(pg_url, data_dir)
    res = mg("users", "create", f"usr_{uuid.uuid4().hex[:16]}", env=env)
    assert_one_error_line(res, "usr_")
    assert res.returncode == 2
    # A user id already in use without an account cannot become a name: the name would
    # take over what `--user` means and hide that user's data.
    plain = f"plain-{uuid.uuid4().hex[:6]}"
    added = mg("memories", "add", "--user", plain, "--text", "Plain likes green tea", env=env)
    assert added.returncode == 0, added.stderr
    res = mg("users", "create", plain, env=env)
    assert_one_error_line(res, plain)
    assert res.returncode == 2
    assert plain not in mg("users", "list", env=env).stdout
    found = mg("memories", "search", "--user", plain, "green tea", "--json", env=env)
    assert "Plain likes green tea" in found.stdout
