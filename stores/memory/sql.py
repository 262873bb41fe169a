"""The query text of long-term memory: retrieval, dedup lookups, writes and plain reads.

Kept apart from :mod:`stores.memory.store` so the SQL can be read (and EXPLAINed) as a whole,
and so the Python around it stays short. The tables these queries use are created by
migration 1 in :mod:`stores.postgres.migrations`:

- ``store``: LangGraph's own table, the one source of truth (``prefix = 'user_id.memories'``);
- ``mnemo_memory_index``: the derived full-text index, one row per item;
- ``mnemo_memory_postings`` / ``mnemo_memory_stats``: the inverted index and per-user BM25
  statistics, kept by triggers on the index;
- ``mnemo_memory_vectors`` / ``mnemo_memory_vector_state``: ``halfvec`` embeddings (only where
  pgvector exists) and the per-user change numbers the vector cache checks.

Every query filters on one user: no statement here can read or change another user's items.
Placeholders are psycopg's (``%s`` or ``%(name)s``).
"""

from __future__ import annotations

# BM25 over the postings, computed in SQL (``ts_rank`` has no IDF, and without IDF a name that
# appears in every turn drowns the words that matter). Terms in more than ``common`` of the
# user's items still score but only select candidates when no rarer term does.
BM25 = """
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
BM25_FETCH = f"""
SELECT b.key, b.score, s.value
FROM ({BM25}) b
JOIN store s ON s.prefix = %(p)s AND s.key = b.key
"""

# Stored values of candidates found in memory (stores/memory/vector_cache.py).
FETCH = "SELECT key, value FROM store WHERE prefix = %(p)s AND key = ANY(%(keys)s)"

# The nearest vectors with their stored values, in one round trip: an exact scan of one
# user's vectors through the (user_id) btree (an ANN index over all users would filter
# *after* ranking and lose recall).
VECTOR_FETCH = """
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

# ---------------------------------------------------------------- dedup (inside the write)
SAME_SUBJECT = (
    "SELECT s.key, s.value FROM mnemo_memory_index m JOIN store s USING (prefix, key) "
    "WHERE m.user_id = %s AND m.prefix = %s AND m.subject = %s "
    "ORDER BY s.updated_at DESC LIMIT 1 FOR UPDATE OF s"
)
NEAR_VECTOR = (
    "SELECT s.key, s.value FROM mnemo_memory_vectors v "
    "JOIN mnemo_memory_index m USING (prefix, key) JOIN store s USING (prefix, key) "
    "WHERE v.user_id = %(u)s AND v.prefix = %(p)s AND m.kind <> 'turn' "
    "AND v.embedding <=> %(v)s::halfvec <= %(d)s "
    "ORDER BY v.embedding <=> %(v)s::halfvec LIMIT 1 FOR UPDATE OF s"
)
# Without vectors, an identical statement (case and spacing aside) still merges.
SAME_TEXT = (
    "SELECT s.key, s.value FROM mnemo_memory_index m JOIN store s USING (prefix, key) "
    "WHERE m.user_id = %s AND m.prefix = %s AND m.kind <> 'turn' "
    "AND lower(m.text) = lower(%s) LIMIT 1 FOR UPDATE OF s"
)

# ---------------------------------------------------------------- writes (one transaction)
UPSERT_STORE = (
    "INSERT INTO store (prefix, key, value, created_at, updated_at) "
    "VALUES (%s, %s, %s::jsonb, %s, now()) "
    "ON CONFLICT (prefix, key) DO UPDATE "
    "SET value = EXCLUDED.value, updated_at = now()"
)
UPSERT_INDEX = (
    "INSERT INTO mnemo_memory_index (prefix, key, user_id, kind, subject, text, context) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (prefix, key) DO UPDATE SET kind = EXCLUDED.kind, "
    "subject = EXCLUDED.subject, text = EXCLUDED.text, context = EXCLUDED.context"
)
UPSERT_VECTOR = (
    "INSERT INTO mnemo_memory_vectors (prefix, key, user_id, embedding) "
    "VALUES (%s, %s, %s, %s::halfvec) "
    "ON CONFLICT (prefix, key) DO UPDATE SET embedding = EXCLUDED.embedding"
)

# ---------------------------------------------------------------- reads and deletes
GET = "SELECT key, value FROM store WHERE prefix = %s AND key = %s"
GET_MANY = "SELECT key, value FROM store WHERE prefix = %s AND key = ANY(%s)"
LIST = (
    "SELECT key, value FROM store WHERE prefix = %s "
    "ORDER BY updated_at DESC, key LIMIT %s OFFSET %s"
)
COUNT = "SELECT count(*) AS n FROM store WHERE prefix = %s"
DELETE = "DELETE FROM store WHERE prefix = %s AND key = %s"
DELETE_INDEX_OF_USER = "DELETE FROM mnemo_memory_index WHERE user_id = %s"
DELETE_USER = "DELETE FROM store WHERE prefix = %s"

# ---------------------------------------------------------------- readiness
SCHEMA_PRESENT = (
    "SELECT to_regclass('mnemo_memory_index') IS NOT NULL AS ready, "
    "to_regclass('mnemo_memory_vectors') IS NOT NULL AS vectors, "
    "EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector') AS available"
)

# ---------------------------------------------------------------- the vector cache
VECTOR_STATE = "SELECT n, max_seq FROM mnemo_memory_vector_state WHERE user_id = %s"
VECTOR_ROWS = (
    "SELECT key, halfvec_send(embedding) AS b, seq FROM mnemo_memory_vectors "
    "WHERE user_id = %s AND seq > %s ORDER BY seq"
)
