"""``/v1``: the OpenAI chat-completions door to the agent, for the clients people already
have (the ``openai`` SDK, Open WebUI, LibreChat, LiteLLM…).

The user comes from the credential, the thread from ``X-Thread-Id`` or
``metadata.thread_id`` (else the user's default thread). Clients resend the whole
conversation each time; only the user messages after the last assistant message are new,
and the rest must agree with the stored thread (409 otherwise). Turns go through the same
:class:`~mnemograph.runner.TurnRunner` as every door: same ownership, lock and memory.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import StreamingResponse
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig

from mnemograph.runner import TurnRunner
from mnemograph.web.deps import RunnerDep, ServicesDep, User
from mnemograph.web.routes.openai_compat.route import OpenAIError, OpenAIRoute
from mnemograph.web.routes.openai_compat.wire import (
    ChatRequest,
    chunk,
    completion,
    completion_id,
    default_thread,
    error,
    history_conflict,
    split_history,
    stored_turns,
    usage,
)
from mnemograph.web.routes.protocol.streaming import error_body
from stores.errors import NotFound
from stores.ids import check_id

log = logging.getLogger(__name__)

MODEL_ID = "mnemograph"
"""The one model this door serves: the agent, whatever LLM the server runs."""

router = APIRouter(prefix="/v1", route_class=OpenAIRoute, tags=["openai"])


@router.get("/models", summary="The models this endpoint serves (OpenAI format)")
async def list_models(user: User) -> dict[str, Any]:
    model = {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "mnemograph"}
    return {"object": "list", "data": [model]}


def _thread_of(body: ChatRequest, header: str | None, user: str) -> str:
    thread_id = header or (body.metadata or {}).get("thread_id") or default_thread(user)
    return check_id("thread id", thread_id)


async def _check_history(
    services: ServicesDep, runner: TurnRunner, user: str, thread_id: str, body: ChatRequest
) -> list[str]:
    """The new user messages, once the resent history agrees with the thread."""
    split = split_history(body.messages)
    if split.history:
        try:
            info = await services.thread_registry().get(thread_id, user)
            state = await runner.graph.aget_state(runner.config(info.key))
            stored = stored_turns((state.values or {}).get("messages", []))
        except NotFound:
            stored = []
        reason = history_conflict(split.history, stored)
        if reason is not None:
            raise OpenAIError(409, f"conversation conflicts with thread {thread_id!r}: {reason}",
                              "history_conflict")  # fmt: skip
    return split.new


def _reply(values: dict[str, Any]) -> tuple[AIMessage, list[BaseMessage]]:
    messages: list[BaseMessage] = list(values.get("messages", []))
    if not messages or not isinstance(messages[-1], AIMessage):
        raise OpenAIError(500, "the turn ended without a reply; see the server log")
    return messages[-1], messages[:-1]


@router.post("/chat/completions", summary="Chat with the agent (OpenAI format)",
             response_model=None)  # fmt: skip
async def chat_completions(
    body: ChatRequest,
    request: Request,
    user: User,
    services: ServicesDep,
    runner: RunnerDep,
    x_thread_id: Annotated[str | None, Header(max_length=128)] = None,
) -> Response | dict[str, Any]:
    if body.model != MODEL_ID:
        raise OpenAIError(404, f"model {body.model!r} does not exist; use {MODEL_ID!r}",
                          "model_not_found")  # fmt: skip
    if body.tools:
        raise OpenAIError(400, "tools are not supported: the agent answers in text")
    thread_id = _thread_of(body, x_thread_id, user)
    new = await _check_history(services, runner, user, thread_id, body)
    messages = [{"role": "user", "content": text} for text in new]
    cid = completion_id()
    if not body.stream:
        values = await runner.invoke(user, thread_id, messages, config=_DOOR)
        reply, prompt = _reply(values)
        return completion(cid, MODEL_ID, reply.text, usage(prompt, reply), thread_id)
    return await _streaming(request, runner, user, thread_id, messages, cid, body.include_usage())


_DOOR: RunnableConfig = {"metadata": {"door": "openai"}}
"""Names this door in the run's metadata (turn metrics, traces)."""


