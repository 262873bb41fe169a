"""Long-term memory: the item model, pure ranking, its SQL, the hybrid store and the vector
cache.

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
  table of its own so it stays inline; searched exactly within one user via the
  ``(user_id)`` btree (a few hundred to tens of thousands of rows per user is a fast scan,
  and an ANN index over all users would filter *after* ranking and lose recall).

Both tables are written in one transaction, deleting a store item cascades to the index, and
the index can be rebuilt from the store at any time (``MemoryStore.reindex_user``), so it
never becomes a second truth. BM25's per-user item count and average length come from
``mnemo_memory_stats``; it and the postings are kept current by statement-level triggers on
the index, in the same transaction. Candidates come from the query's rarest terms, within a
budget of postings, and never from terms found in more than 20 % of a user's items while a
rarer term exists; every term still scores them. That keeps the BM25 pass small at 10k items.

Ranking (``ranking``): the top 50 BM25 and top 50 vector candidates are fused on their
scores; the fused value, in [0, 1], is the *relevance*; the final score is
``w_rel·relevance + w_imp·importance + w_rec·recency`` (default 0.5/0.3/0.2, from settings),
recency halving every 30 days since ``last_seen_at``.

Modules: ``model`` (records, config, checks), ``ranking`` (pure scoring), ``retrieval`` (the
candidate fetch), ``sql`` (query text), ``store`` (:class:`MemoryStore`), ``vector_cache``
(exact in-process vector search for large users). The tables are made by migration 1 in
``stores.postgres.migrations``.
"""
