"""The knowledge-graph store: the only module that speaks Cypher.

It runs unchanged on Neo4j 5 (``NEO4J_URI``) and on the embedded ArcadeDB Bolt server, so it
sticks to plain Cypher both accept (``UNWIND``/``MERGE``/``OPTIONAL MATCH``, fixed-length
patterns, ``startNode``/``endNode``) and avoids APOC, ``CALL … IN TRANSACTIONS`` and
variable-length paths.

Model (DESIGN.md §4)::

    (:Entity {user_id, name, norm_name, display, created_at})
      -[:REL {id, type, user_id, created_at, valid_from, invalid_at, source_thread,
              source_message, confidence, mentions, last_seen_at}]->(:Entity)

The relationship type is the fixed ``REL`` with the predicate in ``type``: Cypher cannot
parameterise relationship types, and building them from LLM output would be an injection
path. Every query filters on ``user_id``; every value travels as a parameter.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from neo4j import READ_ACCESS, AsyncDriver, AsyncGraphDatabase, AsyncManagedTransaction
from neo4j import exceptions as neo4j_errors

from graph.facts import Triple, normalize_entity
from stores.errors import ServiceUnavailable
from stores.ids import check_id
from stores.knowledge.rules import Fact, FactRow, prepare

log = logging.getLogger(__name__)

T = TypeVar("T")
Dialect = Literal["neo4j", "arcadedb"]

SERVICE = "graph server"

# --- schema ---------------------------------------------------------------------------------
# Both dialects accept the Neo4j 5 syntax today; the table stays per dialect so a divergence
# is a one-line change here rather than a branch in the queries.
_DDL_COMMON = (
    # Without it MERGE is a scan (15x slower on ArcadeDB) and concurrent MERGE can duplicate.
    "CREATE CONSTRAINT mnemo_entity_key IF NOT EXISTS "
    "FOR (e:Entity) REQUIRE (e.user_id, e.name) IS UNIQUE",
    # Per-user scans (current facts, export, delete) must not touch other users' nodes.
    "CREATE INDEX mnemo_entity_user IF NOT EXISTS FOR (e:Entity) ON (e.user_id)",
)
DDL: dict[Dialect, tuple[str, ...]] = {"neo4j": _DDL_COMMON, "arcadedb": _DDL_COMMON}

# --- queries ---------------------------------------------------------------------------------
_FACT_FIELDS = """
    r.id AS id, a.name AS subject, coalesce(a.display, a.name) AS subject_display,
    r.type AS predicate, b.name AS object, coalesce(b.display, b.name) AS object_display,
    r.confidence AS confidence, r.created_at AS created_at, r.valid_from AS valid_from,
    r.invalid_at AS invalid_at, r.source_thread AS source_thread,
    r.source_message AS source_message"""

# A new object for a single-valued predicate closes the current relation; history stays.
Q_INVALIDATE = """
UNWIND $rows AS row
WITH row WHERE row.single
MATCH (s:Entity {user_id: $uid, name: row.s})-[old:REL]->(o:Entity)
WHERE old.type = row.p AND old.invalid_at IS NULL AND o.name <> row.o
SET old.invalid_at = $at, old.invalidated_by = $message
RETURN count(old) AS n"""

# The unconditional SET takes each entity's write lock before the relation reads below, so
# concurrent writes about the same subject serialise (Neo4j) or conflict and retry (ArcadeDB)
# instead of both creating the same "missing" relation. Entities come sorted, which keeps
# lock order stable across transactions.
Q_MERGE_ENTITIES = """
UNWIND $entities AS ent
MERGE (e:Entity {user_id: $uid, name: ent.name})
  ON CREATE SET e.norm_name = ent.norm, e.display = ent.display, e.created_at = $at
SET e.last_seen_at = $at
RETURN count(e) AS n"""

# A fact said again refreshes the current relation instead of duplicating it.
Q_REFRESH = """
UNWIND $rows AS row
MATCH (s:Entity {user_id: $uid, name: row.s})-[cur:REL]->(o:Entity {user_id: $uid, name: row.o})
WHERE cur.type = row.p AND cur.invalid_at IS NULL
SET cur.last_seen_at = $at, cur.last_source_message = $message,
    cur.mentions = coalesce(cur.mentions, 1) + 1,
    cur.confidence = CASE WHEN row.confidence > cur.confidence
                          THEN row.confidence ELSE cur.confidence END
