"""ChatOpenAI, built from settings, against a scripted OpenAI-compatible endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI

from graph.builder import build_graph
from graph.context import Context
from mnemograph.services import Services
from stores.models.llm import build_chat_model
from stores.settings import Settings
from tests.conftest import cli_env
from tests.openai_stub import openai_stub


async def test_turns_and_summary_over_the_wire(
    services: Services, data_dir: Path, uid: str, tid: str
) -> None:
    replies = ["Nice to meet you, Ada.", "Paris is lovely.", "SUMMARY: Ada lives in Paris.",
               "You live in Paris.", "SUMMARY: Ada lives in Paris and asked about it."]  # fmt: skip
    with openai_stub(replies) as stub:
        settings = Settings(
            data_dir=data_dir,
            model="stub-model",
            openai_base_url=stub.base_url,
            openai_api_key="sk-test-not-a-secret",  # type: ignore[arg-type]
        )
        model = build_chat_model(settings)
        assert isinstance(model, ChatOpenAI)
        services.set_chat_model(model)
        graph = build_graph(services.checkpointer, services.store)
        ctx = Context(user_id=uid, strategy="summary", services=services)
        config: Any = {"configurable": {"thread_id": tid}}
        await graph.ainvoke(
            {"messages": [HumanMessage(content="Hi, I'm Ada.")]}, config, context=ctx
        )
        await graph.ainvoke(
            {"messages": [HumanMessage(content="I live in Paris.")]}, config, context=ctx
        )
        streamed = []
        async for chunk, meta in graph.astream(
            {"messages": [HumanMessage(content="Where do I live?")]},
            config,
            context=ctx,
            stream_mode="messages",
        ):
            if meta["langgraph_node"] == "call_model":
                streamed.append(chunk.text)
    assert len(stub.requests) == 5
    # Knowledge extraction went over the wire too, as a function call.
    assert stub.tool_requests and all(r["tools"] for r in stub.tool_requests)
    assert all(r["model"] == "stub-model" for r in stub.requests)
    assert stub.headers[0]["authorization"] == "Bearer sk-test-not-a-secret"
    # The summarizer saw the first exchange; the last reply's prompt carried the summary.
    summarize_req = stub.requests[2]
    assert "Hi, I'm Ada." in summarize_req["messages"][-1]["content"]
    final_req = stub.requests[3]
    assert final_req["stream"] is True
    assert "SUMMARY: Ada lives in Paris." in final_req["messages"][0]["content"]
    assert final_req["messages"][-1] == {"role": "user", "content": "Where do I live?"}
    assert len(streamed) > 1 and "".join(streamed) == "You live in Paris."
    state = await graph.aget_state(config)
    assert state.values["summary"] == "SUMMARY: Ada lives in Paris and asked about it."
    assert "SUMMARY: Ada lives in Paris." in stub.requests[4]["messages"][-1]["content"]
    assert state.values["messages"][-1].text == "You live in Paris."


def test_cli_uses_openai_base_url(pg_url: str, data_dir: Path, uid: str, tid: str) -> None:
    import subprocess
    import sys

    with openai_stub(["Hello from the stub."]) as stub:
        env = cli_env(pg_url, data_dir, MNEMOGRAPH_MODEL="stub-model",
                      OPENAI_BASE_URL=stub.base_url, OPENAI_API_KEY="sk-cli-test")  # fmt: skip
        res = subprocess.run(
            [
                sys.executable, "-m", "mnemograph.cli",
                "chat", "--user", uid, "--thread", tid, "-m", "hi",
            ],
            env=env, capture_output=True, text=True, timeout=120,
            cwd=Path(__file__).resolve().parents[2],
        )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "Hello from the stub." in res.stdout
    assert "sk-cli-test" not in res.stdout + res.stderr
