"""The legacy LangServe door (`/agent/*`) through LangServe's own client, `RemoteRunnable`:
invoke and stream on a thread, the key deciding the user, and another user's key refused
on the same thread."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from langserve import RemoteRunnable

from mnemograph.services import Services
from tests.servers import new_key, serve


@pytest.fixture(scope="module")
async def base(services: Services) -> AsyncIterator[str]:
    async with serve(services) as url:
        yield url


def agent(base: str, key: str) -> RemoteRunnable:
    return RemoteRunnable(f"{base}/agent/", headers={"Authorization": f"Bearer {key}"})


async def test_remote_runnable_invokes_and_streams_a_thread(base: str, services: Services) -> None:
    user, key = await new_key(services)
    thread = f"ls-{uuid.uuid4().hex[:8]}"
    config = {"configurable": {"thread_id": thread}}
    first = await agent(base, key).ainvoke(
        {"messages": [{"type": "human", "content": "My cat is called Miso"}]}, config
    )
    assert first["messages"][-1].type == "ai"
    chunks = [
        c
        async for c in agent(base, key).astream(
            {"messages": [{"type": "human", "content": "What is my cat called?"}]}, config
        )
    ]
    assert chunks, "the stream sent nothing"
    info = await services.thread_registry().get(thread, user)
    assert info.user_id == user
    values = await services.state_graph().aget_state({"configurable": {"thread_id": info.key}})
    said = [m.text for m in values.values["messages"] if m.type == "human"]
    assert said == ["My cat is called Miso", "What is my cat called?"]

    # Thread ids are per user: another key with the same config talks in a thread of its own.
    _, other = await new_key(services)
    theirs = await agent(base, other).ainvoke(
        {"messages": [{"type": "human", "content": "hi"}]}, config
    )
    assert [m.text for m in theirs["messages"]] == ["hi", "echo: hi"]
