"""Your long-term memories: list, hybrid search, forget one."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from mnemograph.web.deps import ServicesDep, User, memory_store
from mnemograph.web.schemas import Deleted
from stores.ids import check_id

router = APIRouter(prefix="/memories")


@router.get("", summary="Your long-term memories; with ?query=, hybrid search")
async def memories(
    user: User,
    services: ServicesDep,
    query: Annotated[str | None, Query(max_length=2000)] = None,
    k: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[dict[str, Any]]:
    memory = memory_store(services)
    if query is not None and query.strip():
        hits = await memory.search(user, query, k)
        return [{**h.item.to_json(), "score": h.score} for h in hits]
    return [item.to_json() for item in await memory.list(user, limit=k)]


@router.delete("/{memory_id}", summary="Forget one memory")
async def delete_memory(memory_id: str, user: User, services: ServicesDep) -> Deleted:
    check_id("memory id", memory_id)
    await memory_store(services).delete(user, memory_id)
    return Deleted(deleted={"memories": 1})
