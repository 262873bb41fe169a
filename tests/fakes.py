"""The scripted chat model for tests: one fake with every option the tests need.

The product has its own offline model, :class:`stores.models.fake_llm.EchoChatModel` (what
``MNEMOGRAPH_MODEL=fake`` runs). :class:`ScriptedChatModel` is that echo model plus a
script, so whatever a test does not script behaves exactly as the product's fake does:

* **chat replies** (calls without tools): ``replies`` is a list or iterator of replies used in
  order, or a callable ``(messages) -> reply``; unset, the model echoes the last human
  message (``echo: …``). A reply is a ``str``, an ``AIMessage`` or an exception (raised).
* **structured / tool-call replies** per schema: ``tool_replies[name]`` answers calls bound to
  the tool (the schema of ``with_structured_output``) ``name``. A ``dict`` is the arguments of
  every call, a list or iterator gives them in order, a callable ``(messages) -> arguments``
  computes them (it may be ``async``: it can wait on an event), an exception is raised. A
  schema with nothing scripted gets the echo model's valid "nothing found" call.
* **delay / hang**: ``delay_s`` before every reply; ``hang(messages, tool)`` (``tool`` is the
  bound tool's name, ``None`` for chat) returning true blocks that call until it is
  cancelled (asynchronous calls) or forever (synchronous ones).
* **recording**: ``calls`` holds every prompt (a :class:`Prompt`: the messages, and the
  ``tool`` the call was bound to); ``chats`` are those of chat calls, ``asked`` the tool
  names of tool calls.

A scripted list or iterator that runs out raises :class:`ScriptExhausted`: a test that
scripted N replies and got N+1 calls fails loudly. Chat replies stream a word at a time
(tool calls never stream), as the product's OpenAI-compatible models are configured to
(``disable_streaming="tool_calling"``). Every reply is a fresh message with its own id.

The OpenAI-compatible HTTP server for the real wire path is :mod:`tests.openai_stub`.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import Any, Literal

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field, field_validator

from stores.models.fake_llm import EchoChatModel

Hang = Callable[[list[BaseMessage], str | None], bool]
"""``(messages, tool name or None) -> block this call?``"""


class Prompt(list[BaseMessage]):
    """The messages of one call, and the name of the tool it was bound to (``None``: chat)."""

    def __init__(self, messages: Iterable[BaseMessage], tool: str | None) -> None:
        super().__init__(messages)
        self.tool = tool


class ScriptExhausted(AssertionError):
    """The model was called more often than the test scripted."""


def numbered_replies(prefix: str = "reply") -> Iterator[AIMessage]:
    """An endless script of distinct replies (fresh objects, fresh ids)."""
    for i in itertools.count():
        yield AIMessage(content=f"{prefix} {i}", id=f"{prefix}-{i}")


def extraction_replies(
    *, memories: Iterable[dict[str, Any]] = (), triples: Iterable[dict[str, Any]] = ()
) -> dict[str, Any]:
    """``tool_replies`` answering every memory and knowledge extraction with the same items:
    ``ExtractedMemories`` with ``memories``, ``ExtractedTriples`` with ``triples`` (each
    given confidence 0.9 unless it has its own)."""
    return {
        "ExtractedMemories": {"items": list(memories)},
        "ExtractedTriples": {"triples": [{"confidence": 0.9, **t} for t in triples]},
    }


def _copy_script(script: Any) -> Any:
    """Lists are consumed as the model answers: take a copy, never the caller's own list."""
    return list(script) if isinstance(script, (list, tuple)) else script


