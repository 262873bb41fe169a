"""The application: what hosts (server, CLI, benches) share. Typed ``Services``, the turn
runner, lifecycle (export, delete, forget), retention, the warm keeper, the HTTP routers and
the CLI. It may import every layer below it; nothing below imports it."""
