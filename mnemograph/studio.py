"""What ``langgraph.json`` points at, so ``langgraph dev`` (Studio) runs the same pipeline on
the same stores as ``mnemograph serve``.

=====================  ============================================================
``graphs.mnemograph``  :data:`graph`: the turn pipeline on the process's services, for
                       the authenticated user (``studio_graph``)
``checkpointer.path``  :func:`checkpointer`: the project's Postgres saver
                       (``stores.postgres.savers.make_checkpointer``)
``store.path``         :func:`store`: LangGraph's store over the hybrid memory
``auth.path``          :data:`auth`: API key / JWT to user id, the dev user without one,
                       per-user threads and store namespaces (``studio_auth``)
``http.app``           :data:`app`: the REST API, inspector and ``/agent`` (``studio_app``)
=====================  ============================================================

langgraph-api imports this file once per extension point, under a new module name each
time, so it holds no state: everything lives in the modules it re-exports, which Python
imports once. The services (embedded or configured PostgreSQL, the graph server, the
embedder, the chat model) are opened once per process, when the platform's lifespan enters
the checkpointer, and closed when it exits (``studio_services``).
"""

from __future__ import annotations

from mnemograph.studio_app import app
from mnemograph.studio_auth import auth
from mnemograph.studio_graph import graph, make_graph
from mnemograph.studio_services import SERVICES, checkpointer, store

__all__ = ["SERVICES", "app", "auth", "checkpointer", "graph", "make_graph", "store"]
