"""The adapters: everything that opens a connection or starts a process lives here, by
backing service (``postgres/``, ``memory/``, ``knowledge/``, ``models/``), beside the basics
every layer may use (errors, ids, settings) and the PII rules. Nothing here imports the
state machine's runtime code or the application."""
