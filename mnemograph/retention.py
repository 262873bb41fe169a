"""Retention: drop checkpoints no thread needs any more, and memories that have expired.

**Checkpoints.** Every turn adds several checkpoints; only the newest is needed to continue a
thread. The stock ``AsyncPostgresSaver.aprune(strategy="keep_latest")`` refuses threads whose
messages live in a ``DeltaChannel`` (ours do), because such a checkpoint does not hold the
message list: it is rebuilt from the newest *snapshot* of the channel (a blob, marked ``true``
in ``checkpoint.channel_values``) plus the writes saved after it, walking the parent chain
back from the head (``aget_delta_channel_history``). So, per thread and namespace:

- the *anchor* is the newest checkpoint from which every delta channel can be rebuilt: the
  oldest of the channels' newest snapshot checkpoints (the head itself when the thread uses no
  delta channel; none, and nothing is pruned, when a delta channel has no snapshot yet);
- checkpoints strictly older than the anchor *and* older than the cutoff are deleted, with
  their pending writes (those writes led to the next checkpoint, which is at most the anchor,
  whose snapshot already contains them);
- a blob is deleted only if a deleted checkpoint referenced it and no kept one does.

The head is never older than the anchor, so the latest checkpoint of every thread is kept and
its state is unchanged. Each thread is pruned in one transaction under the same advisory lock
``TurnRunner`` holds for a turn (tried, not waited for: a thread mid-turn is skipped and
reported), so pruning is safe while serving. Blob versions only grow, so a blob a concurrent
turn is writing is never one a deleted checkpoint referenced.

**Memories.** Long-term items not seen (recalled or restated) since the cutoff expire, unless
their importance is at least ``Settings.memory_keep_importance``; store rows whose own TTL
(``expires_at``) has passed are swept too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from stores.errors import InvalidInput
from stores.postgres.thread_locks import try_thread_xact_lock

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w`` -> a timedelta."""
    match = _AGE.match(text.lower())
    if match is None:
        raise InvalidInput(
            f"invalid age {text!r}: use a number and one of s, m, h, d, w (e.g. 30d)"
        )
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


@dataclass
class PruneReport:
    """What one prune run removed."""

    threads_seen: int = 0
    threads_pruned: int = 0
    threads_busy: int = 0
    checkpoints: int = 0
    writes: int = 0
    blobs: int = 0
    memories: int = 0
    store_ttl: int = 0
    busy: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "threads_seen": self.threads_seen,
            "threads_pruned": self.threads_pruned,
            "threads_busy": self.threads_busy,
            "checkpoints": self.checkpoints,
            "checkpoint_writes": self.writes,
            "checkpoint_blobs": self.blobs,
            "memories": self.memories,
            "store_ttl_expired": self.store_ttl,
        }


_HEADS = """
SELECT checkpoint_ns, max(checkpoint_id) AS head FROM checkpoints
WHERE thread_id = %s GROUP BY checkpoint_ns
"""
_DELTA_CHANNELS = """
SELECT DISTINCT k AS channel FROM checkpoints,
    LATERAL jsonb_object_keys(
        coalesce(metadata -> 'counters_since_delta_snapshot', '{}'::jsonb)) AS k
WHERE thread_id = %s AND checkpoint_ns = %s
UNION
SELECT DISTINCT v.key FROM checkpoints c,
    LATERAL jsonb_each(c.checkpoint -> 'channel_values') AS v
WHERE c.thread_id = %s AND c.checkpoint_ns = %s AND v.value = 'true'::jsonb
"""
_NEWEST_SNAPSHOT = """
SELECT max(checkpoint_id) AS snap FROM checkpoints
WHERE thread_id = %s AND checkpoint_ns = %s AND checkpoint_id <= %s
  AND checkpoint -> 'channel_values' -> %s = 'true'::jsonb
"""
_DELETE_CHECKPOINTS = """
DELETE FROM checkpoints
WHERE thread_id = %s AND checkpoint_ns = %s AND checkpoint_id < %s
  AND (checkpoint ->> 'ts')::timestamptz < %s
RETURNING checkpoint_id, checkpoint -> 'channel_versions' AS versions
"""
_DELETE_WRITES = """
DELETE FROM checkpoint_writes
WHERE thread_id = %s AND checkpoint_ns = %s AND checkpoint_id = ANY(%s)
"""
_KEPT_VERSIONS = """
SELECT DISTINCT v.key AS channel, v.value #>> '{}' AS version FROM checkpoints c,
    LATERAL jsonb_each(c.checkpoint -> 'channel_versions') AS v
WHERE c.thread_id = %s AND c.checkpoint_ns = %s
"""
_DELETE_BLOBS = """
DELETE FROM checkpoint_blobs
WHERE thread_id = %s AND checkpoint_ns = %s AND channel = %s AND version = ANY(%s)
"""