RETURN count(cur) AS n"""

Q_CREATE = """
UNWIND $rows AS row
MATCH (s:Entity {user_id: $uid, name: row.s}), (o:Entity {user_id: $uid, name: row.o})
OPTIONAL MATCH (s)-[cur:REL]->(o) WHERE cur.type = row.p AND cur.invalid_at IS NULL
WITH s, o, row, cur WHERE cur IS NULL
CREATE (s)-[r:REL {id: row.id, type: row.p, user_id: $uid, created_at: $at, valid_from: $at,
                   confidence: row.confidence, source_thread: $thread,
                   source_message: $message, mentions: 1}]->(o)
RETURN count(r) AS n"""

# Seeds are looked up one by one (UNWIND + property map) so both servers use the unique
# (user_id, name) index; ArcadeDB plans ``name IN $names`` as a scan of the user's entities
# (26 ms vs 4 ms for 3 seeds among 3.3k entities).
Q_HOP = f"""
UNWIND $names AS seed
MATCH (e:Entity {{user_id: $uid, name: seed}})
MATCH (e)-[r:REL]-(:Entity)
WHERE r.invalid_at IS NULL
WITH DISTINCT r
WITH r, startNode(r) AS a, endNode(r) AS b
WHERE a.user_id = $uid AND b.user_id = $uid
RETURN {_FACT_FIELDS}
ORDER BY r.confidence DESC, r.created_at DESC, r.id
LIMIT $limit"""

Q_CURRENT = f"""
MATCH (a:Entity {{user_id: $uid}})-[r:REL]->(b:Entity {{user_id: $uid}})
WHERE r.invalid_at IS NULL
RETURN {_FACT_FIELDS}
ORDER BY r.created_at, r.id
SKIP $skip LIMIT $limit"""

Q_HISTORY = f"""
MATCH (a:Entity {{user_id: $uid}})-[r:REL]->(b:Entity {{user_id: $uid}})
RETURN {_FACT_FIELDS}
ORDER BY r.created_at, r.id
SKIP $skip LIMIT $limit"""

Q_ENTITIES = """
MATCH (e:Entity {user_id: $uid})
RETURN e.name AS name, coalesce(e.display, e.name) AS display, e.norm_name AS norm_name,
       e.created_at AS created_at
ORDER BY e.name
LIMIT $limit"""

# Entities created since a moment: lets recall keep its name list current without
# re-reading thousands of names (132 ms for 3.3k on ArcadeDB; this is about 9 ms).
Q_NAMES_SINCE = """
MATCH (e:Entity {user_id: $uid})
WHERE e.created_at >= $since
RETURN e.name AS name, e.created_at AS created_at"""

Q_COUNT = """
MATCH (e:Entity {user_id: $uid})
OPTIONAL MATCH (e)-[r:REL]->(:Entity)
RETURN count(DISTINCT e) AS nodes, count(r) AS relations"""

Q_COUNT_CURRENT = """
MATCH (a:Entity {user_id: $uid})-[r:REL]->(b:Entity {user_id: $uid})
WHERE r.invalid_at IS NULL
RETURN count(r) AS n"""

Q_DELETE_BATCH = """
MATCH (e:Entity {user_id: $uid})
WITH e LIMIT $batch
DETACH DELETE e
RETURN count(*) AS n"""

# A restore (``GraphStore.import_user``): exported entities and relations back as they were,
# each merged by its key (an entity by (user_id, name), a relation by its id between its two
# entities), so importing the same export twice leaves the graph as the first import did.
Q_IMPORT_ENTITIES = """
UNWIND $entities AS ent
MERGE (e:Entity {user_id: $uid, name: ent.name})
SET e.norm_name = ent.norm, e.display = ent.display,
    e.created_at = coalesce(ent.created_at, e.created_at, $at),
    e.last_seen_at = coalesce(e.last_seen_at, ent.created_at, $at)
