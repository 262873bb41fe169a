"""Your knowledge-graph facts: the current ones, and the full history, a page at a time."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from mnemograph.web.deps import GraphStoreDep, User
from mnemograph.web.paging import PageDep

router = APIRouter(prefix="/graph")


@router.get("", summary="Your current knowledge-graph facts, oldest first")
async def graph_current(user: User, graph: GraphStoreDep, page: PageDep) -> dict[str, Any]:
    facts = await graph.current_facts(user, limit=page.fetch(), skip=page.offset)
    n, cursor = page.cut(facts)
    return {"facts": facts[:n], "next_cursor": cursor}


@router.get("/history", summary="All facts, including invalidated ones, oldest first")
async def graph_history(user: User, graph: GraphStoreDep, page: PageDep) -> dict[str, Any]:
    facts = await graph.history(user, limit=page.fetch(), skip=page.offset)
    n, cursor = page.cut(facts)
    return {"facts": facts[:n], "next_cursor": cursor}
