"""Your long-term memories: list, hybrid search, forget one."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from mnemograph.web.deps import Id, ServicesDep, User, memory_store
from mnemograph.web.paging import PageDep, link_next
from mnemograph.web.schemas import Deleted
from stores.ids import check_id

router = APIRouter(prefix="/memories")


@router.get(
    "",
    summary="Your long-term memories, a page at a time (X-Next-Cursor); with ?query=, the "
    "k best by hybrid search",
)
async def memories(
    user: User,
    services: ServicesDep,
    page: PageDep,
    response: Response,
    query: Annotated[str | None, Query(max_length=2000)] = None,
    k: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[dict[str, Any]]:
    memory = memory_store(services)
    if query is not None and query.strip():
        hits = await memory.search(user, query, k)
        return [{**h.item.to_json(), "score": h.score} for h in hits]
    items = await memory.list(user, limit=page.fetch(), offset=page.offset)
    n, cursor = page.cut(items)
    link_next(response, cursor)
    return [item.to_json() for item in items[:n]]


@router.delete("/{memory_id}", summary="Forget one memory")
async def delete_memory(memory_id: Id, user: User, services: ServicesDep) -> Deleted:
    check_id("memory id", memory_id)
    await memory_store(services).delete(user, memory_id)
    return Deleted(deleted={"memories": 1})
