"""The turn runner starts recall before the graph runs (``graph.recall.RecallAhead``), and the
``load_memory`` node answers from it: the reply's prompt carries what was recalled although
the node itself is not allowed to recall here."""

from __future__ import annotations

from typing import Any

import pytest

import nodes.load_memory
from mnemograph.runner import TurnRunner
from mnemograph.services import Services
from tests.fakes import recording_model


async def test_the_reply_uses_recall_the_runner_started_ahead(
    services: Services, uid: str, tid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = recording_model()
    services.set_chat_model(model)
    assert services.memory is not None
    await services.memory.add(uid, "User keeps bees on a roof in Porto", kind="fact")

    async def refuse(*_: Any, **__: Any) -> Any:
        raise AssertionError("load_memory recalled although recall was started ahead")

    monkeypatch.setattr(nodes.load_memory, "recall", refuse)
    runner = TurnRunner(services)
    result = await runner.invoke(uid, tid, [{"type": "human", "content": "where are my bees?"}])
    await runner.drain()
    assert result["messages"][-1].text == "reply 0"
    reply_prompt = " ".join(m.text for m in model.chats[0])
    assert "bees on a roof in Porto" in reply_prompt
