"""One router per resource, included by ``mnemograph.web.app`` in this order."""

from __future__ import annotations

from mnemograph.web.routes import graph, health, me, memories, metrics, openai_compat, threads

ROUTERS = (
    health.router, metrics.router, threads.router, memories.router, graph.router, me.router,
    openai_compat.router,
)  # fmt: skip
"""The REST routers, in the order their routes appear in the OpenAPI document."""

__all__ = ["ROUTERS"]
