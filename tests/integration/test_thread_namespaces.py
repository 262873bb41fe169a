"""Thread ids per user (issue 16 item 5): two users who pick the same thread id get two
threads on every door, each seeing only their own messages, and probing another user's id
answers exactly as a free id does, so ids can neither be probed nor squatted.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from openai import AsyncOpenAI

from mnemograph.services import Services
from tests.servers import new_key, serve


@pytest.fixture(scope="module")
async def base(services: Services) -> AsyncIterator[str]:
    async with serve(services) as url:
        yield url


async def _rest(http: httpx.AsyncClient, tid: str, text: str) -> list[str]:
    made = await http.post("/api/threads", json={"thread_id": tid})
    assert made.status_code == 201, made.text
    body = {"input": {"messages": [{"type": "human", "content": text}]},
            "config": {"configurable": {"thread_id": tid}}}  # fmt: skip
    said = await http.post("/agent/invoke", json=body)  # LangServe
    assert said.status_code == 200, said.text
    detail = await http.get(f"/api/threads/{tid}")
    assert detail.status_code == 200, detail.text
    return [m["content"] for m in detail.json()["messages"]]


async def _protocol(base: str, key: str, tid: str, text: str) -> list[str]:
    client = get_client(url=base, api_key=key)
    await client.threads.create(thread_id=tid)
    hi = {"messages": [{"role": "user", "content": text}]}
    await client.runs.wait(tid, "mnemograph", input=hi)
    state: Any = await client.threads.get_state(tid)
    return [m["content"] for m in state["values"]["messages"]]


async def _openai(base: str, key: str, tid: str, text: str) -> str:
    client = AsyncOpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
    out = await client.chat.completions.create(
        model="mnemograph", messages=[{"role": "user", "content": text}],
        extra_headers={"X-Thread-Id": tid},
    )  # fmt: skip
    await client.close()
    return out.choices[0].message.content or ""


async def test_the_same_thread_id_is_two_threads_on_every_door(
    base: str, services: Services
) -> None:
    _ada, ada_key = await new_key(services)
    _bob, bob_key = await new_key(services)
    shared = f"ns-{uuid.uuid4().hex[:8]}"
    free = f"ns-{uuid.uuid4().hex[:8]}"
    ada = httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {ada_key}"})
    bob = httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {bob_key}"})
    async with ada, bob:
        assert await _rest(ada, shared, "ada here") == ["ada here", "echo: ada here"]
        # Probing: Ada's id answers Bob exactly as an id nobody uses.
        taken = await bob.post("/api/threads", json={"thread_id": shared})
        unused = await bob.post("/api/threads", json={"thread_id": free})
        assert (taken.status_code, unused.status_code) == (201, 201), (taken.text, unused.text)
        assert await _rest(bob, shared, "bob here") == ["bob here", "echo: bob here"]
        assert await _rest(ada, shared, "ada again") == [
            "ada here", "echo: ada here", "ada again", "echo: ada again"]  # fmt: skip

    tid = str(uuid.uuid4())
    assert await _protocol(base, ada_key, tid, "ada proto") == ["ada proto", "echo: ada proto"]
    assert await _protocol(base, bob_key, tid, "bob proto") == ["bob proto", "echo: bob proto"]

    tid = f"oai-{uuid.uuid4().hex[:8]}"
    assert await _openai(base, ada_key, tid, "ada oai") == "echo: ada oai"
    assert await _openai(base, bob_key, tid, "bob oai") == "echo: bob oai"
