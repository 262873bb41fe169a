"""Recall started ahead of the graph (``graph.recall.RecallAhead``) and the ``load_memory``
node that uses it: the node takes the early result only for the same message, and a store
that fails still degrades recall, never the turn."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from graph.context import Context
from graph.ports import Recalled
from graph.recall import RecallAhead, recall
from nodes.load_memory import load_memory


@dataclass
class _Memory:
    """A memory port that counts its calls and answers with the text it was asked for."""

    calls: list[str] = field(default_factory=list)
    fail: bool = False

    async def recall(self, user_id: str, text: str, **_: Any) -> list[Recalled]:
        self.calls.append(text)
        if self.fail:
            raise RuntimeError("store down")
        return [Recalled(kind="fact", text=f"{user_id}: {text}", score=0.123456, source="m")]


@dataclass
class _Ports:
    memory: _Memory
    embeddings: Any = None
    facts: Any = None
    redact: Any = None


@dataclass
class _Runtime:
    context: Context


def _state(text: str) -> dict[str, Any]:
    return {"messages": [HumanMessage("earlier"), AIMessage("ok"), HumanMessage(text)]}


async def test_the_node_uses_recall_started_ahead_for_the_same_message() -> None:
    memory = _Memory()
    ports = _Ports(memory)
    ctx = Context(user_id="ana", services=ports)
    ctx.recall_ahead = RecallAhead.start(ports, ctx, "where do I live?")  # type: ignore[arg-type]
    out = await load_memory(_state("where do I live?"), _Runtime(ctx))  # type: ignore[arg-type]
    assert memory.calls == ["where do I live?"]  # recalled once, ahead
    assert out["recalling"] == [
        {"kind": "fact", "text": "ana: where do I live?", "score": 0.1235, "source": "m"}
    ]


async def test_recall_ahead_for_another_message_is_not_used() -> None:
    memory = _Memory()
    ports = _Ports(memory)
    ctx = Context(user_id="ana", services=ports)
    ahead = RecallAhead.start(ports, ctx, "something else")  # type: ignore[arg-type]
    ctx.recall_ahead = ahead
    out = await load_memory(_state("where do I live?"), _Runtime(ctx))  # type: ignore[arg-type]
    assert out["recalling"][0]["text"] == "ana: where do I live?"
    assert "where do I live?" in memory.calls


async def test_a_cancelled_recall_ahead_is_replaced_by_recall_in_the_node() -> None:
    memory = _Memory()
    ports = _Ports(memory)
    ctx = Context(user_id="ana", services=ports)
    ahead = RecallAhead.start(ports, ctx, "where do I live?")  # type: ignore[arg-type]
    ahead.cancel()
    await asyncio.sleep(0)
    ctx.recall_ahead = ahead
    out = await load_memory(_state("where do I live?"), _Runtime(ctx))  # type: ignore[arg-type]
    assert [r["text"] for r in out["recalling"]] == ["ana: where do I live?"]


async def test_a_failing_store_degrades_recall_not_the_turn(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ports = _Ports(_Memory(fail=True))
    ctx = Context(user_id="ana", services=ports)
    assert await recall(ports, ctx, "hello") == []  # type: ignore[arg-type]
    assert "recall failed in memory" in caplog.text


async def test_cancelling_recall_ahead_stops_the_store_call() -> None:
    started, release = asyncio.Event(), asyncio.Event()

    class Slow(_Memory):
        async def recall(self, user_id: str, text: str, **_: Any) -> list[Recalled]:
            started.set()
            await release.wait()
            return []

    ports = _Ports(Slow())
    ctx = Context(user_id="ana", services=ports)
    ahead = RecallAhead.start(ports, ctx, "hi")  # type: ignore[arg-type]
    await started.wait()
    ahead.cancel()
    with pytest.raises(asyncio.CancelledError):
        await ahead.result
