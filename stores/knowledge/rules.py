"""Knowledge-graph rules on the storage side, with no I/O: a batch of triples as Bolt rows,
the stored fact's shape, and facts as prompt lines within a token budget.

What a fact *is* (schema, normalization, grounding) lives in ``graph.facts``; this module
turns those canonical triples into what the graph store writes and reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NotRequired, TypedDict

from graph.budget import fit_to_budget
from graph.facts import (
    MAX_TRIPLES_PER_TURN,
    SINGLE_VALUED,
    Triple,
    display_name,
    match_key,
    normalize_entity,
    normalize_object,
    normalize_predicate,
)


class FactRow(TypedDict):
    """A normalized triple, ready to be a Bolt parameter (flat, primitive values only)."""

    s: str
    s_display: str
    s_norm: str
    p: str
    o: str
    o_display: str
    o_norm: str
    confidence: float
    single: bool


class Fact(TypedDict):
    """A stored relation as the graph store returns it."""

    id: str
    subject: str
    subject_display: str
    predicate: str
    object: str
    object_display: str
    confidence: float
    created_at: int
    valid_from: int
    invalid_at: int | None
    source_thread: str | None
    source_message: str | None
    hop: NotRequired[int]
    """Only from ``neighbourhood``: 1 if the fact touches a named entity, 2 if one step out."""


def prepare(
    triples: Iterable[Triple | Mapping[str, Any]], *, min_confidence: float = 0.0
) -> list[FactRow]:
    """Normalize, drop empty/self-referential triples, and deduplicate one batch.

    For a single-valued predicate only the *last* object said for a subject in the batch is
    kept ("I lived in Paris, now I live in Berlin" must not leave both current).
    """
    rows: dict[tuple[str, str, str], FactRow] = {}
    single_seen: dict[tuple[str, str], tuple[str, str, str]] = {}
    for raw in triples:
        t = raw if isinstance(raw, Triple) else Triple.model_validate(raw)
        s, p = normalize_entity(t.subject), normalize_predicate(t.predicate)
        o = normalize_object(p, normalize_entity(t.object))
        if not s or not p or not o or s == o or t.confidence < min_confidence:
            continue
        key = (s, p, o)
        single = p in SINGLE_VALUED
        if single:
            previous = single_seen.get((s, p))
            if previous is not None and previous != key:
                rows.pop(previous, None)
            single_seen[(s, p)] = key
        old = rows.pop(key, None)  # re-insert so batch order follows the last mention
        rows[key] = FactRow(
            s=s,
            s_display=display_name(t.subject) or s,
            s_norm=match_key(s),
            p=p,
            o=o,
            o_display=display_name(t.object) or o,
            o_norm=match_key(o),
            confidence=max(t.confidence, old["confidence"] if old else 0.0),
            single=single,
        )
    return list(rows.values())[:MAX_TRIPLES_PER_TURN]


def fact_line(fact: Mapping[str, Any]) -> str:
    """One prompt line, e.g. ``user lives_in Berlin (since 2026-11-24)``."""
    since = ""
    valid_from = fact.get("valid_from")
    if isinstance(valid_from, int) and valid_from > 0:
        since = f" (since {datetime.fromtimestamp(valid_from / 1000, UTC):%Y-%m-%d})"
    until = ""
    invalid_at = fact.get("invalid_at")
    if isinstance(invalid_at, int):
        until = f" (until {datetime.fromtimestamp(invalid_at / 1000, UTC):%Y-%m-%d})"
    subject = fact.get("subject_display") or fact.get("subject", "")
    obj = fact.get("object_display") or fact.get("object", "")
    return f"{subject} {fact.get('predicate', '')} {obj}{since}{until}"


def format_facts(facts: Sequence[Mapping[str, Any]], token_budget: int) -> list[str]:
    """Prompt lines for facts (best first), cut to fit ``token_budget`` tokens."""
    lines = [fact_line(f) for f in facts]
    return [lines[i] for i in fit_to_budget(lines, token_budget)]
