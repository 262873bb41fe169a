"""Request bodies of the Agent Protocol routes, as ``langgraph_sdk`` sends them.

Fields the SDK sends that change nothing here (tracing, durability, multitask strategy) are
accepted and ignored, so newer clients keep working; fields whose meaning this server does
not implement (``command``, ``checkpoint``, interrupts, webhooks, delays) are refused with a
422 naming them, never silently dropped. Every free-form JSON a client can store (metadata)
is checked so Postgres' ``jsonb`` takes it: no NUL characters, finite numbers within 64
bits, bounded size and depth.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from mnemograph.validation import check_knobs
from mnemograph.web.routes.protocol.wire import dumps
from stores.errors import InvalidInput

MAX_JSON_DEPTH = 20
MAX_METADATA_CHARS = 16_000


def _check_json(value: Any, depth: int = 0) -> None:
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("contains a NUL character")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("contains text that is not valid Unicode") from None
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise ValueError("holds an integer beyond 64 bits")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("holds a number that is not finite")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_json(key, depth + 1)
            _check_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json(item, depth + 1)


def _storable(value: dict[str, Any]) -> dict[str, Any]:
    _check_json(value)
    if len(dumps(value)) > MAX_METADATA_CHARS:
        raise ValueError(f"is larger than {MAX_METADATA_CHARS} bytes of JSON")
    return value


Metadata = Annotated[dict[str, Any], AfterValidator(_storable)]
"""A JSON object this server may store (thread metadata, a memory's value)."""
Limit = Annotated[int, Field(ge=1, le=1000)]
Offset = Annotated[int, Field(ge=0, le=1_000_000)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ThreadCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    thread_id: str | None = Field(None, description="Your id; omitted, the server issues one")
    metadata: Metadata | None = None
    if_exists: Literal["raise", "do_nothing"] | None = None
    supersteps: list[Any] | None = Field(None, description="Not supported: must be empty")
    ttl: Any = Field(None, description="Accepted and ignored")


class ThreadPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metadata: Metadata | None = None
    ttl: Any = Field(None, description="Accepted and ignored")


class ThreadSearch(_Body):
    metadata: Metadata | None = None
    ids: list[str] | None = Field(None, max_length=1000)
    status: Literal["idle", "busy", "interrupted", "error"] | None = None
    values: dict[str, Any] | None = Field(None, description="Not supported: must be empty")
    limit: Limit = 10
    offset: Offset = 0
    sort_by: Literal["thread_id", "created_at", "updated_at", "status"] | None = None
    sort_order: Literal["asc", "desc"] | None = None
    select: list[str] | None = Field(None, max_length=20)


class ThreadCount(_Body):
    metadata: Metadata | None = None
    status: Literal["idle", "busy", "interrupted", "error"] | None = None
    values: dict[str, Any] | None = Field(None, description="Not supported: must be empty")


class History(_Body):
    limit: Limit = 10
    before: str | dict[str, Any] | None = None
    metadata: Metadata | None = None
    checkpoint: dict[str, Any] | None = None
    select: list[str] | None = Field(None, max_length=20)


class AtCheckpoint(_Body):
    checkpoint: dict[str, Any]
    subgraphs: bool = False


class AssistantSearch(_Body):
    metadata: Metadata | None = None
    graph_id: str | None = Field(None, max_length=200)
    name: str | None = Field(None, max_length=200)
    limit: Limit = 10
    offset: Offset = 0


UNSUPPORTED_RUN_FIELDS = (
    "command", "checkpoint", "checkpoint_id", "interrupt_before", "interrupt_after",
    "webhook", "after_seconds",
)  # fmt: skip


class RunCreate(_Body):
    assistant_id: str = Field(..., max_length=200)
    input: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    stream_mode: str | list[str] = "values"
    stream_subgraphs: bool = False
    stream_resumable: bool = False
    if_not_exists: Literal["reject", "create"] | None = None
    on_completion: Literal["delete", "keep"] | None = None
    command: Any = None
    checkpoint: Any = None
    checkpoint_id: Any = None
    interrupt_before: Any = None
    interrupt_after: Any = None
    webhook: Any = None
    after_seconds: Any = None

    def refuse_unsupported(self) -> None:
        given = [name for name in UNSUPPORTED_RUN_FIELDS if getattr(self, name) not in (None, [])]
        if given:
            raise InvalidInput(f"not supported by this server: {', '.join(given)}")


class StorePut(_Body):
    namespace: list[str] = Field(..., max_length=10)
    key: str = Field(..., min_length=1, max_length=128)
    value: Metadata
    index: Any = None
    ttl: Any = None


class StoreDelete(_Body):
    namespace: list[str] | None = Field(None, max_length=10)
    key: str = Field(..., min_length=1, max_length=128)


class StoreSearch(_Body):
    namespace_prefix: list[str] = Field(default_factory=list, max_length=10)
    filter: dict[str, Any] | None = None
    limit: Annotated[int, Field(ge=1, le=100)] = 10
    offset: Annotated[int, Field(ge=0, le=10_000)] = 0
    query: str | None = Field(None, max_length=2000)


def knobs_of(body: RunCreate) -> dict[str, Any]:
    """The run's knobs from ``config.configurable`` and ``context`` (``context`` wins);
    other keys are ignored, a known knob out of bounds is a 422 naming it."""
    configurable = (body.config or {}).get("configurable") or {}
    merged = {**(configurable if isinstance(configurable, dict) else {}), **(body.context or {})}
    return check_knobs(merged)
