"""The ``mnemograph`` command line.

Every command opens the same services the server uses, so what works here works over HTTP.
"""

from __future__ import annotations

import typer

from mnemograph.cli import admin, chat
from mnemograph.cli.mcp import mcp
from mnemograph.cli.memories import memories_app
from mnemograph.cli.users import users_app

app = typer.Typer(
    name="mnemograph",
    help="A chat agent whose memory survives long conversations, restarts and many users.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(chat.chat)
app.command()(chat.threads)
app.command()(chat.history)
app.command()(admin.graph)
app.command()(admin.serve)
app.command()(admin.prune)
app.command()(admin.stop)
app.command()(admin.migrate)
app.command()(mcp)
app.add_typer(users_app, name="users")
app.add_typer(memories_app, name="memories", help="Long-term memory: add, search, import.")


def main() -> None:
    """Console-script entry point."""
    app()
