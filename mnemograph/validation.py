"""What a caller may send as a turn, checked before any work is done.

Every door (REST, LangServe, CLI) goes through :func:`to_messages`, so a rule added here
holds everywhere: only user messages, ids given by us, bounded plain text.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AnyMessage, BaseMessage, convert_to_messages
from pydantic import BaseModel, ConfigDict, Field

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
        raise InvalidInput(f"unreadable message: {exc}") from exc
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
