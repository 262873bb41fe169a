"""The ``mnemograph`` command line: chat, inspect threads, and administer memory.

Every command opens the same services the server uses, so what works here works over HTTP.
Errors a user can act on print one line and exit non-zero; tracebacks only with --debug.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from graph.context import STRATEGIES, Context
from stores.errors import InvalidInput, MnemographError
from stores.ids import check_id

app = typer.Typer(
    name="mnemograph",
    help="A chat agent whose memory survives long conversations, restarts and many users.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
out = Console()
# soft_wrap: an error is one line, whatever the terminal width.
err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")

UserOpt = Annotated[str, typer.Option("--user", "-u", help="User id (owner of the thread).")]
ThreadOpt = Annotated[str, typer.Option("--thread", "-t", help="Thread id.")]


def _run(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a command body; turn known failures into one error line and a non-zero exit."""
    debug = bool(os.environ.get("MNEMOGRAPH_DEBUG"))
    logging.basicConfig(
        level=os.environ.get("MNEMOGRAPH_LOG_LEVEL", "WARNING").upper(), stream=sys.stderr
    )
    try:
        return asyncio.run(_awaitable(factory))
    except MnemographError as exc:
        if debug:
            raise
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2 if isinstance(exc, InvalidInput) else 1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except Exception as exc:
        if debug:
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        err.print(
            f"[red]error:[/red] {type(exc).__name__}: {escape(first)}"
            " (set MNEMOGRAPH_DEBUG=1 for a traceback)",
            highlight=False,
        )
        raise typer.Exit(1) from None


async def _awaitable(factory: Callable[[], Awaitable[T]]) -> T:
    return await factory()


def _strategy(value: str) -> Any:
    if value not in STRATEGIES:
        raise InvalidInput(f"unknown strategy {value!r}; choose one of {', '.join(STRATEGIES)}")
    return value


@app.command()
def chat(
    user: UserOpt,
    thread: ThreadOpt,
    message: Annotated[
        str | None, typer.Option("--message", "-m", help="Answer this one message and exit.")
    ] = None,
    strategy: Annotated[
        str, typer.Option(help="Short-term memory: " + ", ".join(STRATEGIES))
    ] = "summary_buffer",
    window_k: Annotated[int, typer.Option(min=1, help="Exchanges kept by 'window'.")] = 4,
    max_tokens: Annotated[int, typer.Option(min=16, help="Token budget for 'tokens'.")] = 2000,
    summary_trigger: Annotated[
        int, typer.Option(min=16, help="'summary_buffer': summarize past this many tokens.")
    ] = 2000,
    buffer_tokens: Annotated[
        int, typer.Option(min=8, help="'summary_buffer': recent messages kept, in tokens.")
    ] = 1000,
) -> None:
    """Chat in a thread; with -m, answer once and exit (for scripts)."""
    _validate_ids(user=user, thread=thread)

    async def body() -> None:
        from langchain_core.messages import HumanMessage

        from graph.builder import build_graph
        from stores.services import open_services

        async with open_services() as services:
            assert services.threads is not None
            await services.threads.claim(user, thread, title=(message or "")[:60])
            graph = build_graph(services.checkpointer, services.store)
            ctx = Context(
                user_id=user,
                strategy=_strategy(strategy),
                window_k=window_k,
                max_tokens=max_tokens,
                summary_trigger_tokens=summary_trigger,
                buffer_tokens=buffer_tokens,
                services=services,
            )
            config: Any = {"configurable": {"thread_id": thread}}

            async def turn(text: str) -> None:
                if not text.strip():
                    raise InvalidInput("empty message")
                stream: Any = graph.astream(
                    {"messages": [HumanMessage(content=text)]},
                    config,
                    context=ctx,
                    stream_mode="messages",
                    durability=services.settings.durability,
                )
                async for chunk, meta in stream:
                    if meta.get("langgraph_node") == "call_model" and chunk.text:
                        out.print(chunk.text, end="", markup=False, highlight=False)
                out.print()

            if message is not None:
                await turn(message)
                return
            out.print(f"[dim]thread {thread} — type /exit or Ctrl-D to leave[/dim]")
            while True:
                try:
                    text = await asyncio.to_thread(input, "you> ")
                except EOFError:
                    return
                if text.strip() in ("/exit", "/quit"):
                    return
                if text.strip():
                    await turn(text)

    _run(body)


def _validate_ids(**ids: str | None) -> None:
    for kind, value in ids.items():
        if value is not None:
            try:
                check_id(f"{kind} id", value)
            except InvalidInput as exc:
                err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
                raise typer.Exit(2) from None


@app.command()
def threads(user: UserOpt) -> None:
    """List a user's threads, newest first."""
    _validate_ids(user=user)

    async def body() -> None:
        from stores.services import open_services

        async with open_services(with_graph=False) as services:
            assert services.threads is not None
            rows = await services.threads.list(user)
        table = Table("thread", "title", "created", "updated")
        for r in rows:
            table.add_row(
                r.thread_id,
                r.title,
                f"{r.created_at:%Y-%m-%d %H:%M}",
                f"{r.updated_at:%Y-%m-%d %H:%M}",
            )
        out.print(table if rows else f"no threads for {user}")

    _run(body)


