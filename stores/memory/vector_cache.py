"""Exact nearest-neighbour search over a large user's vectors, in process memory.

At 10k memories an exact pgvector scan of one user's vectors costs 4-5 ms of Postgres CPU on
every turn, and on a busy 2-core box its latency doubles. The same ranking is one matrix-vector
product (about 1 ms) over a copy of the vectors in numpy. The copy stays exact by checking a
per-user version first: ``mnemo_memory_vector_state`` (kept by triggers, see
``stores.postgres.migrations``) holds the user's row count and the highest change number (``seq``).

Change numbers are taken while the user's state row is locked, so they are handed out in
commit order: once a reader sees ``max_seq = s``, every change numbered up to ``s`` is
visible, and fetching ``seq > cached`` misses nothing. Deletions show up as a count that no
longer matches; the copy is then reloaded whole.

Only users with at least ``min_rows`` vectors are cached (below that the SQL scan is already
about a millisecond), and at most ``max_rows`` vectors in all, least recently used first out.
The cache belongs to one :class:`VectorCache` (one per ``MemoryStore``), never to the module.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from cachetools import LRUCache, TTLCache

from stores.memory import sql

SMALL_RECHECK_S = 30.0
"""A user found below ``min_rows`` is searched in SQL without asking again for this long
(always correct, only slower if they grew meanwhile)."""
_SMALL_USERS = 10_000


@dataclass
class UserVectors:
    """One user's vectors in memory: unit rows, their keys, and the newest change seen."""

    keys: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    matrix: np.ndarray[Any, np.dtype[np.float32]] = field(
        default_factory=lambda: np.zeros((0, 0), dtype=np.float32)
    )
    max_seq: int = 0

    @property
    def count(self) -> int:
        return len(self.keys)

    def nearest(self, vector: Sequence[float], n: int) -> list[tuple[str, float]]:
        """(key, cosine) of the ``n`` rows nearest ``vector``, best first, ties by key (as the
        SQL orders them). Synchronous: the copy cannot change while it runs."""
        query = np.asarray(vector, dtype=np.float32)
        query /= max(float(np.linalg.norm(query)), 1e-12)
        sims = self.matrix[: self.count] @ query
        take = min(n, self.count)
        top = np.argpartition(-sims, take - 1)[:take] if take < self.count else np.arange(take)
        ranked = sorted(top.tolist(), key=lambda i: (-round(float(sims[i]), 6), self.keys[i]))
        return [(self.keys[i], float(sims[i])) for i in ranked]

    def apply(self, rows: Sequence[Any], dims: int) -> None:
        """Insert or replace rows (key, halfvec_send bytes, seq); capacity grows by doubling."""
        if not rows:
            return
        vectors = _decode([r["b"] for r in rows], dims)
        if self.matrix.shape[1] != dims:
            self.matrix = np.zeros((max(len(rows), 16), dims), dtype=np.float32)
        for row, vector in zip(rows, vectors, strict=True):
            at = self.rows.get(row["key"])
            if at is None:
                at = len(self.keys)
                if at == self.matrix.shape[0]:
                    grown = np.zeros((max(16, 2 * at), dims), dtype=np.float32)
                    grown[:at] = self.matrix[:at]
                    self.matrix = grown
                self.keys.append(row["key"])
                self.rows[row["key"]] = at
            self.matrix[at] = vector
            self.max_seq = max(self.max_seq, int(row["seq"]))