class ScriptedChatModel(EchoChatModel):
    """The echo model with scripted replies, delays, hangs and a record of its calls (see the
    module docstring)."""

    replies: Any = None
    tool_replies: dict[str, Any] = Field(default_factory=dict)
    delay_s: float = 0.0
    hang: Hang | None = None
    disable_streaming: bool | Literal["tool_calling"] = "tool_calling"
    calls: list[Prompt] = Field(default_factory=list)

    @field_validator("replies", mode="after")
    @classmethod
    def _own_replies(cls, value: Any) -> Any:
        return _copy_script(value)

    @field_validator("tool_replies", mode="after")
    @classmethod
    def _own_tool_replies(cls, value: dict[str, Any]) -> dict[str, Any]:
        return {name: _copy_script(script) for name, script in value.items()}

    @property
    def _llm_type(self) -> str:
        return "scripted-fake"

    @property
    def chats(self) -> list[Prompt]:
        """The prompts of chat calls (replies and summaries), without tool calls."""
        return [p for p in self.calls if p.tool is None]

    @property
    def asked(self) -> list[str]:
        """The tool (schema) name of every tool call, in order."""
        return [p.tool for p in self.calls if p.tool is not None]

    # --- the script -------------------------------------------------------------------------
    def _begin(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> str | None:
        """Record the call; the bound tool's name, or ``None`` for a chat call."""
        tools = kwargs.get("tools") or []
        name = str(tools[0].get("function", tools[0])["name"]) if tools else None
        self.calls.append(Prompt(messages, name))
        return name

    def _draw(self, messages: list[BaseMessage], tool: str | None) -> Any:
        """The scripted entry for this call (possibly awaitable), or ``None`` if unscripted."""
        if tool is None:
            script, what = self.replies, "chat calls"
        else:
            if tool not in self.tool_replies:
                return None
            script, what = self.tool_replies[tool], f"{tool} calls"
        if script is None or isinstance(script, (dict, BaseException)):
            return script
        if callable(script):
            return script(messages)
        if isinstance(script, list):
            if not script:
                raise ScriptExhausted(f"the script ran out of replies to {what}")
            return script.pop(0)
        try:
            return next(script)
        except StopIteration:
            raise ScriptExhausted(f"the script ran out of replies to {what}") from None

    def _message(
        self, messages: list[BaseMessage], tool: str | None, entry: Any, kwargs: dict[str, Any]
    ) -> AIMessage:
        """Turn a script entry into the reply message."""
        if isinstance(entry, BaseException):
            raise entry
        if entry is None:  # unscripted: the product's echo model answers
            echoed = super()._generate(messages, **kwargs).generations[0].message
            assert isinstance(echoed, AIMessage)
            return echoed
        if isinstance(entry, AIMessage):
            return entry if entry.id else entry.model_copy(update={"id": _fresh_id()})
        if tool is None:
            if not isinstance(entry, str):
                raise TypeError(f"a scripted chat reply is a str or AIMessage, not {entry!r}")
            return AIMessage(content=entry, id=_fresh_id())
        if not isinstance(entry, dict):
            raise TypeError(f"scripted {tool} arguments must be a dict, not {entry!r}")
        call = {"name": tool, "args": entry, "id": f"call_{uuid.uuid4().hex[:12]}"}
        return AIMessage(content="", id=_fresh_id(), tool_calls=[call])

    def _reply_sync(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> AIMessage:
        tool = self._begin(messages, kwargs)
        if self.hang is not None and self.hang(messages, tool):
            while True:  # until the process is killed
                time.sleep(3600)
        if self.delay_s:
            time.sleep(self.delay_s)
        entry = self._draw(messages, tool)
        if inspect.isawaitable(entry):
            if inspect.iscoroutine(entry):
                entry.close()
            raise TypeError("an async script answers only asynchronous calls (ainvoke)")
        return self._message(messages, tool, entry, kwargs)

    async def _reply_async(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> AIMessage:
        tool = self._begin(messages, kwargs)
        if self.hang is not None and self.hang(messages, tool):
            await asyncio.Event().wait()  # until the call is cancelled or the process killed
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        entry = self._draw(messages, tool)
        if inspect.isawaitable(entry):
            entry = await entry
        return self._message(messages, tool, entry, kwargs)

    # --- BaseChatModel ----------------------------------------------------------------------
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._reply_sync(messages, kwargs))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        message = await self._reply_async(messages, kwargs)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for chunk in _chunks(self._reply_sync(messages, kwargs)):
            if run_manager is not None:
                run_manager.on_llm_new_token(str(chunk.message.content), chunk=chunk)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in _chunks(await self._reply_async(messages, kwargs)):
            if run_manager is not None:
                await run_manager.on_llm_new_token(str(chunk.message.content), chunk=chunk)
            yield chunk


def _fresh_id() -> str:
    return f"scripted-{uuid.uuid4().hex}"


def _chunks(reply: AIMessage) -> Sequence[ChatGenerationChunk]:
    """The reply as a real server streams it: word-sized text deltas, or one tool-call delta."""
    if reply.tool_calls:
        deltas = [
            {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i}
            for i, c in enumerate(reply.tool_calls)
        ]
        chunk = AIMessageChunk(content="", id=reply.id, tool_call_chunks=deltas)  # type: ignore[arg-type]
        return [ChatGenerationChunk(message=chunk)]
    pieces = re.findall(r"\S+\s*|\s+", reply.text) or [""]
    return [
        ChatGenerationChunk(message=AIMessageChunk(content=piece, id=reply.id)) for piece in pieces
    ]


def recording_model(prefix: str = "reply") -> ScriptedChatModel:
    """Replies ``"<prefix> 0"``, ``"<prefix> 1"``, … forever, recording every prompt."""
    return ScriptedChatModel(replies=numbered_replies(prefix))