@app.command()
def history(
    thread: ThreadOpt,
    user: Annotated[
        str | None, typer.Option("--user", "-u", help="Only show it if this user owns it.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print a thread's messages and its rolling summary."""
    _validate_ids(thread=thread, user=user)

    async def body() -> None:
        from graph.builder import build_graph
        from stores.services import open_services

        async with open_services(with_graph=False) as services:
            assert services.threads is not None
            info = await services.threads.get(thread, user)
            graph = build_graph(services.checkpointer, services.store)
            snapshot = await graph.aget_state({"configurable": {"thread_id": thread}})
        values = snapshot.values or {}
        messages = [
            {"id": m.id, "type": m.type, "content": m.text} for m in values.get("messages", [])
        ]
        doc = {
            "thread_id": thread,
            "user_id": info.user_id,
            "summary": values.get("summary", ""),
            "turns": values.get("turn", 0),
            "messages": messages,
        }
        if as_json:
            sys.stdout.write(json.dumps(doc, ensure_ascii=False) + "\n")
            return
        if doc["summary"]:
            out.print(f"[bold]summary[/bold]: {escape(str(doc['summary']))}")
        for m in messages:
            style = "cyan" if m["type"] == "human" else "green"
            out.print(f"[{style}]{m['type']}[/{style}]: {escape(m['content'])}")

    _run(body)


def _mount_memories() -> None:
    from cli_memories import memories_app

    app.add_typer(memories_app, name="memories", help="Long-term memory: add, search, import.")


_mount_memories()

users_app = typer.Typer(help="Accounts, API keys and GDPR export/delete.", no_args_is_help=True)
app.add_typer(users_app, name="users")


@users_app.command("create")
def users_create(name: Annotated[str, typer.Argument(help="Unique user name.")]) -> None:
    """Create a user and print its API key. The key is shown once and stored only hashed."""

    async def body() -> None:
        from stores.services import open_services

        async with open_services(with_graph=False) as services:
            assert services.users is not None
            user, key = await services.users.create(name)
        out.print(f"user_id: {user.user_id}", highlight=False)
        out.print(f"api_key: {key}", highlight=False)
        err.print("[dim]store the key now: it cannot be shown again[/dim]")

    _run(body)


@users_app.command("list")
def users_list() -> None:
    """List users."""

    async def body() -> None:
        from stores.services import open_services

        async with open_services(with_graph=False) as services:
            assert services.users is not None
            rows = await services.users.list()
        table = Table("user_id", "name", "created")
        for u in rows:
            table.add_row(u.user_id, u.name, f"{u.created_at:%Y-%m-%d %H:%M}")
        out.print(table)

    _run(body)


@users_app.command("export")
def users_export(user: UserOpt) -> None:
    """Print everything stored for a user as one JSON document."""
    _validate_ids(user=user)

    async def body() -> None:
        from stores.lifecycle import export_user
        from stores.services import open_services

        async with open_services() as services:
            assert services.users is not None
            user_id = await _resolve_user(services, user)
            doc = await export_user(services, user_id)
        sys.stdout.write(json.dumps(doc, ensure_ascii=False, default=str) + "\n")

    _run(body)


@users_app.command("delete")
def users_delete(
    user: UserOpt,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a user and everything stored for them; prints counts per store."""
    _validate_ids(user=user)
    if not yes and not typer.confirm(f"Delete {user} and all their data?"):
        raise typer.Exit(1)

    async def body() -> None:
        from stores.lifecycle import delete_user
        from stores.services import open_services

        async with open_services() as services:
            user_id = await _resolve_user(services, user)
            counts = await delete_user(services, user_id)
        table = Table("store", "rows deleted")
        for name, n in counts.items():
            table.add_row(name, str(n))
        out.print(table)

    _run(body)


async def _resolve_user(services: Any, user: str) -> str:
    """Accept a user name or id; ids of users without an account (CLI-only) pass through."""
    from stores.errors import NotFound

    try:
        return str((await services.users.get(user)).user_id)
    except NotFound:
        return user


@app.command()
def graph(
    user: UserOpt,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print a user's current knowledge-graph facts."""
    _validate_ids(user=user)

    async def body() -> None:
        from graph.kg import fact_line
        from stores.errors import ServiceUnavailable
        from stores.services import open_services

        async with open_services() as services:
            if services.graph is None:
                raise ServiceUnavailable("graph server", "not reachable; see the log above")
            facts = await services.graph.current_facts(user)
        if as_json:
            sys.stdout.write(json.dumps(facts, ensure_ascii=False, default=str) + "\n")
            return
        for fact in facts:
            out.print(escape(fact_line(fact)))
        if not facts:
            out.print(f"no facts for {user}")

    _run(body)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Uvicorn worker processes.")] = 1,
) -> None:
    """Serve the HTTP API, LangServe /agent and the inspector page."""
    import uvicorn

    logging.basicConfig(level=os.environ.get("MNEMOGRAPH_LOG_LEVEL", "WARNING").upper())
    try:
        uvicorn.run(
            "server:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
            access_log=False,
        )
    except MnemographError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
