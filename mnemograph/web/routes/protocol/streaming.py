"""A turn as the Agent Protocol streams it: ``(event, data)`` pairs in langgraph_api's
format, from the turn runner.

* ``values``, ``updates``, ``custom``, ``debug``, ``tasks``, ``checkpoints``: LangGraph's
  stream modes, passed through;
* ``messages-tuple``: the reply's tokens as ``messages`` events of ``[chunk, metadata]``;
  only the reply node's model calls are sent (memory extraction's calls are not the reply);
* ``events``: every callback event of the run (``astream_events`` v2), as ``events``.

The first event is always ``metadata`` with the run's id. A failure after that point is an
``error`` event (``{"error", "message"}``), which ``RemoteGraph`` raises as
``RemoteException``; the turn runner has already rolled back a turn that failed before its
reply.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import openai
from langchain_core.runnables import RunnableConfig, RunnableGenerator

from graph.builder import REPLY_NODE
from mnemograph.runner import TurnRunner
from mnemograph.web.routes.protocol.wire import public_values, sse
from stores.errors import InvalidInput, MnemographError

log = logging.getLogger(__name__)

GRAPH_MODES = {
    "values": "values", "updates": "updates", "messages-tuple": "messages",
    "custom": "custom", "debug": "debug", "tasks": "tasks", "checkpoints": "checkpoints",
}  # fmt: skip
"""Wire stream mode -> LangGraph stream mode."""
STREAM_MODES = frozenset({*GRAPH_MODES, "events"})


def stream_modes(requested: str | list[str]) -> list[str]:
    """The requested modes, checked; ``messages`` (langgraph_api's accumulated form) is not
    offered: ``messages-tuple`` sends the same tokens."""
    modes = [requested] if isinstance(requested, str) else list(dict.fromkeys(requested))
    unknown = [m for m in modes if m not in STREAM_MODES]
    if not modes or unknown:
        raise InvalidInput(f"unsupported stream mode; use any of {', '.join(sorted(STREAM_MODES))}")
    return modes


@dataclass(frozen=True)
class Turn:
    """Who runs what: the inputs of one streamed turn."""

    user_id: str
    thread_id: str
    messages: Sequence[Any]
    knobs: dict[str, Any]
    modes: list[str]
    run_id: str


@dataclass(frozen=True)
class _Part:
    """One stream chunk inside ``astream_events``; it has no ``+``, so LangChain does not
    try to add the chunks of the whole run together."""

    mode: str
    chunk: Any


def _wire(mode: str, chunk: Any) -> tuple[str, Any] | None:
    """The wire event of a graph chunk, or ``None`` when it is not sent."""
    if mode == "messages":
        message, metadata = chunk
        if (metadata or {}).get("langgraph_node") != REPLY_NODE:
            return None
        return "messages", [message, metadata]
    if mode == "values":
        return "values", public_values(chunk)
    return mode, chunk


DOOR: RunnableConfig = {"metadata": {"door": "agent_protocol"}}
"""Names this door in the run's metadata (turn metrics, traces)."""


def _with_door(config: RunnableConfig) -> RunnableConfig:
    return {**config, "metadata": {**(config.get("metadata") or {}), **DOOR["metadata"]}}


async def _graph_events(runner: TurnRunner, turn: Turn) -> AsyncIterator[tuple[str, Any]]:
    modes = [GRAPH_MODES[m] for m in turn.modes if m != "events"]
    if "events" not in turn.modes:
        async for mode, chunk in runner.stream(
            turn.user_id, turn.thread_id, turn.messages, stream_mode=modes, config=DOOR,
            **turn.knobs,
        ):  # fmt: skip
            if (wired := _wire(mode, chunk)) is not None:
                yield wired
        return

    async def run(_input: AsyncIterator[Any], config: RunnableConfig) -> AsyncIterator[_Part]:
        async for mode, chunk in runner.stream(
            turn.user_id, turn.thread_id, turn.messages,
            stream_mode=modes, config=_with_door(config), **turn.knobs,
        ):  # fmt: skip
            yield _Part(mode, chunk)

    root: RunnableGenerator[Any, Any] = RunnableGenerator(run, name="mnemograph")  # type: ignore[arg-type]
    config: RunnableConfig = {"run_id": UUID(turn.run_id)}
    async for event in root.astream_events(None, config, version="v2"):
        part = event.get("data", {}).get("chunk")
        if event["event"] == "on_chain_stream" and isinstance(part, _Part):
            mine = _wire(part.mode, part.chunk) if event["run_id"] == turn.run_id else None
            if mine is not None:
                yield mine
            continue
        yield "events", event


def error_body(exc: BaseException) -> dict[str, str]:
    """What a client is told about a failure: a clear line, never the input or a trace."""
    if isinstance(exc, MnemographError):
        message = str(exc)
    elif isinstance(exc, openai.APITimeoutError):
        message = "the LLM endpoint did not answer in time; nothing was saved, retry"
    elif isinstance(exc, openai.APIConnectionError):
        message = "the LLM endpoint is unreachable; nothing was saved, retry"
    elif isinstance(exc, openai.APIStatusError):
        message = f"the LLM endpoint answered HTTP {exc.status_code}; nothing was saved"
    else:
        message = "the run failed on the server; see its log"
    return {"error": type(exc).__name__, "message": message}


async def sse_turn(runner: TurnRunner, turn: Turn, after: Any = None) -> AsyncIterator[bytes]:
    """The turn as server-sent events; ``after()`` runs once the stream ends, however."""
    try:
        yield sse("metadata", {"run_id": turn.run_id, "attempt": 1})
        async for event, data in _graph_events(runner, turn):
            yield sse(event, data)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if not isinstance(exc, MnemographError):
            log.exception("streamed run %s on thread %s failed", turn.run_id, turn.thread_id)
        yield sse("error", error_body(exc))
    finally:
        if after is not None:
            after()
