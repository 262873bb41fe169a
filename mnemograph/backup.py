"""The export document as a schema: what ``users export`` and ``GET /me/export`` write, and
what ``users import`` and ``POST /me/import`` accept back.

An import must refuse a bad document before anything is written, and both doors must refuse
the same documents the same way; one set of pydantic models is that rule. Everything a
document can be checked for on its own is checked here (shape, id alphabet, bounds,
duplicates, relations whose entities are missing); what depends on the stored data
(conflicts, tombstones) is :func:`mnemograph.lifecycle.import_user`'s. Validation messages
name the field and the rule, never the offending value (:func:`read_export`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from graph.facts import MAX_ENTITY_CHARS
from stores.errors import InvalidInput
from stores.ids import check_id
from stores.memory.model import MAX_TEXT_CHARS, MemoryKind

MAX_MESSAGE_CHARS = 1_000_000
"""Longest restored message: replies are not bound by what a caller may send (32,000)."""
MAX_SUMMARY_CHARS = 1_000_000
MAX_REF_CHARS = 512
"""Longest message id, source thread or source message a document may name."""


def _stored_text(value: str) -> str:
    """A memory's text as the store keeps it: whitespace collapsed, no NUL
    (``stores.memory.model.check_text``); anything else was not written by an export."""
    if "\x00" in value or " ".join(value.split()) != value:
        raise ValueError("memory text must be in stored form (single spaces, no NUL)")
    return value


def _checked_id(kind: str) -> Callable[[str], str]:
    """``stores.ids.check_id`` as a pydantic check (its ``InvalidInput`` as ``ValueError``)."""

    def check(value: str) -> str:
        try:
            return check_id(kind, value)
        except InvalidInput as exc:
            raise ValueError(str(exc)) from None

    return check


UserId = Annotated[str, AfterValidator(_checked_id("user id"))]
ThreadId = Annotated[str, AfterValidator(_checked_id("thread id"))]
MemoryId = Annotated[str, AfterValidator(_checked_id("memory id"))]
RelationId = Annotated[str, AfterValidator(_checked_id("relation id"))]
Ref = Annotated[str, Field(min_length=1, max_length=MAX_REF_CHARS)]
EntityName = Annotated[str, Field(min_length=1, max_length=MAX_ENTITY_CHARS)]
Millis = Annotated[int, Field(ge=0, le=2**53)]
Unit = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


class _Strict(BaseModel):
    """Unknown keys are an error: a document of another shape is refused, not half read."""

    model_config = ConfigDict(extra="forbid")


class ExportedMessage(_Strict):
    id: Ref
    type: Literal["human", "ai", "system"]
    content: Annotated[str, Field(max_length=MAX_MESSAGE_CHARS)]


class ExportedThread(_Strict):
    thread_id: ThreadId
    title: Annotated[str, Field(max_length=200)] = ""
    created_at: AwareDatetime
    updated_at: AwareDatetime
    summary: Annotated[str, Field(max_length=MAX_SUMMARY_CHARS)] = ""
    turns: Annotated[int, Field(ge=0)] | None = None
    """Completed turns; documents written before it was exported leave it out."""
    messages: list[ExportedMessage] = []

    @model_validator(mode="after")
    def _distinct_messages(self) -> ExportedThread:
        if len({m.id for m in self.messages}) != len(self.messages):
            raise ValueError("a message id appears twice in the thread")
        return self


class ExportedMemory(_Strict):
    id: MemoryId
    user_id: UserId
    text: Annotated[
        str, Field(min_length=1, max_length=MAX_TEXT_CHARS), AfterValidator(_stored_text)
    ]
    kind: MemoryKind
    importance: Unit
    event_at: AwareDatetime | None = None
    created_at: AwareDatetime
    last_seen_at: AwareDatetime
    provenance: list[Ref] = []
    metadata: dict[str, Any] = {}
    subject: Annotated[str, Field(max_length=MAX_TEXT_CHARS)] | None = None
    seen_count: Annotated[int, Field(ge=1)] = 1
    context: Annotated[str, Field(max_length=4 * MAX_TEXT_CHARS)] | None = None
    """Indexing context (documents written before it was exported leave it out)."""


class ExportedEntity(_Strict):
    name: EntityName
    display: Annotated[str, Field(max_length=MAX_ENTITY_CHARS)] | None = None
    norm_name: Annotated[str, Field(max_length=MAX_ENTITY_CHARS)] | None = None
    created_at: Millis | None = None


class ExportedRelation(_Strict):
    id: RelationId
    subject: EntityName
    subject_display: Annotated[str, Field(max_length=MAX_ENTITY_CHARS)]
    predicate: Annotated[str, Field(min_length=1, max_length=MAX_ENTITY_CHARS)]
    object: EntityName
    object_display: Annotated[str, Field(max_length=MAX_ENTITY_CHARS)]
    confidence: Unit
    created_at: Millis
    valid_from: Millis
    invalid_at: Millis | None = None
    source_thread: Ref | None = None
    source_message: Ref | None = None


class ExportedGraph(_Strict):
    entities: list[ExportedEntity] = []
    relations: list[ExportedRelation] = []

    @model_validator(mode="after")
    def _consistent(self) -> ExportedGraph:
        names = {e.name for e in self.entities}
        if len(names) != len(self.entities):
            raise ValueError("an entity name appears twice")
        if len({r.id for r in self.relations}) != len(self.relations):
            raise ValueError("a relation id appears twice")
        if any(r.subject not in names or r.object not in names for r in self.relations):
            raise ValueError("a relation names an entity the document does not list")
        return self


class ExportDocument(_Strict):
    """One user's export (``mnemograph.lifecycle.export_user``)."""

    user_id: UserId
    exported_at: AwareDatetime | None = None
    threads: list[ExportedThread] = []
    memories: list[ExportedMemory] = []
    graph: ExportedGraph = ExportedGraph()
    graph_outbox: Annotated[int, Field(ge=0)] = 0
    """Graph writes that were still queued at export time: a count, not their content (an
    export taken while the graph server is down lacks them)."""

    @model_validator(mode="after")
    def _consistent(self) -> ExportDocument:
        if len({t.thread_id for t in self.threads}) != len(self.threads):
            raise ValueError("a thread id appears twice")
        if len({m.id for m in self.memories}) != len(self.memories):
            raise ValueError("a memory id appears twice")
        if any(m.user_id != self.user_id for m in self.memories):
            raise ValueError("a memory belongs to a user other than the document's")
        return self


