"""``mnemograph mcp --user U``: the MCP memory server over stdio, for desktop MCP clients.

A client (Claude Desktop, an IDE) starts this command and speaks MCP on its stdin and stdout,
so stdout carries protocol only: the SDK's stdio transport points file descriptor 1 at stderr
while it serves (stray prints, the embedded servers' children and their output all miss the
wire), and the services are opened inside the server's lifespan, that is after the transport
took the descriptors. Logs go to the data dir's log file, as for every command, and the
one-line error contract holds for failures before or after serving.

As with every command, ``--user`` is an account's name or id (meaning that account), or any
other valid user id (a user without an account, whose data is created on first write); no key
is needed, since whoever can run this command reads the database directly anyway.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from mnemograph.cli.common import UserOpt, run, validate_ids

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from mnemograph.mcp.server import Backend


def mcp(user: UserOpt) -> None:
    """Serve your memories to an MCP client over stdio (for Claude Desktop, IDEs, agents).

    Tools: search_memories, add_memory, delete_memory, current_facts, fact_history, recall
    and chat; resource mnemograph://facts/user (your profile). Protocol on stdout only.
    """
    validate_ids(user=user)

    async def body() -> None:
        from mnemograph.mcp.server import Backend, build_server
        from mnemograph.runner import TurnRunner
        from mnemograph.services import open_services
        from stores.settings import get_settings

        resolved: list[str] = []  # the user id --user means, known once the services open

        @asynccontextmanager
        async def backend(_: MCPServer[Backend]) -> AsyncIterator[Backend]:
            async with open_services(get_settings()) as services:
                resolved[:] = [await services.user_registry().resolve(user)]
                runner = TurnRunner(services)
                try:
                    yield Backend(services=services, runner=runner)
                finally:
                    await runner.drain()  # memory work of the last chat turn lands first

        server = build_server(backend, lambda _ctx: resolved[0])
        await server.run_stdio_async()

    run(body)