RETURN count(e) AS n"""

Q_IMPORT_RELATIONS = """
UNWIND $rows AS row
MATCH (s:Entity {user_id: $uid, name: row.s})
MATCH (o:Entity {user_id: $uid, name: row.o})
MERGE (s)-[r:REL {id: row.id}]->(o)
SET r.type = row.p, r.user_id = $uid, r.created_at = row.created_at,
    r.valid_from = row.valid_from, r.invalid_at = row.invalid_at,
    r.confidence = row.confidence, r.source_thread = row.thread,
    r.source_message = row.message, r.mentions = coalesce(r.mentions, 1),
    r.last_seen_at = coalesce(r.last_seen_at, row.created_at)
RETURN count(r) AS n"""

NO_LIMIT = 1_000_000


@dataclass(frozen=True)
class UpsertResult:
    """What one upsert did, for logs, tests and benches."""

    created: int
    refreshed: int
    invalidated: int


_RETRYABLE_WRITE = (neo4j_errors.ConstraintError, neo4j_errors.TransientError)
_UNAVAILABLE = (
    neo4j_errors.ServiceUnavailable,
    neo4j_errors.SessionExpired,
    neo4j_errors.SessionError,
    OSError,
    TimeoutError,
)


class GraphStore:
    """Per-user knowledge graph over Bolt. Connectivity failures raise ``ServiceUnavailable``.

    Always passes ``database_``: ArcadeDB's pooled connections otherwise keep whichever
    database the previous query used.
    """

    def __init__(
        self,
        driver: AsyncDriver,
        database: str | None,
        *,
        op_timeout_s: float = 10.0,
        write_attempts: int = 5,
    ) -> None:
        self._driver = driver
        self._database = database
        self._op_timeout_s = op_timeout_s
        self._write_attempts = write_attempts
        self.dialect: Dialect = "neo4j"
        self.ready = False
        """True once ``setup`` succeeded; writes retry it first, so a graph server that was
        down at start-up is set up by the first write that reaches it."""

    @classmethod
    async def open(
        cls,
        uri: str,
        user: str,
        password: str | None,
        database: str | None = None,
        *,
        connect_timeout_s: float = 3.0,
        op_timeout_s: float = 10.0,
    ) -> GraphStore:
        """Build a driver; no connection is made until the first query (``setup``/``ping``).

        Short timeouts on purpose: a graph server that is down must send writes to the outbox
        in seconds, not stall a turn for the driver's default 30 s of retries.
        """
        driver = AsyncGraphDatabase.driver(
            uri,
            auth=(user, password or ""),
            connection_timeout=connect_timeout_s,
            connection_acquisition_timeout=connect_timeout_s + 2.0,
            max_transaction_retry_time=min(5.0, op_timeout_s / 2),
            liveness_check_timeout=30.0,
        )
        return cls(driver, database, op_timeout_s=op_timeout_s)

    @property
    def database(self) -> str | None:
        return self._database

    async def close(self) -> None:
        await self._driver.close()

    # --- plumbing -----------------------------------------------------------------------
    @asynccontextmanager
    async def _guard(self, what: str) -> AsyncIterator[None]:
        """Bound the call in time and turn connectivity failures into one error type."""
        try:
            async with asyncio.timeout(self._op_timeout_s):
                yield
        except _UNAVAILABLE as exc:
            raise ServiceUnavailable(SERVICE, f"{what} failed ({type(exc).__name__})") from exc

    async def _read(self, what: str, fn: Callable[[AsyncManagedTransaction], Awaitable[T]]) -> T:
        async with self._guard(what), self._driver.session(database=self._database) as session:
            return await session.execute_read(fn)

    @asynccontextmanager
    async def _reading(self, what: str) -> AsyncIterator[Callable[..., Awaitable[list[Any]]]]:
        """Reads on the turn path: auto-commit statements in one session.

        A managed transaction costs an extra COMMIT round trip (about 1.5 ms on ArcadeDB)
        that a read-only lookup does not need; a failed lookup is not retried either, since
        recall degrades instead of waiting.
        """
        async with (
            self._guard(what),
            self._driver.session(database=self._database, default_access_mode=READ_ACCESS) as s,
        ):

            async def run(query: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
                result = await s.run(query, dict(params))
                return [dict(record) for record in await result.data()]

            yield run

    async def _write(self, what: str, fn: Callable[[AsyncManagedTransaction], Awaitable[T]]) -> T:
        """Run a write transaction, retrying constraint races.

        ArcadeDB raises ``ConstraintError`` when two transactions MERGE the same new entity at
        once (Neo4j serialises them); the retried MERGE then finds the committed node.
        """
        for attempt in range(1, self._write_attempts + 1):
            try:
                async with (
                    self._guard(what),
                    self._driver.session(database=self._database) as session,
                ):
                    return await session.execute_write(fn)
            except _RETRYABLE_WRITE as exc:
                if attempt == self._write_attempts:
                    raise
                log.debug("%s: retrying after %s (attempt %d)", what, type(exc).__name__, attempt)
                await asyncio.sleep(random.uniform(0.005, 0.03) * attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    async def _rows(
        tx: AsyncManagedTransaction, query: str, params: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        result = await tx.run(query, dict(params))
        return [dict(record) for record in await result.data()]

    @staticmethod
    async def _count(tx: AsyncManagedTransaction, query: str, params: Mapping[str, Any]) -> int:
        result = await tx.run(query, dict(params))
        record = await result.single()
        return int(record["n"]) if record is not None else 0

    # --- lifecycle ----------------------------------------------------------------------
    async def setup(self) -> None:
        """Detect the dialect and create constraints/indexes (idempotent, at start-up only)."""
        async with self._guard("setup"):
            info = await self._driver.get_server_info()
        self.dialect = "arcadedb" if "arcadedb" in (info.agent or "").lower() else "neo4j"
        for statement in DDL[self.dialect]:
            async with self._guard("setup"):
                await self._driver.execute_query(statement, database_=self._database)
        self.ready = True
        log.info("graph store ready (%s, %s)", self.dialect, info.agent)

    async def ping(self) -> float:
        """Round-trip one trivial query; return seconds. Raises ``ServiceUnavailable``."""
        t0 = time.perf_counter()
        async with self._guard("ping"):
            await self._driver.execute_query("RETURN 1 AS ok", database_=self._database)
        return time.perf_counter() - t0

    # --- writes -------------------------------------------------------------------------
    async def upsert_triples(
        self,
        user_id: str,
        triples: Iterable[Triple | Mapping[str, Any]],
        *,
        thread_id: str | None,
        message_id: str | None,
        at_ms: int,
    ) -> UpsertResult:
        """Write one exchange's triples in one transaction (normalized, deduplicated).

        Order matters: merge (and lock) the entities, close contradicted single-valued
        relations, refresh relations that are already current, then create the missing ones.
        """
        check_id("user_id", user_id)
        rows = prepare(triples)
        if not rows:
            return UpsertResult(0, 0, 0)
        if not self.ready:
            await self.setup()
        params = {
            "uid": user_id,
            "at": int(at_ms),
            "thread": thread_id,
            "message": message_id,
            "rows": [{**row, "id": uuid.uuid4().hex} for row in rows],
            "entities": _entities(rows),
        }

        async def work(tx: AsyncManagedTransaction) -> UpsertResult:
            await self._count(tx, Q_MERGE_ENTITIES, params)
            invalidated = await self._count(tx, Q_INVALIDATE, params)
            refreshed = await self._count(tx, Q_REFRESH, params)
            created = await self._count(tx, Q_CREATE, params)
            return UpsertResult(created=created, refreshed=refreshed, invalidated=invalidated)

        return await self._write("upsert", work)

    async def import_user(
        self,
        user_id: str,
        entities: Sequence[Mapping[str, Any]],
        relations: Sequence[Fact],
        *,
        batch: int = 500,
    ) -> dict[str, int]:
        """Write an export's entities and relations back for ``user_id`` (a restore), with
        their own ids, times, validity and provenance; returns how many of each were written.

        ``entities`` are the export's (``name``, ``display``, ``norm_name``, ``created_at``),
        ``relations`` its facts (:class:`~stores.knowledge.rules.Fact`), whose ``subject``
        and ``object`` must be among ``entities`` (the caller checks). Entities are merged by
        name, relations by id (``MERGE`` on Neo4j 5 and ArcadeDB alike), so a relation
        already there is updated in place rather than duplicated. Nothing is normalized or
        invalidated here: the export is already the graph's own, history included. Batches
        of ``batch`` rows per transaction, entities first; each batch is idempotent, so an
        import cut short is completed by running it again.
        """
        check_id("user_id", user_id)
        if not self.ready:
            await self.setup()
        at = int(time.time() * 1000)
        ents = [
            {"name": str(e["name"]), "display": str(e.get("display") or e["name"]),
             "norm": e.get("norm_name"), "created_at": e.get("created_at")}
            for e in entities
        ]  # fmt: skip
        rows = [
            {"id": r["id"], "s": r["subject"], "o": r["object"], "p": r["predicate"],
             "created_at": int(r["created_at"]), "valid_from": int(r["valid_from"]),
             "invalid_at": None if r["invalid_at"] is None else int(r["invalid_at"]),
             "confidence": float(r["confidence"]), "thread": r["source_thread"],
             "message": r["source_message"]}
            for r in relations
        ]  # fmt: skip
        written = {"graph_entities": 0, "graph_relations": 0}
        for what, query, key, items in (
            ("graph_entities", Q_IMPORT_ENTITIES, "entities", ents),
            ("graph_relations", Q_IMPORT_RELATIONS, "rows", rows),
        ):
            for start in range(0, len(items), batch):
                params = {"uid": user_id, "at": at, key: items[start : start + batch]}

                async def work(
                    tx: AsyncManagedTransaction, q: str = query, p: Mapping[str, Any] = params
                ) -> int:
                    return await self._count(tx, q, p)

                written[what] += await self._write("import", work)
        return written

    async def delete_user(self, user_id: str, *, batch: int = 2000) -> dict[str, int]:
        """Delete every node and relation of the user, in batches; return what was removed."""
        check_id("user_id", user_id)

        async def count(tx: AsyncManagedTransaction) -> dict[str, int]:
            rows = await self._rows(tx, Q_COUNT, {"uid": user_id})
            return {
                "graph_nodes": int(rows[0]["nodes"]) if rows else 0,
                "graph_relations": int(rows[0]["relations"]) if rows else 0,
            }

        counts = await self._read("delete_user", count)
        while True:

            async def delete(tx: AsyncManagedTransaction) -> int:
                return await self._count(tx, Q_DELETE_BATCH, {"uid": user_id, "batch": batch})

            if await self._write("delete_user", delete) == 0:
                break
        return counts

    # --- reads --------------------------------------------------------------------------
    async def neighbourhood(
        self, user_id: str, names: Sequence[str], *, hops: int = 1, limit: int = 50
    ) -> list[Fact]:
        """Current facts touching the named entities (hops=1), plus their neighbours' (hops=2).

        Two fixed-length steps instead of a variable-length path: hub nodes (the user) would
        otherwise expand to every fact times every neighbour's facts, and fixed patterns
        behave identically on both servers. Each fact gets ``hop`` 1 or 2; nearer first.
        """
        check_id("user_id", user_id)
        if hops not in (1, 2):
            raise ValueError("hops must be 1 or 2")
        seeds = sorted({n for n in (normalize_entity(x) for x in names) if n})
        if not seeds or limit <= 0:
            return []

        async with self._reading("neighbourhood") as run:
            first = await run(Q_HOP, {"uid": user_id, "names": seeds, "limit": limit})
            for row in first:
                row["hop"] = 1
            rows = first
            seed_set = set(seeds)
            frontier = sorted({row[k] for row in first for k in ("subject", "object")} - seed_set)
            if hops == 2 and len(first) < limit and frontier:
                seen = {row["id"] for row in first}
                second = await run(Q_HOP, {"uid": user_id, "names": frontier, "limit": limit})
                extra = [row for row in second if row["id"] not in seen]
                for row in extra:
                    row["hop"] = 2
                rows = (first + extra)[:limit]
        return [_fact(row) for row in rows]

    async def current_facts(
        self, user_id: str, *, limit: int = NO_LIMIT, skip: int = 0
    ) -> list[Fact]:
        """Every still-valid relation of the user, oldest first (``skip``/``limit``: a page)."""
        return await self._facts(user_id, Q_CURRENT, limit, "current_facts", skip)

    async def count_facts(self, user_id: str) -> int:
        """How many still-valid relations the user has."""
        check_id("user_id", user_id)

        async def work(tx: AsyncManagedTransaction) -> int:
            return await self._count(tx, Q_COUNT_CURRENT, {"uid": user_id})

        return await self._read("count_facts", work)

    async def history(self, user_id: str, *, limit: int = NO_LIMIT, skip: int = 0) -> list[Fact]:
        """Every relation of the user including invalidated ones, oldest first."""
        return await self._facts(user_id, Q_HISTORY, limit, "history", skip)

    async def entity_names(self, user_id: str, *, limit: int = 10_000) -> list[str]:
        """Canonical names of the user's entities (for mention matching in recall)."""
        return [str(e["name"]) for e in await self._entities(user_id, limit)]

    async def entity_names_since(self, user_id: str, since_ms: int) -> list[tuple[str, int]]:
        """(name, created_at) of the user's entities created at or after ``since_ms``."""
        check_id("user_id", user_id)

        async with self._reading("entity names") as run:
            rows = await run(Q_NAMES_SINCE, {"uid": user_id, "since": int(since_ms)})
        return [(str(r["name"]), int(r["created_at"] or 0)) for r in rows]

    async def export_user(self, user_id: str) -> dict[str, Any]:
        """The user's whole graph as JSON-able dicts (entities and every relation)."""
        entities = await self._entities(user_id, NO_LIMIT)
        relations = await self.history(user_id)
        return {"entities": entities, "relations": [dict(r) for r in relations]}

    async def _entities(self, user_id: str, limit: int) -> list[dict[str, Any]]:
        check_id("user_id", user_id)

        async def work(tx: AsyncManagedTransaction) -> list[dict[str, Any]]:
            return await self._rows(tx, Q_ENTITIES, {"uid": user_id, "limit": limit})

        return await self._read("entities", work)

    async def _facts(
        self, user_id: str, query: str, limit: int, what: str, skip: int = 0
    ) -> list[Fact]:
        check_id("user_id", user_id)

        async def work(tx: AsyncManagedTransaction) -> list[dict[str, Any]]:
            return await self._rows(tx, query, {"uid": user_id, "limit": limit, "skip": skip})

        return [_fact(row) for row in await self._read(what, work)]


def _entities(rows: Sequence[FactRow]) -> list[dict[str, str]]:
    """Distinct entities of a batch, each with its display form and match key."""
    seen: dict[str, dict[str, str]] = {}
    for row in rows:
        for name, display, norm in (
            (row["s"], row["s_display"], row["s_norm"]),
            (row["o"], row["o_display"], row["o_norm"]),
        ):
            seen.setdefault(name, {"name": name, "display": display, "norm": norm})
    return [seen[name] for name in sorted(seen)]


def _fact(row: Mapping[str, Any]) -> Fact:
    fact = Fact(
        id=str(row["id"]),
        subject=str(row["subject"]),
        subject_display=str(row["subject_display"]),
        predicate=str(row["predicate"]),
        object=str(row["object"]),
        object_display=str(row["object_display"]),
        confidence=float(row["confidence"] or 0.0),
        created_at=int(row["created_at"] or 0),
        valid_from=int(row["valid_from"] or 0),
        invalid_at=None if row["invalid_at"] is None else int(row["invalid_at"]),
        source_thread=row["source_thread"],
        source_message=row["source_message"],
    )
    if "hop" in row:
        fact["hop"] = int(row["hop"])
    return fact
