"""The state a thread carries from turn to turn, and what is recomputed each turn."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, cast

from langchain_core.messages import AnyMessage
from langgraph.channels import DeltaChannel, UntrackedValue
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict

from graph.ports import Extracted, Recalled


def fold_messages(current: list[AnyMessage], writes: Sequence[Any]) -> list[AnyMessage]:
    """Apply a batch of message writes in order.

    ``DeltaChannel`` replays stored writes in arbitrary batch sizes, so the reducer must give
    the same result for one big batch as for many small ones; folding ``add_messages`` over
    the writes one at a time guarantees exactly that.
    """
    state: Any = list(current)
    for write in writes:
        state = add_messages(state, write)
    return list(state)


def merge_extracted(current: Extracted | None, update: Extracted | None) -> Extracted:
    """One turn's ``extracted``: the post-reply nodes' parts merged, a new turn replacing all.

    ``extract_knowledge`` and ``write_memory`` run in the same step and each write their own
    part ("triples", "memories"); ``load_memory`` opens a turn with ``{"turn": n}``. A write
    for another turn replaces the value, so the field never accumulates across turns.
    """
    if not update:
        return current or {}
    if not current or current.get("turn") != update.get("turn"):
        return update
    merged = cast(Extracted, {**current, **update})
    if "skipped" in current and "skipped" in update:
        merged["skipped"] = {**current["skipped"], **update["skipped"]}
    return merged


class InputState(TypedDict):
    """What a caller sends: the new message(s)."""

    messages: Annotated[list[AnyMessage], DeltaChannel(fold_messages, snapshot_frequency=50)]


class PlainInputState(TypedDict):
    """The same input with a classic reducer channel, kept for benchmarks and comparison:
    every checkpoint then stores the whole message list again."""

    messages: Annotated[list[AnyMessage], add_messages]


class _TurnState(TypedDict, total=False):
    summary: str
    """Rolling summary of every message that was folded out of ``messages``."""
    recalling: Annotated[list[Recalled], UntrackedValue(list)]
    """This turn's recall as the prompt uses it. Untracked: the reply's checkpoint (which
    the caller waits for) does not carry it; ``recalled`` records it after the reply."""
    recalled: list[Recalled]
    """What ``load_memory`` recalled for this turn (id, kind, score and the text as it went
    into the prompt, already cut to the request's token budgets); replaced every turn and
    written after the reply, by ``record_recall``, beside the other post-reply nodes."""
    extracted: Annotated[Extracted, merge_extracted]
    """What the post-reply nodes made of this turn: triples with their outcome (stored,
    queued, dropped and why) and memories added or merged (see :func:`merge_extracted`)."""
    turn: int
    """Count of completed turns; cheap progress marker for benchmarks and the inspector."""


class AgentState(InputState, _TurnState):
    """Thread state. Messages are stored as deltas so a checkpoint never rewrites history.

    ``recalled`` and ``extracted`` are small, bounded records of the latest turn's memory work
    (what went into the prompt, what was written), kept in the checkpoint so Studio and
    ``get_state`` can show them. Each turn replaces them: they never grow with the thread.
    """


class PlainAgentState(PlainInputState, _TurnState):
    """``AgentState`` without ``DeltaChannel`` (see ``PlainInputState``)."""


class OutputState(TypedDict, total=False):
    """What a caller gets back."""

    messages: list[AnyMessage]
    summary: str
