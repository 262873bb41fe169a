"""Shared measuring tools for the benches: node timers, a timing checkpointer, percentiles."""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from graph.builder import PIPELINE
from stores.postgres.savers import PooledPostgresSaver

Timings = defaultdict[str, list[float]]


def timed(name: str, fn: Callable[..., Awaitable[Any]], sink: Timings) -> Callable[..., Any]:
    """Wrap a node so each call's wall time (ms) lands in ``sink[name]``."""

    async def wrapper(state: Any, runtime: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await fn(state, runtime)
        finally:
            sink[name].append((time.perf_counter() - t0) * 1000)

    wrapper.__name__ = name
    return wrapper


def timed_pipeline(sink: Timings) -> list[tuple[str, Any]]:
    return [(name, timed(name, fn, sink)) for name, fn in PIPELINE]


class TimedSaver(PooledPostgresSaver):
    """Counts time spent persisting checkpoints and writes."""

    sink: Timings

    async def aput(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await super().aput(*args, **kwargs)
        finally:
            self.sink["checkpoint_writes"].append((time.perf_counter() - t0) * 1000)

    async def aput_writes(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await super().aput_writes(*args, **kwargs)
        finally:
            self.sink["checkpoint_writes"].append((time.perf_counter() - t0) * 1000)


async def checkpoint_bytes(pool: Any, thread_id: str) -> int:
    """Bytes a thread occupies across the three checkpoint tables (row sizes, as stored)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            """
            SELECT
              (SELECT coalesce(sum(pg_column_size(c.*)), 0) FROM checkpoints c
                 WHERE thread_id = %(t)s)
            + (SELECT coalesce(sum(pg_column_size(b.*)), 0) FROM checkpoint_blobs b
                 WHERE thread_id = %(t)s)
            + (SELECT coalesce(sum(pg_column_size(w.*)), 0) FROM checkpoint_writes w
                 WHERE thread_id = %(t)s) AS total
            """,
            {"t": thread_id},
        )
        row = await cur.fetchone()
        return int(row["total"]) if row else 0


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarize_ms(values: Sequence[float]) -> dict[str, float]:
    return {
        "p50": statistics.median(values) if values else 0.0,
        "p95": pct(values, 0.95),
        "p99": pct(values, 0.99),
    }
