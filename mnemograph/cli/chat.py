"""Conversation commands: chat in a thread, list threads, print a thread's history."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from graph.context import STRATEGIES
from mnemograph.cli.common import ThreadOpt, UserOpt, err, out, run, strategy, validate_ids, warm_up
from mnemograph.cli.logs import TurnNotices


def chat(
    user: UserOpt,
    thread: ThreadOpt,
    message: Annotated[
        str | None, typer.Option("--message", "-m", help="Answer this one message and exit.")
    ] = None,
    strategy_name: Annotated[
        str,
        typer.Option("--strategy", help="Short-term memory: " + ", ".join(STRATEGIES)),
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
    """Chat in a thread; with -m, answer once and exit (for scripts).

    The embedded services and the local model stay running between calls until idle for
    MNEMOGRAPH_KEEP_WARM_S seconds (default 900; `mnemograph stop` stops them now).
    Warnings never interrupt the chat: they go to $MNEMOGRAPH_DATA_DIR/logs/mnemograph.log
    (default ./.mnemograph/logs/mnemograph.log); a memory step that failed is reported in one
    line after the reply.
    """
    validate_ids(user=user, thread=thread)

    knobs: dict[str, Any] = {
        "strategy": strategy_name,
        "window_k": window_k,
        "max_tokens": max_tokens,
        "summary_trigger_tokens": summary_trigger,
        "buffer_tokens": buffer_tokens,
    }

    async def body() -> None:
        from mnemograph.validation import check_knobs
        from mnemograph.warm import holding
        from stores.settings import get_settings

        strategy(strategy_name)
        check_knobs(knobs)  # bounds first: a clear error before anything starts
        settings = get_settings()
        await asyncio.to_thread(warm_up, settings)
        with holding(settings):
            await converse(settings)

    async def converse(settings: Any) -> None:
        from mnemograph.runner import TurnRunner
        from mnemograph.services import open_services

        async with open_services(settings) as services:
            user_id = await services.user_registry().resolve(user)
            await services.thread_registry().claim(user_id, thread, title=(message or "")[:60])
            runner = TurnRunner(services)
            notices = TurnNotices()

            async def turn(text: str) -> None:
                timing("turn_start")
                stream: Any = runner.stream(
                    user_id, thread, [{"type": "human", "content": text}],
                    stream_mode="messages", **knobs,
                )  # fmt: skip
                with notices:
                    async for chunk, meta in stream:
                        if meta.get("langgraph_node") == "call_model" and chunk.text:
                            out.print(chunk.text, end="", markup=False, highlight=False)
                    out.print()
                for line in notices.take():
                    err.print(line, style="yellow", markup=False, highlight=False)
                timing("turn_end")

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

    run(body)


def timing(mark: str) -> None:
    """With ``MNEMOGRAPH_TIMINGS=1``, print ``timing: <mark>=<epoch s>`` on stderr.

    ``bench.cli_start`` reads these marks to split a CLI call into start-up overhead, the
    turn itself, and shutdown, from outside the process.
    """
    if os.environ.get("MNEMOGRAPH_TIMINGS"):
        err.print(f"timing: {mark}={time.time():.3f}", markup=False, highlight=False)


def threads(user: UserOpt) -> None:
    """List a user's threads, newest first."""
    validate_ids(user=user)

    async def body() -> None:
        from mnemograph.services import open_services

        async with open_services(with_graph=False) as services:
            rows = await services.thread_registry().list(
                await services.user_registry().resolve(user)
            )
        table = Table("thread", "title", "created", "updated")
        for r in rows:
            table.add_row(
                r.thread_id,
                r.title,
                f"{r.created_at:%Y-%m-%d %H:%M}",
                f"{r.updated_at:%Y-%m-%d %H:%M}",
            )
        out.print(table if rows else f"no threads for {user}")

    run(body)


def history(
    thread: ThreadOpt,
    user: UserOpt,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print a thread's messages and its rolling summary."""
    validate_ids(thread=thread, user=user)

    async def body() -> None:
        from mnemograph.services import open_services
        from mnemograph.threads_view import read_thread

        async with open_services(with_graph=False) as services:
            owner = await services.user_registry().resolve(user)  # thread ids are per user
            info = await services.thread_registry().get(thread, owner)
            doc = await read_thread(services, info, omit=("title", "created_at", "updated_at"))
        messages: list[dict[str, Any]] = doc["messages"]
        if as_json:
            sys.stdout.write(json.dumps(doc, ensure_ascii=False) + "\n")
            return
        if doc["summary"]:
            out.print(f"[bold]summary[/bold]: {escape(str(doc['summary']))}")
        for m in messages:
            style = "cyan" if m["type"] == "human" else "green"
            out.print(f"[{style}]{m['type']}[/{style}]: {escape(m['content'])}")

    run(body)
