"""Per-request knobs. They travel with each run, never with the thread, so a caller can change
strategy from one request to the next without migrating any stored state."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, fields
from typing import Any, Literal

Strategy = Literal["buffer", "window", "tokens", "summary", "summary_buffer"]
STRATEGIES: tuple[Strategy, ...] = ("buffer", "window", "tokens", "summary", "summary_buffer")


@dataclass(kw_only=True)
class Context:
    """Who is talking and how much memory the prompt may carry."""

    user_id: str = "anonymous"
    """Owner of the thread; every store namespace and graph query is scoped to it.
    Servers set it from the credential, never from the request body."""

    strategy: Strategy = "summary_buffer"
    """Short-term memory strategy: which messages of the thread go into the prompt."""

    window_k: int = 4
    """`window`: how many most recent exchanges (human + reply) the prompt keeps."""

    max_tokens: int = 2000
    """`tokens`: the message history is trimmed to this many tokens (approximate count)."""

    summary_trigger_tokens: int = 2000
    """`summary_buffer`: once the thread's messages exceed this many tokens, the oldest are
    folded into the rolling summary."""

    buffer_tokens: int = 1000
    """`summary_buffer`: folding stops once the kept messages fit in this many tokens. Keeping
    it below the trigger means the summarizer runs every few turns, not on every turn."""

    recall_k: int = 5
    """How many long-term memory items may be recalled into the prompt."""

    recall_tokens: int = 400
    """Token budget for recalled long-term items in the prompt."""

    kg_tokens: int = 300
    """Token budget for knowledge-graph facts in the prompt."""

    kg_hops: int = 1
    """Neighbourhood depth (1 or 2) around the entities named in the new message."""

    model: str | None = None
    """Override of the deployment's chat model name for this request."""

    reply_saved: Any = field(default=None, repr=False, compare=False)
    """Set by the turn runner: an ``asyncio.Future`` that resolves once the checkpoint holding
    the reply is committed (see :func:`after_reply`)."""

    recall_ahead: Any = field(default=None, repr=False, compare=False)
    """Set by the turn runner: a ``graph.recall.RecallAhead`` started for the new message
    while the run got going; ``load_memory`` uses it instead of recalling again."""

    services: Any = field(default=None, repr=False, compare=False)
    """The run's ``graph.ports.TurnPorts`` (``mnemograph.services.Services``), handed in by
    the host process (CLI, server, tests). Typed loosely so the context stays JSON-schema
    friendly for LangGraph Studio; nodes read it through ``graph.ports.ports_of``. A graph
    built with ``default_ports`` (``langgraph dev``) fills it when absent."""


HOST_FIELDS = frozenset({"user_id", "model", "reply_saved", "recall_ahead", "services"})
"""Fields only the host sets: who is talking (from the credential), the deployment's model,
and the objects of this process. Everything else is a knob a request may set."""

REQUEST_KNOBS: tuple[str, ...] = tuple(f.name for f in fields(Context) if f.name not in HOST_FIELDS)
"""Per-request settings, derived from :class:`Context` so a new knob needs no other list."""


REPLY_WAIT_S = 10.0


async def after_reply(ctx: Context | None) -> None:
    """Hold post-reply work until the reply's checkpoint is committed.

    With async durability the post-reply nodes start while that checkpoint is still being
    written, and on a busy box their work (extraction, embedding, graph writes) slowed the
    very write the caller waits for. A failed or slow write lets the work go on regardless.
    """
    saved = getattr(ctx, "reply_saved", None)
    if isinstance(saved, asyncio.Future) and not saved.done():
        await asyncio.wait([saved], timeout=REPLY_WAIT_S)
