"""Agent Protocol threads: create, search, count, read, patch metadata, delete.

Only the caller's threads exist for them: every id is looked up with the caller's user id,
and another user's thread answers exactly as a missing one does (404). ``GET /threads``
(not in langgraph_api) lists the caller's threads without their values.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from mnemograph.web.deps import Id, ServicesDep, User
from mnemograph.web.routes.protocol.bodies import (
    ThreadCount,
    ThreadCreate,
    ThreadPatch,
    ThreadSearch,
)
from mnemograph.web.routes.protocol.records import (
    DEFAULT_METADATA,
    BookDep,
    ThreadBook,
    thread_json,
)
from mnemograph.web.routes.protocol.wire import json_response
from stores.errors import InvalidInput
from stores.postgres.threads import ThreadInfo

router = APIRouter(tags=["Agent Protocol"])

MAX_THREADS = 10_000
"""Threads of one user a search or count looks through."""


@router.post("/threads", summary="Create a thread (server-issued id when none is given)")
async def create_thread(body: ThreadCreate, user: User, book: BookDep) -> Response:
    if body.supersteps:
        raise InvalidInput("not supported by this server: supersteps")
    return json_response(await book.create(user, body.thread_id, body.metadata, body.if_exists))


@router.get("/threads", summary="Your threads, newest first (without values)")
async def list_threads(
    user: User,
    services: ServicesDep,
    book: BookDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    infos = await services.thread_registry().list(user, limit=limit)
    return json_response(await book.as_json(user, infos, with_values=False))


async def _statuses(book: ThreadBook, infos: list[ThreadInfo]) -> dict[str, str]:
    """Each thread's status: ``busy`` while a run (or its owed memory work) is unfinished."""
    return {i.thread_id: "busy" if (await book.snapshot(i.key)).next else "idle"
            for i in infos}  # fmt: skip


async def _matching(
    book: ThreadBook, user: str, metadata: dict[str, Any] | None, status: str | None
) -> tuple[list[ThreadInfo], dict[str, dict[str, Any]], dict[str, str]]:
    """The caller's threads whose metadata and status match, with their metadata and
    (when a status was asked for) their status."""
    infos = await book.services.thread_registry().list(user, limit=MAX_THREADS)
    metas = await book.metadata(user, (i.thread_id for i in infos))
    if metadata:
        infos = [
            i for i in infos
            if all({**DEFAULT_METADATA, **metas[i.thread_id]}.get(k) == v
                   for k, v in metadata.items())
        ]  # fmt: skip
    statuses: dict[str, str] = {}
    if status is not None:
        statuses = await _statuses(book, infos)
        infos = [i for i in infos if statuses[i.thread_id] == status]
    return infos, metas, statuses


@router.post("/threads/search", summary="Search your threads by id, metadata or status")
async def search_threads(body: ThreadSearch, user: User, book: BookDep) -> Response:
    if body.values:
        raise InvalidInput("not supported by this server: a values filter")
    infos, metas, statuses = await _matching(book, user, body.metadata, body.status)
    if body.ids is not None:
        wanted = set(body.ids)
        infos = [i for i in infos if i.thread_id in wanted]
    sort_by = body.sort_by or "updated_at"
    if sort_by == "status" and not statuses:
        statuses = await _statuses(book, infos)
    keys: dict[str, Any] = {
        "thread_id": lambda i: i.thread_id,
        "created_at": lambda i: i.created_at,
        "updated_at": lambda i: i.updated_at,
        "status": lambda i: statuses[i.thread_id],
    }
    infos.sort(key=keys[sort_by], reverse=(body.sort_order or "desc") == "desc")
    page = infos[body.offset : body.offset + body.limit]
    with_values = body.select is None or "values" in body.select or "status" in body.select
    out = []
    for info in page:
        snapshot = await book.snapshot(info.key) if with_values else None
        thread = thread_json(info, metas[info.thread_id], snapshot)
        out.append({k: v for k, v in thread.items() if k in body.select} if body.select else thread)
    return json_response(out)


@router.post("/threads/count", summary="How many of your threads match")
async def count_threads(body: ThreadCount, user: User, book: BookDep) -> Response:
    if body.values:
        raise InvalidInput("not supported by this server: a values filter")
    infos, _metas, _statuses = await _matching(book, user, body.metadata, body.status)
    return json_response(len(infos))


@router.get("/threads/{thread_id}", summary="One of your threads, with its current values")
async def get_thread(thread_id: Id, user: User, book: BookDep) -> Response:
    return json_response(await book.one(user, thread_id))


@router.patch("/threads/{thread_id}", summary="Merge metadata into one of your threads")
async def patch_thread(thread_id: Id, body: ThreadPatch, user: User, book: BookDep) -> Response:
    if body.metadata is None:
        return json_response(await book.one(user, thread_id))
    return json_response(await book.patch_metadata(user, thread_id, body.metadata))


@router.delete("/threads/{thread_id}", status_code=204, summary="Delete one of your threads")
async def delete_thread(thread_id: Id, user: User, book: BookDep) -> Response:
    await book.delete(user, thread_id)
    return Response(status_code=204)
