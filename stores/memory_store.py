"""Per-user long-term memory with hybrid recall (BM25-style full text + pgvector), in Postgres.

Where the data lives, and why
-----------------------------
**One source of truth: the LangGraph store's own ``store`` table.** Every memory is a store
item under the namespace ``(user_id, "memories")`` (``prefix = 'user_id.memories'``), so
``store.aget``/``asearch``, LangGraph Studio and the export path all see the same items.

A plain ``PostgresStore`` cannot rank these well: its search is vector-only (or a JSON filter),
it has no full-text index, and its vector search is not scoped to one user before ranking.
So beside it lives ``mnemo_memory_index``, a *derived* index keyed by the same
``(prefix, key)`` with ``FOREIGN KEY … REFERENCES store ON DELETE CASCADE``:

- ``tsv``: generated ``tsvector`` ('english': stemming + stop words) of the item's text
  (weight A) and of its optional indexing context (weight D, e.g. neighbouring turns),
  unnested by triggers into ``mnemo_memory_postings`` (user, lexeme, item, tf); ranked with
  BM25 computed in SQL (``ts_rank`` has no IDF, and without IDF a name that appears in every
  turn drowns the words that matter);
- ``mnemo_memory_vectors.embedding``: ``halfvec(dims)`` when pgvector exists, in a narrow
  table of its own so it stays inline (see :func:`_vector_ddl`); searched exactly within one
  user via the ``(user_id)`` btree (a few hundred to tens of thousands of rows per user is a
  fast scan, and an ANN index over all users would filter *after* ranking and lose recall).

Both tables are written in one transaction, deleting a store item cascades to the index, and
the index can be rebuilt from the store at any time (:meth:`MemoryStore.reindex_user`), so it
never becomes a second truth. Writes should go through :class:`MemoryStore` (``store.aput``
does not refresh the index).

Ranking: the top 50 BM25 and top 50 vector candidates are fused on their scores (BM25 / best
BM25 mixed 2:1 with cosine scaled below the best hit); on LoCoMo this beat reciprocal-rank
fusion on MRR (0.556 vs 0.537) at the same recall. The fused value, in [0, 1], is the
*relevance*; the final score is ``w_rel·relevance + w_imp·importance + w_rec·recency``
(default 0.5/0.3/0.2, from settings), recency halving every 30 days since ``last_seen_at``.
Terms found in more than 20 % of a user's items still score but do not select candidates,
which keeps the BM25 pass small at 10k items.

BM25's per-user item count and average length come from ``mnemo_memory_stats``; it and the
postings are kept current by statement-level triggers on the index, in the same transaction.

On a Postgres without pgvector (e.g. the system PG15 here) the vector table is absent and
search runs on full text alone, with one warning logged at setup.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import math
import re
import uuid
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.embeddings import Embeddings
from langchain_core.messages.utils import count_tokens_approximately
from psycopg_pool import AsyncConnectionPool

from stores.errors import InvalidInput, NotFound
from stores.ids import check_id

if TYPE_CHECKING:
    from stores.vector_cache import VectorCache

log = logging.getLogger(__name__)

MemoryKind = Literal["fact", "preference", "semantic", "turn"]
KINDS: tuple[str, ...] = ("fact", "preference", "semantic", "turn")
NAMESPACE_LEAF = "memories"
MAX_TEXT_CHARS = 8000

# When-questions: the answer is usually in a turn that carries a time expression.
_WHEN_Q = re.compile(r"^\s*(when|what (year|month|day|date|time)|how long ago)\b", re.I)
_TIME_WORDS = re.compile(
    r"\b(yesterday|today|tonight|tomorrow|last|next|ago|weekend|week|month|year|since|"
    r"morning|evening|monday|tuesday|wednesday|thursday|friday|saturday|sunday|january|"
    r"february|march|april|may|june|july|august|september|october|november|december|"
    r"19\d\d|20\d\d)\b",
    re.I,
)


@dataclass(frozen=True)
class MemoryConfig:
    """Ranking and dedup knobs. Built from settings by hosts; benches use the same defaults."""

    weight_relevance: float = 0.5
    weight_importance: float = 0.3
    weight_recency: float = 0.2
    recency_half_life_days: float = 30.0
    dedup_threshold: float = 0.92
    """Cosine at or above which a new fact/preference merges into an existing item."""
    importance_bump: float = 0.1
    """How much a repeated (merged) memory gains in importance, capped at 1."""
    candidates: int = 50
    """Candidates taken from each retriever before fusion."""
    fusion: Literal["rrf", "score"] = "score"
    """'rrf' fuses ranks; 'score' mixes max-normalised BM25 with min-max-normalised cosine."""
    cos_min_span: float = 0.25
    """'score' fusion: cosine is scaled over at least this span below the best hit, so a
    handful of near-equal candidates are not stretched to 0…1 by min-max."""
    rrf_k: float = 60.0
    vector_weight: float = 0.5
    """Weight of the vector ranking in the fusion (full text has 1.0)."""
    context_weight: float = 0.4
    """How much a term found only in an item's indexing context counts, against its own text."""
    time_boost: float = 0.0
    """Extra relevance for items with time expressions when the query asks 'when'."""
    embed_context: bool = True
    """Whether the embedding sees the indexing context too, or the item's own text only."""
    common_term_share: float = 0.2
    """Terms in more than this share of a user's items (e.g. a speaker's name) still score,
    but do not pull candidates in: it keeps the BM25 scan small at 10k items per user."""
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    vector_cache_rows: int = 100_000
    """Vectors a process may copy into memory for exact in-process search (0: none); at
    384 dimensions, 1.5 kB each."""
    vector_cache_min_rows: int = 2_000
    """Users with fewer vectors are searched in SQL, which is about as fast for them."""

    @classmethod
    def from_settings(cls, settings: Any) -> MemoryConfig:
        """Pick the ``memory_*`` fields a Settings object has; missing ones keep defaults."""
        names = {
            "weight_relevance": "memory_weight_relevance",
            "weight_importance": "memory_weight_importance",
            "weight_recency": "memory_weight_recency",
            "recency_half_life_days": "memory_recency_half_life_days",
            "dedup_threshold": "memory_dedup_threshold",
            "vector_cache_rows": "memory_vector_cache_rows",
        }
        values = {
            mine: getattr(settings, theirs)
            for mine, theirs in names.items()
            if getattr(settings, theirs, None) is not None
        }
        return cls(**values)


