"""The OpenAI-compatible door through the official ``openai`` client, sync and async,
streamed and not: threads from a header or metadata, resent histories, 409 on a history
that contradicts the thread, OpenAI-shaped errors, two users, and a thread resumed by a
second server process on the same database."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from mnemograph.services import Services
from mnemograph.web.routes.openai_compat.wire import default_thread
from tests.conftest import cli_env
from tests.fakes import ScriptedChatModel
from tests.servers import new_key, serve, serve_process
from tests.threads import stored_messages


@pytest.fixture(scope="module")
async def base(services: Services) -> AsyncIterator[str]:
    async with serve(services) as url:
        yield url


def user_msg(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def bot_msg(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


async def test_sync_and_async_clients_stream_and_not(base: str, services: Services) -> None:
    user, key = await new_key(services)
    tid = f"oai-{uuid.uuid4().hex[:8]}"
    sync = OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
    # The sync client blocks its thread; the server shares this test's event loop.
    models = await asyncio.to_thread(sync.models.list)
    assert [m.id for m in models.data] == ["mnemograph"]

    first = await asyncio.to_thread(
        sync.chat.completions.create,
        model="mnemograph",
        messages=[{"role": "system", "content": "be brief"}, user_msg("I like green tea")],
        extra_headers={"X-Thread-Id": tid},
    )
    reply = first.choices[0].message.content
    assert reply == "echo: I like green tea"
    assert first.choices[0].finish_reason == "stop"
    assert first.usage is not None and first.usage.completion_tokens > 0
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens

    # The client resends the whole conversation; only the trailing user message is new.
    history = [user_msg("I like green tea"), bot_msg(reply), user_msg("and oolong")]
    pieces, usage = [], None
    stream = await asyncio.to_thread(
        sync.chat.completions.create, model="mnemograph", messages=history, stream=True,
        stream_options={"include_usage": True}, extra_headers={"X-Thread-Id": tid},
    )  # fmt: skip
    for part in await asyncio.to_thread(list, stream):
        if part.choices:
            pieces.append(part.choices[0].delta.content or "")
        if part.usage is not None:
            usage = part.usage
    assert "".join(pieces) == "echo: and oolong"
    assert usage is not None and usage.completion_tokens > 0

    aclient = AsyncOpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
    history += [bot_msg("echo: and oolong"), user_msg("what do I drink?")]
    third = await aclient.chat.completions.create(
        model="mnemograph", messages=history, metadata={"thread_id": tid}
    )
    assert third.choices[0].message.content == "echo: what do I drink?"
    history += [bot_msg("echo: what do I drink?"), user_msg("thanks")]
    astream = await aclient.chat.completions.create(
        model="mnemograph", messages=history, stream=True, metadata={"thread_id": tid}
    )
    text = "".join([p.choices[0].delta.content or "" async for p in astream if p.choices])
    assert text == "echo: thanks"

    # Four turns, each stored once, in order; the system message was not planted.
    assert await stored_messages(services, user, tid) == [
        ("human", "I like green tea"), ("ai", "echo: I like green tea"),
        ("human", "and oolong"), ("ai", "echo: and oolong"),
        ("human", "what do I drink?"), ("ai", "echo: what do I drink?"),
        ("human", "thanks"), ("ai", "echo: thanks"),
    ]  # fmt: skip


async def test_a_history_that_contradicts_the_thread_is_409(base: str, services: Services) -> None:
    user, key = await new_key(services)
    tid = f"oai-{uuid.uuid4().hex[:8]}"
    client = AsyncOpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
    headers = {"X-Thread-Id": tid}
    await client.chat.completions.create(
        model="mnemograph", messages=[user_msg("my name is Ada")], extra_headers=headers
    )
    before = await stored_messages(services, user, tid)
    edited = [user_msg("my name is Ada"), bot_msg("Hello Grace!"), user_msg("who am I?")]
    for stream in (False, True):
        with pytest.raises(openai.ConflictError) as caught:
            await client.chat.completions.create(
                model="mnemograph", messages=edited, stream=stream, extra_headers=headers
            )
        assert caught.value.status_code == 409
        assert caught.value.code == "history_conflict"
        assert "differs from the stored thread" in caught.value.message
    # History for a thread that holds none is not merged either.
    with pytest.raises(openai.ConflictError):
        await client.chat.completions.create(
            model="mnemograph", messages=edited, extra_headers={"X-Thread-Id": f"{tid}-new"}
        )
    assert await stored_messages(services, user, tid) == before


async def test_two_users_get_their_own_default_threads(base: str, services: Services) -> None:
    ada, ada_key = await new_key(services)
    bob, bob_key = await new_key(services)
    ada_client = AsyncOpenAI(base_url=f"{base}/v1", api_key=ada_key, max_retries=0)
    bob_client = AsyncOpenAI(base_url=f"{base}/v1", api_key=bob_key, max_retries=0)
    await ada_client.chat.completions.create(model="mnemograph", messages=[user_msg("ada here")])
    await bob_client.chat.completions.create(model="mnemograph", messages=[user_msg("bob here")])
    assert default_thread(ada) != default_thread(bob)
    assert await stored_messages(services, ada, default_thread(ada)) == [
        ("human", "ada here"), ("ai", "echo: ada here")]  # fmt: skip
    assert await stored_messages(services, bob, default_thread(bob)) == [
        ("human", "bob here"), ("ai", "echo: bob here")]  # fmt: skip
    # Thread ids are per user: Ada's id, used by Bob, is a thread of his own, streamed or not.
    for stream in (False, True):
        said = await bob_client.chat.completions.create(
            model="mnemograph", messages=[user_msg(f"bob {stream}")], stream=stream,
            extra_headers={"X-Thread-Id": default_thread(ada)},
        )  # fmt: skip
        if stream:
            assert [p async for p in said]  # type: ignore[union-attr]
    assert len(await stored_messages(services, ada, default_thread(ada))) == 2
    assert [t for _, t in await stored_messages(services, bob, default_thread(ada))] == [
        "bob False", "echo: bob False", "bob True", "echo: bob True"]  # fmt: skip


async def test_errors_come_in_openais_shape(base: str, services: Services) -> None:
    _user, key = await new_key(services)
    client = AsyncOpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as no_key:
        await AsyncOpenAI(base_url=f"{base}/v1", api_key="wrong", max_retries=0).models.list()
    assert no_key.value.status_code == 401
    with pytest.raises(openai.NotFoundError) as no_model:
        await client.chat.completions.create(model="gpt-4o", messages=[user_msg("hi")])
    assert no_model.value.code == "model_not_found"
    cases: list[dict[str, Any]] = [
        {"messages": []},
        {"messages": [{"role": "tool", "content": "x", "tool_call_id": "t"}]},
        {"messages": [user_msg("hi"), bot_msg("hello")]},
        {"messages": [user_msg("hi")], "extra_headers": {"X-Thread-Id": "../etc"}},
        {"messages": [user_msg("hi")], "n": 2},
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
    ]
    for case in cases:
        with pytest.raises(openai.BadRequestError) as bad:
            await client.chat.completions.create(model="mnemograph", **case)
        assert bad.value.status_code == 400, case
        body: Any = bad.value.body
        assert body["type"] == "invalid_request_error" and body["message"], case


async def test_a_thread_resumes_on_a_restarted_server(
    services: Services, pg_url: str, tmp_path: Path
) -> None:
    user, key = await new_key(services)
    tid = f"oai-{uuid.uuid4().hex[:8]}"
    history = [user_msg("remember the code word: heron")]
    async with serve_process(cli_env(pg_url, tmp_path / "data"), tmp_path / "serve.log") as url:
        client = AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
        out = await client.chat.completions.create(
            model="mnemograph", messages=history, extra_headers={"X-Thread-Id": tid}
        )
    # The first server is gone; the client resends the conversation to a new one.
    history += [bot_msg(out.choices[0].message.content or ""), user_msg("what was the code word?")]
    async with serve_process(cli_env(pg_url, tmp_path / "data"), tmp_path / "serve.log") as url:
        client = AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
        stream = await client.chat.completions.create(
            model="mnemograph", messages=history, stream=True, extra_headers={"X-Thread-Id": tid}
        )
        text = "".join([p.choices[0].delta.content or "" async for p in stream if p.choices])
    assert text == "echo: what was the code word?"
    assert [t for _, t in await stored_messages(services, user, tid)] == [
        "remember the code word: heron", "echo: remember the code word: heron",
        "what was the code word?", "echo: what was the code word?",
    ]  # fmt: skip


async def test_a_model_outage_is_an_error_and_the_thread_is_untouched(
    base: str, services: Services
) -> None:
    user, key = await new_key(services)
    tid = f"oai-{uuid.uuid4().hex[:8]}"
    client = AsyncOpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
    await client.chat.completions.create(
        model="mnemograph", messages=[user_msg("hello")], extra_headers={"X-Thread-Id": tid}
    )
    before = await stored_messages(services, user, tid)
    down = httpx.Request("POST", "http://llm.invalid/v1/chat/completions")
    services.set_chat_model(
        ScriptedChatModel(replies=lambda _m: openai.APIConnectionError(request=down))
    )
    for stream in (False, True):
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(
                model="mnemograph", messages=[user_msg("are you there?")], stream=stream,
                extra_headers={"X-Thread-Id": tid},
            )  # fmt: skip
        assert caught.value.status_code == 503
        assert "unreachable" in caught.value.message
    assert await stored_messages(services, user, tid) == before
