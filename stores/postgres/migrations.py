"""The one ordered list of Mnemograph's own schema migrations, and the code that applies it.

Every table, index, trigger, function and extension Mnemograph keeps in PostgreSQL is created
here, as in LangGraph's ``checkpoint-postgres``: :data:`MIGRATIONS` is a list, a migration's
version is its position (1-based), and ``mnemo_migrations`` records the versions applied.
LangGraph's saver and store keep their own lists and tables (``checkpoint_migrations``,
``store_migrations``); they run in ``stores.postgres.savers`` (``make_checkpointer`` and
``make_store``), except that :func:`migrate` first makes sure LangGraph's ``store`` table
exists, because the memory index references it.

Why a version gate: running every store's ``CREATE … IF NOT EXISTS`` on each process start
cost ~40 statements per CLI call, some taking ACCESS EXCLUSIVE locks on hot tables. A start
now reads the recorded version with one SELECT (:func:`current_version`) and runs DDL only
when it is behind :data:`SCHEMA_VERSION`.

Migration 1 is the whole schema as of the version gate: long-term memory (index, postings,
statistics, their triggers, and where pgvector exists the ``halfvec`` table with its change
numbers), the thread and user registries, and the graph outbox. Its statements are
idempotent and include the upgrade steps from releases before the gate (backfills, the move
of inline vectors), so a database from any earlier release reaches version 1 safely, and a
database already recorded at version 1 runs nothing.

Adding migration 2..N
---------------------
1. Write a function ``_v2_<what>(target: Target) -> Sequence[Step]`` returning the new
   statements (one SQL command per string: the pool prepares statements, and a prepared
   statement holds one command), or async callables ``step(conn)`` for steps that must look
   before they act. Use ``target.dims`` / ``target.pgvector`` when the DDL depends on them.
2. Append it to :data:`MIGRATIONS`. Never edit, reorder or remove a released migration: a
   database that recorded its version will never run it again.
3. :data:`SCHEMA_VERSION` follows (it is ``len(MIGRATIONS)``); the next start of any process
   applies the new version under the setup lock, and ``mnemograph migrate`` does it at once.

Each migration runs in one transaction together with the row recording it, so a failure
leaves the database at the previous version (``CREATE INDEX CONCURRENTLY`` and other
commands that refuse a transaction block cannot be used in a migration).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)

TABLE = "mnemo_migrations"


@dataclass(frozen=True)
class Target:
    """What a migration's DDL depends on in this database."""

    dims: int
    """Dimensions of the embedding model (the ``halfvec`` column's size)."""
    pgvector: bool
    """Whether the pgvector extension is available (else no vector table is made)."""


Step = str | Callable[[Any], Awaitable[None]]
"""One SQL command, or an async ``step(conn)`` that inspects the schema before it changes it."""

Migration = Callable[[Target], Sequence[Step]]