@dataclass
class MemoryItem:
    """One long-term memory as its owner sees it."""

    id: str
    user_id: str
    text: str
    kind: str
    importance: float
    event_at: datetime | None
    created_at: datetime
    last_seen_at: datetime
    provenance: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    subject: str | None = None
    seen_count: int = 1
    context: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (ISO dates) for export, the CLI and REST answers."""
        return {
            "id": self.id,
            "user_id": self.user_id,
            "text": self.text,
            "kind": self.kind,
            "importance": self.importance,
            "event_at": self.event_at.isoformat() if self.event_at else None,
            "created_at": self.created_at.isoformat(),
            "last_seen_at": self.last_seen_at.isoformat(),
            "provenance": list(self.provenance),
            "metadata": dict(self.metadata),
            "subject": self.subject,
            "seen_count": self.seen_count,
        }


@dataclass
class ScoredItem:
    """A search hit with the parts of its score, so rankings can be explained and debugged."""

    item: MemoryItem
    score: float
    relevance: float
    recency: float
    bm25_rank: int | None = None
    vector_rank: int | None = None


@dataclass
class NewMemory:
    """One item for :meth:`MemoryStore.add_many` (imports, benches)."""

    text: str
    kind: str = "turn"
    importance: float = 0.5
    event_at: datetime | None = None
    provenance: Sequence[str] = ()
    metadata: Mapping[str, Any] | None = None
    subject: str | None = None
    context: str | None = None
    """Extra text indexed with the item (e.g. neighbouring turns) but never returned."""


def namespace(user_id: str) -> tuple[str, str]:
    """The LangGraph store namespace of a user's memories."""
    return (user_id, NAMESPACE_LEAF)


def _prefix(user_id: str) -> str:
    return ".".join(namespace(user_id))


