"""LangServe's ``/agent``: the turn runner behind LangServe's invoke, batch and stream routes.

The caller's identity comes from the credential, never from the body: the per-request config
modifier authenticates, checks (or claims) the thread, and writes ``user_id`` into the config
the runnable reads.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from langserve import add_routes

from mnemograph.langserve_adapter import AgentRunnable
from mnemograph.validation import AgentInput, check_knobs
from mnemograph.web.deps import current_user
from stores.errors import InvalidInput, NotFound
from stores.ids import check_id

ENDPOINTS: list[Any] = [
    "invoke", "batch", "stream", "stream_events", "playground",
    "input_schema", "output_schema", "config_schema",
]  # fmt: skip


async def with_identity(config: dict[str, Any], request: Request) -> dict[str, Any]:
    """LangServe hook: identity from the credential, thread ownership checked up front."""
    user = await current_user(request)
    configurable = dict(config.get("configurable") or {})
    thread_id = configurable.get("thread_id")
    if not isinstance(thread_id, str):
        raise HTTPException(422, "config.configurable.thread_id is required")
    try:
        check_id("thread id", thread_id)
        check_knobs(configurable)  # out-of-bounds knobs: a 422 before the thread is touched
        threads = request.app.state.services.threads
        assert threads is not None
        await threads.claim(user, thread_id)
    except InvalidInput as exc:
        raise HTTPException(422, str(exc)) from exc
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    configurable["user_id"] = user
    config["configurable"] = configurable
    return config


def mount_agent(app: FastAPI, agent: AgentRunnable) -> None:
    """Add LangServe's routes under ``/agent``; the app's lifespan gives ``agent`` its runner."""
    add_routes(
        app,
        agent.with_types(input_type=AgentInput, output_type=dict),  # type: ignore[arg-type]
        path="/agent",
        per_req_config_modifier=with_identity,
        enabled_endpoints=ENDPOINTS,
        # The caller, as on every route: the OpenAPI document lists the security schemes.
        dependencies=[Depends(current_user)],
    )
