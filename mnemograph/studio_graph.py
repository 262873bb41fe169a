"""The turn pipeline as ``langgraph dev`` runs it: the same nodes, on the process's services,
for the user the request authenticated as.

langgraph-api builds each run's context from the request body and brings the checkpointer
and store itself, so no host can hand the nodes their services or vouch for the user. Each
node is therefore wrapped: it finds the process's :class:`~mnemograph.services.Services`
(``studio_services.SERVICES``), takes ``user_id`` from the run's authenticated identity
(``langgraph_auth_user_id``, set by ``studio_auth``; a ``user_id`` sent in the context is
ignored) and, on the first node, claims the thread for that user in the thread registry, so
Studio threads have an owner like every other thread (export, delete, ownership checks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from langgraph.config import get_config
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime

from graph.builder import PIPELINE, Node, build_graph
from graph.context import Context
from graph.state import AgentState
from mnemograph.services import Services
from mnemograph.studio_services import SERVICES, ProcessServices
from stores.errors import ConfigurationError
from stores.ids import check_id

AUTH_USER_KEY = "langgraph_auth_user_id"
"""Where langgraph-api puts the authenticated identity in a run's ``configurable``."""


def _configurable() -> dict[str, Any]:
    try:
        return dict(get_config().get("configurable") or {})
    except RuntimeError:  # outside a run (a direct call in a test)
        return {}


def run_user(services: Services, configurable: dict[str, Any]) -> str:
    """The run's user: the authenticated identity, else the configured dev user."""
    identity = configurable.get(AUTH_USER_KEY)
    if identity:
        return check_id("user id", str(identity))
    dev_user = getattr(services.settings, "dev_user", "")
    if dev_user:
        return check_id("user id", str(dev_user))
    raise ConfigurationError(
        "this run has no authenticated user: configure auth.path in langgraph.json or set "
        "MNEMOGRAPH_DEV_USER"
    )


def on_services(name: str, node: Node, holder: ProcessServices, *, claim: bool) -> Node:
    """``node`` run on ``holder``'s services, as the run's authenticated user."""

    async def run(state: AgentState, runtime: Runtime[Context]) -> dict[str, Any]:
        services = await holder.get()
        configurable = _configurable()
        user_id = run_user(services, configurable)
        thread_id = configurable.get("thread_id")
        if claim and thread_id is not None and services.threads is not None:
            # The platform writes this thread's checkpoints under its own (server-issued,
            # unguessable) id: that id is the storage key. A foreign thread: 404.
            await services.threads.claim(user_id, str(thread_id), key=str(thread_id))
        ctx = runtime.context or Context()
        ctx = replace(ctx, user_id=user_id, services=services)
        return await node(state, runtime.override(context=ctx))

    run.__name__ = run.__qualname__ = name
    run.__doc__ = node.__doc__
    return run


def make_graph(
    holder: ProcessServices = SERVICES, pipeline: Sequence[tuple[str, Node]] = PIPELINE
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """The pipeline on ``holder``'s services, without checkpointer or store (the platform
    passes the ones ``langgraph.json`` names)."""
    first = pipeline[0][0]
    wrapped = [
        (name, on_services(name, node, holder, claim=name == first)) for name, node in pipeline
    ]
    return build_graph(pipeline=wrapped, delta_messages=holder.current_settings().delta_messages)


graph = make_graph()
"""The graph ``langgraph.json`` names (nothing is opened until the first run)."""

__all__ = ["graph", "make_graph", "on_services", "run_user"]