def _vec(v: Sequence[float]) -> str:
    """pgvector's text form; avoids a client-side adapter dependency."""
    return "[" + ",".join(f"{x:.6f}" for x in v) + "]"


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _parse_dt(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return _aware(value)
    return _aware(datetime.fromisoformat(str(value)))


def _check_text(text: str) -> str:
    text = " ".join(str(text).split())
    if not text:
        raise InvalidInput("memory text is empty")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidInput(f"memory text is longer than {MAX_TEXT_CHARS} characters")
    return text


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise InvalidInput(f"unknown memory kind {kind!r}; use one of {', '.join(KINDS)}")
    return kind


def _clamp01(x: float) -> float:
    if not isinstance(x, int | float) or math.isnan(x):
        raise InvalidInput(f"importance must be a number in [0, 1], got {x!r}")
    return min(1.0, max(0.0, float(x)))


def _item_from(user_id: str, key: str, value: Mapping[str, Any]) -> MemoryItem:
    return MemoryItem(
        id=key,
        user_id=user_id,
        text=str(value.get("text", "")),
        kind=str(value.get("kind", "fact")),
        importance=float(value.get("importance", 0.5)),
        event_at=_parse_dt(value.get("event_at")),
        created_at=_parse_dt(value.get("created_at")) or _now(),
        last_seen_at=_parse_dt(value.get("last_seen_at")) or _now(),
        provenance=[str(p) for p in value.get("provenance", [])],
        metadata=dict(value.get("metadata") or {}),
        subject=value.get("subject"),
        seen_count=int(value.get("seen_count", 1)),
        context=value.get("context"),
    )


def _value_of(item: MemoryItem) -> dict[str, Any]:
    value = item.to_json()
    del value["id"], value["user_id"]
    if item.context:
        value["context"] = item.context
    return value


def _index_text(item: MemoryItem, config: MemoryConfig) -> str:
    """What the embedding sees: the text, plus its context when configured."""
    if item.context and config.embed_context:
        return f"{item.text}\n{item.context}"
    return item.text


# One statement each: the pool prepares statements, and a prepared statement holds one command.
_DDL: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS mnemo_memory_index (
        prefix      text NOT NULL,
        key         text NOT NULL,
        user_id     text NOT NULL,
        kind        text NOT NULL,
        subject     text,
        text        text NOT NULL,
        context     text,
        tsv tsvector GENERATED ALWAYS AS (
            setweight(to_tsvector('english', text), 'A')
            || setweight(to_tsvector('english', coalesce(context, '')), 'D')
        ) STORED,
        doc_len int GENERATED ALWAYS AS (
            length(to_tsvector('english', text || ' ' || coalesce(context, '')))
        ) STORED,
        PRIMARY KEY (prefix, key),
        FOREIGN KEY (prefix, key) REFERENCES store (prefix, key) ON DELETE CASCADE
    )
    """,
    "CREATE INDEX IF NOT EXISTS mnemo_memory_index_user ON mnemo_memory_index (user_id, kind)",
    "CREATE INDEX IF NOT EXISTS mnemo_memory_index_subject "
    "ON mnemo_memory_index (user_id, subject) WHERE subject IS NOT NULL",
    # BM25 needs each user's item count and average length on every search; counting them
    # was 11 ms at 10k items, so statement-level triggers keep them current instead.
    """
    CREATE TABLE IF NOT EXISTS mnemo_memory_stats (
        user_id   text PRIMARY KEY,
        n         bigint NOT NULL,
        total_len bigint NOT NULL
    )
    """,
    # An inverted index (one row per item and distinct lexeme), kept by the same triggers:
    # document frequencies and term frequencies come from one covering-index range scan per
    # query term, where GIN matching plus unnesting every candidate's tsvector took 33 ms at
    # 10k items. Term frequencies of the text and of the context are kept apart so the
    # context weight stays a query-time setting.
    """
    CREATE TABLE IF NOT EXISTS mnemo_memory_postings (
        user_id text NOT NULL,
        lexeme  text NOT NULL,
        key     text NOT NULL,
        tf_text real NOT NULL,
        tf_ctx  real NOT NULL,
        dl      int  NOT NULL,
        PRIMARY KEY (user_id, lexeme, key) INCLUDE (tf_text, tf_ctx, dl)
    )
    """,
    "DROP INDEX IF EXISTS mnemo_memory_index_tsv",
    """
    CREATE OR REPLACE FUNCTION mnemo_memory_index_sync() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            DELETE FROM mnemo_memory_postings p
            USING (SELECT o.user_id, o.key, unnest(tsvector_to_array(o.tsv)) AS lexeme
                   FROM old_rows o) x
            WHERE p.user_id = x.user_id AND p.lexeme = x.lexeme AND p.key = x.key;
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
            INSERT INTO mnemo_memory_postings (user_id, lexeme, key, tf_text, tf_ctx, dl)
            SELECT r.user_id, u.lexeme, r.key,
                   cardinality(u.weights) - cardinality(array_positions(u.weights, 'D')),
                   cardinality(array_positions(u.weights, 'D')),
                   r.doc_len
            FROM new_rows r CROSS JOIN LATERAL unnest(r.tsv) AS u(lexeme, positions, weights)
            ORDER BY 1, 2, 3;
        END IF;
        IF TG_OP = 'INSERT' THEN
            INSERT INTO mnemo_memory_stats AS s (user_id, n, total_len)
            SELECT user_id, count(*), sum(doc_len) FROM new_rows GROUP BY user_id ORDER BY user_id
            ON CONFLICT (user_id) DO UPDATE
            SET n = s.n + EXCLUDED.n, total_len = s.total_len + EXCLUDED.total_len;
        ELSIF TG_OP = 'UPDATE' THEN
            UPDATE mnemo_memory_stats s SET total_len = s.total_len + d.len
            FROM (SELECT user_id, sum(len) AS len FROM (
                    SELECT user_id, doc_len::bigint AS len FROM new_rows
                    UNION ALL SELECT user_id, -doc_len::bigint FROM old_rows) x
                  GROUP BY user_id) d
            WHERE s.user_id = d.user_id AND d.len <> 0;
        ELSE
            UPDATE mnemo_memory_stats s SET n = s.n - d.n, total_len = s.total_len - d.len
            FROM (SELECT user_id, count(*) AS n, sum(doc_len) AS len
                  FROM old_rows GROUP BY user_id) d
            WHERE s.user_id = d.user_id;
            DELETE FROM mnemo_memory_stats
            WHERE n <= 0 AND user_id IN (SELECT user_id FROM old_rows);
        END IF;
        RETURN NULL;
    END $$
    """,
    "CREATE OR REPLACE TRIGGER mnemo_memory_sync_ins AFTER INSERT ON mnemo_memory_index "
    "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
    "EXECUTE FUNCTION mnemo_memory_index_sync()",
    "CREATE OR REPLACE TRIGGER mnemo_memory_sync_upd AFTER UPDATE ON mnemo_memory_index "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT "
    "EXECUTE FUNCTION mnemo_memory_index_sync()",
    "CREATE OR REPLACE TRIGGER mnemo_memory_sync_del AFTER DELETE ON mnemo_memory_index "
    "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT "
    "EXECUTE FUNCTION mnemo_memory_index_sync()",
)

# Fill the trigger-kept tables on upgrade from a version without them (no-ops afterwards).
_BACKFILL: tuple[str, ...] = (
    """
    INSERT INTO mnemo_memory_stats (user_id, n, total_len)
    SELECT user_id, count(*), sum(doc_len) FROM mnemo_memory_index
    WHERE NOT EXISTS (SELECT 1 FROM mnemo_memory_stats)
    GROUP BY user_id
    ON CONFLICT (user_id) DO NOTHING
    """,
    # A no-op update fires the sync trigger, which writes every row's postings (its stats
    # delta is zero), so the postings are derived by one piece of SQL only.
    """
    UPDATE mnemo_memory_index SET text = text
    WHERE NOT EXISTS (SELECT 1 FROM mnemo_memory_postings)
    """,
)


def _vector_ddl(dims: int) -> tuple[str, ...]:
    """Vectors live in their own narrow table, as ``halfvec``.

    Beside the text, context and tsvector a row passed 2 kB and PostgreSQL moved the vector
    out of line: an exact scan of 10k vectors then read 62k buffers (60 ms). Alone, as half
    precision (776 bytes, ranking unchanged to the third decimal), they stay inline and the
    same scan reads ~1k buffers.
    """
    return (
        f"""
        CREATE TABLE IF NOT EXISTS mnemo_memory_vectors (
            prefix    text NOT NULL,
            key       text NOT NULL,
            user_id   text NOT NULL,
            embedding halfvec({dims}) NOT NULL,
            PRIMARY KEY (prefix, key),
            FOREIGN KEY (prefix, key) REFERENCES mnemo_memory_index (prefix, key)
                ON DELETE CASCADE
        )
        """,
        "ALTER TABLE mnemo_memory_vectors ALTER COLUMN embedding SET STORAGE PLAIN",
        "CREATE INDEX IF NOT EXISTS mnemo_memory_vectors_user ON mnemo_memory_vectors (user_id)",
        # Change numbers and a per-user (count, newest change) row, so a process can keep an
        # exact copy of a large user's vectors in memory (stores/vector_cache.py).
        "CREATE SEQUENCE IF NOT EXISTS mnemo_memory_vector_seq",
        "ALTER TABLE mnemo_memory_vectors ADD COLUMN IF NOT EXISTS seq bigint NOT NULL DEFAULT 0",
        "CREATE INDEX IF NOT EXISTS mnemo_memory_vectors_seq "
        "ON mnemo_memory_vectors (user_id, seq)",
        """
        CREATE TABLE IF NOT EXISTS mnemo_memory_vector_state (
            user_id text PRIMARY KEY,
            n       bigint NOT NULL,
            max_seq bigint NOT NULL
        )
        """,
        # The user's state row is locked before a change number is taken, so numbers are
        # handed out in commit order and a reader that has seen N has seen every change <= N.
        """
        CREATE OR REPLACE FUNCTION mnemo_memory_vector_stamp() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM 1 FROM mnemo_memory_vector_state WHERE user_id = NEW.user_id FOR UPDATE;
            IF NOT FOUND THEN
                INSERT INTO mnemo_memory_vector_state (user_id, n, max_seq)
                VALUES (NEW.user_id, 0, 0) ON CONFLICT (user_id) DO NOTHING;
                PERFORM 1 FROM mnemo_memory_vector_state WHERE user_id = NEW.user_id FOR UPDATE;
            END IF;
            NEW.seq := nextval('mnemo_memory_vector_seq');
            RETURN NEW;
        END $$
        """,
        """
        CREATE OR REPLACE FUNCTION mnemo_memory_vector_count() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                UPDATE mnemo_memory_vector_state s
                SET n = s.n + d.n, max_seq = greatest(s.max_seq, d.m)
                FROM (SELECT user_id, count(*) AS n, max(seq) AS m
                      FROM new_rows GROUP BY user_id) d
                WHERE s.user_id = d.user_id;
            ELSIF TG_OP = 'UPDATE' THEN
                UPDATE mnemo_memory_vector_state s SET max_seq = greatest(s.max_seq, d.m)
                FROM (SELECT user_id, max(seq) AS m FROM new_rows GROUP BY user_id) d
                WHERE s.user_id = d.user_id;
            ELSE
                UPDATE mnemo_memory_vector_state s SET n = s.n - d.n
                FROM (SELECT user_id, count(*) AS n FROM old_rows GROUP BY user_id) d
                WHERE s.user_id = d.user_id;
                DELETE FROM mnemo_memory_vector_state
                WHERE n <= 0 AND user_id IN (SELECT user_id FROM old_rows);
            END IF;
            RETURN NULL;
        END $$
        """,
        "CREATE OR REPLACE TRIGGER mnemo_memory_vector_stamp BEFORE INSERT OR UPDATE "
        "ON mnemo_memory_vectors FOR EACH ROW EXECUTE FUNCTION mnemo_memory_vector_stamp()",
        "CREATE OR REPLACE TRIGGER mnemo_memory_vector_count_ins AFTER INSERT "
        "ON mnemo_memory_vectors REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
        "EXECUTE FUNCTION mnemo_memory_vector_count()",
        "CREATE OR REPLACE TRIGGER mnemo_memory_vector_count_upd AFTER UPDATE "
        "ON mnemo_memory_vectors REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
        "EXECUTE FUNCTION mnemo_memory_vector_count()",
        "CREATE OR REPLACE TRIGGER mnemo_memory_vector_count_del AFTER DELETE "
        "ON mnemo_memory_vectors REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT "
        "EXECUTE FUNCTION mnemo_memory_vector_count()",
        # Upgrade: count the vectors written before the state table existed.
        """
        INSERT INTO mnemo_memory_vector_state (user_id, n, max_seq)
        SELECT user_id, count(*), max(seq) FROM mnemo_memory_vectors
        WHERE NOT EXISTS (SELECT 1 FROM mnemo_memory_vector_state)
        GROUP BY user_id ORDER BY user_id
        ON CONFLICT (user_id) DO NOTHING
        """,
    )


_BM25_SQL = """
WITH q AS (
    SELECT DISTINCT lex FROM unnest(tsvector_to_array(to_tsvector('english', %(q)s))) AS lex
),
stats AS MATERIALIZED (
    SELECT n::float8 AS n, greatest(total_len::float8 / greatest(n, 1), 1) AS avgdl
    FROM mnemo_memory_stats WHERE user_id = %(u)s
),
p AS MATERIALIZED (
    SELECT p.lexeme, p.key, p.tf_text + %(cw)s * p.tf_ctx AS tf, p.dl
    FROM q JOIN mnemo_memory_postings p ON p.user_id = %(u)s AND p.lexeme = q.lex
),
w AS MATERIALIZED (
    SELECT d.lexeme, ln(1 + (s.n - d.df + 0.5) / (d.df + 0.5)) AS idf,
           d.df <= greatest(%(common)s * s.n, 1) AS selects
    FROM (SELECT lexeme, count(*)::float8 AS df FROM p GROUP BY lexeme) d, stats s
),
any_rare AS (SELECT coalesce(bool_or(selects), false) AS yes FROM w)
SELECT p.key,
       sum(w.idf * (p.tf * (%(k1)s + 1))
           / (p.tf + %(k1)s * (1 - %(b)s + %(b)s * p.dl / s.avgdl))) AS score
FROM p JOIN w USING (lexeme) CROSS JOIN stats s CROSS JOIN any_rare a
GROUP BY p.key, a.yes
HAVING bool_or(w.selects) OR NOT a.yes
ORDER BY score DESC, p.key
LIMIT %(n)s
"""

# The full-text hits with their stored values, in one round trip.
_BM25_FETCH_SQL = f"""
SELECT b.key, b.score, s.value
FROM ({_BM25_SQL}) b
JOIN store s ON s.prefix = %(p)s AND s.key = b.key
"""

# Stored values of candidates found in memory (stores/vector_cache.py).
_FETCH_SQL = "SELECT key, value FROM store WHERE prefix = %(p)s AND key = ANY(%(keys)s)"

# The nearest vectors with their stored values, in one round trip.
_VECTOR_FETCH_SQL = """
WITH v AS MATERIALIZED (
    SELECT key, embedding <=> %(v)s::halfvec AS d
    FROM mnemo_memory_vectors
    WHERE user_id = %(u)s
    ORDER BY d, key
    LIMIT %(n)s
)
SELECT s.key, s.value, 1 - v.d AS cos
FROM v JOIN store s ON s.prefix = %(p)s AND s.key = v.key
"""


class MemoryStore:
    """Long-term memories of every user, one ``(user_id, "memories")`` namespace each.

    Every public method takes the ``user_id`` first and every query filters on it: no call can
    read or change another user's items.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        embeddings: Embeddings | None,
        *,
        config: MemoryConfig | None = None,
        dims: int = 384,
    ) -> None:
        self._pool = pool
        self._embeddings = embeddings
        self.config = config or MemoryConfig()
        self._dims = dims
        self.vector_enabled = False
        self._ready = False
        self._vector_cache: VectorCache | None = None

    # ----------------------------------------------------------------- setup
    async def setup(self, *, create: bool = True) -> None:
        """Create the store table (via LangGraph's own migrations) and the derived index.

        Runs on autocommit connections, outside any transaction, once per process. With
        ``create=False`` (the schema is current, see ``stores.migrations``) it runs no DDL
        and only prepares this process's state.
        """
        from langgraph.store.postgres.aio import AsyncPostgresStore

        if create:
            await AsyncPostgresStore(conn=self._pool).setup()
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT 1 AS ok FROM pg_available_extensions WHERE name = 'vector'"
            )
            available = await cur.fetchone() is not None
            if create:
                await self._create_schema(conn, vectors=available)
        self.vector_enabled = available and self._embeddings is not None
        if self.vector_enabled and self.config.vector_cache_rows > 0:
            from stores.vector_cache import VectorCache

            self._vector_cache = VectorCache(
                self._pool,
                dims=int(self._dims),
                min_rows=self.config.vector_cache_min_rows,
                max_rows=self.config.vector_cache_rows,
            )
        if not available:
            log.warning(
                "PostgreSQL has no pgvector extension: long-term memory search uses full-text "
                "search only (install pgvector for semantic recall)"
            )
        elif self._embeddings is None:
            log.warning("no embedding model configured: memory search uses full-text only")
        self._ready = True

    async def _create_schema(self, conn: Any, *, vectors: bool) -> None:
        """The derived tables, triggers and backfills; the vector table where pgvector is."""
        if vectors:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        for ddl in _DDL:
            await conn.execute(ddl)
        for sql in _BACKFILL:
            await conn.execute(sql)
        if vectors:
            for ddl in _vector_ddl(int(self._dims)):
                await conn.execute(ddl)
            await self._migrate_inline_vectors(conn)

    async def _migrate_inline_vectors(self, conn: Any) -> None:
        """Move vectors of the first release (a ``vector`` column on the index) to their table."""
        cur = await conn.execute(
            "SELECT 1 AS old FROM information_schema.columns "
            "WHERE table_name = 'mnemo_memory_index' AND column_name = 'embedding' "
            "AND table_schema = current_schema()"
        )
        if await cur.fetchone() is None:
            return
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO mnemo_memory_vectors (prefix, key, user_id, embedding) "
                "SELECT prefix, key, user_id, embedding::halfvec FROM mnemo_memory_index "
                "WHERE embedding IS NOT NULL ON CONFLICT (prefix, key) DO NOTHING"
            )
            await conn.execute("ALTER TABLE mnemo_memory_index DROP COLUMN embedding")

    def _require_ready(self) -> None:
        if not self._ready:
            raise RuntimeError("MemoryStore.setup() must run before use")

    async def _embed_docs(self, texts: list[str]) -> list[list[float]] | None:
        if not self.vector_enabled or self._embeddings is None or not texts:
            return None
        return await self._embeddings.aembed_documents(texts)

    async def _embed_query(self, text: str) -> list[float] | None:
        if not self.vector_enabled or self._embeddings is None:
            return None
        return await self._embeddings.aembed_query(text)

    # ----------------------------------------------------------------- writes
    async def add(
        self,
        user_id: str,
        text: str,
        *,
        kind: str = "fact",
        importance: float = 0.5,
        event_at: datetime | None = None,
        provenance: Sequence[str] = (),
        metadata: Mapping[str, Any] | None = None,
        subject: str | None = None,
        context: str | None = None,
        dedup: bool | None = None,
    ) -> MemoryItem:
        """Add one memory, or merge it into a near-duplicate.

        A duplicate is an item of the same user with the same ``subject`` (the new text
        replaces the old: the subject's value changed), or with cosine ≥ the dedup threshold
        (same statement again). Merging bumps importance and ``last_seen_at`` and unions the
        provenance, so repetition makes a memory stronger instead of cluttering recall.
        Dedup is on by default except for raw ``turn`` items, which are distinct by nature.
        """
        self._require_ready()
        check_id("user id", user_id)
        text = _check_text(text)
        _check_kind(kind)
        importance = _clamp01(importance)
        if dedup is None:
            dedup = kind != "turn"
        embed_text = f"{text}\n{context}" if context and self.config.embed_context else text
        vectors = await self._embed_docs([embed_text])
        vector = vectors[0] if vectors else None
        now = _now()
        async with self._pool.connection() as conn, conn.transaction():
            existing: MemoryItem | None = None
            if dedup:
                existing = await self._find_duplicate(conn, user_id, text, subject, vector)
            if existing is not None:
                merged = existing
                merged.importance = min(
                    1.0, max(existing.importance, importance) + self.config.importance_bump
                )
                merged.last_seen_at = now
                merged.seen_count += 1
                merged.text = text
                merged.event_at = _aware(event_at) or existing.event_at
                merged.provenance = list(dict.fromkeys([*existing.provenance, *provenance]))
                merged.metadata = {**existing.metadata, **dict(metadata or {})}
                merged.subject = subject or existing.subject
                merged.context = context or existing.context
                item = merged
            else:
                item = MemoryItem(
                    id=uuid.uuid4().hex,
                    user_id=user_id,
                    text=text,
                    kind=kind,
                    importance=importance,
                    event_at=_aware(event_at),
                    created_at=now,
                    last_seen_at=now,
                    provenance=[str(p) for p in provenance],
                    metadata=dict(metadata or {}),
                    subject=subject,
                    context=context,
                )
            await self._write(conn, [item], [vector] if vector is not None else None)
        return item

    async def _find_duplicate(
        self,
        conn: Any,
        user_id: str,
        text: str,
        subject: str | None,
        vector: list[float] | None,
    ) -> MemoryItem | None:
        prefix = _prefix(user_id)
        row = None
        if subject:
            cur = await conn.execute(
                "SELECT s.key, s.value FROM mnemo_memory_index m JOIN store s USING (prefix, key) "
                "WHERE m.user_id = %s AND m.prefix = %s AND m.subject = %s "
                "ORDER BY s.updated_at DESC LIMIT 1 FOR UPDATE OF s",
                (user_id, prefix, subject),
            )
            row = await cur.fetchone()
        if row is None and vector is not None:
            cur = await conn.execute(
                "SELECT s.key, s.value FROM mnemo_memory_vectors v "
                "JOIN mnemo_memory_index m USING (prefix, key) JOIN store s USING (prefix, key) "
                "WHERE v.user_id = %(u)s AND v.prefix = %(p)s AND m.kind <> 'turn' "
                "AND v.embedding <=> %(v)s::halfvec <= %(d)s "
                "ORDER BY v.embedding <=> %(v)s::halfvec LIMIT 1 FOR UPDATE OF s",
                {"u": user_id, "p": prefix, "v": _vec(vector),
                 "d": 1 - self.config.dedup_threshold},
            )  # fmt: skip
            row = await cur.fetchone()
        if row is None and vector is None:
            # Without vectors, an identical statement (case and spacing aside) still merges.
            cur = await conn.execute(
                "SELECT s.key, s.value FROM mnemo_memory_index m JOIN store s USING (prefix, key) "
                "WHERE m.user_id = %s AND m.prefix = %s AND m.kind <> 'turn' "
                "AND lower(m.text) = lower(%s) LIMIT 1 FOR UPDATE OF s",
                (user_id, prefix, text),
            )
            row = await cur.fetchone()
        if row is None:
            return None
        return _item_from(user_id, row["key"], row["value"])

    async def _write(
        self, conn: Any, items: Sequence[MemoryItem], vectors: Sequence[Sequence[float]] | None
    ) -> None:
        """Upsert store rows and their index rows; the caller holds the transaction."""
        store_rows = [
            (_prefix(it.user_id), it.id, json.dumps(_value_of(it)), it.created_at) for it in items
        ]
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO store (prefix, key, value, created_at, updated_at) "
                "VALUES (%s, %s, %s::jsonb, %s, now()) "
                "ON CONFLICT (prefix, key) DO UPDATE "
                "SET value = EXCLUDED.value, updated_at = now()",
                store_rows,
            )
            cols = "prefix, key, user_id, kind, subject, text, context"
            base = [
                (_prefix(it.user_id), it.id, it.user_id, it.kind, it.subject, it.text, it.context)
                for it in items
            ]
            update = (
                "kind = EXCLUDED.kind, subject = EXCLUDED.subject, text = EXCLUDED.text, "
                "context = EXCLUDED.context"
            )
            await cur.executemany(
                f"INSERT INTO mnemo_memory_index ({cols}) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                f"ON CONFLICT (prefix, key) DO UPDATE SET {update}",
                base,
            )
            if vectors is not None and self.vector_enabled:
                await cur.executemany(
                    "INSERT INTO mnemo_memory_vectors (prefix, key, user_id, embedding) "
                    "VALUES (%s, %s, %s, %s::halfvec) "
                    "ON CONFLICT (prefix, key) DO UPDATE SET embedding = EXCLUDED.embedding",
                    [(b[0], b[1], b[2], _vec(v)) for b, v in zip(base, vectors, strict=True)],
                )

    async def add_many(
        self,
        user_id: str,
        items: Sequence[NewMemory],
        *,
        batch_size: int = 256,
        vectors: Sequence[Sequence[float]] | None = None,
    ) -> list[MemoryItem]:
        """Insert many items without dedup: one embedding batch and one transaction per
        ``batch_size`` items. For imports of history, where every turn is its own item.

        ``vectors`` lets a caller that already has embeddings (same model) skip re-embedding.
        """
        self._require_ready()
        check_id("user id", user_id)
        if vectors is not None and len(vectors) != len(items):
            raise InvalidInput("vectors and items differ in length")
        out: list[MemoryItem] = []
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            now = _now()
            built = [
                MemoryItem(
                    id=uuid.uuid4().hex,
                    user_id=user_id,
                    text=_check_text(n.text),
                    kind=_check_kind(n.kind),
                    importance=_clamp01(n.importance),
                    event_at=_aware(n.event_at),
                    created_at=now,
                    last_seen_at=now,
                    provenance=[str(p) for p in n.provenance],
                    metadata=dict(n.metadata or {}),
                    subject=n.subject,
                    context=n.context,
                )
                for n in chunk
            ]
            chunk_vectors: Sequence[Sequence[float]] | None
            if not self.vector_enabled:
                chunk_vectors = None
            elif vectors is not None:
                chunk_vectors = vectors[start : start + batch_size]
            else:
                chunk_vectors = await self._embed_docs([_index_text(b, self.config) for b in built])
            async with self._pool.connection() as conn, conn.transaction():
                await self._write(conn, built, chunk_vectors)
            out.extend(built)
        return out

    # ----------------------------------------------------------------- reads
    async def get(self, user_id: str, memory_id: str) -> MemoryItem:
        """One item of this user; another user's id is simply not found."""
        check_id("user id", user_id)
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT key, value FROM store WHERE prefix = %s AND key = %s",
                (_prefix(user_id), memory_id),
            )
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"memory {memory_id!r} not found")
        return _item_from(user_id, row["key"], row["value"])

    async def list(
        self, user_id: str, *, limit: int = 1000, offset: int = 0
    ) -> builtins.list[MemoryItem]:
        """The user's items, most recently seen first."""
        check_id("user id", user_id)
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT key, value FROM store WHERE prefix = %s "
                "ORDER BY updated_at DESC, key LIMIT %s OFFSET %s",
                (_prefix(user_id), limit, offset),
            )
            rows = await cur.fetchall()
        return [_item_from(user_id, r["key"], r["value"]) for r in rows]

    async def count(self, user_id: str) -> int:
        check_id("user id", user_id)
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*) AS n FROM store WHERE prefix = %s", (_prefix(user_id),)
            )
            row = await cur.fetchone()
        return int(row["n"]) if row else 0

    async def export_user(self, user_id: str) -> builtins.list[dict[str, Any]]:
        """Every item of the user as plain JSON, oldest first (for the export document)."""
        items = await self.list(user_id, limit=1_000_000)
        return [it.to_json() for it in sorted(items, key=lambda i: (i.created_at, i.id))]

    async def delete(self, user_id: str, memory_id: str) -> None:
        """Delete one item (its index row goes with it by cascade)."""
        check_id("user id", user_id)
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "DELETE FROM store WHERE prefix = %s AND key = %s", (_prefix(user_id), memory_id)
            )
            if cur.rowcount == 0:
                raise NotFound(f"memory {memory_id!r} not found")

    async def delete_user(self, user_id: str) -> int:
        """Delete every memory of the user; returns how many items went."""
        check_id("user id", user_id)
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("DELETE FROM mnemo_memory_index WHERE user_id = %s", (user_id,))
            cur = await conn.execute("DELETE FROM store WHERE prefix = %s", (_prefix(user_id),))
        if self._vector_cache is not None:  # no copy of a deleted user's vectors stays behind
            self._vector_cache.forget(user_id)
        return int(cur.rowcount)

    async def reindex_user(self, user_id: str) -> int:
        """Rebuild the derived index rows of one user from the store (the source of truth)."""
        items = await self.list(user_id, limit=1_000_000)
        vectors = await self._embed_docs([_index_text(i, self.config) for i in items])
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("DELETE FROM mnemo_memory_index WHERE user_id = %s", (user_id,))
            if items:
                await self._write(conn, items, vectors)
        return len(items)

    # ----------------------------------------------------------------- search
    async def search(
        self,
        user_id: str,
        query: str,
        k: int = 10,
        *,
        weights: tuple[float, float, float] | None = None,
        kinds: Sequence[str] | None = None,
        query_vector: Awaitable[Sequence[float] | None] | None = None,
    ) -> builtins.list[ScoredItem]:
        """Hybrid search within one user: BM25 full text + vector, fused, then scored.

        ``weights`` = (relevance, importance, recency) overrides the configured defaults.
        ``query_vector`` lets a caller that embeds the query anyway (turn recall does, for
        the graph too) share that one embedding; it must come from this store's embedder.
        """
        self._require_ready()
        check_id("user id", user_id)
        query = " ".join(str(query).split())
        if not query or k <= 0:
            return []
        cfg = self.config
        w_rel, w_imp, w_rec = weights or (
            cfg.weight_relevance,
            cfg.weight_importance,
            cfg.weight_recency,
        )
        n = max(cfg.candidates, k)
        params = {"p": _prefix(user_id), "u": user_id, "n": n}
        # Full text and vectors are independent queries: run them side by side on two
        # connections; the query embedding (CPU, in a worker thread) overlaps the first.
        shared = query_vector is not None and self.vector_enabled
        embedding = asyncio.ensure_future(
            query_vector if shared and query_vector is not None else self._embed_query(query)
        )
        bm25_task = asyncio.ensure_future(self._bm25(query, params))
        try:
            vector = await embedding
            vec_fetched = await self._nearest(vector, params) if vector is not None else []
            bm25_fetched = await bm25_task
        finally:
            # Never cancel a caller's shared embedding: others may be waiting on it.
            for pending in (bm25_task,) if shared else (embedding, bm25_task):
                if not pending.done():
                    pending.cancel()
        values = {r["key"]: r["value"] for r in bm25_fetched}
        values.update((r["key"], r["value"]) for r in vec_fetched)
        bm25_rows = sorted(bm25_fetched, key=lambda r: (-r["score"], r["key"]))
        bm25_keys = [r["key"] for r in bm25_rows]
        vec_rows = sorted(
            ({"key": r["key"], "score": r["cos"]} for r in vec_fetched if r["cos"] is not None),
            key=lambda r: (-r["score"], r["key"]),
        )
        bm25_rank = {key: i for i, key in enumerate(bm25_keys)}
        vec_rank = {r["key"]: i for i, r in enumerate(vec_rows)}
        keys = list(dict.fromkeys([*bm25_rank, *vec_rank]))
        if not keys:
            return []
        fused = self._fuse(keys, bm25_rows, vec_rows, bm25_rank, vec_rank)
        top = max(fused.values()) or 1.0
        when_q = cfg.time_boost > 0 and bool(_WHEN_Q.search(query))
        now = _now()
        half_life_s = max(cfg.recency_half_life_days, 1e-6) * 86400.0
        # Score from the raw values; only the final k become MemoryItems (building one per
        # candidate cost ~4 ms a search).
        scored: builtins.list[tuple[float, float, float, str]] = []
        for key, f in fused.items():
            value = values.get(key)
            if value is None:
                continue
            if kinds is not None and str(value.get("kind", "fact")) not in kinds:
                continue
            relevance = f / top
            if when_q and _TIME_WORDS.search(str(value.get("text", ""))):
                relevance = min(1.0, relevance + cfg.time_boost)
            seen_at = _parse_dt(value.get("last_seen_at")) or now
            recency = 0.5 ** (max(0.0, (now - seen_at).total_seconds()) / half_life_s)
            importance = float(value.get("importance", 0.5))
            score = w_rel * relevance + w_imp * importance + w_rec * recency
            scored.append((score, relevance, recency, key))
        scored.sort(key=lambda t: (-t[0], -t[1], t[3]))
        return [
            ScoredItem(
                item=_item_from(user_id, key, values[key]),
                score=score,
                relevance=relevance,
                recency=recency,
                bm25_rank=bm25_rank.get(key),
                vector_rank=vec_rank.get(key),
            )
            for score, relevance, recency, key in scored[:k]
        ]

    async def _bm25(self, query: str, params: Mapping[str, Any]) -> builtins.list[Any]:
        cfg = self.config
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                _BM25_FETCH_SQL,
                {
                    **params,
                    "q": query,
                    "k1": cfg.bm25_k1,
                    "b": cfg.bm25_b,
                    "cw": cfg.context_weight,
                    "common": cfg.common_term_share,
                },
            )
            return await cur.fetchall()

    async def _nearest(
        self, vector: Sequence[float], params: Mapping[str, Any]
    ) -> builtins.list[Any]:
        if self._vector_cache is not None:
            hits = await self._vector_cache.nearest(params["u"], vector, int(params["n"]))
            if hits is not None:
                cos = dict(hits)
                async with self._pool.connection() as conn:
                    cur = await conn.execute(_FETCH_SQL, {**params, "keys": list(cos)})
                    return [{**r, "cos": cos[r["key"]]} for r in await cur.fetchall()]
        async with self._pool.connection() as conn:
            cur = await conn.execute(_VECTOR_FETCH_SQL, {**params, "v": _vec(vector)})
            return await cur.fetchall()

    def _fuse(
        self,
        keys: Sequence[str],
        bm25_rows: Sequence[Mapping[str, Any]],
        vec_rows: Sequence[Mapping[str, Any]],
        bm25_rank: Mapping[str, int],
        vec_rank: Mapping[str, int],
    ) -> dict[str, float]:
        cfg = self.config
        fused: dict[str, float] = {}
        if cfg.fusion == "score":
            bm25 = {r["key"]: float(r["score"]) for r in bm25_rows}
            cos = {r["key"]: float(r["score"]) for r in vec_rows}
            b_top = max(bm25.values(), default=0.0) or 1.0
            c_hi = max(cos.values(), default=1.0)
            c_lo = min(min(cos.values(), default=0.0), c_hi - cfg.cos_min_span)
            span = (c_hi - c_lo) or 1.0
            a = cfg.vector_weight / (1.0 + cfg.vector_weight)
            for key in keys:
                b = bm25.get(key, 0.0) / b_top
                c = (cos[key] - c_lo) / span if key in cos else 0.0
                fused[key] = (1 - a) * b + a * c if cos else b
            return fused
        for key in keys:
            s = 0.0
            if key in bm25_rank:
                s += 1.0 / (cfg.rrf_k + 1 + bm25_rank[key])
            if key in vec_rank:
                s += cfg.vector_weight / (cfg.rrf_k + 1 + vec_rank[key])
            fused[key] = s
        return fused


