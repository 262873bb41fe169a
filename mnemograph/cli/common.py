"""Plumbing every ``mnemograph`` command shares: consoles, the error contract, id checks.

Errors a user can act on print one ``error:`` line and exit non-zero (2 for invalid input);
anything unexpected prints its type and first line. ``MNEMOGRAPH_DEBUG=1`` shows tracebacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from graph.context import STRATEGIES
from mnemograph.cli.logs import setup_logging
from stores.errors import InvalidInput, MnemographError
from stores.ids import check_id

out = Console()
# soft_wrap: an error is one line, whatever the terminal width.
err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")

UserOpt = Annotated[str, typer.Option("--user", "-u", help="Account name or id, or a user id.")]
ThreadOpt = Annotated[str, typer.Option("--thread", "-t", help="Thread id.")]


def run(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a command body; turn known failures into one error line and a non-zero exit."""
    debug = bool(os.environ.get("MNEMOGRAPH_DEBUG"))
    check_settings()
    setup_logging(lambda line: err.print(line, style="dim", markup=False, highlight=False))
    terminated: list[int] = []
    try:
        return asyncio.run(_awaitable(factory, terminated))
    except asyncio.CancelledError:
        if not terminated:
            raise
        raise typer.Exit(128 + terminated[0]) from None
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


def check_settings() -> None:
    """Refuse a bad environment variable in one line (exit 2) before anything starts."""
    from pydantic import ValidationError

    from stores.settings import get_settings

    try:
        get_settings()
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem["loc"]).upper()
        name = where if where in os.environ else f"MNEMOGRAPH_{where}"
        err.print(f"[red]error:[/red] invalid setting {name}: {escape(problem['msg'])}",
                  highlight=False)  # fmt: skip
        raise typer.Exit(2) from None


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
"""Signals that end a command the way Ctrl-C does (SIGHUP: its terminal went away)."""


async def _awaitable(factory: Callable[[], Awaitable[T]], terminated: list[int]) -> T:
    """Run the body; SIGTERM or SIGHUP cancels it, as asyncio.run does for Ctrl-C.

    The default action of those signals ends the process on the spot and leaves the embedded
    servers a command started running. Cancelling unwinds the body's ``async with
    open_services()`` instead, which stops them; then the process exits at once with
    128 + the signal's number, without waiting for threads still blocked (an interactive
    chat's pending ``input()`` would hold ``asyncio.run`` until the next line of input).
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()

    def on_signal(signum: int) -> None:
        if not terminated and task is not None:  # once: a second signal must not cut cleanup
            terminated.append(signum)
            task.cancel()

    installed = []
    for signum in STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, on_signal, signum)
            installed.append(signum)
    try:
        return await factory()
    except asyncio.CancelledError:
        if terminated:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
                logging.shutdown()
            os._exit(128 + terminated[0])
        raise
    finally:
        for signum in installed:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signum)


def warm_up(settings: Any) -> None:
    """Start (or join) the embedded services the CLI keeps warm, saying what happens.

    A first start can take minutes (PostgreSQL, the graph server, assembling and loading the
    1.1 GB model); each stage is shown on stderr, with a spinner on a terminal, and the total
    time at the end. A warm start prints nothing.
    """
    from mnemograph.warm import ensure_warm

    if err.is_terminal:
        with err.status("starting services…") as status:
            took = ensure_warm(settings, on_stage=lambda s: status.update(f"{s}…"))
    else:
        took = ensure_warm(settings, on_stage=lambda s: err.print(f"{s}…", highlight=False))
    if took is not None:
        err.print(
            f"services ready in {took:.0f} s; they stay up until idle for "
            f"{settings.keep_warm_s / 60:.0f} min (`mnemograph stop` stops them now)",
            style="dim",
            highlight=False,
        )


def validate_ids(**ids: str | None) -> None:
    """Refuse bad ids before anything opens a connection."""
    for kind, value in ids.items():
        if value is not None:
            try:
                check_id(f"{kind} id", value)
            except InvalidInput as exc:
                err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
                raise typer.Exit(2) from None


def strategy(value: str) -> Any:
    if value not in STRATEGIES:
        raise InvalidInput(f"unknown strategy {value!r}; choose one of {', '.join(STRATEGIES)}")
    return value
