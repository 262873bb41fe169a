"""The knowledge graph: normalization rules, fact recall with its caches, the Bolt store, the
embedded ArcadeDB launcher and the Postgres outbox that holds triples while the server is
down."""
