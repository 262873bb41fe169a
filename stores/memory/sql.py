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
# appears in every turn drowns the words that matter). Candidates come from the query's
# rarest terms: first a count of each term's postings (index-only), then terms select
# candidates rarest first while the postings already taken stay under ``budget``; terms in
# more than ``common`` of the user's items select only when no rarer term exists. Every term
# still scores the candidates. At 10k items a query of four mid-frequency terms went from
# aggregating 3.3k postings (6.0 ms) to 1.3k candidates (3.2 ms); a user of a few hundred
# items never reaches the budget, so their ranking is unchanged.
BM25 = """
WITH q AS (
    SELECT DISTINCT lex FROM unnest(tsvector_to_array(to_tsvector('english', %(q)s))) AS lex
),
stats AS MATERIALIZED (
    SELECT n::float8 AS n, greatest(total_len::float8 / greatest(n, 1), 1) AS avgdl
    FROM mnemo_memory_stats WHERE user_id = %(u)s
),
d AS MATERIALIZED (
    SELECT q.lex AS lexeme, c.df
    FROM q CROSS JOIN LATERAL (
        SELECT count(*)::float8 AS df FROM mnemo_memory_postings p
        WHERE p.user_id = %(u)s AND p.lexeme = q.lex
    ) c
    WHERE c.df > 0
),
w AS MATERIALIZED (
    SELECT d.lexeme, ln(1 + (s.n - d.df + 0.5) / (d.df + 0.5)) AS idf,
           d.df <= greatest(%(common)s * s.n, 1) AS rare,
           sum(d.df) OVER (ORDER BY d.df, d.lexeme ROWS UNBOUNDED PRECEDING) - d.df AS before
    FROM d, stats s
),
sel AS (
    SELECT w.lexeme FROM w, (SELECT coalesce(bool_or(rare), false) AS yes FROM w) a
    WHERE (w.rare OR NOT a.yes) AND w.before < %(budget)s
),
cand AS MATERIALIZED (
    SELECT DISTINCT p.key FROM sel
    JOIN mnemo_memory_postings p ON p.user_id = %(u)s AND p.lexeme = sel.lexeme
)
SELECT p.key,
       sum(w.idf * (p.tf * (%(k1)s + 1))
           / (p.tf + %(k1)s * (1 - %(b)s + %(b)s * p.dl / s.avgdl))) AS score
FROM (
    SELECT t.lexeme, t.key, t.tf_text + %(cw)s * t.tf_ctx AS tf, t.dl
    FROM w JOIN mnemo_memory_postings t ON t.user_id = %(u)s AND t.lexeme = w.lexeme
) p
JOIN w USING (lexeme) JOIN cand c ON c.key = p.key CROSS JOIN stats s
GROUP BY p.key
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