def _decode(blobs: Sequence[bytes], dims: int) -> np.ndarray[Any, np.dtype[np.float32]]:
    """pgvector's binary ``halfvec`` (int16 dims, int16 unused, big-endian halves) to unit
    float32 rows, so a dot product is the cosine."""
    raw = np.frombuffer(b"".join(bytes(b)[4:] for b in blobs), dtype=">f2")
    out = raw.reshape(len(blobs), dims).astype(np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    result: np.ndarray[Any, np.dtype[np.float32]] = out / np.maximum(norms, 1e-12)
    return result


class VectorCache:
    """Per-process copies of large users' vectors; see the module docstring."""

    def __init__(self, pool: Any, *, dims: int, min_rows: int, max_rows: int) -> None:
        self._pool = pool
        self._dims = dims
        self.min_rows = min_rows
        self.max_rows = max_rows
        # Users' copies, weighed by their vectors; the least recently searched go first.
        self._users: LRUCache[str, UserVectors] = LRUCache(
            maxsize=max(max_rows, 0), getsizeof=lambda entry: entry.count
        )
        # Users lately found below ``min_rows``: searched in SQL without asking again.
        self._small: TTLCache[str, bool] = TTLCache(
            maxsize=_SMALL_USERS, ttl=SMALL_RECHECK_S, timer=time.monotonic
        )
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self.lookups = {"hit": 0, "miss": 0, "sql": 0}
        """Searches since start by how they were served: ``hit`` (copy in memory, at most the
        newest rows read), ``miss`` (copy loaded whole), ``sql`` (not served from memory)."""

    def recheck(self, user_id: str) -> None:
        """Forget only that ``user_id`` was small; a copy in memory stays (and is updated
        incrementally by the next search)."""
        self._small.pop(user_id, None)

    def forget(self, user_id: str) -> None:
        self._users.pop(user_id, None)
        self._small.pop(user_id, None)

    async def nearest(
        self, user_id: str, vector: Sequence[float], n: int
    ) -> list[tuple[str, float]] | None:
        """(key, cosine) of the ``n`` nearest vectors, best first, ties by key (as the SQL
        orders them); ``None`` when this user is not served from memory."""
        entry = await self.current(user_id)
        return None if entry is None else entry.nearest(vector, n)

    async def current(self, user_id: str) -> UserVectors | None:
        """The user's copy, brought up to date (one state query, plus the rows changed since);
        ``None`` when this user is served by SQL. It needs no query vector, so a search
        starts it while the query is still being embedded (``retrieval.candidates``)."""
        if self.max_rows <= 0 or user_id in self._small:
            self.lookups["sql"] += 1
            return None  # a small user: SQL is as fast, and this skips the state query
        lock = self._locks.get(user_id)
        if lock is None:
            lock = self._locks[user_id] = asyncio.Lock()
        async with lock:
            entry = await self._current(user_id)
        if entry is None or entry.count == 0:
            self.lookups["sql"] += 1
            return None
        return entry

    async def _current(self, user_id: str) -> UserVectors | None:
        async with self._pool.connection() as conn:
            state = await (await conn.execute(sql.VECTOR_STATE, (user_id,))).fetchone()
            if state is None or state["n"] < self.min_rows:
                self._users.pop(user_id, None)
                self._small[user_id] = True
                return None
            n, max_seq = int(state["n"]), int(state["max_seq"])
            entry = self._users.get(user_id)
            if entry is not None and entry.max_seq < max_seq:
                cur = await conn.execute(sql.VECTOR_ROWS, (user_id, entry.max_seq))
                rows = await cur.fetchall()
                entry.apply(rows, self._dims)
                entry.max_seq = max(entry.max_seq, max_seq)  # changes up to it are all seen
            self.lookups["hit" if entry is not None and entry.count == n else "miss"] += 1
            if entry is None or entry.count != n:
                entry = UserVectors()  # first use, or rows were deleted: read them all
                rows = await (await conn.execute(sql.VECTOR_ROWS, (user_id, -1))).fetchall()
                entry.apply(rows, self._dims)
                entry.max_seq = max(entry.max_seq, max_seq)
                if entry.count != n:  # changed while reading: let SQL answer this time
                    self._users.pop(user_id, None)
                    return None
        # Re-inserted so its size is counted anew; least recently used users make room, and
        # a user larger than the whole cache is served this once and not kept.
        self._users.pop(user_id, None)
        if entry.count <= self.max_rows:
            self._users[user_id] = entry
        return entry
