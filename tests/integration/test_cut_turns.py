"""A client that leaves a streamed turn before its reply cuts the turn, and a cut turn is
rolled back exactly like a failed one: the thread keeps no trace of the question, and the
next turn answers only its own message (issue 16 item 7).

Real HTTP clients against the production app under uvicorn; the model hangs on the cut
question's reply (``tests.hang``) until the turn is cancelled, so the cut always lands
before the reply; or, in process, the cut lands at every moment of the turn's start.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.messages import HumanMessage
from openai import AsyncOpenAI

from mnemograph.runner import TurnRunner
from mnemograph.services import Services
from stores.ids import thread_key
from tests.fakes import ScriptedChatModel
from tests.hang import hang_at
from tests.integration.test_background import gated_memory_model
from tests.servers import new_key, serve
from tests.threads import stored_messages

CUT = "HANG what was my question?"


@pytest.fixture(scope="module")
async def base(services: Services) -> AsyncIterator[str]:
    async with serve(services) as url:
        yield url


async def _until(marker: Path) -> None:
    """Until the hanging model call is under way (it touches ``marker``)."""
    for _ in range(600):
        if await asyncio.to_thread(marker.exists):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the model was never called: {marker}")


async def _read_until(response: httpx.Response, mark: Path) -> None:
    """Read the stream (leaving its iterator would close the connection) until the model
    is answering the question, then stop: the caller closes the connection."""

    async def read() -> None:
        async for _ in response.aiter_lines():
            pass

    reading = asyncio.create_task(read())
    await _until(mark)
    assert not reading.done(), "the stream ended before the reply"
    reading.cancel()
    await asyncio.wait({reading})


Cut = Callable[[httpx.AsyncClient, str, str, Path], Coroutine[Any, Any, None]]


async def _langserve(path: str, client: httpx.AsyncClient, key: str, tid: str, mark: Path) -> None:
    body = {"input": {"messages": [{"type": "human", "content": CUT}]},
            "config": {"configurable": {"thread_id": tid}}}  # fmt: skip
    async with client.stream("POST", path, json=body) as response:
        assert response.status_code == 200
        await _read_until(response, mark)
    # leaving the block closes the connection: the client is gone, no reply was sent


async def _agent_stream(client: httpx.AsyncClient, key: str, tid: str, mark: Path) -> None:
    await _langserve("/agent/stream", client, key, tid, mark)


async def _agent_stream_events(client: httpx.AsyncClient, key: str, tid: str, mark: Path) -> None:
    await _langserve("/agent/stream_events", client, key, tid, mark)


async def _protocol_stream(client: httpx.AsyncClient, key: str, tid: str, mark: Path) -> None:
    body = {"assistant_id": "mnemograph", "if_not_exists": "create",
            "stream_mode": ["messages-tuple", "values"],
            "input": {"messages": [{"role": "user", "content": CUT}]}}  # fmt: skip
    path = f"/threads/{tid}/runs/stream"
    async with client.stream("POST", path, json=body, headers={"X-Api-Key": key}) as response:
        assert response.status_code == 200
        await _read_until(response, mark)


async def _openai_stream(client: httpx.AsyncClient, key: str, tid: str, mark: Path) -> None:
    """The official client, streaming; it gives up before the first token arrives."""
    url = str(client.base_url).rstrip("/")
    oai = AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)

    async def ask() -> None:
        stream = await oai.chat.completions.create(
            model="mnemograph", stream=True, messages=[{"role": "user", "content": CUT}],
            extra_headers={"X-Thread-Id": tid},
        )  # fmt: skip
        async for _ in stream:
            pass

    asking = asyncio.create_task(ask())
    await _until(mark)
    asking.cancel()  # the client goes away; the connection is closed
    await asyncio.wait({asking})
    await oai.close()


DOORS: dict[str, Cut] = {
    "langserve-stream": _agent_stream,
    "langserve-stream_events": _agent_stream_events,
    "agent-protocol": _protocol_stream,
    "openai": _openai_stream,
}


@pytest.mark.parametrize("door", list(DOORS))
async def test_a_turn_cut_before_its_reply_leaves_no_trace(
    door: str, base: str, services: Services, tmp_path: Path
) -> None:
    model = ScriptedChatModel(hang=hang_at("reply", tmp_path))
    services.set_chat_model(model)
    user, key = await new_key(services)
    tid = str(uuid.uuid4())
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
        await DOORS[door](client, key, tid, tmp_path / "reply")
        # The next turn queues behind the cut one (the thread lock), so it sees its rollback.
        body = {"input": {"messages": [{"type": "human", "content": "I like green tea"}]},
                "config": {"configurable": {"thread_id": tid}}}  # fmt: skip
        answer = await asyncio.wait_for(client.post("/agent/invoke", json=body), 60)
    assert answer.status_code == 200, answer.text
    said = [m["content"] for m in answer.json()["output"]["messages"]]
    assert said == ["I like green tea", "echo: I like green tea"], said
    asked = [[m.text for m in p if isinstance(m, HumanMessage)] for p in model.chats]
    assert asked[-1] == ["I like green tea"], asked  # the reply's prompt held no old question
    assert await stored_messages(services, user, tid) == [
        ("human", "I like green tea"), ("ai", "echo: I like green tea")]  # fmt: skip
    config: Any = {"configurable": {"thread_id": thread_key(user, tid)}}
    for _ in range(600):  # the memory work of that turn goes on after its answer
        if not (await services.state_graph().aget_state(config)).next:
            break
        await asyncio.sleep(0.05)
    assert await stored_messages(services, user, tid) == [
        ("human", "I like green tea"), ("ai", "echo: I like green tea")]  # fmt: skip


async def test_a_cut_at_any_moment_before_the_reply_leaves_no_trace(
    services: Services, uid: str
) -> None:
    """The consumer of a streamed turn goes away at every millisecond of the turn's first
    30 (thread claim, input checkpoint, memory recall), before a slow reply: each cut turn
    is rolled back completely, whatever write it interrupted."""
    services.set_chat_model(ScriptedChatModel(delay_s=0.5))
    runner = TurnRunner(services)
    kept = []
    for ms in range(0, 30):
        tid = f"cut-{uuid.uuid4().hex[:8]}"

        async def consume(tid: str = tid) -> None:
            async for _ in runner.stream(uid, tid, [{"type": "human", "content": CUT}]):
                pass

        consuming = asyncio.create_task(consume())
        await asyncio.sleep(ms / 1000)
        consuming.cancel()
        await asyncio.wait({consuming})
        async with runner.hold(thread_key(uid, tid)):  # the cut turn let go: rolled back
            if stored := await stored_messages(services, uid, tid):
                kept.append((ms, stored))
    assert kept == []


async def _drain(response: httpx.Response) -> None:
    async for _ in response.aiter_lines():
        pass


async def test_leaving_a_stream_after_the_reply_cancels_no_memory_work(
    services: Services, uid: str
) -> None:
    """The consumer takes the reply and goes away while memory extraction is still running:
    the turn finishes in the background, the memory is written and nothing stays owed."""
    gate = asyncio.Event()
    services.set_chat_model(gated_memory_model(gate))
    runner = TurnRunner(services)
    tid = f"left-{uuid.uuid4().hex[:8]}"
    stream: Any = runner.stream(
        uid, tid, [{"type": "human", "content": "keeps bees"}], stream_mode=["values", "tasks"]
    )
    async for mode, chunk in stream:
        if mode == "tasks" and chunk.get("name") == "write_memory" and "input" in chunk:
            break  # the reply is durable and memory work has begun: the client leaves
    await stream.aclose()
    assert services.memory is not None
    assert await services.memory.list(uid) == []  # the extraction waits at the gate
    gate.set()
    await asyncio.wait_for(runner.drain(), 30)
    assert [i.text for i in await services.memory.list(uid)] == ["User keeps bees"]
    assert services.threads is not None
    assert thread_key(uid, tid) not in [t for t, _ in await services.threads.unfinished()]
    assert await stored_messages(services, uid, tid) == [
        ("human", "keeps bees"), ("ai", "echo: keeps bees")]  # fmt: skip
