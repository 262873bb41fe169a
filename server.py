"""HTTP entry point. Thin on purpose: routes authenticate, check ownership, and hand over to
the same services and turn runner the CLI uses.

Run with ``mnemograph serve`` (or ``uvicorn --factory server:create_app``).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import openai
import psycopg
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from langserve import add_routes
from psycopg_pool import PoolTimeout
from pydantic import BaseModel, ConfigDict, Field, field_validator

from graph.agent import AgentInput, AgentRunnable, TurnRunner
from stores.errors import InvalidInput, MnemographError, NotFound, ServiceUnavailable
from stores.ids import check_id
from stores.lifecycle import delete_user, export_user
from stores.services import Services, open_services
from web import mount_inspector

MAX_BODY_BYTES = 256 * 1024
ENDPOINTS: list[Any] = [
    "invoke", "batch", "stream", "stream_events", "playground",
    "input_schema", "output_schema", "config_schema",
]  # fmt: skip


class ThreadCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    thread_id: str = Field(..., description="Client-chosen id: letters, digits, _:@-")
    title: str = Field("", max_length=200)

    @field_validator("title")
    @classmethod
    def _printable(cls, value: str) -> str:
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError("title contains control characters")
        return value


class ThreadOut(BaseModel):
    thread_id: str
    title: str
    created_at: str
    updated_at: str


class MessageOut(BaseModel):
    id: str | None
    type: str
    content: str


class ThreadDetail(ThreadOut):
    summary: str
    turns: int
    messages: list[MessageOut]


class Deleted(BaseModel):
    deleted: dict[str, int]


class Latency:
    """Per-node latency samples since start, bounded so memory stays flat."""

    def __init__(self, keep: int = 2000) -> None:
        self.samples: defaultdict[str, deque[float]] = defaultdict(lambda: deque(maxlen=keep))

    def add(self, name: str, ms: float) -> None:
        self.samples[name].append(ms)

    def summary(self) -> dict[str, dict[str, float]]:
        out = {}
        for name, values in self.samples.items():
            ordered = sorted(values)
            if ordered:
                out[name] = {"n": len(ordered)} | {
                    f"p{int(q * 100)}": ordered[min(len(ordered) - 1, int(q * len(ordered)))]
                    for q in (0.5, 0.95, 0.99)
                }
        return out


class RateLimiter:
    """Per-user token bucket: ``per_min`` requests a minute, bursts up to ``per_min``.

    In-process, so with several workers each enforces its own share; 0 turns it off.
    """

    def __init__(self, per_min: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_min = per_min
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, user_id: str) -> bool:
        if self.per_min <= 0:
            return True
        now = self.clock()
        tokens, last = self._buckets.get(user_id, (float(self.per_min), now))
        tokens = min(float(self.per_min), tokens + (now - last) * self.per_min / 60.0)
        if len(self._buckets) > 100_000:  # bound memory: forget idle users
            self._buckets.clear()
        if tokens < 1.0:
            self._buckets[user_id] = (tokens, now)
            return False
        self._buckets[user_id] = (tokens - 1.0, now)
        return True


def _jwt_user(token: str, settings: Any) -> str:
    """The `sub` of a valid HS256 token; signature, expiry and audience are all checked."""
    import jwt

    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret.get_secret_value(),
            algorithms=["HS256"],
            audience=settings.jwt_audience,
            options={"require": ["sub", "exp"]},
        )
    except jwt.PyJWTError as exc:
        raise HTTPException(401, f"invalid token: {exc}") from None
    try:
        return check_id("user id", str(claims["sub"]))
    except InvalidInput as exc:
        raise HTTPException(401, f"invalid token: {exc}") from None


async def current_user(request: Request) -> str:
    """The caller's user id, from `Authorization: Bearer <key>` or `X-API-Key`; rate-limited."""
    header = request.headers.get("authorization", "")
    key = header[7:].strip() if header.lower().startswith("bearer ") else ""
    key = key or request.headers.get("x-api-key", "").strip()
    if not key:
        raise HTTPException(401, "missing API key (Authorization: Bearer <key>)")
    settings = request.app.state.services.settings
    if settings.jwt_secret is not None and key.count(".") == 2:
        user_id = _jwt_user(key, settings)
    else:
        user_id = await request.app.state.users.authenticate(key)
    if user_id is None:
        raise HTTPException(401, "invalid API key")
    limiter: RateLimiter | None = getattr(request.app.state, "limiter", None)
    if limiter is not None and not limiter.allow(str(user_id)):
        raise HTTPException(
            429,
            f"rate limit of {limiter.per_min} requests per minute exceeded; retry shortly",
            headers={"Retry-After": str(max(1, round(60 / limiter.per_min)))},
        )
    return str(user_id)


User = Annotated[str, Depends(current_user)]