async def prune_thread(conn: Any, thread_id: str, cutoff: datetime, report: PruneReport) -> None:
    """Prune one thread (see the module docstring); a thread mid-turn is left alone."""
    async with conn.transaction():
        if not await try_thread_xact_lock(conn, thread_id):  # a turn holds it: next run
            report.threads_busy += 1
            report.busy.append(thread_id)
            return
        heads = await (await conn.execute(_HEADS, (thread_id,))).fetchall()
        pruned = False
        for head_row in heads:
            ns, head = head_row["checkpoint_ns"], head_row["head"]
            cur = await conn.execute(_DELTA_CHANNELS, (thread_id, ns, thread_id, ns))
            channels = [r["channel"] for r in await cur.fetchall()]
            anchor: str | None = head
            for channel in channels:
                cur = await conn.execute(_NEWEST_SNAPSHOT, (thread_id, ns, head, channel))
                snap = (await cur.fetchone() or {}).get("snap")
                if snap is None:  # replay needs the whole chain from the start
                    anchor = None
                    break
                anchor = min(anchor, snap) if anchor is not None else snap
            if anchor is None:
                continue
            cur = await conn.execute(_DELETE_CHECKPOINTS, (thread_id, ns, anchor, cutoff))
            freed = await cur.fetchall()
            if not freed:
                continue
            pruned = True
            report.checkpoints += len(freed)
            cur = await conn.execute(
                _DELETE_WRITES, (thread_id, ns, [r["checkpoint_id"] for r in freed])
            )
            report.writes += cur.rowcount
            cur = await conn.execute(_KEPT_VERSIONS, (thread_id, ns))
            kept = {(r["channel"], r["version"]) for r in await cur.fetchall()}
            garbage: dict[str, set[str]] = {}
            for r in freed:
                for channel, version in (r["versions"] or {}).items():
                    if (channel, str(version)) not in kept:
                        garbage.setdefault(channel, set()).add(str(version))
            for channel, versions in garbage.items():
                cur = await conn.execute(_DELETE_BLOBS, (thread_id, ns, channel, list(versions)))
                report.blobs += cur.rowcount
        report.threads_pruned += int(pruned)


async def prune(
    services: Any,
    older_than: timedelta,
    *,
    keep_importance: float | None = None,
    now: datetime | None = None,
) -> PruneReport:
    """Remove checkpoints and memories older than ``older_than``; see the module docstring."""
    if older_than < timedelta(0):
        raise InvalidInput("the age to prune must not be negative")
    pool = services.postgres()
    cutoff = (now or datetime.now(UTC)) - older_than
    if keep_importance is None:
        keep_importance = services.settings.memory_keep_importance
    report = PruneReport()
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT DISTINCT thread_id FROM checkpoints "
            "WHERE (checkpoint ->> 'ts')::timestamptz < %s",
            (cutoff,),
        )
        threads = [r["thread_id"] for r in await cur.fetchall()]
    report.threads_seen = len(threads)
    for thread_id in threads:
        async with pool.connection() as conn:
            await prune_thread(conn, thread_id, cutoff, report)
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT to_regclass('mnemo_memory_index') IS NOT NULL AS ok")
        row = await cur.fetchone()
        if row and row["ok"]:
            cur = await conn.execute(
                """
                DELETE FROM store s USING mnemo_memory_index i
                WHERE s.prefix = i.prefix AND s.key = i.key
                  AND coalesce((s.value ->> 'last_seen_at')::timestamptz, s.updated_at) < %s
                  AND coalesce((s.value ->> 'importance')::float, 0) < %s
                """,
                (cutoff, keep_importance),
            )
            report.memories = cur.rowcount
    if services.store is not None:
        report.store_ttl = int(await services.store.sweep_ttl())
    return report
