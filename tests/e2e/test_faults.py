"""Faults: a server killed mid-turn, and a model that fails before replying."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from mnemograph.runner import TurnRunner
from mnemograph.services import Services
from stores.ids import thread_key
from tests.conftest import cli_env
from tests.openai_stub import openai_stub

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(env: dict[str, str], port: int, hang: list[str] | None = None) -> Any:
    """``mnemograph serve``; with ``hang`` (stage, folder) through ``tests.hang``."""
    entry = ["tests.hang", *hang] if hang else ["mnemograph.cli"]
    proc = subprocess.Popen(
        [sys.executable, "-m", *entry, "serve", "--port", str(port)],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise AssertionError("server did not start")


def _wait_for(path: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


def _body(thread: str, text: str) -> dict[str, Any]:
    return {"input": {"messages": [{"type": "human", "content": text}]},
            "config": {"configurable": {"thread_id": thread}}}  # fmt: skip


@pytest.mark.parametrize("stage", ["reply", "summary", "extract"])
def test_sigkill_mid_turn_loses_no_acknowledged_turn(
    stage: str, pg_url: str, data_dir: Path, tmp_path: Path, services: Services
) -> None:
    """Kill -9 while the model is answering, summarizing or extracting memory; restart.

    Acknowledged turns are all there, the thread carries on, and the run that was cut short
    is finished after the restart (its pending mark cleared, no graph work left owed).
    """
    marker_dir = tmp_path / "hang"
    marker_dir.mkdir()
    port = _free_port()
    base = cli_env(pg_url, data_dir, MNEMOGRAPH_COMPACT_EVERY_TURNS=0)
    # A tiny summary budget makes the summarizer run on the second turn.
    thread = f"kill-{stage}-{tmp_path.name[-8:]}"
    user = subprocess.run(
        [
            sys.executable, "-m", "mnemograph.cli",
            "users", "create", f"k{stage}{tmp_path.name[-8:]}",
        ],
        env=base, cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    key = next(line.split(": ", 1)[1] for line in user.splitlines() if line.startswith("api_key"))
    headers = {"Authorization": f"Bearer {key}"}
    proc = _serve(base, port, hang=[stage, str(marker_dir)])
    url = f"http://127.0.0.1:{port}"
    try:
        # The summarizer only sees the turns it folds, so for that stage the marker goes first.
        opener = "first question HANG" if stage == "summary" else "first question"
        first = httpx.post(f"{url}/agent/invoke", json=_body(thread, opener),
                           headers=headers, timeout=60)  # fmt: skip
        assert first.status_code == 200, first.text
        # A long second turn pushes the thread past the summary budget.
        text = "SECOND " + "long words " * 1200 if stage == "summary" else "SECOND HANG"
        try:
            httpx.post(f"{url}/agent/invoke", json=_body(thread, text), headers=headers,
                       timeout=5 if stage == "reply" else 60)  # fmt: skip
        except httpx.ReadTimeout:
            assert stage == "reply"  # no reply was ever acknowledged for this one
        _wait_for(marker_dir / stage)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    proc = _serve(base, port)  # no hang this time; start-up recovery finishes owed work
    try:
        deadline = time.monotonic() + 120
        while True:
            detail = httpx.get(f"{url}/api/threads/{thread}", headers=headers, timeout=30).json()
            contents = [m["content"] for m in detail["messages"]]
            done = contents[-1].startswith("echo: ") and "first question" in " ".join(
                [*contents, detail["summary"]]
            )
            if done or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert any(c.startswith("echo: first question") for c in contents) or (
            "first question" in detail["summary"]
        )
        if stage != "reply":  # the second turn was acknowledged: its reply must be there
            assert any(c.startswith("echo: SECOND") for c in contents), contents
        more = httpx.post(f"{url}/agent/invoke", json=_body(thread, "after restart"),
                          headers=headers, timeout=60)  # fmt: skip
        assert more.status_code == 200
        assert more.json()["output"]["messages"][-1]["content"] == "echo: after restart"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    # Nothing is left owed: the run cut short was finished, so its pending mark is gone.
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(
            "SELECT pending_since FROM mnemo_threads WHERE name = %s", (thread,)
        ).fetchone()
    assert row is not None and row[0] is None


async def test_model_failure_before_reply_leaves_no_half_turn(
    services: Services, uid: str, tid: str
) -> None:
    """The model times out: the caller gets an error and the thread is as it was before."""
    from stores.models.llm import build_chat_model
    from stores.settings import Settings

    runner = TurnRunner(services)
    await runner.invoke(uid, tid, [{"type": "human", "content": "before the outage"}])
    await runner.drain()
    before = (await runner.graph.aget_state(runner.config(thread_key(uid, tid)))).values["messages"]
    with openai_stub([]) as stub:  # no scripted reply: the stub answers with an error
        settings = Settings(
            model="stub",
            openai_base_url=stub.base_url,
            openai_api_key="k",
            llm_timeout_s=2,
            llm_max_retries=0,
        )  # type: ignore[arg-type]
        services.set_chat_model(build_chat_model(settings))
        with pytest.raises(Exception):  # noqa: B017 - any upstream error will do
            await runner.invoke(uid, tid, [{"type": "human", "content": "lost question"}])
    after = (await runner.graph.aget_state(runner.config(thread_key(uid, tid)))).values["messages"]
    assert [m.text for m in after] == [m.text for m in before]
    assert services.threads is not None
    assert thread_key(uid, tid) not in [t for t, _ in await services.threads.unfinished()]