def create_app(services: Services | None = None) -> FastAPI:
    """Build the app; tests pass already-open services, production opens its own."""
    agent = AgentRunnable()
    latency = Latency()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async def start(svc: Services) -> None:
            assert svc.pool is not None
            app.state.services = svc
            app.state.users = svc.users
            app.state.runner = agent.runner = TurnRunner(svc)
            app.state.limiter = RateLimiter(svc.settings.rate_limit_per_min)

        async def serve(svc: Services) -> AsyncIterator[None]:
            await start(svc)
            runner: TurnRunner = app.state.runner
            # Memory work a dead process owed is finished in the background, not at startup.
            recovery = asyncio.create_task(runner.recover_all(), name="recover-unfinished-runs")
            try:
                yield
            finally:
                await asyncio.gather(recovery, return_exceptions=True)
                await runner.drain()

        if services is not None:
            async for _ in serve(services):
                yield
            return
        async with open_services() as opened:
            async for _ in serve(opened):
                yield

    app = FastAPI(
        title="Mnemograph",
        version="0.1.0",
        description="Chat agent with durable, per-user memory.",
        lifespan=lifespan,
    )

    @app.exception_handler(MnemographError)
    async def known_errors(request: Request, exc: MnemographError) -> JSONResponse:
        status = 400
        if isinstance(exc, NotFound):
            status = 404
        elif isinstance(exc, ServiceUnavailable):
            status = 503
        elif isinstance(exc, InvalidInput):
            status = 422
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.exception_handler(psycopg.OperationalError)
    @app.exception_handler(PoolTimeout)
    async def postgres_down(request: Request, exc: Exception) -> JSONResponse:
        """A lost or unreachable database is a 503 naming the service, never a bare 500."""
        return JSONResponse(
            {"detail": "PostgreSQL is unavailable; retry shortly"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(openai.APITimeoutError)
    async def llm_timeout(request: Request, exc: Exception) -> JSONResponse:
        timeout = svc(request).settings.llm_timeout_s
        return JSONResponse(
            {"detail": f"the LLM endpoint did not answer within {timeout:g} s; nothing was "
             "saved, retry the message"},
            status_code=504,
        )  # fmt: skip

    @app.exception_handler(openai.APIConnectionError)
    async def llm_down(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(
            {"detail": "the LLM endpoint is unreachable; nothing was saved, retry the message"},
            status_code=503,
        )

    @app.exception_handler(openai.APIStatusError)
    async def llm_error(request: Request, exc: Exception) -> JSONResponse:
        status = getattr(exc, "status_code", 0)
        return JSONResponse(
            {"detail": f"the LLM endpoint answered HTTP {status}; nothing was saved"},
            status_code=502,
        )

    @app.middleware("http")
    async def limits_and_timing(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return JSONResponse(
                {"detail": f"request body over {MAX_BODY_BYTES} bytes"}, status_code=413
            )
        if request.method in ("POST", "PUT", "PATCH"):
            try:  # one clear 400 here, instead of a decode error deep in a route
                (await request.body()).decode("utf-8")
            except UnicodeDecodeError as exc:
                return JSONResponse(
                    {"detail": f"request body is not valid UTF-8 (byte {exc.start})"},
                    status_code=400,
                )
        t0 = time.perf_counter()
        response = await call_next(request)
        latency.add(f"http {request.method} {request.url.path.split('/')[1] or '/'}",
                    (time.perf_counter() - t0) * 1000)  # fmt: skip
        return response

    def svc(request: Request) -> Services:
        services_: Services = request.app.state.services
        return services_

    @app.get("/health", summary="Check every backing service; 503 names the failing one")
    async def health(request: Request) -> JSONResponse:
        services_ = svc(request)
        checks: dict[str, str] = {}
        try:
            assert services_.pool is not None
            async with services_.pool.connection(timeout=5) as conn:
                await conn.execute("SELECT 1")
            checks["postgres"] = "ok"
        except Exception as exc:
            checks["postgres"] = f"unavailable: {type(exc).__name__}"
        graph = services_.graph
        if graph is not None:
            try:
                await graph.ping()
                checks["graph"] = "ok"
            except Exception as exc:
                checks["graph"] = f"unavailable: {type(exc).__name__}"
        failing = [name for name, state in checks.items() if state != "ok"]
        body = {"status": "ok" if not failing else "unavailable", "services": checks}
        if failing:
            body["detail"] = f"{', '.join(failing)} unavailable"
        return JSONResponse(body, status_code=503 if failing else 200)

    @app.get("/stats", summary="Counts and per-route latency percentiles since start")
    async def stats(request: Request, user: User) -> dict[str, Any]:
        services_ = svc(request)
        assert services_.threads is not None
        threads = await services_.threads.list(user, limit=10_000)
        return {"user": {"threads": len(threads)}, "latency_ms": latency.summary()}

    def thread_out(info: Any) -> ThreadOut:
        return ThreadOut(
            thread_id=info.thread_id,
            title=info.title,
            created_at=info.created_at.isoformat(),
            updated_at=info.updated_at.isoformat(),
        )

    @app.post("/threads", status_code=201, summary="Create (or confirm) a thread you own")
    async def create_thread(body: ThreadCreate, request: Request, user: User) -> ThreadOut:
        check_id("thread id", body.thread_id)
        services_ = svc(request)
        assert services_.threads is not None
        return thread_out(await services_.threads.claim(user, body.thread_id, body.title))

    @app.get("/threads", summary="Your threads, newest first")
    async def list_threads(request: Request, user: User) -> list[ThreadOut]:
        services_ = svc(request)
        assert services_.threads is not None
        return [thread_out(t) for t in await services_.threads.list(user)]

    @app.get("/threads/{thread_id}", summary="A thread's messages and rolling summary")
    async def get_thread(thread_id: str, request: Request, user: User) -> ThreadDetail:
        check_id("thread id", thread_id)
        services_ = svc(request)
        assert services_.threads is not None
        info = await services_.threads.get(thread_id, user)
        runner: TurnRunner = request.app.state.runner
        snapshot = await runner.graph.aget_state({"configurable": {"thread_id": thread_id}})
        values = snapshot.values or {}
        return ThreadDetail(
            **thread_out(info).model_dump(),
            summary=values.get("summary", ""),
            turns=values.get("turn", 0),
            messages=[
                MessageOut(id=m.id, type=m.type, content=m.text) for m in values.get("messages", [])
            ],
        )

    @app.delete("/threads/{thread_id}", summary="Delete a thread and its checkpoints")
    async def delete_thread(thread_id: str, request: Request, user: User) -> Deleted:
        check_id("thread id", thread_id)
        services_ = svc(request)
        assert services_.threads is not None and services_.checkpointer is not None
        await services_.threads.get(thread_id, user)
        runner: TurnRunner = request.app.state.runner
        async with runner.hold(thread_id):  # never delete under a running turn
            await services_.checkpointer.adelete_thread(thread_id)
            await services_.threads.delete(thread_id, user)
        return Deleted(deleted={"threads": 1})

    @app.get("/memories", summary="Your long-term memories; with ?query=, hybrid search")
    async def memories(
        request: Request,
        user: User,
        query: Annotated[str | None, Query(max_length=2000)] = None,
        k: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> list[dict[str, Any]]:
        memory = svc(request).memory
        if memory is None:
            raise ServiceUnavailable("long-term memory", "not configured on this server")
        if query is not None and query.strip():
            hits = await memory.search(user, query, k)
            return [{**h.item.to_json(), "score": h.score} for h in hits]
        return [item.to_json() for item in await memory.list(user, limit=k)]

    @app.delete("/memories/{memory_id}", summary="Forget one memory")
    async def delete_memory(memory_id: str, request: Request, user: User) -> Deleted:
        check_id("memory id", memory_id)
        memory = svc(request).memory
        if memory is None:
            raise ServiceUnavailable("long-term memory", "not configured on this server")
        await memory.delete(user, memory_id)
        return Deleted(deleted={"memories": 1})

    async def _graph(request: Request) -> Any:
        graph = svc(request).graph
        if graph is None:
            raise ServiceUnavailable("graph server", "not configured on this server")
        return graph

    @app.get("/graph", summary="Your current knowledge-graph facts")
    async def graph_current(request: Request, user: User) -> dict[str, Any]:
        return {"facts": await (await _graph(request)).current_facts(user)}

    @app.get("/graph/history", summary="All facts, including invalidated ones")
    async def graph_history(request: Request, user: User) -> dict[str, Any]:
        return {"facts": await (await _graph(request)).history(user)}

    @app.get("/me/export", summary="Everything stored about you, as one JSON document")
    async def export_me(request: Request, user: User) -> dict[str, Any]:
        return await export_user(svc(request), user)

    @app.delete("/me", summary="Delete your account and everything stored about you")
    async def delete_me(request: Request, user: User) -> Deleted:
        await request.app.state.runner.drain()  # let running turns land before deleting
        return Deleted(deleted=await delete_user(svc(request), user))

    async def modifier(config: dict[str, Any], request: Request) -> dict[str, Any]:
        """LangServe hook: identity from the credential, thread ownership checked up front."""
        user = await current_user(request)
        configurable = dict(config.get("configurable") or {})
        thread_id = configurable.get("thread_id")
        if not isinstance(thread_id, str):
            raise HTTPException(422, "config.configurable.thread_id is required")
        try:
            check_id("thread id", thread_id)
            services_ = svc(request)
            assert services_.threads is not None
            await services_.threads.claim(user, thread_id)
        except InvalidInput as exc:
            raise HTTPException(422, str(exc)) from exc
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from exc
        configurable["user_id"] = user
        config["configurable"] = configurable
        return config

    add_routes(
        app,
        agent.with_types(input_type=AgentInput, output_type=dict),  # type: ignore[arg-type]
        path="/agent",
        per_req_config_modifier=modifier,
        enabled_endpoints=ENDPOINTS,
    )
    mount_inspector(app)
    return app
