"""Privacy: checkpoint encryption leaves no plaintext in any checkpoint table, PII never
reaches long-term memory or the graph (unless redaction is off), and secrets never reach logs."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from graph.builder import build_graph
from mnemograph.runner import TurnRunner
from mnemograph.services import Services, open_services
from stores.ids import thread_key
from stores.knowledge.arcadedb import free_port
from stores.settings import Settings
from tests.conftest import cli_env

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "mnemograph.cli"]
SECRET_WORDS = ("quetzalcoatl", "xylophonist")
SUMMARY_KNOBS = {"strategy": "summary_buffer", "summary_trigger_tokens": 60, "buffer_tokens": 30}


async def _turns(services: Services, user: str, thread: str, n: int = 5) -> TurnRunner:
    runner = TurnRunner(services)
    for i in range(n):
        text = f"my {SECRET_WORDS[0]} number {i} plays the {SECRET_WORDS[1]} part"
        await runner.invoke(user, thread, [{"type": "human", "content": text}], **SUMMARY_KNOBS)
    drain = getattr(runner, "drain", None)
    if drain is not None:
        await drain()
    return runner


async def _raw_text(services: Services, thread: str) -> str:
    """Every byte the three checkpoint tables hold for ``thread``, as one lowercase string."""
    assert services.pool is not None
    parts: list[str] = []
    async with services.pool.connection() as conn:
        for sql in (
            "SELECT checkpoint::text AS a, metadata::text AS b FROM checkpoints "
            "WHERE thread_id = %s",
            "SELECT type AS a, blob AS b FROM checkpoint_blobs WHERE thread_id = %s",
            "SELECT type AS a, blob AS b FROM checkpoint_writes WHERE thread_id = %s",
        ):
            rows = await (await conn.execute(sql, (thread,))).fetchall()
            assert rows, sql
            for row in rows:
                for value in row.values():
                    if isinstance(value, bytes | bytearray | memoryview):
                        parts.append(bytes(value).decode("latin-1"))
                    elif value is not None:
                        parts.append(str(value))
    return "\n".join(parts).lower()


@pytest.fixture(scope="module")
async def encrypted(settings: Settings) -> AsyncIterator[Services]:
    keyed = settings.model_copy(
        update={"checkpoint_key": SecretStr("a test passphrase, not a real key")}
    )
    async with open_services(
        keyed, with_graph=False, with_memory=False, with_embeddings=False
    ) as opened:
        yield opened


async def test_encrypted_checkpoints_hold_no_plaintext(
    encrypted: Services, services: Services, uid: str
) -> None:
    thread = f"enc-{uuid.uuid4().hex[:8]}"
    runner = await _turns(encrypted, uid, thread)
    # The thread reads back whole: messages and the (blob-stored) summary decrypt.
    key = thread_key(uid, thread)
    state = (await runner.graph.aget_state({"configurable": {"thread_id": key}})).values
    assert SECRET_WORDS[0] in state["summary"]
    assert state["messages"][-1].content.startswith(f"echo: my {SECRET_WORDS[0]} number 4")
    raw = await _raw_text(encrypted, key)
    for word in SECRET_WORDS:
        assert word not in raw
    assert "aes" in raw  # values carry the cipher tag
    # Without the key the same thread cannot be read (the stored bytes are ciphertext).
    plain_graph = build_graph(services.checkpointer, services.store)
    with pytest.raises(Exception):  # noqa: B017 - any deserialization failure will do
        await plain_graph.aget_state({"configurable": {"thread_id": key}})

    # Control: the unencrypted saver does store these words in the clear, so the probe above
    # would have found them.
    control = f"plain-{uuid.uuid4().hex[:8]}"
    await _turns(services, uid, control)
    raw_plain = await _raw_text(services, thread_key(uid, control))
    assert all(word in raw_plain for word in SECRET_WORDS)


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=180
    )


def test_secrets_never_reach_logs_or_output(pg_url: str, data_dir: Path, tmp_path: Path) -> None:
    secrets = {
        "db_password": "Pw-db-7f3c9a1e",
        "openai": "sk-test-9d8e7f6a5b4c3d2e1f0a",
        "neo4j": "Pw-neo4j-c0ffee77",
        "checkpoint": "ck-secret-5e6f7a8b",
    }
    # Trust auth on the embedded socket ignores the password, but it is in the URL every
    # client and log line sees.
    assert pg_url.startswith("postgresql://postgres")
    secret_url = pg_url.replace(
        "postgresql://postgres", f"postgresql://postgres:{secrets['db_password']}", 1
    )
    secret_url = secret_url.replace(f":{secrets['db_password']}:", f":{secrets['db_password']}", 1)
    env = cli_env(
        secret_url,
        data_dir,
        OPENAI_API_KEY=secrets["openai"],
        NEO4J_URI=f"bolt://127.0.0.1:{free_port()}",  # down: the driver's errors get logged
        NEO4J_PASSWORD=secrets["neo4j"],
        MNEMOGRAPH_CHECKPOINT_KEY=secrets["checkpoint"],
        MNEMOGRAPH_LOG_LEVEL="DEBUG",
        MNEMOGRAPH_EMBEDDINGS="local",
    )
    captured: list[str] = []
    name = f"sec-{uuid.uuid4().hex[:8]}"
    created = _run(["users", "create", name], env)
    assert created.returncode == 0, created.stderr
    api_key = next(
        line.split(": ", 1)[1] for line in created.stdout.splitlines() if "api_key" in line
    )
    captured.append(created.stderr)  # stdout shows the new key once, by design
    for args in (
        ["chat", "--user", name, "--thread", f"t-{name}", "-m", "hello there"],
        ["history", "--user", name, "--thread", f"t-{name}", "--json"],
    ):
        res = _run(args, env)
        assert res.returncode == 0, res.stderr
        captured += [res.stdout, res.stderr]
    # A failing connection must not echo the URL's password either.
    bad = _run(
        ["threads", "--user", name],
        {**env, "DATABASE_URL": secret_url.replace("host=", "host=/nonexistent")},
    )
    assert bad.returncode != 0
    captured += [bad.stdout, bad.stderr]

    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [*CLI, "serve", "--port", str(port)],
            env={k: v for k, v in env.items() if k != "NEO4J_URI"},  # the embedded graph
            cwd=ROOT, stdout=sink, stderr=sink,
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                assert proc.poll() is None, log.read_text()
                try:
                    if httpx.get(f"{base}/health", timeout=2).status_code in (200, 503):
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.3)
            good = {"Authorization": f"Bearer {api_key}"}
            body: dict[str, Any] = {
                "input": {"messages": [{"type": "human", "content": "hi over http"}]},
                "config": {"configurable": {"thread_id": f"h-{name}"}},
            }
            res = httpx.post(f"{base}/agent/invoke", json=body, headers=good, timeout=120)
            assert res.status_code == 200, res.text
            for headers in (good, {"Authorization": f"Bearer {api_key}x"}):
                res = httpx.get(f"{base}/threads/nope", headers=headers, timeout=30)
                captured.append(res.text)
            res = httpx.get(f"{base}/health", timeout=30)
            captured.append(res.text)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    captured.append(log.read_text(errors="replace"))
    everything = "\n".join(captured)
    logging_on = "DEBUG" in everything or "WARNING" in everything
    assert logging_on, "logging really was on"
    leaked = [what for what, secret in {**secrets, "api_key": api_key}.items()
              if secret in everything]  # fmt: skip
    assert not leaked, f"leaked into output or logs: {leaked}"
    assert os.environ.get("OPENAI_API_KEY") is None


async def test_pii_never_reaches_memory_or_graph(services: Services, uid: str) -> None:
    from tests.fakes import ScriptedChatModel, extraction_replies
    from tests.integration.test_isolation import memories_and_facts

    email, card = "zed.pii@example.org", "4111 1111 1111 1111"
    text = f"My email is {email} and my card is {card}"
    assert services.memory is not None and services.graph is not None
    assert services.redact is not None  # on by default
    for redact, user in ((services.redact, uid), (None, uid + "x")):
        model = ScriptedChatModel(
            tool_replies=extraction_replies(
                memories=[{"type": "fact", "text": f"The user said: {text}", "importance": 0.5}],
                triples=[{"subject": "I", "predicate": "has_email", "object": email}],
            )
        )
        svc = dataclasses.replace(services, redact=redact, _chat_model=model)
        runner = TurnRunner(svc)
        await runner.invoke(user, f"pii-{user}", [{"type": "human", "content": text}])
        drain = getattr(runner, "drain", None)
        if drain is not None:
            await drain()
        stored = await memories_and_facts(svc, user)
        assert stored, "the scribe model should have produced memories"
        if redact is not None:
            assert email not in stored and card not in stored and "4111" not in stored
            assert "[EMAIL]" in stored
        else:  # turned off: the same turn stores them verbatim
            assert email in stored
