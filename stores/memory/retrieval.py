"""The two retrievers of a hybrid search: BM25 over the postings, and the nearest vectors.

Apart from the store so that a search reads as three steps (fetch candidates here, rank them
with :mod:`stores.memory.ranking`, build the hits in :class:`~stores.memory.store.MemoryStore`)
and so the concurrency of the fetch sits in one place: the two queries are independent and
run side by side on two connections, and the query embedding (CPU, in a worker thread)
overlaps the full-text query. Vectors of large users come from the process's
:class:`~stores.memory.vector_cache.VectorCache` when it serves them, else from an exact SQL
scan of the user's rows.

Each retriever returns rows with the candidate's ``key``, its score (``score`` for BM25,
``cos`` for vectors) and its stored ``value``, so ranking needs no second round trip.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from stores.memory import sql
from stores.memory.model import MemoryConfig, vector_text

if TYPE_CHECKING:
    from stores.memory.vector_cache import UserVectors, VectorCache


async def candidates(
    pool: Any,
    config: MemoryConfig,
    cache: VectorCache | None,
    query: str,
    params: Mapping[str, Any],
    embedding: Awaitable[Sequence[float] | None],
    *,
    shared: bool,
) -> tuple[list[Any], list[Any]]:
    """(BM25 rows, vector rows) for ``query`` within the user of ``params`` (``p``: store
    prefix, ``u``: user id, ``n``: candidates per retriever).

    ``embedding`` resolves to the query vector (``None``: full text only). A ``shared`` one
    belongs to the caller, who may await it elsewhere too, so it is never cancelled here.
    """
    vector_task = asyncio.ensure_future(embedding)
    bm25_task = asyncio.ensure_future(bm25(pool, config, query, params))
    # The cached copy's freshness check needs no vector: it runs while the query is embedded.
    copy_task = asyncio.ensure_future(cache.current(params["u"])) if cache is not None else None
    try:
        vector = await vector_task
        vec_fetched = await nearest(pool, copy_task, vector, params) if vector is not None else []
        bm25_fetched = await bm25_task
    finally:
        owned = (bm25_task, copy_task) if shared else (vector_task, bm25_task, copy_task)
        for pending in owned:
            if pending is not None and not pending.done():
                pending.cancel()
    return bm25_fetched, vec_fetched


async def bm25(pool: Any, config: MemoryConfig, query: str, params: Mapping[str, Any]) -> list[Any]:
    """The best ``n`` items by BM25 (``sql.BM25``), with their stored values.

    Never prepared: a prepared statement switches to PostgreSQL's generic plan after five
    runs, and without the user's and the terms' values the planner cannot see that each
    term's postings are a short index range (a generic plan took 430 ms against 6 ms).
    """
    async with pool.connection() as conn:
        cur = await conn.execute(
            sql.BM25_FETCH,
            {
                **params,
                "q": query,
                "k1": config.bm25_k1,
                "b": config.bm25_b,
                "cw": config.context_weight,
                "common": config.common_term_share,
                "budget": config.bm25_budget,
            },
            prepare=False,
        )
        return await cur.fetchall()


async def nearest(
    pool: Any,
    copy: Awaitable[UserVectors | None] | None,
    vector: Sequence[float],
    params: Mapping[str, Any],
) -> list[Any]:
    """The ``n`` items nearest ``vector`` by cosine, with their stored values: ranked in
    memory when ``copy`` resolves to the user's cached vectors, else by an exact SQL scan."""
    entry = await copy if copy is not None else None
    if entry is not None:
        cos = dict(entry.nearest(vector, int(params["n"])))
        async with pool.connection() as conn:
            cur = await conn.execute(sql.FETCH, {**params, "keys": list(cos)})
            return [{**r, "cos": cos[r["key"]]} for r in await cur.fetchall()]
    async with pool.connection() as conn:
        cur = await conn.execute(sql.VECTOR_FETCH, {**params, "v": vector_text(vector)})
        return await cur.fetchall()
