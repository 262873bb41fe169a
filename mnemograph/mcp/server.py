"""The ``mcp`` SDK server: the tools of :mod:`mnemograph.mcp.tools`, typed for MCP clients.

:func:`build_server` makes one ``MCPServer`` per host. What a tool needs comes from two
places the host decides, so the same server serves both transports:

* the **backend** (open services and the turn runner) is what the server's lifespan yields:
  the HTTP door yields the app's own, ``mnemograph mcp`` opens services for its process;
* the **user** comes from ``identify(ctx)``: the authenticated credential of the HTTP
  request, or the ``--user`` of the stdio process. No tool takes a user argument.

Arguments are validated twice: by the JSON schema the SDK derives from the annotations
(ranges, lengths, the memory kinds), and by the tools' own checks, shared with the REST
routes. A failure a caller can act on (``MnemographError``, or PostgreSQL or the LLM being
unreachable, named as the REST door names them) becomes a tool error carrying the message
(``isError``); anything else is the SDK's generic tool error, logged with its traceback, so
internals never reach the client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import openai
import psycopg
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.types import ToolAnnotations
from psycopg_pool import PoolTimeout
from pydantic import Field

from graph.facts import MAX_ENTITY_CHARS
from mnemograph.mcp import tools
from mnemograph.runner import TurnRunner
from mnemograph.services import Services
from mnemograph.validation import MAX_MESSAGE_CHARS
from stores.errors import MnemographError
from stores.memory.model import MAX_TEXT_CHARS, MemoryKind

SERVER_NAME = "mnemograph"
INSTRUCTIONS = (
    "Durable memory of one user. search_memories and recall before answering questions "
    "about the user; add_memory for lasting facts and preferences they state; current_facts "
    "and fact_history read their knowledge graph (entity 'user' is the user themselves); "
    "chat talks to the Mnemograph agent in a thread."
)


@dataclass(frozen=True)
class Backend:
    """What the tools run on, yielded by the server's lifespan."""

    services: Services
    runner: TurnRunner


ToolContext = Context[Backend, Any]
Identify = Callable[[ToolContext], str]
"""The calling user's id for this request (raises when there is none)."""
Lifespan = Callable[[MCPServer[Backend]], AbstractAsyncContextManager[Backend]]


@contextmanager
def tool_errors(error: type[Exception] = ToolError) -> Iterator[None]:
    """A failure the caller can act on, as a tool error with its message (nothing was done);
    ``ResourceError`` for resource reads, which have only the protocol error path. Outages
    are named as the REST door's 503s name them (``mnemograph.web.errors``)."""
    try:
        yield
    except MnemographError as exc:
        raise error(str(exc)) from exc
    except (psycopg.OperationalError, PoolTimeout) as exc:
        raise error("PostgreSQL is unavailable; retry shortly") from exc
    except openai.APITimeoutError as exc:
        raise error("the LLM endpoint did not answer in time; nothing was saved") from exc
    except openai.APIConnectionError as exc:
        raise error("the LLM endpoint is unreachable; nothing was saved") from exc
    except openai.APIStatusError as exc:
        raise error(f"the LLM endpoint answered HTTP {exc.status_code}; nothing was saved") from exc


Query = Annotated[
    str, Field(min_length=1, max_length=tools.MAX_QUERY_CHARS, description="What to look for.")
]
K = Annotated[int, Field(ge=1, le=tools.MAX_K, description="How many memories at most.")]
MemoryText = Annotated[
    str,
    Field(min_length=1, max_length=MAX_TEXT_CHARS, description="One self-contained statement."),
]
Importance = Annotated[float, Field(ge=0.0, le=1.0, description="0 trivial … 1 essential.")]
MemoryId = Annotated[
    str, Field(min_length=1, max_length=128, description="The id a search or add gave.")
]
Entity = Annotated[
    str | None,
    Field(
        max_length=MAX_ENTITY_CHARS,
        description="Only facts touching this entity ('user' is the user themselves); "
        "all facts when omitted.",
    ),
]
Limit = Annotated[int, Field(ge=1, le=tools.MAX_FACTS, description="How many facts at most.")]
Message = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_MESSAGE_CHARS,
        description="A message as the user would send it.",
    ),
]
ThreadId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_:@-]*$",
        description="Your thread id; a new one starts a thread.",
    ),
]

READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)


def build_server(lifespan: Lifespan, identify: Identify) -> MCPServer[Backend]:
    """The MCP server over the backend ``lifespan`` yields, for the user ``identify`` names."""
    server: MCPServer[Backend] = MCPServer(
        SERVER_NAME,
        title="Mnemograph memory",
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        log_level="WARNING",
    )

    def caller(ctx: ToolContext) -> tuple[Backend, str]:
        backend: Backend = ctx.request_context.lifespan_context
        return backend, identify(ctx)

    @server.tool(annotations=READ)
    async def search_memories(ctx: ToolContext, query: Query, k: K = 10) -> tools.SearchResult:
        """Search your long-term memories (full text and meaning, weighted by importance and
        recency), best first."""
        backend, user = caller(ctx)
        with tool_errors():
            return await tools.search_memories(backend.services, user, query, k)

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False))
    async def add_memory(
        ctx: ToolContext, text: MemoryText, kind: MemoryKind = "fact", importance: Importance = 0.5
    ) -> tools.AddResult:
        """Remember a statement about the user for later conversations. A near-duplicate
        updates the existing memory instead of adding another."""
        backend, user = caller(ctx)
        with tool_errors():
            return await tools.add_memory(backend.services, user, text, kind, importance)

    @server.tool(annotations=ToolAnnotations(destructive_hint=True, idempotent_hint=True))
    async def delete_memory(ctx: ToolContext, id: MemoryId) -> tools.DeleteResult:
        """Forget one memory by its id."""
        backend, user = caller(ctx)
        with tool_errors():
            return await tools.delete_memory(backend.services, user, id)

    @server.tool(annotations=READ)
    async def current_facts(
        ctx: ToolContext, entity: Entity = None, limit: Limit = 100
    ) -> tools.FactsResult:
        """Your knowledge graph's facts that hold now (a newer value replaces an older one),
        oldest first."""
        backend, user = caller(ctx)
        with tool_errors():
            return await tools.current_facts(backend.services, user, entity, limit)

    @server.tool(annotations=READ)
    async def fact_history(
        ctx: ToolContext, entity: Entity = None, limit: Limit = 100
    ) -> tools.FactsResult:
        """Every fact your knowledge graph has held, replaced ones included (with the time
        they stopped holding), oldest first."""
        backend, user = caller(ctx)
        with tool_errors():
            return await tools.fact_history(backend.services, user, entity, limit)

    @server.tool(annotations=READ)
    async def recall(ctx: ToolContext, query: Message) -> tools.RecallResult:
        """What the agent would recall into its prompt if you sent this message now: the
        memories and facts that fit its budgets, best first."""
        backend, user = caller(ctx)
        with tool_errors():
            return await tools.recall(backend.services, user, query)

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False))
    async def chat(ctx: ToolContext, thread_id: ThreadId, message: Message) -> tools.ChatResult:
        """Send a message to the Mnemograph agent in one of your threads and get its reply;
        it remembers what matters from the exchange."""
        backend, user = caller(ctx)
        with tool_errors():
            return await tools.chat(backend.runner, user, thread_id, message)

    @server.resource(
        "mnemograph://facts/{entity}",
        name="facts",
        title="Facts about an entity (mnemograph://facts/user is your profile)",
        description="The current knowledge-graph facts touching one entity, as JSON; the "
        "entity 'user' is you, so mnemograph://facts/user is your profile.",
        mime_type="application/json",
    )
    async def facts_resource(entity: str, ctx: ToolContext) -> tools.FactsResult:
        backend, user = caller(ctx)
        with tool_errors(ResourceError):
            return await tools.profile(backend.services, user, entity)

    return server