def _sse(data: dict[str, Any] | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {text}\n\n".encode()


async def _left(request: Request) -> None:
    """Returns once the client has gone (the body is already read: nothing else comes)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _streaming(
    request: Request,
    runner: TurnRunner,
    user: str,
    thread_id: str,
    messages: list[dict[str, str]],
    cid: str,
    include_usage: bool,
) -> Response:
    """Stream the reply's tokens; the turn is the runner's, not this response's.

    The turn starts in its own task and the response waits for its first token, so a
    failure before any token (a foreign thread, the model down) is a plain HTTP error.

    A client that leaves before the reply is durable (before the first token, or
    mid-reply) cuts the turn: it is rolled back like a failed one, so the thread keeps no
    unanswered question (as on every streaming door). A client that leaves after it, while
    the memory work runs or at ``[DONE]``, cancels nothing: the runner finishes that work.
    """
    tokens: asyncio.Queue[BaseMessage] = asyncio.Queue()
    turn = asyncio.create_task(
        runner.invoke(
            user, thread_id, messages, config=_DOOR, on_token=tokens.put_nowait, cut_if_left=True
        ),
        name=f"openai-turn:{thread_id}",
    )
    turn.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved, never lost
    first = asyncio.ensure_future(tokens.get())
    left = asyncio.ensure_future(_left(request))
    try:
        await asyncio.wait({first, turn, left}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        left.cancel()
    if not first.done():
        first.cancel()
        if not turn.done():  # the client left before any token: cut the turn
            turn.cancel()
            return Response(status_code=499)
        turn.result()  # raises the turn's error as an HTTP error
    pending: list[BaseMessage] = [first.result()] if first.done() else []
    return StreamingResponse(
        _events(turn, tokens, pending, cid, thread_id, messages, include_usage),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Thread-Id": thread_id},
    )


async def _events(
    turn: asyncio.Task[dict[str, Any]],
    tokens: asyncio.Queue[BaseMessage],
    pending: list[BaseMessage],
    cid: str,
    thread_id: str,
    messages: list[dict[str, str]],
    include_usage: bool,
) -> AsyncIterator[bytes]:
    try:
        async for event in _tokens(turn, tokens, pending, cid, messages, include_usage):
            yield event
    finally:
        if not turn.done():  # the client left: cut the turn unless its reply is durable
            turn.cancel()


async def _tokens(
    turn: asyncio.Task[dict[str, Any]],
    tokens: asyncio.Queue[BaseMessage],
    pending: list[BaseMessage],
    cid: str,
    messages: list[dict[str, str]],
    include_usage: bool,
) -> AsyncIterator[bytes]:
    yield _sse(chunk(cid, MODEL_ID, {"role": "assistant", "content": ""}))
    for token in pending:
        if token.text:
            yield _sse(chunk(cid, MODEL_ID, {"content": token.text}))
    while True:
        getter = asyncio.ensure_future(tokens.get())
        await asyncio.wait({getter, turn}, return_when=asyncio.FIRST_COMPLETED)
        if not getter.done():
            getter.cancel()
            break
        if (token := getter.result()).text:
            yield _sse(chunk(cid, MODEL_ID, {"content": token.text}))
    while not tokens.empty():
        if (token := tokens.get_nowait()).text:
            yield _sse(chunk(cid, MODEL_ID, {"content": token.text}))
    if (failure := turn.exception()) is not None:
        yield _sse(error(502, error_body(failure)["message"]))
        return
    yield _sse(chunk(cid, MODEL_ID, {}, finish="stop"))
    if include_usage:
        reply, prompt = _reply(turn.result())
        new = [HumanMessage(content=m["content"]) for m in messages]
        yield _sse(chunk(cid, MODEL_ID, None, use=usage(prompt or new, reply)))
    yield _sse("[DONE]")
