"""What a caller may send as a turn, checked before any work is done.

Every door (REST, LangServe, CLI) goes through :func:`to_messages`, so a rule added here
holds everywhere: only user messages, ids given by us, bounded plain text.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any, get_type_hints

from langchain_core.messages import AnyMessage, BaseMessage, convert_to_messages
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from graph.context import REQUEST_KNOBS, Context
from stores.errors import InvalidInput

MAX_MESSAGE_CHARS = 32_000


def to_messages(raw: Sequence[Any]) -> list[AnyMessage]:
    """Accept LangChain (`{"type": "human"}`) and OpenAI (`{"role": "user"}`) message dicts.

    Only user messages may come from outside: a caller must not be able to plant assistant or
    system turns (and through them, memories) in a thread.
    """
    if not raw:
        raise InvalidInput("messages must hold at least one message")
    try:
        messages: list[BaseMessage] = convert_to_messages(list(raw))
    except (ValueError, TypeError, NotImplementedError, KeyError) as exc:
        # LangChain's message names the offending value; the caller's input is not echoed.
        raise InvalidInput(
            "unreadable message: each needs a 'type' (human) or 'role' (user) and a 'content'"
        ) from exc
    for message in messages:
        # Ids are ours to give: a caller-chosen id could overwrite a stored message.
        message.id = str(uuid.uuid4())
        if message.type != "human":
            raise InvalidInput(f"only user messages can be sent, not {message.type!r}")
        if not isinstance(message.content, str):
            raise InvalidInput("message content must be a string")
        if not message.content.strip():
            raise InvalidInput("message content is empty")
        if len(message.content) > MAX_MESSAGE_CHARS:
            raise InvalidInput(f"message longer than {MAX_MESSAGE_CHARS} characters")
        if any(ord(c) < 32 and c not in "\n\r\t" for c in message.content):
            raise InvalidInput("message contains control characters")
    return messages  # type: ignore[return-value]


class AgentInput(BaseModel):
    """What `/agent` accepts: new user messages, LangChain- or OpenAI-shaped."""

    model_config = ConfigDict(extra="forbid")
    messages: list[dict[str, Any]] = Field(
        ...,
        min_length=1,
        max_length=16,
        description='e.g. [{"type": "human", "content": "hi"}] or [{"role": "user", ...}]',
    )

    @model_validator(mode="after")
    def _readable(self) -> AgentInput:
        """The messages pass the turn's own checks here, so LangServe answers 422 before a
        stream starts, instead of cutting the stream with an error."""
        try:
            to_messages(self.messages)
        except InvalidInput as exc:
            raise ValueError(str(exc)) from None
        return self


KNOB_BOUNDS: dict[str, tuple[int, int]] = {
    "window_k": (1, 1000),
    "max_tokens": (1, 1_000_000),
    "summary_trigger_tokens": (1, 1_000_000),
    "buffer_tokens": (0, 1_000_000),
    "recall_k": (0, 100),
    "recall_tokens": (0, 100_000),
    "kg_tokens": (0, 100_000),
    "kg_hops": (1, 2),
}
"""Bounds of the integer knobs; a knob added to ``Context`` without one gets 0..1,000,000.
Unbounded, a ``recall_k`` of 2**63 reached Postgres as a LIMIT it refused, per request."""


def _knob_model() -> type[BaseModel]:
    hints = get_type_hints(Context)
    specs: dict[str, Any] = {}
    for f in fields(Context):
        if f.name not in REQUEST_KNOBS:
            continue
        hint = hints[f.name]
        if hint is int:
            low, high = KNOB_BOUNDS.get(f.name, (0, 1_000_000))
            specs[f.name] = (int | None, Field(None, ge=low, le=high, strict=True))
        else:
            specs[f.name] = (hint | None, None)
    model: type[BaseModel] = create_model("Knobs", __config__=ConfigDict(extra="ignore"), **specs)
    return model


Knobs = _knob_model()
"""The per-request settings a run may carry (``graph.context.REQUEST_KNOBS``, bounded)."""


def check_knobs(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The known knobs among ``raw``, checked against their type and bounds; unknown keys
    and ``None`` are dropped. Every door (LangServe, Agent Protocol, CLI, the runner itself)
    goes through here, so a bound holds everywhere."""
    wanted = {k: v for k, v in raw.items() if k in REQUEST_KNOBS and v is not None}
    try:
        return Knobs.model_validate(wanted).model_dump(exclude_none=True)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidInput(f"invalid per-request setting: {problems}") from None
