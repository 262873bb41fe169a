"""Agent Protocol runs: wait for a turn's output, or stream it, on a thread or stateless.

Every run is one turn of the turn runner (thread lock, recovery, rollback), with the caller
from the credential. The input is ``{"messages": [...]}`` holding only new user messages
(other input keys, e.g. a parent graph's own state, are ignored); per-request settings come
from ``context`` or ``config.configurable`` (``graph.context.REQUEST_KNOBS``, bounded), and
nothing else of the client's config reaches the graph.

* ``runs/wait`` answers with the state values as soon as the reply is durable; the memory
  work goes on after the answer (so a next turn on the thread waits for it).
* ``runs/stream`` streams the whole turn, reply first, memory work after.
* A stateless run (``/runs/*``) runs on a fresh thread that is deleted once the turn, memory
  work included, is over (``on_completion="keep"`` keeps it). What it taught the long-term
  memory stays: memory is the user's, not the thread's.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import StreamingResponse

from mnemograph.validation import to_messages
from mnemograph.web.deps import Id, User
from mnemograph.web.routes.protocol.assistants import check_assistant
from mnemograph.web.routes.protocol.bodies import RunCreate, knobs_of
from mnemograph.web.routes.protocol.records import BookDep, ThreadBook
from mnemograph.web.routes.protocol.streaming import DOOR, Turn, sse_turn, stream_modes
from mnemograph.web.routes.protocol.wire import json_response, public_values
from stores.errors import InvalidInput
from stores.ids import check_id

router = APIRouter(tags=["Agent Protocol"])

MAX_INPUT_MESSAGES = 16


def _input_messages(value: dict[str, Any] | None) -> list[Any]:
    """The new messages of a run's input, checked as every door checks them."""
    if not isinstance(value, dict) or not isinstance(value.get("messages"), list):
        raise InvalidInput('input must be an object with a "messages" list')
    messages = value["messages"]
    if len(messages) > MAX_INPUT_MESSAGES:
        raise InvalidInput(f"at most {MAX_INPUT_MESSAGES} messages per run")
    to_messages(messages)  # the runner converts again; this answers 422 before any work
    return list(messages)


async def _prepare(
    book: ThreadBook, user: str, thread_id: str | None, body: RunCreate
) -> tuple[Turn, bool]:
    """Check the run and settle its thread; returns the turn and whether the thread is a
    stateless run's own (to delete afterwards)."""
    check_assistant(body.assistant_id)
    body.refuse_unsupported()
    messages = _input_messages(body.input)
    knobs = knobs_of(body)
    modes = stream_modes(body.stream_mode)
    registry = book.services.thread_registry()
    title = to_messages(messages[:1])[0].text[:60]
    temporary = thread_id is None
    if thread_id is None:
        thread_id = str(uuid.uuid4())
        await registry.claim(user, thread_id, title)
    elif body.if_not_exists == "create":
        await registry.claim(user, check_id("thread id", thread_id), title)
    else:
        await book.owned(user, thread_id)
    turn = Turn(user, thread_id, messages, knobs, modes, str(uuid.uuid4()))
    return turn, temporary and body.on_completion != "keep"


def _location(turn: Turn, temporary: bool) -> dict[str, str]:
    """``Content-Location`` names the run (the SDK's ``on_run_created`` reads it)."""
    run = f"/runs/{turn.run_id}" if temporary else f"/threads/{turn.thread_id}/runs/{turn.run_id}"
    return {"Content-Location": run}


async def _wait(book: ThreadBook, user: str, thread_id: str | None, body: RunCreate) -> Response:
    turn, forget = await _prepare(book, user, thread_id, body)
    try:
        values = await book.runner.invoke(
            turn.user_id, turn.thread_id, turn.messages, config=DOOR, **turn.knobs
        )
    finally:
        if forget:
            book.delete_later(user, turn.thread_id)
    return json_response(public_values(values), headers=_location(turn, thread_id is None))


async def _stream(
    book: ThreadBook, user: str, thread_id: str | None, body: RunCreate
) -> StreamingResponse:
    turn, forget = await _prepare(book, user, thread_id, body)
    after = (lambda: book.delete_later(user, turn.thread_id)) if forget else None
    return StreamingResponse(
        sse_turn(book.runner, turn, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", **_location(turn, thread_id is None)},
    )


@router.post("/threads/{thread_id}/runs/wait", summary="Run a turn; answer with its output")
async def wait_run(thread_id: Id, body: RunCreate, user: User, book: BookDep) -> Response:
    return await _wait(book, user, thread_id, body)


@router.post("/threads/{thread_id}/runs/stream", summary="Run a turn, streamed as SSE")
async def stream_run(
    thread_id: Id, body: RunCreate, user: User, book: BookDep
) -> StreamingResponse:
    return await _stream(book, user, thread_id, body)


@router.post("/runs/wait", summary="A stateless turn; answer with its output")
async def wait_stateless(body: RunCreate, user: User, book: BookDep) -> Response:
    return await _wait(book, user, None, body)


@router.post("/runs/stream", summary="A stateless turn, streamed as SSE")
async def stream_stateless(body: RunCreate, user: User, book: BookDep) -> StreamingResponse:
    return await _stream(book, user, None, body)
