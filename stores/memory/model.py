"""The long-term memory item model: what a memory is, how it is stored, and what is valid.

It exists apart from the store so that ranking, the SQL, the CLI and the benches can share the
records (:class:`MemoryItem`, :class:`ScoredItem`, :class:`NewMemory`), the configuration
(:class:`MemoryConfig`) and the input checks without importing the class that talks to
Postgres. Everything here is pure: no I/O, no module state.

A memory is a LangGraph store item under the namespace ``(user_id, "memories")``; its value
is the JSON of :meth:`MemoryItem.to_json` without ``id`` and ``user_id`` (the key and the
namespace carry those), plus the optional indexing ``context``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from stores.errors import InvalidInput

MemoryKind = Literal["fact", "preference", "semantic", "turn"]
KINDS: tuple[str, ...] = ("fact", "preference", "semantic", "turn")
NAMESPACE_LEAF = "memories"
MAX_TEXT_CHARS = 8000


@dataclass(frozen=True)
class MemoryConfig:
    """Ranking and dedup knobs. Built from settings by hosts; benches use the same defaults."""

    weight_relevance: float = 0.5
    weight_importance: float = 0.3
    weight_recency: float = 0.2
    recency_half_life_days: float = 30.0
    dedup_threshold: float = 0.92
    """Cosine at or above which a new fact/preference merges into an existing item."""
    importance_bump: float = 0.1
    """How much a repeated (merged) memory gains in importance, capped at 1."""
    candidates: int = 50
    """Candidates taken from each retriever before fusion."""
    cos_min_span: float = 0.25
    """Cosine is scaled over at least this span below the best hit, so a handful of
    near-equal candidates are not stretched to 0…1 by min-max."""
    vector_weight: float = 0.5
    """Weight of the vector ranking in the fusion (full text has 1.0)."""
    context_weight: float = 0.2
    """How much a term found only in an item's indexing context counts, against its own text
    (0.4 until the tune/report ablation of bench.locomo_ablation chose 0.2 with replies)."""
    reply_share: float = 1.0
    """The turn after a question turn ranks at least this share of the question's relevance
    (``ranking.replies_inherit``); 0 turns it off."""
    question_penalty: float = 0.1
    """Relevance a question turn gives up when its reply is a candidate."""
    time_boost: float = 0.1
    """Relevance added, for a when-question, to items naming a time (``cues.boost_time``)."""
    speaker_boost: float = 0.15
    """Relevance added to items said by a person the question names (``cues.boost_speaker``)."""
    common_term_share: float = 0.2
    """Terms in more than this share of a user's items (e.g. a speaker's name) still score,
    but do not pull candidates in: it keeps the BM25 scan small at 10k items per user."""
    bm25_budget: int = 1000
    """Postings the rarest query terms may bring in as candidates before the commoner ones
    stop selecting (they still score); it bounds a full-text search at 10k items per user."""
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    vector_cache_rows: int = 100_000
    """Vectors a process may copy into memory for exact in-process search (0: none); at
    384 dimensions, 1.5 kB each."""
    vector_cache_min_rows: int = 2_000
    """Users with fewer vectors are searched in SQL, which is about as fast for them."""

    @property
    def weights(self) -> tuple[float, float, float]:
        """(relevance, importance, recency): the blend of the final score."""
        return (self.weight_relevance, self.weight_importance, self.weight_recency)

    @classmethod
    def from_settings(cls, settings: Any) -> MemoryConfig:
        """Pick the ``memory_*`` fields a Settings object has; missing ones keep defaults."""
        names = {
            "weight_relevance": "memory_weight_relevance",
            "weight_importance": "memory_weight_importance",
            "weight_recency": "memory_weight_recency",
            "recency_half_life_days": "memory_recency_half_life_days",
            "dedup_threshold": "memory_dedup_threshold",
            "vector_cache_rows": "memory_vector_cache_rows",
        }
        values = {
            mine: getattr(settings, theirs)
            for mine, theirs in names.items()
            if getattr(settings, theirs, None) is not None
        }
        return cls(**values)


@dataclass
class MemoryItem:
    """One long-term memory as its owner sees it."""

    id: str
    user_id: str
    text: str
    kind: str
    importance: float
    event_at: datetime | None
    created_at: datetime
    last_seen_at: datetime
    provenance: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    subject: str | None = None
    seen_count: int = 1
    context: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (ISO dates) for export, the CLI and REST answers."""
        return {
            "id": self.id,
            "user_id": self.user_id,
            "text": self.text,
            "kind": self.kind,
            "importance": self.importance,
            "event_at": self.event_at.isoformat() if self.event_at else None,
            "created_at": self.created_at.isoformat(),
            "last_seen_at": self.last_seen_at.isoformat(),
            "provenance": list(self.provenance),
            "metadata": dict(self.metadata),
            "subject": self.subject,
            "seen_count": self.seen_count,
        }


@dataclass
class ScoredItem:
    """A search hit with the parts of its score, so rankings can be explained and debugged."""

    item: MemoryItem
    score: float
    relevance: float
    recency: float
    bm25_rank: int | None = None
    vector_rank: int | None = None


