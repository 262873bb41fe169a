"""Retention: `mnemograph prune` drops old checkpoints without changing any thread's state,
keeps what delta-channel replay needs, expires unimportant unseen memories, and is safe while
turns run."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mnemograph.retention import parse_age, prune
from mnemograph.runner import TurnRunner
from mnemograph.services import Services
from stores.errors import InvalidInput
from stores.ids import thread_key
from tests.conftest import cli_env

ROOT = Path(__file__).resolve().parents[2]
KNOBS = {"strategy": "summary_buffer", "summary_trigger_tokens": 60, "buffer_tokens": 30}


async def _count(services: Services, table: str, thread: str) -> int:
    """Rows of ``table`` for the thread stored under key ``thread``."""
    assert services.pool is not None
    async with services.pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT count(*) AS n FROM {table} WHERE thread_id = %s", (thread,)
        )
        row = await cur.fetchone()
    return int(row["n"]) if row else 0


async def _state(runner: TurnRunner, thread: str) -> dict[str, Any]:
    snap = await runner.graph.aget_state({"configurable": {"thread_id": thread}})
    values = snap.values
    return {
        "summary": values.get("summary"),
        "turn": values.get("turn"),
        "messages": [(m.id, m.type, m.text) for m in values.get("messages", [])],
        "next": snap.next,
    }


async def _drain(runner: TurnRunner) -> None:
    drain = getattr(runner, "drain", None)
    if drain is not None:
        await drain()


async def _cli(args: list[str], pg_url: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "mnemograph.cli", *args],
        env=cli_env(pg_url, data_dir), cwd=ROOT, capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def test_parse_age() -> None:
    assert parse_age("30d") == timedelta(days=30)
    assert parse_age("12h") == timedelta(hours=12)
    assert parse_age("0s") == timedelta(0)
    for bad in ("30", "d", "-1d", "30 days"):
        with pytest.raises(InvalidInput):
            parse_age(bad)


async def test_prune_keeps_state_identical(services: Services, uid: str) -> None:
    runner = TurnRunner(services)
    # Enough turns for the messages DeltaChannel to take a snapshot (every 50 updates).
    short, long_ = f"rs-{uuid.uuid4().hex[:8]}", f"rl-{uuid.uuid4().hex[:8]}"
    await runner.invoke(uid, short, [{"type": "human", "content": "just one turn"}])
    for i in range(24):
        await runner.invoke(uid, long_, [{"type": "human", "content": f"fact {i} on kiwis"}],
                            **KNOBS)  # fmt: skip
    await _drain(runner)
    before = {t: await _state(runner, thread_key(uid, t)) for t in (short, long_)}
    rows_before = await _count(services, "checkpoints", thread_key(uid, long_))
    blobs_before = await _count(services, "checkpoint_blobs", thread_key(uid, long_))
    writes_before = await _count(services, "checkpoint_writes", thread_key(uid, long_))

    # Nothing is old yet: a 30-day prune removes nothing.
    report = await prune(services, timedelta(days=30))
    assert report.checkpoints == 0
    assert await _count(services, "checkpoints", thread_key(uid, long_)) == rows_before

    report = await prune(services, timedelta(0))
    print("prune:", report.counts())
    assert report.checkpoints > 0 and report.writes > 0
    after_rows = await _count(services, "checkpoints", thread_key(uid, long_))
    assert 1 <= after_rows < rows_before
    assert await _count(services, "checkpoint_writes", thread_key(uid, long_)) < writes_before
    assert await _count(services, "checkpoint_blobs", thread_key(uid, long_)) <= blobs_before
    assert await _count(services, "checkpoints", thread_key(uid, short)) >= 1
    for thread, state in before.items():
        assert await _state(runner, thread_key(uid, thread)) == state, (
            thread
        )  # identical after pruning

    # The pruned thread carries on normally and its history is intact.
    await runner.invoke(uid, long_, [{"type": "human", "content": "still remember kiwis?"}],
                        **KNOBS)  # fmt: skip
    await _drain(runner)
    state = await _state(runner, thread_key(uid, long_))
    assert state["messages"][: len(before[long_]["messages"])] == before[long_]["messages"] or (
        state["turn"] == before[long_]["turn"] + 1
    )
    assert state["messages"][-1][2] == "echo: still remember kiwis?"
    # A second prune right away is harmless and the state still matches.
    again = await _state(runner, thread_key(uid, long_))
    await prune(services, timedelta(0))
    assert await _state(runner, thread_key(uid, long_)) == again


async def test_prune_while_serving(services: Services, uid: str) -> None:
    runner = TurnRunner(services)
    threads = [f"rp-{uuid.uuid4().hex[:8]}" for _ in range(3)]

    async def chat(thread: str) -> None:
        for i in range(6):
            await runner.invoke(uid, thread, [{"type": "human", "content": f"turn {i}"}])

    async def pruner() -> int:
        total = 0
        for _ in range(6):
            total += (await prune(services, timedelta(0))).checkpoints
            await asyncio.sleep(0)
        return total

    results = await asyncio.gather(*(chat(t) for t in threads), pruner())
    await _drain(runner)
    assert isinstance(results[-1], int)
    for thread in threads:
        state = await _state(runner, thread_key(uid, thread))
        assert [m[2] for m in state["messages"] if m[1] == "human"] == [
            f"turn {i}" for i in range(6)
        ]
        assert state["turn"] == 6 and not state["next"]


async def test_expired_memories_and_cli(
    services: Services, uid: str, pg_url: str, data_dir: Path
) -> None:
    assert services.memory is not None
    old = datetime.now(UTC) - timedelta(days=40)
    keep_new = await services.memory.add(uid, "The user likes fresh mangoes", importance=0.5)
    keep_vital = await services.memory.add(
        uid, "The user is allergic to penicillin", importance=0.95
    )
    stale = await services.memory.add(uid, "The user once tried a durian", importance=0.3)
    assert services.pool is not None
    async with services.pool.connection() as conn:
        for item in (keep_vital, stale):
            await conn.execute(
                "UPDATE store SET value = jsonb_set(value, '{last_seen_at}', to_jsonb(%s::text)) "
                "WHERE key = %s",
                (old.isoformat(), item.id),
            )
    ids_before = {m.id for m in await services.memory.list(uid)}
    assert {keep_new.id, keep_vital.id, stale.id} <= ids_before

    res = await _cli(["prune", "--older-than", "30d", "--json"], pg_url, data_dir)
    assert res.returncode == 0, res.stderr
    counts = json.loads(res.stdout)
    assert counts["memories"] >= 1 and "checkpoints" in counts
    ids = {m.id for m in await services.memory.list(uid)}
    assert stale.id not in ids
    assert {keep_new.id, keep_vital.id} <= ids
    async with services.pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) AS n FROM mnemo_memory_index WHERE key = %s",
                                 (stale.id,))  # fmt: skip
        assert (await cur.fetchone())["n"] == 0  # type: ignore[index]

    bad = await _cli(["prune", "--older-than", "soon"], pg_url, data_dir)
    assert bad.returncode == 2 and "invalid age" in bad.stderr
