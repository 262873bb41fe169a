"""The state a thread carries from turn to turn, and what is recomputed each turn."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from langchain_core.messages import AnyMessage
from langgraph.channels import DeltaChannel, UntrackedValue
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict

from graph.ports import Recalled


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
    recalled: Annotated[list[Recalled], UntrackedValue(list)]
    turn: int
    """Count of completed turns; cheap progress marker for benchmarks and the inspector."""


class AgentState(InputState, _TurnState):
    """Thread state. Messages are stored as deltas so a checkpoint never rewrites history.

    ``recalled`` lives in an untracked channel: it is rebuilt every turn from the stores and
    is never written to a checkpoint, so recalled memories do not leak into thread history.
    """


class PlainAgentState(PlainInputState, _TurnState):
    """``AgentState`` without ``DeltaChannel`` (see ``PlainInputState``)."""


class OutputState(TypedDict, total=False):
    """What a caller gets back."""

    messages: list[AnyMessage]
    summary: str
