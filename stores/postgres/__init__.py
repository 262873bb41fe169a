"""PostgreSQL: the pool, the embedded server, the checkpoint savers and the LangGraph store,
the registries of threads and users, and the one versioned migration list."""
