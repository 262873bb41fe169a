"""Memory and knowledge extraction through a streaming turn, against a stub that streams tool
calls the way llama.cpp's server does (name repeated in every delta, arguments split, no id).

The product streams every reply, so every model call inside the graph is made in a streaming
context; these tests fail if any structured (tool-calling) call streams.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.exceptions import OutputParserException
from langchain_openai import ChatOpenAI

from graph.structured import structured
from mnemograph.runner import TurnRunner
from mnemograph.services import Services
from nodes.write_memory import ExtractedMemories
from stores.models.llm import build_chat_model
from stores.settings import Settings
from tests.openai_stub import openai_stub

TOOL_REPLIES: dict[str, list[dict[str, Any]]] = {
    "ExtractedMemories": [
        {
            "items": [
                {"type": "fact", "text": "User's name is Ada.", "importance": 0.9},
                {"type": "fact", "text": "User lives in Paris.", "importance": 0.8},
                {"type": "fact", "text": "User works at Airbus as an engineer.",
                 "importance": 0.7},
            ]
        }
    ],
    "ExtractedTriples": [
        {
            "triples": [
                {"subject": "I", "predicate": "lives_in", "object": "Paris", "confidence": 0.9},
                {"subject": "I", "predicate": "works_at", "object": "Airbus", "confidence": 0.9},
            ]
        }
    ],
}  # fmt: skip


def _stub_settings(data_dir: Path, base_url: str) -> Settings:
    return Settings(
        data_dir=data_dir,
        model="stub-model",
        openai_base_url=base_url,
        openai_api_key="sk-test-not-a-secret",  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("style", ["llama", "openai"])
async def test_streamed_turn_writes_memories_and_triples(
    services: Services, data_dir: Path, uid: str, tid: str, style: str
) -> None:
    text = "Hi, my name is Ada. I live in Paris and I work at Airbus as an engineer."
    with openai_stub(
        ["Nice to meet you, Ada!"], tool_replies=TOOL_REPLIES, tool_style=style
    ) as stub:
        services.set_chat_model(build_chat_model(_stub_settings(data_dir, stub.base_url)))
        runner = TurnRunner(services)
        tokens: list[str] = []
        async for chunk, meta in runner.stream(
            uid, tid, [{"type": "human", "content": text}], stream_mode="messages"
        ):
            if meta.get("langgraph_node") == "call_model" and chunk.text:
                tokens.append(chunk.text)
        await runner.drain()
    # The reply itself still streams token by token...
    assert len(tokens) > 1 and "".join(tokens) == "Nice to meet you, Ada!"
    assert stub.requests[0]["stream"] is True
    # ...while both structured calls went out unstreamed, and both extractions landed.
    assert {r["tools"][0]["function"]["name"] for r in stub.tool_requests} == {
        "ExtractedMemories",
        "ExtractedTriples",
    }
    assert stub.streamed_tool_requests == 0
    assert services.memory is not None and services.graph is not None
    memories = {m.text for m in await services.memory.list(uid)}
    assert {"User lives in Paris.", "User works at Airbus as an engineer."} <= memories
    facts = {(f["subject"], f["predicate"], f["object"])
             for f in await services.graph.current_facts(uid)}  # fmt: skip
    assert ("user", "lives_in", "paris") in facts
    assert ("user", "works_at", "airbus") in facts


async def test_the_stub_reproduces_llama_cpp_streamed_tool_calls(data_dir: Path) -> None:
    """Proof that the stub is as hostile as the real server: a model that does stream its
    tool calls gets the concatenated name ("ExtractedMemoriesExtractedMemories…") and fails
    to parse, exactly the failure users saw on llama.cpp."""
    twice = {name: calls * 2 for name, calls in TOOL_REPLIES.items()}
    with openai_stub([], tool_replies=twice) as stub:
        streaming = ChatOpenAI(
            model="stub-model", base_url=stub.base_url, api_key="sk-test",  # type: ignore[arg-type]
            streaming=True,
        )  # fmt: skip
        bound = streaming.with_structured_output(ExtractedMemories, method="function_calling")
        with pytest.raises(OutputParserException, match="ExtractedMemoriesExtractedMemories"):
            await bound.ainvoke("Ada lives in Paris")
        # The project's structured-output helper never streams the call, whatever the model.
        result = await structured(streaming, ExtractedMemories).ainvoke("Ada lives in Paris")
    assert isinstance(result, ExtractedMemories)
    assert len(result.items) == 3
    assert stub.streamed_tool_requests == 1