def render_memory(item: MemoryItem) -> str:
    """How a recalled item reads in a prompt: its event date first, so 'when' can be answered."""
    if item.event_at is not None:
        return f"[{item.event_at:%d %b %Y}] {item.text}"
    return item.text


async def recall_memories(
    memory_store: MemoryStore | None,
    user_id: str,
    text: str,
    *,
    k: int,
    token_budget: int,
    query_vector: Awaitable[Sequence[float] | None] | None = None,
) -> list[dict[str, Any]]:
    """The top memories for ``text`` as ``Recalled`` dicts, best first, within a token budget.

    Items that do not fit are skipped (a shorter, lower-ranked one may still fit), so the
    budget is never exceeded and one long item cannot starve the rest.
    """
    if memory_store is None or not text.strip() or k <= 0 or token_budget <= 0:
        return []
    hits = await memory_store.search(user_id, text, k=k, query_vector=query_vector)
    out: list[dict[str, Any]] = []
    used = 0
    for hit in hits:
        line = render_memory(hit.item)
        cost = count_tokens_approximately([line])
        if used + cost > token_budget:
            continue
        used += cost
        out.append(
            {"kind": "memory", "text": line, "score": round(hit.score, 4), "source": hit.item.id}
        )
    return out


def with_neighbour_context(
    items: Sequence[NewMemory], *, window: int = 2, group_key: str | None = "session"
) -> list[NewMemory]:
    """Give each imported turn its ``window`` neighbours on each side as indexing context.

    A question's words often sit in the turns around the one that answers it (the question
    asked, the follow-up); indexing them with the turn, while returning only the turn, raised
    LoCoMo recall@10 from 0.70 to 0.79 (window 0 -> 2). Neighbours stay within the same
    ``metadata[group_key]`` (e.g. a session), so unrelated conversations never blend.
    """
    out: list[NewMemory] = []
    for i, item in enumerate(items):
        group = (item.metadata or {}).get(group_key) if group_key else None
        neighbours = [
            items[j].text
            for j in range(max(0, i - window), min(len(items), i + window + 1))
            if j != i and (group_key is None or (items[j].metadata or {}).get(group_key) == group)
        ]
        context = " ".join(n for n in [item.context or "", *neighbours] if n) or None
        out.append(
            NewMemory(
                text=item.text,
                kind=item.kind,
                importance=item.importance,
                event_at=item.event_at,
                provenance=item.provenance,
                metadata=item.metadata,
                subject=item.subject,
                context=context,
            )
        )
    return out
