"""``/mcp`` on ``mnemograph serve``: the MCP server over streamable HTTP, behind the app's auth.

:func:`mount_mcp` adds the route when the app is built; :func:`serving_mcp` runs inside the
app's lifespan (``mnemograph.web.app._serving``): it builds the server on the app's services
and turn runner and runs the SDK's session manager for as long as the app serves (a mounted
SDK app's own lifespan never runs). Both live on ``app.state``, so two apps share nothing.

Every request is authenticated as every route is: the app's gate
(``mnemograph.web.middleware.Gate``) checks the API key or JWT in the headers and the rate
limit before any byte of the body is read (401, 429), and ``mnemograph.web.deps.current_user``
hands the endpoint that user (checking the headers itself in an app without the gate); the
user id then travels in the ASGI scope to the tools. The server is
stateless (each POST stands alone, no ``Mcp-Session-Id``), so ``serve --workers N`` needs no
sticky sessions and no session can be reused under another credential. Its DNS-rebinding
host check is off: callers authenticate with a key in a header, which a page that rebinds a
name to this server cannot send, and the host name the server runs behind is not known here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from mnemograph.mcp.server import Backend, ToolContext, build_server
from mnemograph.runner import TurnRunner
from mnemograph.services import Services
from mnemograph.web.deps import current_user

PATH = "/mcp"
USER_KEY = "mnemograph.user"
"""ASGI scope key holding the authenticated user id of an ``/mcp`` request."""


def request_user(ctx: ToolContext) -> str:
    """The user the ``/mcp`` endpoint authenticated for this request."""
    request = ctx.request_context.request
    user = request.scope.get(USER_KEY) if isinstance(request, Request) else None
    if not isinstance(user, str):  # only reachable if the server were served unauthenticated
        raise ToolError("this request carries no authenticated user")
    return user


class McpEndpoint:
    """The ``/mcp`` ASGI endpoint: authenticate, then hand over to the app's session manager.

    Without the app's gate in front, an authentication failure raises the ``HTTPException``
    of every route, which the app's handlers answer (401 with ``detail``, 429 with
    ``Retry-After``).
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        user = await current_user(request)
        manager: StreamableHTTPSessionManager | None = getattr(request.app.state, "mcp", None)
        if manager is None:
            raise HTTPException(503, "the MCP server is not running in this app")
        await manager.handle_request({**scope, USER_KEY: user}, receive, send)


def mount_mcp(app: FastAPI) -> None:
    """Route ``/mcp`` (POST for messages, GET and DELETE as the transport defines them)."""
    route = Route(
        PATH, endpoint=McpEndpoint(), methods=["GET", "POST", "DELETE"], include_in_schema=False
    )
    app.router.routes.append(route)


@asynccontextmanager
async def serving_mcp(app: FastAPI, services: Services, runner: TurnRunner) -> AsyncIterator[None]:
    """Run the MCP server on the app's services and runner while the app serves.

    The session manager runs in a task of its own: its anyio task group must be left by the
    task that entered it, and a lifespan may be entered and left by different tasks (test
    fixtures, hosts that drive the lifespan themselves).
    """

    @asynccontextmanager
    async def backend(_: MCPServer[Backend]) -> AsyncIterator[Backend]:
        yield Backend(services=services, runner=runner)

    server = build_server(backend, request_user)
    server.streamable_http_app(  # creates the session manager; the Starlette app is not used
        streamable_http_path=PATH,
        stateless_http=True,
        json_response=True,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    manager = server.session_manager
    started, stop = asyncio.Event(), asyncio.Event()

    async def run() -> None:
        async with manager.run():
            started.set()
            await stop.wait()

    task = asyncio.create_task(run(), name="mcp-session-manager")
    ready = asyncio.ensure_future(started.wait())
    try:
        await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # the manager failed to start: its error, here
        app.state.mcp = manager
        yield
    finally:
        ready.cancel()
        app.state.mcp = None
        stop.set()
        await task
