"""Assemble the HTTP app: lifespan, middleware, exception handlers, the REST routers, the
Agent Protocol (``/threads``, ``/runs``, ``/assistants``, ``/store``), LangServe's ``/agent``,
the MCP server at ``/mcp`` and the inspector page.

Routes authenticate, check ownership, and hand over to the same services and turn runner the
CLI uses. What lives as long as the app (services, runner, rate limiters, metrics and their
registry) is on ``app.state``, so two apps in one process share nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI

from mnemograph.langserve_adapter import AgentRunnable
from mnemograph.mcp.http import mount_mcp, serving_mcp
from mnemograph.metrics import Metrics
from mnemograph.runner import TurnRunner
from mnemograph.services import Services, open_services
from mnemograph.threads_view import state_graph
from mnemograph.web.agent import mount_agent
from mnemograph.web.deps import RateLimiter
from mnemograph.web.errors import EXCEPTION_HANDLERS
from mnemograph.web.inspector import mount_inspector
from mnemograph.web.limits import AddressLimits
from mnemograph.web.middleware import Gate
from mnemograph.web.routes import ROUTERS
from mnemograph.web.routes.me import IMPORT_PATH
from mnemograph.web.routes.openai_compat.route import _CODES as OPENAI_CODES
from mnemograph.web.routes.openai_compat.wire import error as openai_error
from mnemograph.web.routes.protocol import ROUTERS as PROTOCOL_ROUTERS
from mnemograph.web.routes.protocol.records import ThreadBook

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


@asynccontextmanager
async def _serving(app: FastAPI, services: Services) -> AsyncIterator[None]:
    """Put the services, the runner and the rate limiter on ``app.state`` and run the MCP
    server's session manager; on the way out, wait for background memory work."""
    assert services.pool is not None
    runner = TurnRunner(services, state_graph(services))  # one compiled graph: turns and reads
    app.state.services = services
    app.state.users = services.users
    app.state.runner = app.state.agent.runner = runner
    settings = services.settings
    app.state.limiter = RateLimiter(settings.rate_limit_per_min)
    app.state.address_limits = AddressLimits(
        settings.address_rate_limit_per_min, settings.open_rate_limit_per_min
    )
    # The one route whose bodies may pass the gate's 256 KB: a whole export document.
    app.state.body_limits = {IMPORT_PATH: settings.import_max_bytes}
    runner.metrics = app.state.metrics
    app.state.metrics.services = services
    app.state.thread_book = book = ThreadBook(services, runner)
    # Memory work a dead process owed is finished in the background, not at startup.
    recovery = asyncio.create_task(runner.recover_all(), name="recover-unfinished-runs")
    try:
        async with serving_mcp(app, services, runner):
            yield
    finally:
        await asyncio.gather(recovery, return_exceptions=True)
        await runner.drain()
        await book.drain()


def _lifespan(services: Services | None) -> Lifespan:
    """The app's lifespan: serve on ``services``, or on services it opens and closes itself."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if services is not None:
            async with _serving(app, services):
                yield
            return
        async with open_services() as opened, _serving(app, opened):
            yield

    return lifespan


def _openai_gate_error(status: int, message: str) -> dict[str, Any]:
    return openai_error(status, message, OPENAI_CODES.get(status))


def create_app(services: Services | None = None, *, agent_protocol: bool = True) -> FastAPI:
    """Build the app; tests pass already-open services, production opens its own.

    ``agent_protocol=False`` leaves out the Agent Protocol routes, for hosting this app
    inside langgraph_api (``langgraph.json`` ``http.app``), whose own routes serve them.
    """
    app = FastAPI(
        title="Mnemograph",
        version="0.1.0",
        description="Chat agent with durable, per-user memory.",
        lifespan=_lifespan(services),
    )
    for exc_class, handler in EXCEPTION_HANDLERS.items():
        app.add_exception_handler(exc_class, handler)
    app.state.metrics = Metrics()  # its own registry: nothing in prometheus_client's global one
    app.state.agent = AgentRunnable()
    app.add_middleware(Gate)  # auth from headers, then the body counted as it arrives
    # What the gate answers itself (401, 413, 429, 400) on the OpenAI door, in OpenAI's shape.
    app.state.error_shapes = {"/v1/": _openai_gate_error}
    for router in ROUTERS:
        app.include_router(router)
    if agent_protocol:
        for router in PROTOCOL_ROUTERS:
            app.include_router(router)
    mount_agent(app, app.state.agent)
    mount_mcp(app)
    mount_inspector(app)
    return app
