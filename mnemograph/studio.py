"""The graph ``langgraph.json`` points at: the turn pipeline for ``langgraph dev``.

The platform brings its own checkpointer and builds each run's context from the request, so
no host can hand the nodes their services. The graph is built with a provider instead: on
the first run it builds one :class:`~mnemograph.services.Services` (settings and the chat
model, built lazily) and every later run reuses it. The provider owns that object; nothing
is opened at import time.
"""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from graph.builder import build_graph
from graph.ports import TurnPorts
from mnemograph.services import Services
from stores.settings import get_settings


class LazyServices:
    """Builds the services on first use, once, even when runs start together."""

    def __init__(self) -> None:
        self._services: Services | None = None
        self._lock = asyncio.Lock()

    async def __call__(self) -> TurnPorts:
        async with self._lock:
            if self._services is None:
                self._services = Services(settings=get_settings())
            return self._services


def make_graph() -> CompiledStateGraph[Any, Any, Any, Any]:
    """The pipeline with lazily built services and no checkpointer (the platform's)."""
    return build_graph(default_ports=LazyServices())


graph = make_graph()
