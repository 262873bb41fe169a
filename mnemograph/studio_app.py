"""``http.app`` of ``langgraph.json``: the REST API, inspector and ``/agent`` beside the Agent
Protocol in one ``langgraph dev`` process, on the process's services.

langgraph-api serves the custom app's routes *before* its own, so a route on an Agent
Protocol path (``/threads``, ``/runs``, ``/assistants``, ``/store``…) would shadow the one
Studio and ``langgraph_sdk`` need. The app is built without its own Agent Protocol door, and
any other route on such a path is left out too (and named in a warning). The REST thread
routes live under ``/api/threads``; the REST API authenticates on its own (API key or JWT,
no dev user). The app's lifespan runs on the shared services (``studio_services.SERVICES``), not
on a second set it would open itself.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from mnemograph.studio_services import SERVICES, ProcessServices
from mnemograph.web import app as web_app
from mnemograph.web.middleware import Gate

log = logging.getLogger(__name__)

AGENT_PROTOCOL_PATHS = (
    "/threads", "/runs", "/assistants", "/store", "/ui", "/mcp", "/a2a", "/ok", "/info",
    "/metrics", "/docs", "/openapi.json", "/v2",
)  # fmt: skip
"""Path prefixes langgraph-api serves (or keeps for itself: ``/ok``, ``/docs``…)."""
FASTAPI_DOCS = frozenset({"/docs", "/docs/oauth2-redirect", "/openapi.json"})


def clashes(path: str) -> bool:
    """Whether a route at ``path`` would shadow (or be shadowed by) langgraph-api's.

    ``/`` is not a clash: langgraph-api lets a custom app take it (it is only a root health
    check there, ``/ok`` stays), so the inspector page keeps its address.
    """
    return any(path == prefix or path.startswith(prefix + "/") for prefix in AGENT_PROTOCOL_PATHS)


def _path(route: BaseRoute) -> str:
    return str(getattr(route, "path", ""))


def make_app(holder: ProcessServices = SERVICES) -> FastAPI:
    """``mnemograph.web.app.create_app`` without its Agent Protocol routes (langgraph-api
    serves its own) and without any other route that would clash, serving on ``holder``."""
    app = web_app.create_app(agent_protocol=False)
    # langgraph-api runs this app's middleware in front of its own routes as well: the gate
    # authenticates this app's routes only, and leaves langgraph-api's to its auth (dev user).
    app.user_middleware = [
        Middleware(Gate, foreign=clashes) if m.cls is Gate else m for m in app.user_middleware
    ]
    dropped = [route for route in app.router.routes if clashes(_path(route))]
    app.router.routes = [r for r in app.router.routes if r not in dropped]
    # FastAPI's own /docs and /openapi.json are expected to go: langgraph-api serves its own.
    unexpected = sorted({_path(r) for r in dropped} - FASTAPI_DOCS)
    if unexpected:
        log.warning(
            "REST routes left out under langgraph dev (they clash with the Agent Protocol): %s",
            ", ".join(unexpected),
        )

    # LangServe's ``add_routes`` registers a startup hook that prints its banner; langgraph-api
    # refuses to merge lifespans with startup hooks, and the banner is all it does.
    app.router.on_startup = [
        hook for hook in app.router.on_startup
        if not getattr(hook, "__module__", "").startswith("langserve")
    ]  # fmt: skip

    @asynccontextmanager
    async def lifespan(served: FastAPI) -> AsyncIterator[None]:
        async with holder.lease() as services, web_app._lifespan(services)(served):
            yield

    app.router.lifespan_context = lifespan
    return app


app = make_app()
"""The app ``langgraph.json`` names (nothing is opened until its lifespan starts)."""

__all__ = ["AGENT_PROTOCOL_PATHS", "app", "clashes", "make_app"]
