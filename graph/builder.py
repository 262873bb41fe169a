"""Assemble the turn: the pipeline below is the whole graph, one line per node.

Nodes up to the reply run in order. The nodes after it (summary, knowledge graph, long-term
memory) only read the finished exchange and write to different places, so they run side by
side in one step: the memory work finishes sooner and each turn saves two checkpoints fewer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore

from graph.context import Context
from graph.ports import TurnPorts
from graph.state import AgentState, InputState, OutputState, PlainAgentState, PlainInputState
from nodes.call_model import call_model
from nodes.extract_knowledge import extract_knowledge
from nodes.load_memory import load_memory
from nodes.record_recall import record_recall
from nodes.summarize import summarize
from nodes.write_memory import write_memory

REPLY_NODE = "call_model"

# Memory writes come after the reply, so model output never becomes memory mid-turn.
Node = Callable[[AgentState, Runtime[Context]], Awaitable[dict[str, Any]]]
"""A node: a pure async function of (state, runtime) that returns a state update."""

PIPELINE: Sequence[tuple[str, Node]] = (
    ("load_memory", load_memory),
    ("call_model", call_model),
    ("summarize", summarize),
    ("extract_knowledge", extract_knowledge),
    ("write_memory", write_memory),
    ("record_recall", record_recall),
)


PortsProvider = Callable[[], Awaitable[TurnPorts]]
"""Builds (once) the ports a run uses when its context brings none."""


def with_default_ports(node: Node, provider: PortsProvider) -> Node:
    """The node, run with ``provider``'s ports whenever the run's context has none.

    Hosts pass their services in ``Context.services``; a platform that builds the context
    itself from a request (``langgraph dev``) cannot, so its graph is built with a provider.
    """

    async def run(state: AgentState, runtime: Runtime[Context]) -> dict[str, Any]:
        ctx = runtime.context or Context()
        if ctx.services is None:
            ctx = replace(ctx, services=await provider())
            runtime = runtime.override(context=ctx)
        return await node(state, runtime)

    run.__name__ = run.__qualname__ = getattr(node, "__name__", "node")
    run.__doc__ = node.__doc__
    return run


def build_graph(
    checkpointer: BaseCheckpointSaver[Any] | None = None,
    store: BaseStore | None = None,
    *,
    pipeline: Sequence[tuple[str, Node]] = PIPELINE,
    delta_messages: bool = True,
    default_ports: PortsProvider | None = None,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Compile the turn graph; hosts pass the Postgres checkpointer and store.

    ``delta_messages=False`` swaps the ``DeltaChannel`` for a plain reducer; it exists so the
    growth benchmark can show what the delta channel saves. ``default_ports`` serves runs
    whose context carries no services (see :func:`with_default_ports`).
    """
    state: Any = AgentState if delta_messages else PlainAgentState
    inputs: Any = InputState if delta_messages else PlainInputState
    builder = StateGraph(
        state, context_schema=Context, input_schema=inputs, output_schema=OutputState
    )
    names = [name for name, _ in pipeline]
    reply_at = names.index(REPLY_NODE) if REPLY_NODE in names else len(names) - 1
    previous = START
    for i, (name, node) in enumerate(pipeline):
        runnable: Any = node if default_ports is None else with_default_ports(node, default_ports)
        builder.add_node(name, runnable, input_schema=state)
        if i <= reply_at:
            builder.add_edge(previous, name)
            previous = name
        else:  # after the reply: all fan out from it and run in the same step
            builder.add_edge(names[reply_at], name)
    return builder.compile(checkpointer=checkpointer, store=store, name="mnemograph")

