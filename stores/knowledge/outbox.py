"""Durable outbox for knowledge-graph writes: the graph server may be down, chat may not.

When a triple write cannot reach the graph, the exchange's triples are stored in Postgres
(``mnemo_graph_outbox``) and replayed in insertion order once the server answers again.
Replay is at-least-once; that is safe because an upsert of a fact that is already current
only refreshes it. One replayer runs at a time across processes (a Postgres advisory lock),
so a user's writes are never applied out of order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from psycopg.errors import UndefinedTable
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from graph.facts import Triple
from stores.errors import Gone, ServiceUnavailable
from stores.ids import check_id
from stores.knowledge.bolt import GraphStore
from stores.postgres.migrations import OUTBOX_DDL, create_tables

log = logging.getLogger(__name__)

TABLE = "mnemo_graph_outbox"
# Arbitrary constant key for pg_try_advisory_lock: "one replayer at a time".
_REPLAY_LOCK = 0x6D6E_656D_6F6B_67  # "mnemokg"
MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class ReplayResult:
    replayed: int
    remaining: int
    failed: int
    """Rows whose data the graph refused (not connectivity); parked after MAX_ATTEMPTS."""


class GraphOutbox:
    """The queue table on the shared psycopg pool (autocommit connections, dict rows)."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool

    async def setup(self) -> None:
        """Create the table and index alone, if missing (tests, tools); hosts run
        ``stores.postgres.migrations.migrate``, whose migration 1 includes them."""
        await create_tables(self._pool, OUTBOX_DDL)

    async def enqueue(
        self,
        user_id: str,
        triples: Iterable[Triple | Mapping[str, Any]],
        *,
        thread_id: str | None,
        message_id: str | None,
        at_ms: int,
    ) -> int:
        """Store one exchange's triples as extracted (normalization happens at replay)."""
        check_id("user_id", user_id)
        payload = [
            (t if isinstance(t, Triple) else Triple.model_validate(t)).model_dump() for t in triples
        ]
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"INSERT INTO {TABLE} (user_id, thread_id, message_id, at_ms, triples) "
                "VALUES (%s, %s, %s, %s, %s) RETURNING id",
                (user_id, thread_id, message_id, int(at_ms), Jsonb(payload)),
            )
            row = await cur.fetchone()
        assert row is not None
        return int(row["id"])

    async def count(self, user_id: str | None = None) -> int:
        """Rows waiting (for one user, or all), including parked ones."""
        async with self._pool.connection() as conn:
            if user_id is None:
                cur = await conn.execute(f"SELECT count(*) AS n FROM {TABLE}")
            else:
                cur = await conn.execute(
                    f"SELECT count(*) AS n FROM {TABLE} WHERE user_id = %s", (user_id,)
                )
            row = await cur.fetchone()
        return int(row["n"]) if row else 0

    async def depth(self) -> tuple[int, float]:
        """Rows waiting (parked ones included) and the oldest one's age in seconds (0 when
        none wait), in one query, for ``/metrics``."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*) AS n, "
                "coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS age "
                f"FROM {TABLE}"
            )
            row = await cur.fetchone()
        return (int(row["n"]), float(row["age"])) if row else (0, 0.0)

    async def pending(self, user_id: str) -> int:
        """Rows of the user still due for replay (parked rows excluded)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT count(*) AS n FROM {TABLE} WHERE user_id = %s AND attempts < %s",
                (user_id, MAX_ATTEMPTS),
            )
            row = await cur.fetchone()
        return int(row["n"]) if row else 0

    async def user_gone(self, user_id: str) -> bool:
        """Whether ``user_id`` was deleted (its tombstone, migration 2; a database set up
        with the outbox table alone has no tombstones)."""
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT EXISTS (SELECT 1 FROM mnemo_deleted_users WHERE user_id = %s) AS gone",
                    (user_id,),
                )
                row = await cur.fetchone()
        except UndefinedTable:
            return False
        return bool(row and row["gone"])

    async def undo_if_gone(self, graph: GraphStore, user_id: str) -> None:
        """After a graph write: if the user was deleted meanwhile, delete what was written.

        The graph server is outside PostgreSQL, so its writes are checked after the fact:
        either this check sees the tombstone, or the write finished before the tombstone
        and the deletion's own sweep of the graph, which comes after it, removed it.
        """
        if await self.user_gone(user_id):
            await graph.delete_user(user_id)
            raise Gone(f"user {user_id} was deleted; the graph write was undone")

    async def delete_user(self, user_id: str) -> int:
        """Drop a user's queued writes (account deletion); return how many."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(f"DELETE FROM {TABLE} WHERE user_id = %s", (user_id,))
            return cur.rowcount or 0

    async def replay(self, graph: GraphStore, *, batch: int = 100) -> ReplayResult:
        """Drain the queue into ``graph`` in insertion order; stop at the first outage.

        A row the graph rejects for its content (not connectivity) is retried on later
        replays and parked after ``MAX_ATTEMPTS`` so one bad row cannot block the queue.
        """
        replayed = failed = 0
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s) AS ok", (_REPLAY_LOCK,))
            locked = await cur.fetchone()
            if not locked or not locked["ok"]:
                return ReplayResult(0, await self.count(), 0)  # another replayer is at it
            try:
                while True:
                    cur = await conn.execute(
                        f"SELECT id, user_id, thread_id, message_id, at_ms, triples "
                        f"FROM {TABLE} WHERE attempts < %s ORDER BY id LIMIT %s",
                        (MAX_ATTEMPTS, batch),
                    )
                    rows = await cur.fetchall()
                    if not rows:
                        break
                    for row in rows:
                        try:
                            await graph.upsert_triples(
                                row["user_id"],
                                row["triples"],
                                thread_id=row["thread_id"],
                                message_id=row["message_id"],
                                at_ms=int(row["at_ms"]),
                            )
                            await self.undo_if_gone(graph, row["user_id"])
                        except ServiceUnavailable:
                            return ReplayResult(replayed, await self.count(), failed)
                        except Gone:
                            await conn.execute(f"DELETE FROM {TABLE} WHERE id = %s", (row["id"],))
                            continue
                        except Exception as exc:
                            failed += 1
                            log.warning(
                                "outbox row %s rejected by the graph: %s",
                                row["id"],
                                type(exc).__name__,
                            )
                            await conn.execute(
                                f"UPDATE {TABLE} SET attempts = attempts + 1, last_error = %s "
                                "WHERE id = %s",
                                (f"{type(exc).__name__}: {exc}"[:500], row["id"]),
                            )
                            continue
                        await conn.execute(f"DELETE FROM {TABLE} WHERE id = %s", (row["id"],))
                        replayed += 1
                    if failed and replayed == 0:
                        break  # only bad rows left in this pass; try again next time
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (_REPLAY_LOCK,))
        return ReplayResult(replayed, await self.count(), failed)


WriteOutcome = Literal["graph", "outbox", "skipped"]


async def write_or_enqueue(
    graph: GraphStore | None,
    outbox: GraphOutbox | None,
    user_id: str,
    triples: list[Triple],
    *,
    thread_id: str | None,
    message_id: str | None,
    at_ms: int,
) -> WriteOutcome:
    """Write to the graph if it answers, else queue; never reorder a user's writes.

    If the user already has queued writes, they are replayed first; a write that cannot go
    after them in order goes to the queue too, so a later fact never lands before an
    earlier one (which would invalidate the wrong relation).
    """
    if not triples:
        return "skipped"
    if graph is not None:
        try:
            pending = await outbox.pending(user_id) if outbox is not None else 0
            if pending and outbox is not None:
                await outbox.replay(graph)
                pending = await outbox.pending(user_id)
            if not pending:
                await graph.upsert_triples(
                    user_id, triples, thread_id=thread_id, message_id=message_id, at_ms=at_ms
                )
                if outbox is not None:
                    await outbox.undo_if_gone(graph, user_id)
                return "graph"
        except ServiceUnavailable as exc:
            log.warning("graph write deferred to the outbox: %s", exc.detail)
    if outbox is None:
        log.error("graph unavailable and no outbox: %d triples dropped", len(triples))
        return "skipped"
    await outbox.enqueue(user_id, triples, thread_id=thread_id, message_id=message_id, at_ms=at_ms)
    return "outbox"


async def replay_forever(
    graph: GraphStore, outbox: GraphOutbox, *, interval_s: float = 15.0
) -> None:
    """Background task: drain the outbox every ``interval_s`` while anything is queued."""
    while True:
        await asyncio.sleep(interval_s)
        with contextlib.suppress(Exception):  # the next round retries; never kill the task
            if await outbox.count():
                result = await outbox.replay(graph)
                if result.replayed:
                    log.info(
                        "outbox replayed %d writes, %d left", result.replayed, result.remaining
                    )