@dataclass
class NewMemory:
    """One item for :meth:`MemoryStore.add_many` (imports, benches)."""

    text: str
    kind: str = "turn"
    importance: float = 0.5
    event_at: datetime | None = None
    provenance: Sequence[str] = ()
    metadata: Mapping[str, Any] | None = None
    subject: str | None = None
    context: str | None = None
    """Extra text indexed with the item (e.g. neighbouring turns) but never returned."""


def namespace(user_id: str) -> tuple[str, str]:
    """The LangGraph store namespace of a user's memories."""
    return (user_id, NAMESPACE_LEAF)


def store_prefix(user_id: str) -> str:
    """The ``prefix`` column of the user's rows in LangGraph's ``store`` table."""
    return ".".join(namespace(user_id))


def vector_text(v: Sequence[float]) -> str:
    """pgvector's text form; avoids a client-side adapter dependency."""
    return "[" + ",".join(f"{x:.6f}" for x in v) + "]"


def now() -> datetime:
    return datetime.now(UTC)


def aware(dt: datetime | None) -> datetime | None:
    """``dt`` with a time zone (naive times are taken as UTC)."""
    if dt is None:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def parse_dt(value: Any) -> datetime | None:
    """A stored date (ISO text or datetime) as an aware datetime; empty is ``None``."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return aware(value)
    return aware(datetime.fromisoformat(str(value)))


def check_text(text: str) -> str:
    """The text with its whitespace collapsed; empty, too long or NUL-bearing is refused
    (PostgreSQL text cannot hold NUL, so it would fail later as a server error)."""
    text = " ".join(str(text).split())
    if "\x00" in text:
        raise InvalidInput("memory text contains a NUL character")
    if not text:
        raise InvalidInput("memory text is empty")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidInput(f"memory text is longer than {MAX_TEXT_CHARS} characters")
    return text


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise InvalidInput(f"unknown memory kind {kind!r}; use one of {', '.join(KINDS)}")
    return kind


def clamp01(x: float) -> float:
    """An importance clamped to [0, 1]; a value that is not a number is refused."""
    if not isinstance(x, int | float) or math.isnan(x):
        raise InvalidInput(f"importance must be a number in [0, 1], got {x!r}")
    return min(1.0, max(0.0, float(x)))


def item_from(user_id: str, key: str, value: Mapping[str, Any]) -> MemoryItem:
    """A stored value (the ``store`` row's JSON) as a :class:`MemoryItem`."""
    return MemoryItem(
        id=key,
        user_id=user_id,
        text=str(value.get("text", "")),
        kind=str(value.get("kind", "fact")),
        importance=float(value.get("importance", 0.5)),
        event_at=parse_dt(value.get("event_at")),
        created_at=parse_dt(value.get("created_at")) or now(),
        last_seen_at=parse_dt(value.get("last_seen_at")) or now(),
        provenance=[str(p) for p in value.get("provenance", [])],
        metadata=dict(value.get("metadata") or {}),
        subject=value.get("subject"),
        seen_count=int(value.get("seen_count", 1)),
        context=value.get("context"),
    )


def value_of(item: MemoryItem) -> dict[str, Any]:
    """The JSON stored for ``item`` in the ``store`` table (the inverse of :func:`item_from`)."""
    value = item.to_json()
    del value["id"], value["user_id"]
    if item.context:
        value["context"] = item.context
    return value


def embedding_text(text: str, context: str | None) -> str:
    """What the embedding of an item sees: its text, then its indexing context if any."""
    return f"{text}\n{context}" if context else text


def render_memory(item: MemoryItem) -> str:
    """How a recalled item reads in a prompt: its event date first, so 'when' can be answered."""
    if item.event_at is not None:
        return f"[{item.event_at:%d %b %Y}] {item.text}"
    return item.text


def with_neighbour_context(
    items: Sequence[NewMemory], *, window: int = 2, group_key: str | None = "session"
) -> list[NewMemory]:
    """Give each imported turn its ``window`` neighbours on each side as indexing context.

    A question's words often sit in the turns around the one that answers it (the question
    asked, the follow-up); indexing them with the turn, while returning only the turn, raised
    LoCoMo recall@10 from 0.70 to 0.79 (window 0 -> 2). Neighbours stay within the same
    ``metadata[group_key]`` (e.g. a session), so unrelated conversations never blend.
    """
    out: list[NewMemory] = []
    for i, item in enumerate(items):
        group = (item.metadata or {}).get(group_key) if group_key else None
        neighbours = [
            items[j].text
            for j in range(max(0, i - window), min(len(items), i + window + 1))
            if j != i and (group_key is None or (items[j].metadata or {}).get(group_key) == group)
        ]
        context = " ".join(n for n in [item.context or "", *neighbours] if n) or None
        out.append(
            NewMemory(
                text=item.text,
                kind=item.kind,
                importance=item.importance,
                event_at=item.event_at,
                provenance=item.provenance,
                metadata=item.metadata,
                subject=item.subject,
                context=context,
            )
        )
    return out
