"""Acceptance: the packaged local model, driven as a user drives it, remembers across threads.

Every step is a separate ``mnemograph`` process on the embedded defaults (embedded PostgreSQL,
embedded graph server, llama.cpp with the packaged Qwen2.5-Coder-1.5B), kept warm between
calls the way a user's CLI keeps them. Four personas tell three facts each in thread A; a new
process and a new thread B asks about each fact; the graph and the memory search are read
through the CLI; one persona then moves city and the old fact must be invalidated, not
deleted. The figures are printed in the test summary (``-rA`` or the terminal summary).

Slow (several minutes on two cores) and always run by ``.ci/run``: there is no fake here.
A missing ``[local]`` extra fails the test; it never skips.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from stores.models.llama_server import local_llm_available
from tests.conftest import REPORT
from tests.servers import serve_process

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]


@dataclass(frozen=True)
class Fact:
    """One thing a persona says, the question that asks for it, and the words that prove it."""

    said: str
    question: str
    keys: tuple[str, ...]
    """Any one of these (case-insensitive) in a reply, triple or memory counts as the fact."""
    about: tuple[str, ...] = ("user",)
    """Who the triple must be about: its subject contains one of these."""


PERSONAS: dict[str, list[Fact]] = {
    "maya": [
        Fact("I live in Porto.", "Which city do I live in?", ("porto",)),
        Fact("My sister Ines is a veterinarian.", "What is my sister Ines's job?",
             ("veterinar", "vet"), ("ines", "sister")),
        Fact("I work at Siemens as a data analyst.", "Which company do I work for?",
             ("siemens",)),
    ],
    "omar": [
        Fact("I work at Nokia as a firmware engineer.", "Where do I work?", ("nokia",)),
        Fact("My daughter Lina plays the violin.", "What instrument does my daughter Lina play?",
             ("violin",), ("lina", "daughter")),
        Fact("My favourite food is sushi.", "What is my favourite food?", ("sushi",)),
    ],
    "greta": [
        Fact("I have a cat named Pixel.", "What is my cat's name?", ("pixel",)),
        Fact("My husband Jonas is a pilot.", "What is my husband Jonas's job?", ("pilot",),
             ("jonas", "husband")),
        Fact("I love playing chess.", "Which game do I love playing?", ("chess",)),
    ],
    "kenji": [
        Fact("I am allergic to peanuts.", "What am I allergic to?", ("peanut",)),
        Fact("My mother lives in Osaka.", "Which city does my mother live in?", ("osaka",),
             ("mother",)),
        Fact("I teach mathematics at a high school.", "What subject do I teach?",
             ("math",)),
    ],
}  # fmt: skip
MOVER, OLD_CITY, NEW_CITY = "maya", "porto", "valencia"


def _has(text: str, keys: tuple[str, ...]) -> bool:
    low = text.casefold()
    return any(k in low for k in keys)


@pytest.fixture(scope="module")
def user_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A user's environment: nothing configured, so every default is the embedded one."""
    assert local_llm_available(), "the [local] extra (llama-cpp-python + model parts) is missing"
    data = tmp_path_factory.mktemp("real-model")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "MNEMOGRAPH_", "NEO4J_")) and k != "DATABASE_URL"
    }
    env.update(MNEMOGRAPH_DATA_DIR=str(data / ".mnemograph"), MNEMOGRAPH_KEEP_WARM_S="900")
    yield env
    subprocess.run([sys.executable, "-m", "mnemograph.cli", "stop"], env=env, cwd=ROOT, timeout=120)


