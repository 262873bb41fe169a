"""``mnemograph memories …``: add, search and import a user's long-term memories directly.

Mounted by ``cli`` as a typer sub-app. It goes through the same ``open_services`` and
:class:`stores.memory.store.MemoryStore` as the graph, so an import is searchable in chat.
Bad input prints one error line and exits non-zero; nothing is stored from a bad import file.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mnemograph.cli.common import UserOpt, err, out, run, validate_ids
from stores.errors import InvalidInput, MnemographError

memories_app = typer.Typer(
    name="memories",
    help="Long-term memories: add, search, import history.",
    no_args_is_help=True,
)
IMPORT_BATCH = 128


def _memory(services: Any) -> Any:
    if services.memory is None:  # pragma: no cover - open_services always sets it
        raise MnemographError("long-term memory is not configured")
    return services.memory


@memories_app.command("add")
def add(
    user: UserOpt,
    text: Annotated[str, typer.Option("--text", help="The memory, one sentence.")],
    kind: Annotated[str, typer.Option(help="fact, preference, semantic or turn.")] = "fact",
    importance: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.5,
) -> None:
    """Add one memory (a near-duplicate updates the existing one)."""

    validate_ids(user=user)

    async def body() -> None:
        from mnemograph.services import open_services

        async with open_services() as services:
            user_id = await services.user_registry().resolve(user)
            item = await _memory(services).add(user_id, text, kind=kind, importance=importance)
        out.print(f"{item.id}\t{escape(item.text)}", highlight=False)

    run(body)


@memories_app.command("search")
def search(
    user: UserOpt,
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option("--k", "-k", min=1, max=100)] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """Hybrid search (full text + vectors) of one user's memories, best first."""

    validate_ids(user=user)

    async def body() -> None:
        from mnemograph.services import open_services
        from stores.memory.model import render_memory

        async with open_services() as services:
            user_id = await services.user_registry().resolve(user)
            hits = await _memory(services).search(user_id, query, k=k)
        if as_json:
            for hit in hits:
                row = {"id": hit.item.id, "score": round(hit.score, 4), "kind": hit.item.kind,
                       "text": hit.item.text}  # fmt: skip
                sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
            return
        table = Table(title=f"memories of {user} for {query!r}")
        for col in ("#", "score", "kind", "memory", "id"):
            table.add_column(col, overflow="fold")
        for i, hit in enumerate(hits, 1):
            table.add_row(
                str(i),
                f"{hit.score:.3f}",
                hit.item.kind,
                escape(render_memory(hit.item)),
                hit.item.id,
            )
        out.print(table)
        if not hits:
            out.print("no matching memories")

    run(body)


def parse_import_line(line: str, lineno: int) -> Any:
    """One JSONL turn -> ``NewMemory``. Accepted keys: text (required), speaker, at/event_at
    (ISO 8601), id (kept as provenance), kind (default turn), importance, session, metadata."""
    from stores.memory.model import KINDS, NewMemory

    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"line {lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(row, dict):
        raise InvalidInput(f"line {lineno}: expected a JSON object")
    text = row.get("text")
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput(f"line {lineno}: 'text' must be a non-empty string")
    speaker = row.get("speaker")
    when = row.get("at", row.get("event_at"))
    event_at = None
    if when is not None:
        try:
            event_at = datetime.fromisoformat(str(when))
        except ValueError:
            raise InvalidInput(f"line {lineno}: 'at' is not an ISO 8601 time: {when!r}") from None
    kind = str(row.get("kind", "turn"))
    if kind not in KINDS:
        raise InvalidInput(f"line {lineno}: unknown kind {kind!r}")
    importance = row.get("importance", 0.5)
    if not isinstance(importance, int | float) or not 0 <= importance <= 1:
        raise InvalidInput(f"line {lineno}: 'importance' must be a number in [0, 1]")
    metadata = row.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InvalidInput(f"line {lineno}: 'metadata' must be an object")
    if "session" in row:
        metadata = {**metadata, "session": row["session"]}
    if speaker:
        metadata = {**metadata, "speaker": str(speaker)}
    source = row.get("id")
    return NewMemory(
        text=f"{speaker}: {text}" if speaker else text,
        kind=kind,
        importance=float(importance),
        event_at=event_at,
        provenance=[str(source)] if source is not None else [],
        metadata=metadata,
    )


@memories_app.command("import")
def import_(
    user: UserOpt,
    file: Annotated[Path, typer.Argument(help="JSON lines, one turn per line.")],
    window: Annotated[
        int, typer.Option(min=0, max=5, help="Neighbouring turns indexed as context.")
    ] = 2,
) -> None:
    """Import a conversation history: every line becomes one searchable memory."""

    def read_items() -> list[Any]:
        if not file.is_file():
            raise InvalidInput(f"no such file: {file}")
        items = []
        with file.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if line.strip():
                    items.append(parse_import_line(line, lineno))
        if not items:
            raise InvalidInput(f"{file} has no turns")
        return items

    validate_ids(user=user)

    async def body() -> None:
        from mnemograph.services import open_services
        from stores.memory.model import with_neighbour_context

        items = with_neighbour_context(await asyncio.to_thread(read_items), window=window)
        async with open_services() as services:
            user_id = await services.user_registry().resolve(user)
            memory = _memory(services)
            progress = Progress(
                TextColumn("importing"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err,
            )
            with progress:
                task = progress.add_task("import", total=len(items))
                for start in range(0, len(items), IMPORT_BATCH):
                    chunk = items[start : start + IMPORT_BATCH]
                    await memory.add_many(user_id, chunk)
                    progress.advance(task, len(chunk))
        out.print(f"imported {len(items)} memories for {user}")

    run(body)
