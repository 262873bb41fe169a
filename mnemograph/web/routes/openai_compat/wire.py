"""The OpenAI chat-completions wire format: what a client sends, how a resent history maps
onto the stored thread, and the response and chunk objects it expects back.

Pure functions and pydantic models; no I/O, so the rules are testable without a server.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.messages import BaseMessage
from langchain_core.messages.utils import count_tokens_approximately
from pydantic import BaseModel, ConfigDict, Field

from stores.errors import InvalidInput

_THREADS = uuid.UUID("6f1c3a52-8d0e-4b7e-9a39-0c2f5e1d7a44")
"""Namespace of the per-user default thread ids (uuid5), so each user's is stable."""

Role = Literal["user", "assistant"]


class ChatMessage(BaseModel):
    """One message as OpenAI clients send it; unknown fields (``name``…) are tolerated."""

    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    """``POST /v1/chat/completions``. Sampling parameters clients always send (temperature,
    top_p…) are accepted and ignored: the agent's model settings are the server's."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(..., max_length=200)
    messages: list[ChatMessage] = Field(..., min_length=1, max_length=1000)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None
    n: int | None = Field(None, ge=1, le=1)
    tools: list[dict[str, Any]] | None = None

    def include_usage(self) -> bool:
        """Streams end with a usage chunk only when asked, as OpenAI's do."""
        return bool((self.stream_options or {}).get("include_usage"))


def default_thread(user_id: str) -> str:
    """The thread a user's OpenAI client talks to when it names none."""
    return f"openai-{uuid.uuid5(_THREADS, user_id).hex}"


def text_of(message: ChatMessage) -> str:
    """The message's text: a string, or the ``text`` parts of a content list."""
    content = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for part in content:
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise InvalidInput(f"only text content parts are supported, not {part.get('type')!r}")
        texts.append(part["text"])
    return "\n".join(texts)


@dataclass(frozen=True)
class Split:
    """A resent conversation cut in two: what the thread should already hold, and what is new."""

    history: list[tuple[Role, str]]
    new: list[str]


def split_history(messages: Sequence[ChatMessage]) -> Split:
    """Only the user messages after the last assistant message are new input.

    System and developer messages are the client's instructions to a bare model; the agent
    has its own, so they are dropped rather than planted in the thread.
    """
    turns: list[tuple[Role, str]] = []
    for message in messages:
        if message.role in ("system", "developer"):
            continue
        if message.role not in ("user", "assistant"):
            raise InvalidInput(f"messages with role {message.role!r} are not supported")
        turns.append((message.role, text_of(message).strip()))  # type: ignore[arg-type]
    last_assistant = max((i for i, (role, _) in enumerate(turns) if role == "assistant"),
                         default=-1)  # fmt: skip
    new = [text for _, text in turns[last_assistant + 1 :]]
    if not new:
        raise InvalidInput("the conversation must end with a user message")
    return Split(history=turns[: last_assistant + 1], new=new)


def stored_turns(messages: Sequence[BaseMessage]) -> list[tuple[Role, str]]:
    """The thread's messages as (role, text) pairs, in the client's terms."""
    roles: dict[str, Role] = {"human": "user", "ai": "assistant"}
    return [(roles[m.type], m.text.strip()) for m in messages if m.type in roles]


def history_conflict(history: list[tuple[Role, str]], stored: list[tuple[Role, str]]) -> str | None:
    """Why the client's history contradicts the thread, or ``None`` when it agrees.

    The client may hold more (the thread folded old messages into its summary) or less (it
    trimmed its context) than the thread: the overlapping tails must match exactly.
    """
    if not history:
        return None
    if not stored:
        return ("the thread holds no messages for this history; send only the new user "
                "message, or start the conversation on a new thread")  # fmt: skip
    k = min(len(history), len(stored))
    for offset, (mine, theirs) in enumerate(zip(history[-k:], stored[-k:], strict=True)):
        if mine != theirs:
            at = len(history) - k + offset
            return (
                f"message {at} ({mine[0]}) differs from the stored thread; edited or "
                "regenerated turns are not merged into a thread's memory, use a new thread"
            )
    return None


def usage(prompt: Sequence[Any], reply: BaseMessage) -> dict[str, int]:
    """Token counts: the model's own when it reports them, else an approximate count."""
    meta = getattr(reply, "usage_metadata", None) or {}
    prompt_tokens = int(meta.get("input_tokens") or count_tokens_approximately(list(prompt)))
    completion = int(meta.get("output_tokens") or count_tokens_approximately([reply]))
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion}  # fmt: skip


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def completion(
    cid: str, model: str, text: str, use: dict[str, int], thread_id: str
) -> dict[str, Any]:
    """A ``chat.completion`` object; ``thread_id`` rides along so clients can resume."""
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                     "message": {"role": "assistant", "content": text, "refusal": None}}],
        "usage": use,
        "system_fingerprint": None,
        "metadata": {"thread_id": thread_id},
    }  # fmt: skip


def chunk(
    cid: str,
    model: str,
    delta: dict[str, Any] | None,
    finish: str | None = None,
    use: dict[str, int] | None = None,
) -> dict[str, Any]:
    """A ``chat.completion.chunk``; the usage chunk has no choices, as OpenAI's has none."""
    body: dict[str, Any] = {
        "id": cid, "object": "chat.completion.chunk", "created": int(time.time()),
        "model": model, "system_fingerprint": None,
        "choices": [] if delta is None else
        [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }  # fmt: skip
    if use is not None:
        body["usage"] = use
    return body


ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
               403: "permission_error", 404: "not_found_error", 409: "conflict_error",
               413: "invalid_request_error", 422: "invalid_request_error",
               429: "rate_limit_error"}  # fmt: skip


def error(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error object, which its clients parse into their exceptions."""
    kind = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}
