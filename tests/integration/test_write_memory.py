"""write_memory: structured extraction after the reply, stored per user, recalled from any of
the user's threads and from no one else's; failures never reach the turn."""

from __future__ import annotations

import uuid
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.runtime import Runtime

from graph.context import Context
from mnemograph.services import Services
from nodes.load_memory import load_memory
from nodes.write_memory import write_memory
from stores.memory.store import MemoryStore
from stores.settings import Settings
from tests.fakes import ScriptedChatModel


def _model(*replies: Any) -> ScriptedChatModel:
    """Answers memory extraction with ``replies`` in order (an exception entry is raised)."""
    return ScriptedChatModel(tool_replies={"ExtractedMemories": list(replies)})


def _uid() -> str:
    return f"u-{uuid.uuid4().hex[:10]}"


def _runtime(user: str, store: MemoryStore, model: ScriptedChatModel) -> Runtime[Context]:
    services = Services(settings=Settings(), memory=store)
    services.set_chat_model(model)
    return Runtime(context=Context(user_id=user, services=services))


def _exchange(text: str, n: int = 1) -> dict[str, Any]:
    return {
        "messages": [
            HumanMessage(content=text, id=f"h{n}"),
            AIMessage(content="Noted!", id=f"a{n}"),
        ]
    }


def _item(text: str, *, type_: str = "fact", importance: float = 0.6, src: str = "h1") -> Any:
    return {"type": type_, "text": text, "importance": importance, "source_ids": [src]}


async def test_extracts_and_recalls_across_threads_not_users(memory_store: MemoryStore) -> None:
    alice, bob = _uid(), _uid()
    model = _model(
        {
            "items": [
                _item("User's dog is a beagle called Rex", importance=0.8),
                _item("User prefers morning walks", type_="preference"),
            ]
        }
    )
    update = await write_memory(
        _exchange("My beagle Rex loves morning walks"), _runtime(alice, memory_store, model)
    )
    items = await memory_store.list(alice)
    by_text = {i.text: i.id for i in items}
    assert update == {
        "extracted": {
            "turn": 0,
            "memories": [
                {"kind": "fact", "text": "User's dog is a beagle called Rex", "outcome": "added",
                 "id": by_text["User's dog is a beagle called Rex"]},
                {"kind": "preference", "text": "User prefers morning walks", "outcome": "added",
                 "id": by_text["User prefers morning walks"]},
            ],
        }
    }  # fmt: skip
    assert {i.text for i in items} == {
        "User's dog is a beagle called Rex",
        "User prefers morning walks",
    }
    assert {i.kind for i in items} == {"fact", "preference"}
    assert all(i.provenance == ["h1"] and i.event_at is not None for i in items)

    # A new thread of the same user: load_memory recalls it; another user gets nothing.
    question = {"messages": [HumanMessage(content="What's my dog's name?", id="h9")]}
    recalled = (await load_memory(question, _runtime(alice, memory_store, model)))["recalling"]
    assert recalled and "Rex" in recalled[0]["text"] and recalled[0]["kind"] == "memory"
    other = (await load_memory(question, _runtime(bob, memory_store, model)))["recalling"]
    assert other == []


async def test_repeated_memory_is_merged(memory_store: MemoryStore) -> None:
    user = _uid()
    model = _model(
        {"items": [_item("User is vegetarian", importance=0.5)]},
        {"items": [_item("User is vegetarian", importance=0.5, src="h2")]},
    )
    runtime = _runtime(user, memory_store, model)
    first = await write_memory(_exchange("I'm vegetarian"), runtime)
    again = await write_memory(_exchange("As I said, no meat for me", n=2), runtime)
    items = await memory_store.list(user)
    assert len(items) == 1
    assert [m["outcome"] for m in first["extracted"]["memories"]] == ["added"]
    assert [(m["outcome"], m["id"]) for m in again["extracted"]["memories"]] == [
        ("merged", items[0].id)
    ]
    assert items[0].seen_count == 2 and items[0].importance > 0.5
    assert items[0].provenance == ["h1", "h2"]


async def test_items_sourced_only_from_the_assistant_are_dropped(
    memory_store: MemoryStore,
) -> None:
    user = _uid()
    model = _model(
        {
            "items": [
                _item("User owns a yacht", src="a1"),
                _item("User lives in Porto", src="h1"),
            ]
        }
    )
    update = await write_memory(_exchange("I live in Porto"), _runtime(user, memory_store, model))
    assert [i.text for i in await memory_store.list(user)] == ["User lives in Porto"]
    memories = update["extracted"]["memories"]
    assert [(m["text"], m["outcome"], m.get("reason")) for m in memories] == [
        ("User lives in Porto", "added", None),
        ("User owns a yacht", "dropped", "sourced only from assistant messages"),
    ]


async def test_failures_never_reach_the_turn(memory_store: MemoryStore) -> None:
    user = _uid()
    broken = _model(RuntimeError("model down"))
    update = await write_memory(_exchange("I love jazz"), _runtime(user, memory_store, broken))
    assert update == {
        "extracted": {
            "turn": 0, "memories": [], "skipped": {"memories": "extraction failed: RuntimeError"}
        }
    }  # fmt: skip
    garbage = _model({"items": [{"type": "gossip", "text": 3}]})
    update = await write_memory(_exchange("I love jazz"), _runtime(user, memory_store, garbage))
    assert update["extracted"]["memories"] == []
    assert update["extracted"]["skipped"]["memories"].startswith("extraction failed: ")
    assert await memory_store.count(user) == 0
    # Nothing to extract from: no call to the model at all.
    idle = _model()
    assert await write_memory({"messages": []}, _runtime(user, memory_store, idle)) == {}
    assert idle.calls == []


async def test_no_memory_store_configured_is_a_no_op() -> None:
    services = Services(settings=Settings())
    model = _model()
    services.set_chat_model(model)
    runtime: Runtime[Context] = Runtime(context=Context(user_id=_uid(), services=services))
    update = await write_memory(_exchange("I love jazz"), runtime)
    assert update == {
        "extracted": {
            "turn": 0,
            "memories": [],
            "skipped": {"memories": "no long-term memory in this process"},
        }
    }  # fmt: skip
    assert model.calls == []