@dataclass
class Cli:
    """Runs ``mnemograph`` commands as separate processes and keeps each chat call's time."""

    env: dict[str, str]
    chats: list[tuple[float, str]] = field(default_factory=list)

    def __call__(self, *args: str, timeout: float = 900) -> str:
        """One command; a non-zero exit fails the test with the end of its stderr."""
        t0 = time.monotonic()
        res = subprocess.run(
            [sys.executable, "-m", "mnemograph.cli", *args],
            env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        assert res.returncode == 0, f"mnemograph {' '.join(args)} failed:\n{res.stderr[-2000:]}"
        if args[0] == "chat":
            self.chats.append((time.monotonic() - t0, res.stderr))
        return res.stdout


def test_facts_told_in_one_thread_come_back_in_another(
    user_env: dict[str, str], request: pytest.FixtureRequest
) -> None:
    mnemograph = Cli(user_env)
    run = uuid.uuid4().hex[:6]
    users = {name: f"{name}-{run}" for name in PERSONAS}
    figures: dict[str, Any] = {}
    t0 = time.monotonic()
    # 1. Each persona tells its facts in thread A, one message each.
    for name, facts in PERSONAS.items():
        for fact in facts:
            mnemograph(
                "chat", "--user", users[name], "--thread", f"{users[name]}-a", "-m", fact.said
            )
    figures["tell_s"] = round(time.monotonic() - t0, 1)

    # 2. A new thread (and a new process per question) asks about each fact.
    answers: list[tuple[str, str, bool]] = []
    for name, facts in PERSONAS.items():
        for fact in facts:
            reply = mnemograph("chat", "--user", users[name], "--thread", f"{users[name]}-b",
                               "-m", fact.question)  # fmt: skip
            answers.append((name, fact.question, _has(reply, fact.keys)))

    # 3. The graph and the memory search, read through the CLI.
    in_graph: list[tuple[str, str, bool]] = []
    in_memory: list[tuple[str, str, bool]] = []
    for name, facts in PERSONAS.items():
        triples = json.loads(mnemograph("graph", "--user", users[name], "--json"))
        for fact in facts:
            found = any(
                _has(t["object"], fact.keys) and _has(t["subject"], fact.about) for t in triples
            )
            in_graph.append((name, fact.said, found))
            hits = mnemograph("memories", "search", "--user", users[name],
                              fact.question, "-k", "5", "--json")  # fmt: skip
            texts = [json.loads(line)["text"] for line in hits.splitlines() if line.strip()]
            in_memory.append((name, fact.said, any(_has(t, fact.keys) for t in texts)))

    # 4. A single-valued fact changes: the new value is answered, the old one kept as history.
    mover = users[MOVER]
    mnemograph("chat", "--user", mover, "--thread", f"{mover}-a",
               "-m", "I moved from Porto to Valencia last week.")  # fmt: skip
    moved_reply = mnemograph("chat", "--user", mover, "--thread", f"{mover}-c",
                             "-m", "Which city do I live in now?")  # fmt: skip
    history = json.loads(mnemograph("graph", "--user", mover, "--json", "--history"))
    lives = [f for f in history if f["predicate"] == "lives_in" and f["subject"] == "user"]
    old = [f for f in lives if OLD_CITY in f["object"]]
    new = [f for f in lives if NEW_CITY in f["object"]]

    def rate(rows: list[tuple[str, str, bool]]) -> float:
        return round(sum(ok for *_, ok in rows) / len(rows), 3)

    figures.update(
        answers=rate(answers),
        graph=rate(in_graph),
        memories=rate(in_memory),
        update_answer=_has(moved_reply, (NEW_CITY,)),
        update_old_invalidated=bool(old) and all(f.get("invalid_at") for f in old),
        update_new_current=bool(new) and all(not f.get("invalid_at") for f in new),
        missed_answers=[q for _, q, ok in answers if not ok],
        missed_graph=[s for _, s, ok in in_graph if not ok],
        missed_memories=[s for _, s, ok in in_memory if not ok],
        first_chat_s=round(mnemograph.chats[0][0], 1),
        chat_p50_s=round(sorted(c for c, _ in mnemograph.chats)[len(mnemograph.chats) // 2], 1),
        memory_notices=sum("note:" in err for _, err in mnemograph.chats),
        total_s=round(time.monotonic() - t0, 1),
    )
    request.config.stash.setdefault(REPORT, []).append(("real model acceptance", figures))
    assert figures["answers"] >= 0.9, figures
    assert figures["graph"] >= 0.8, figures
    assert figures["memories"] >= 0.8, figures
    assert figures["update_answer"], (moved_reply, figures)
    assert figures["update_old_invalidated"] and figures["update_new_current"], (lives, figures)


async def test_openai_and_mcp_doors_remember_with_the_real_model(
    user_env: dict[str, str], request: pytest.FixtureRequest
) -> None:
    """The two newest doors, each with its users' official client, on the packaged model in
    a separate ``mnemograph serve`` process: a fact told through ``/v1/chat/completions``
    (streamed) reaches memory and the graph, the MCP tools read it back, and a new thread
    asked through ``/v1`` answers with it."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from openai import AsyncOpenAI

    run = uuid.uuid4().hex[:6]
    created = Cli(user_env)("users", "create", f"doors-{run}")
    key = next(line.split(": ", 1)[1] for line in created.splitlines() if "api_key" in line)
    log = Path(user_env["MNEMOGRAPH_DATA_DIR"]) / f"serve-{run}.log"
    figures: dict[str, Any] = {}
    try:
        async with serve_process(user_env, log, start_s=300) as base:
            client = AsyncOpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=600)
            t0 = time.monotonic()
            stream = await client.chat.completions.create(
                model="mnemograph", stream=True, extra_headers={"X-Thread-Id": f"doors-{run}-a"},
                messages=[{"role": "user", "content": "I live in Porto."}],
            )  # fmt: skip
            told = "".join([p.choices[0].delta.content or "" async for p in stream if p.choices])
            figures["openai_stream_s"] = round(time.monotonic() - t0, 1)
            assert told.strip(), "the streamed reply was empty"

            # The memory work runs after the reply; the MCP tools see it once it lands.
            question = "Which city do I live in?"
            mcp_http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=120)
            transport = streamable_http_client(f"{base}/mcp", http_client=mcp_http)
            async with mcp_http, Client(transport) as mcp:
                t0 = time.monotonic()
                found: list[dict[str, Any]] = []
                while time.monotonic() - t0 < 600:
                    result = await mcp.call_tool("search_memories", {"query": question})
                    found = (result.structured_content or {}).get("memories", [])
                    facts = (await mcp.call_tool("current_facts", {})).structured_content or {}
                    if any(_has(m["text"], ("porto",)) for m in found) and any(
                        _has(f["object"], ("porto",)) for f in facts.get("facts", [])
                    ):
                        break
                    await asyncio.sleep(3)
                figures["memory_and_fact_s"] = round(time.monotonic() - t0, 1)
                assert any(_has(m["text"], ("porto",)) for m in found), found
                recall = await mcp.call_tool("recall", {"query": question})
                recalled = recall.structured_content or {}
                lines = recalled.get("memories", []) + recalled.get("facts", [])
                assert any(_has(r["text"], ("porto",)) for r in lines), recalled

            t0 = time.monotonic()
            answer = await client.chat.completions.create(
                model="mnemograph", extra_headers={"X-Thread-Id": f"doors-{run}-b"},
                messages=[{"role": "user", "content": question}],
            )  # fmt: skip
            figures["openai_answer_s"] = round(time.monotonic() - t0, 1)
            reply = answer.choices[0].message.content or ""
            figures["openai_answer"] = reply[:200]
            assert answer.usage is not None and answer.usage.total_tokens > 0
            assert _has(reply, ("porto",)), reply
    finally:
        report = request.config.stash.setdefault(REPORT, [])
        report.append(("real model: OpenAI + MCP doors", figures))