class ImportReport(BaseModel):
    """What an import did, per store: threads and memories by outcome (``unchanged``:
    already stored identically, not written); graph rows merged by key (identical values
    written again change nothing); tombstones lifted (``--undelete`` only)."""

    user_id: str
    """The account the data went into."""
    source_user_id: str
    """The user id the document was exported from."""
    threads_restored: int
    threads_unchanged: int
    memories_created: int
    memories_updated: int
    memories_unchanged: int
    graph_entities: int
    graph_relations: int
    tombstones_lifted: int


_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,39}$")


def _shown(part: Any) -> str:
    """A step of an error's location: an index or a field name; an unknown key (any text
    of the document's) is not repeated."""
    return str(part) if isinstance(part, int) or _FIELD.fullmatch(str(part)) else "(key)"


def read_export(text: str | bytes) -> ExportDocument:
    """Parse and check an export document; :class:`InvalidInput` naming the first problem
    (where and which rule, never the value) and how many there are."""
    try:
        return ExportDocument.model_validate_json(text)
    except ValidationError as exc:
        problems = exc.errors(include_input=False, include_url=False)
        first = problems[0]
        where = ".".join(_shown(p) for p in first["loc"]) or "document"
        more = f" ({len(problems)} problems)" if len(problems) > 1 else ""
        raise InvalidInput(f"not a valid export document: {where}: {first['msg']}{more}") from None
