"""Operating the service: inspect a user's knowledge graph, serve HTTP."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
from typing import Annotated

import typer
from rich.markup import escape

from mnemograph.cli.common import UserOpt, check_settings, err, out, run, validate_ids
from stores.errors import MnemographError


def graph(
    user: UserOpt,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    history: Annotated[
        bool, typer.Option("--history", help="Include invalidated facts (with invalid_at).")
    ] = False,
) -> None:
    """Print a user's current knowledge-graph facts (with --history, replaced ones too)."""
    validate_ids(user=user)

    async def body() -> None:
        from mnemograph.services import open_services
        from stores.errors import ServiceUnavailable
        from stores.knowledge.rules import fact_line

        async with open_services() as services:
            if services.graph is None:
                raise ServiceUnavailable("graph server", "not reachable; see the log above")
            read = services.graph.history if history else services.graph.current_facts
            facts = await read(await services.user_registry().resolve(user))
        if as_json:
            sys.stdout.write(json.dumps(facts, ensure_ascii=False, default=str) + "\n")
            return
        for fact in facts:
            out.print(escape(fact_line(fact)))
        if not facts:
            out.print(f"no facts for {user}")

    run(body)


def migrate() -> None:
    """Create or update every table, index and trigger now (starts also do it when behind)."""

    async def body() -> None:
        from mnemograph.services import open_services
        from stores.postgres.migrations import SCHEMA_VERSION

        async with open_services(with_embeddings=False, with_graph=False, migrate=True):
            pass
        out.print(f"schema is at version {SCHEMA_VERSION}")

    run(body)


def stop() -> None:
    """Stop the embedded services and local model the CLI keeps warm between calls."""
    from mnemograph.warm import stop_warm

    if stop_warm():
        out.print("stopped the embedded services")
    else:
        out.print("nothing was running")


def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Uvicorn worker processes.")] = 1,
) -> None:
    """Serve the HTTP API, LangServe /agent and the inspector page.

    SIGTERM and SIGINT stop it cleanly: uvicorn shuts the app down (its lifespan closes the
    services, which stops the embedded servers they started), then exits 0.
    """
    import uvicorn

    check_settings()  # a bad variable (a short JWT secret...) is one line and exit 2
    logging.basicConfig(level=os.environ.get("MNEMOGRAPH_LOG_LEVEL", "WARNING").upper())
    # uvicorn handles SIGTERM and SIGINT itself while it runs; after its graceful shutdown it
    # restores the handlers it found and raises the signal again. SIGINT's default handler
    # raises KeyboardInterrupt, which uvicorn.run swallows; SIGTERM's default action would
    # kill the process on the spot, skipping everything still to run here and at exit.
    # Found this handler instead, SIGTERM ends serve the way SIGINT does.
    previous = signal.signal(signal.SIGTERM, _terminate_like_sigint)
    try:
        with contextlib.ExitStack() as stack:
            if workers > 1:
                _start_shared_embedded(stack)
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
    except KeyboardInterrupt:  # a signal before uvicorn took over; the stack is closed
        raise typer.Exit(0) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def _terminate_like_sigint(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _start_shared_embedded(stack: contextlib.ExitStack) -> None:
    """Start the embedded servers once, before the workers, which then join them.

    Workers start at the same moment; each starting its own ArcadeDB on one data dir raced
    (ports, file locks) and cost a third of the requests in the load bench. Started here, the
    servers are found running by every worker and stopped when ``serve`` exits.
    """
    from stores.knowledge.arcadedb import start_arcadedb
    from stores.postgres.embedded import start_embedded_postgres
    from stores.settings import get_settings

    settings = get_settings()
    if settings.database_url is None:
        pg = start_embedded_postgres(settings.pg_data_dir, keep_running=False)
        stack.callback(pg.release)  # held until serve exits; the last holder stops it
    if settings.neo4j_uri is None:
        graph_server = start_arcadedb(settings.graph_data_dir)
        stack.callback(graph_server.stop)


def prune(
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            help="Age such as 30d, 12h or 2w; default MNEMOGRAPH_RETENTION_DAYS.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Remove old checkpoints (each thread keeps what it needs) and expired memories.

    Safe while the server runs: a thread in the middle of a turn is skipped and reported.
    """

    async def body() -> None:
        from datetime import timedelta

        from mnemograph.retention import parse_age
        from mnemograph.retention import prune as prune_all
        from mnemograph.services import open_services
        from stores.errors import InvalidInput
        from stores.settings import get_settings

        settings = get_settings()
        if older_than is not None:
            age = parse_age(older_than)
        elif settings.retention_days is not None:
            age = timedelta(days=settings.retention_days)
        else:
            raise InvalidInput("give --older-than (e.g. 30d) or set MNEMOGRAPH_RETENTION_DAYS")
        async with open_services(
            settings, with_graph=False, with_memory=False, with_embeddings=False
        ) as services:
            report = await prune_all(services, age)
        counts = report.counts()
        if as_json:
            sys.stdout.write(json.dumps(counts) + "\n")
            return
        for name, n in counts.items():
            out.print(f"{name}: {n}", highlight=False)

    run(body)
