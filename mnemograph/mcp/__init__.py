"""The MCP memory server: one user's memories, facts and recall as MCP tools.

``tools`` holds the work as plain async functions over :class:`mnemograph.services.Services`
and a user id (no SDK types, so they are tested and reused without a transport); ``server``
turns them into an ``mcp`` SDK ``MCPServer``; ``http`` serves it at ``/mcp`` on
``mnemograph serve`` behind the app's own authentication, and ``mnemograph mcp`` serves it
over stdio for one user (``mnemograph.cli.mcp``).
"""