# ============================================================== version 1: the whole schema
# ----------------------------------------------------------------------- long-term memory
# ``mnemo_memory_index`` is a *derived* index of the memories in LangGraph's ``store`` table
# (see stores/memory/store.py), keyed by the same (prefix, key) and deleted with it.
MEMORY_DDL: tuple[str, ...] = (
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

# Fill the trigger-kept tables on upgrade from a release without them (no-ops afterwards).
MEMORY_BACKFILL: tuple[str, ...] = (
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


def memory_vector_ddl(dims: int) -> tuple[str, ...]:
    """Vectors live in their own narrow table, as ``halfvec``.

    Beside the text, context and tsvector a row passed 2 kB and PostgreSQL moved the vector
    out of line: an exact scan of 10k vectors then read 62k buffers (60 ms). Alone, as half
    precision (776 bytes, ranking unchanged to the third decimal), they stay inline and the
    same scan reads ~1k buffers.
    """
    dims = int(dims)
    if dims <= 0:
        raise ValueError(f"embedding dimensions must be positive, got {dims}")
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
        # exact copy of a large user's vectors in memory (stores/memory/vector_cache.py).
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


async def move_inline_vectors(conn: Any) -> None:
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


# -------------------------------------------------------------- threads, users, the outbox
# Who owns which thread (stores/postgres/threads.py): checkpoints carry no owner.
THREADS_DDL: tuple[str, ...] = (
    """
CREATE TABLE IF NOT EXISTS mnemo_threads (
    thread_id  text PRIMARY KEY,
    user_id    text NOT NULL,
    title      text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
)""",
    "CREATE INDEX IF NOT EXISTS mnemo_threads_user ON mnemo_threads (user_id, updated_at DESC)",
    # A run that started and has not finished: its post-reply work may be owed after a crash.
    "ALTER TABLE mnemo_threads ADD COLUMN IF NOT EXISTS pending_since timestamptz, "
    "ADD COLUMN IF NOT EXISTS pending_context jsonb",
    "CREATE INDEX IF NOT EXISTS mnemo_threads_pending ON mnemo_threads (pending_since) "
    "WHERE pending_since IS NOT NULL",
)

# Users and the SHA-256 digests of their API keys (stores/postgres/users.py).
USERS_DDL: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS mnemo_users (
        user_id    text PRIMARY KEY,
        name       text NOT NULL UNIQUE,
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
    """
    CREATE TABLE IF NOT EXISTS mnemo_api_keys (
        key_hash   text PRIMARY KEY,
        user_id    text NOT NULL REFERENCES mnemo_users (user_id) ON DELETE CASCADE,
        prefix     text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
    "CREATE INDEX IF NOT EXISTS mnemo_api_keys_user ON mnemo_api_keys (user_id)",
)

# Triples waiting while the graph server is down (stores/knowledge/outbox.py).
OUTBOX_DDL: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS mnemo_graph_outbox (
        id BIGSERIAL PRIMARY KEY,
        user_id TEXT NOT NULL,
        thread_id TEXT,
        message_id TEXT,
        at_ms BIGINT NOT NULL,
        triples JSONB NOT NULL,
        attempts INT NOT NULL DEFAULT 0,
        last_error TEXT,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )""",
    "CREATE INDEX IF NOT EXISTS mnemo_graph_outbox_user_idx ON mnemo_graph_outbox (user_id, id)",
)


def _v1_schema(target: Target) -> list[Step]:
    """The schema as of the version gate, with the upgrade steps of the releases before it."""
    steps: list[Step] = []
    if target.pgvector:
        steps.append("CREATE EXTENSION IF NOT EXISTS vector")
    steps += [*MEMORY_DDL, *MEMORY_BACKFILL]
    if target.pgvector:
        steps += [*memory_vector_ddl(target.dims), move_inline_vectors]
    steps += [*THREADS_DDL, *USERS_DDL, *OUTBOX_DDL]
    return steps


# ============================================================ version 2: deletion is final
# A deleted user's id and their threads' ids are kept (ids only, no data) and every write
# path checks them in the database itself, so a turn still running in any process, a late
# background write or a claim of the thread id can never bring the data back. Writers take a
# shared transaction lock on the id before looking; the deleter takes it exclusively while
# it records the id, so a write either committed before the record (and the deleter's sweep
# that follows removes it) or sees the record and fails with SQLSTATE ``MG410``.
GONE_USER_LOCK = 0x6D67_6475  # class key of the per-user transaction lock ("mgdu")
GONE_THREAD_LOCK = 0x6D67_6474  # class key of the per-thread transaction lock ("mgdt")
GONE_SQLSTATE = "MG410"
"""The error a write for a deleted user or thread fails with."""

TOMBSTONE_DDL: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS mnemo_deleted_users (
        user_id    text PRIMARY KEY,
        deleted_at timestamptz NOT NULL DEFAULT now()
    )""",
    """
    CREATE TABLE IF NOT EXISTS mnemo_deleted_threads (
        thread_id  text PRIMARY KEY,
        user_id    text NOT NULL,
        deleted_at timestamptz NOT NULL DEFAULT now()
    )""",
    f"""
    CREATE OR REPLACE FUNCTION mnemo_user_gone(uid text) RETURNS boolean
    LANGUAGE plpgsql VOLATILE AS $$
    BEGIN
        PERFORM pg_advisory_xact_lock_shared({GONE_USER_LOCK}, hashtext(uid));
        RETURN EXISTS (SELECT 1 FROM mnemo_deleted_users WHERE user_id = uid);
    END $$
    """,
    f"""
    CREATE OR REPLACE FUNCTION mnemo_thread_gone(tid text) RETURNS boolean
    LANGUAGE plpgsql VOLATILE AS $$
    BEGIN
        PERFORM pg_advisory_xact_lock_shared({GONE_THREAD_LOCK}, hashtext(tid));
        RETURN EXISTS (SELECT 1 FROM mnemo_deleted_threads WHERE thread_id = tid);
    END $$
    """,
    # Store rows (memories, thread metadata, Agent Protocol items): the namespace's first
    # label is the user id. The memory index and vectors reference store rows.
    f"""
    CREATE OR REPLACE FUNCTION mnemo_refuse_gone_prefix() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF mnemo_user_gone(split_part(NEW.prefix, '.', 1)) THEN
            RAISE EXCEPTION 'user % was deleted', split_part(NEW.prefix, '.', 1)
                USING ERRCODE = '{GONE_SQLSTATE}';
        END IF;
        RETURN NEW;
    END $$
    """,
    f"""
    CREATE OR REPLACE FUNCTION mnemo_refuse_gone_user() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF mnemo_user_gone(NEW.user_id) THEN
            RAISE EXCEPTION 'user % was deleted', NEW.user_id USING ERRCODE = '{GONE_SQLSTATE}';
        END IF;
        RETURN NEW;
    END $$
    """,
    f"""
    CREATE OR REPLACE FUNCTION mnemo_refuse_gone_thread() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF mnemo_thread_gone(NEW.thread_id) THEN
            RAISE EXCEPTION 'thread % was deleted', NEW.thread_id
                USING ERRCODE = '{GONE_SQLSTATE}';
        END IF;
        RETURN NEW;
    END $$
    """,
    "CREATE OR REPLACE TRIGGER mnemo_gone_store BEFORE INSERT OR UPDATE ON store "
    "FOR EACH ROW EXECUTE FUNCTION mnemo_refuse_gone_prefix()",
    "CREATE OR REPLACE TRIGGER mnemo_gone_outbox BEFORE INSERT OR UPDATE ON mnemo_graph_outbox "
    "FOR EACH ROW EXECUTE FUNCTION mnemo_refuse_gone_user()",
    # Claims: neither the deleted user nor anyone else may (re)create one of their threads.
    "CREATE OR REPLACE TRIGGER mnemo_gone_thread_owner BEFORE INSERT OR UPDATE ON mnemo_threads "
    "FOR EACH ROW EXECUTE FUNCTION mnemo_refuse_gone_user()",
    "CREATE OR REPLACE TRIGGER mnemo_gone_thread_id BEFORE INSERT ON mnemo_threads "
    "FOR EACH ROW EXECUTE FUNCTION mnemo_refuse_gone_thread()",
    # LangGraph's checkpoint tables carry the thread id only.
    *(
        f"CREATE OR REPLACE TRIGGER mnemo_gone_{table} BEFORE INSERT OR UPDATE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION mnemo_refuse_gone_thread()"
        for table in ("checkpoints", "checkpoint_blobs", "checkpoint_writes")
    ),
)


def _v2_final_deletion(target: Target) -> list[Step]:
    """Tombstones of deleted users and threads, checked by triggers on every write path."""
    return list(TOMBSTONE_DDL)


# ========================================================== version 3: thread ids per user
# A thread's id is chosen by its owner and means nothing to anyone else: ``name`` is the id
# the owner uses, unique per user, and ``thread_id`` stays the storage key that checkpoints,
# locks, run marks and tombstones use (``stores.ids.thread_key``: ``<user>/<name>``). Rows
# stored before keep their plain id as both, so nothing stored has to move.
THREAD_NAMES_DDL: tuple[str, ...] = (
    "ALTER TABLE mnemo_threads ADD COLUMN IF NOT EXISTS name text",
    "UPDATE mnemo_threads SET name = thread_id WHERE name IS NULL",
    "ALTER TABLE mnemo_threads ALTER COLUMN name SET NOT NULL",
    "CREATE UNIQUE INDEX IF NOT EXISTS mnemo_threads_user_name ON mnemo_threads (user_id, name)",
)


def _v3_thread_names(target: Target) -> list[Step]:
    """Thread ids per user: the owner's id for a thread, beside its storage key."""
    return list(THREAD_NAMES_DDL)


MIGRATIONS: tuple[Migration, ...] = (_v1_schema, _v2_final_deletion, _v3_thread_names)
"""Mnemograph's migrations in order; version ``n`` is ``MIGRATIONS[n - 1]``. Append only."""

SCHEMA_VERSION = len(MIGRATIONS)
"""The schema this code expects: the newest version in :data:`MIGRATIONS`."""


# ==================================================================== applying the list
async def current_version(pool: AsyncConnectionPool[Any]) -> int | None:
    """The newest version recorded in this database, ``None`` before the first migration."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT to_regclass(%s) IS NOT NULL AS present", (TABLE,))
        row = await cur.fetchone()
        if row is None or not row["present"]:
            return None
        cur = await conn.execute(f"SELECT max(version) AS version FROM {TABLE}")
        row = await cur.fetchone()
    return None if row is None or row["version"] is None else int(row["version"])


async def migrate(
    pool: AsyncConnectionPool[Any],
    *,
    dims: int,
    pgvector: bool,
    migrations: Sequence[Migration] | None = None,
) -> list[int]:
    """Apply the pending migrations in order and record each; return the versions applied.

    On a current schema this is one SELECT (:func:`current_version`) and no DDL. The caller
    holds the setup advisory lock (concurrent ``CREATE … IF NOT EXISTS`` is not safe), and
    passes the embedding size and whether pgvector is available (``has_pgvector``).
    ``migrations`` replaces :data:`MIGRATIONS` (tests of the mechanism only).
    """
    steps_of = tuple(MIGRATIONS if migrations is None else migrations)
    done = await current_version(pool) or 0
    pending = list(range(done + 1, len(steps_of) + 1))
    if not pending:
        return []
    target = Target(dims=int(dims), pgvector=bool(pgvector))
    if done == 0:  # a database new to Mnemograph
        await _langgraph_store(pool)
    if done < 2 <= len(steps_of):  # migration 2 puts triggers on the checkpoint tables
        await _langgraph_checkpoints(pool)
    async with pool.connection() as conn:
        if done == 0:
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} ("
                " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
        for version in pending:
            async with conn.transaction():
                await run_steps(conn, steps_of[version - 1](target))
                await conn.execute(
                    f"INSERT INTO {TABLE} (version) VALUES (%s) ON CONFLICT DO NOTHING",
                    (version,),
                )
            log.info("schema migrated to version %d", version)
    return pending


async def run_steps(conn: Any, steps: Sequence[Step]) -> None:
    """Run one migration's steps on ``conn`` in order."""
    for step in steps:
        if isinstance(step, str):
            await conn.execute(step)
        else:
            await step(conn)


async def create_tables(pool: AsyncConnectionPool[Any], statements: Sequence[str]) -> None:
    """Run one registry's idempotent DDL alone (``setup()`` of the thread and user
    registries and of the outbox, for tests and tools that open just that one); hosts run
    :func:`migrate` instead."""
    async with pool.connection() as conn:
        await run_steps(conn, statements)


async def _langgraph_store(pool: AsyncConnectionPool[Any]) -> None:
    """Make sure LangGraph's ``store`` table exists: migration 1 references it.

    Its own migration list, idempotent; without an index config it adds no vector table
    (``make_store`` does, when embeddings are configured).
    """
    from langgraph.store.postgres.aio import AsyncPostgresStore

    await AsyncPostgresStore(conn=pool).setup()


async def _langgraph_checkpoints(pool: AsyncConnectionPool[Any]) -> None:
    """Make sure LangGraph's checkpoint tables exist: migration 2 puts triggers on them.

    Their own migration list, idempotent (hosts have already run it by then); it needs
    autocommit connections (``CREATE INDEX CONCURRENTLY``), so it runs before the migration's
    transaction.
    """
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    await AsyncPostgresSaver(conn=pool).setup()
