"""The Agent Protocol (LangGraph's server API) on ``mnemograph serve``: the subset that
``langgraph_sdk.get_client`` and ``RemoteGraph("mnemograph", url=...)`` use.

``assistants`` (the one graph, ``/info``), ``threads`` (create, search, read, patch,
delete), ``state`` (state and history), ``runs`` (wait and stream, on a thread or
stateless), ``store`` (the caller's long-term memories). ``records`` joins a thread's
ownership row, metadata and state; ``streaming`` turns a turn into SSE; ``bodies`` and
``wire`` hold the request models and the JSON / SSE format. Same identity and ownership
rules as every door: the user comes from the credential, and another user's thread is a 404.
"""

from __future__ import annotations

from mnemograph.web.routes.protocol import assistants, runs, state, store, threads

ROUTERS = (assistants.router, threads.router, state.router, runs.router, store.router)

__all__ = ["ROUTERS"]
