"""Accounts and GDPR: create users and API keys, export, restore or delete everything of a
user."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mnemograph.cli.common import UserOpt, err, out, run, validate_ids

users_app = typer.Typer(
    help="Accounts, API keys and GDPR export/import/delete.", no_args_is_help=True
)


@users_app.command("create")
def users_create(name: Annotated[str, typer.Argument(help="Unique user name.")]) -> None:
    """Create a user and print its API key. The key is shown once and stored only hashed."""

    async def body() -> None:
        from mnemograph.services import open_services

        async with open_services(with_graph=False) as services:
            user, key = await services.user_registry().create(name)
        out.print(f"user_id: {user.user_id}", highlight=False)
        out.print(f"api_key: {key}", highlight=False)
        err.print("[dim]store the key now: it cannot be shown again[/dim]")

    run(body)


@users_app.command("list")
def users_list() -> None:
    """List users."""

    async def body() -> None:
        from mnemograph.services import open_services

        async with open_services(with_graph=False) as services:
            rows = await services.user_registry().list()
        table = Table("user_id", "name", "created")
        for u in rows:
            table.add_row(u.user_id, u.name, f"{u.created_at:%Y-%m-%d %H:%M}")
        out.print(table)

    run(body)


@users_app.command("export")
def users_export(user: UserOpt) -> None:
    """Print everything stored for a user as one JSON document."""
    validate_ids(user=user)

    async def body() -> None:
        from mnemograph.lifecycle import export_user
        from mnemograph.services import open_services

        async with open_services() as services:
            user_id = await services.user_registry().resolve(user)
            doc = await export_user(services, user_id)
        sys.stdout.write(json.dumps(doc, ensure_ascii=False, default=str) + "\n")

    run(body)


@users_app.command("import")
def users_import(
    file: Annotated[
        Path, typer.Argument(help="An export document (`users export`); - reads stdin.")
    ],
    user: Annotated[
        str | None,
        typer.Option(
            "--user", "-u", help="Restore into this account (name or id) instead of the file's."
        ),
    ] = None,
    undelete: Annotated[
        bool,
        typer.Option(
            "--undelete",
            help="Lift the deletion tombstones of the target user and of the file's threads "
            "first, so a deleted user's data can come back under its id.",
        ),
    ] = False,
) -> None:
    """Restore an export (threads resumable, memories, graph facts); importing it twice
    changes nothing. The whole file is checked first: a thread already stored with other
    content, a deleted user or a retired thread id (without --undelete) writes nothing."""
    validate_ids(user=user)

    async def body() -> None:
        from mnemograph.backup import read_export
        from mnemograph.lifecycle import import_user
        from mnemograph.services import open_services

        doc = read_export(sys.stdin.buffer.read() if str(file) == "-" else _read(file))
        async with open_services() as services:
            target = await services.user_registry().resolve(user) if user else None
            report = await import_user(services, doc, user_id=target, undelete=undelete)
        out.print(f"user_id: {report.user_id} (exported from {report.source_user_id})",
                  highlight=False)  # fmt: skip
        table = Table("what", "count")
        for name, value in report.model_dump(exclude={"user_id", "source_user_id"}).items():
            table.add_row(name, str(value))
        out.print(table)

    run(body)


def _read(file: Path) -> bytes:
    """The file's bytes; a missing or unreadable file is one error line (exit 2)."""
    from stores.errors import InvalidInput

    try:
        return file.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {file}: {exc.strerror or type(exc).__name__}") from None


@users_app.command("delete")
def users_delete(
    user: UserOpt,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a user and everything stored for them; prints counts per store."""
    validate_ids(user=user)
    if not yes and not typer.confirm(f"Delete {user} and all their data?"):
        raise typer.Exit(1)

    async def body() -> None:
        from mnemograph.lifecycle import delete_user
        from mnemograph.services import open_services

        async with open_services() as services:
            user_id = await services.user_registry().resolve(user)
            counts = await delete_user(services, user_id)
        table = Table("store", "rows deleted")
        for name, n in counts.items():
            table.add_row(name, str(n))
        out.print(table)

    run(body)
