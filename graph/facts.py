"""What a fact is, with no I/O: the triple schema, its canonical form, and the rules that
decide which extracted triples the user actually stated.

The extraction node and the knowledge-graph adapters (``stores/knowledge``) both import it, so
they agree on one canonical form of a fact; it is pure domain code (no LangGraph runtime,
no storage), which is why adapters may depend on it.

Canonical form
--------------
* **Entities** are keyed by ``name``: the surface text case-folded, whitespace collapsed,
  surrounding quotes and punctuation removed, a leading article ("the", "a", "an") dropped.
  The first-person words "I", "me", "my", "mine", "myself" (and "the user", "user") all
  become the entity :data:`USER_ENTITY` (``"user"``): the person talking is one node per
  user, whatever pronoun they used. A possessive "my X" becomes ``"user's x"``, so "my
  sister" is a node distinct from the user but clearly attached to them.
  The surface form is kept as ``display`` for readable prompt lines.
* **Predicates** are snake_case. A small vocabulary (:data:`PREDICATE_SYNONYMS`) maps common
  phrasings to canonical names ("live in", "resides in" → ``lives_in``); anything else is
  kept as its own snake_case predicate (free predicates are allowed). "favorite" is spelled
  "favourite", so ``favorite_band`` and ``favourite_band`` are one relation.
* **Objects** are entities like subjects, except that an ``age`` keeps only its number
  ("29 years old" → ``"29"``), so restating an age in other words is not a contradiction.
* **Single-valued predicates** (:data:`SINGLE_VALUED`) hold one current object per subject:
  a new object invalidates the old relation (its ``invalid_at`` is set) instead of deleting
  it, so history survives.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field, field_validator

USER_ENTITY = "user"
"""Canonical entity name of the person talking, in every user's graph."""

FIRST_PERSON = frozenset({"i", "me", "my", "mine", "myself", "user", "the user"})
"""Words that mean the user themselves when they are a whole subject or object."""

MAX_ENTITY_CHARS = 200
MAX_PREDICATE_CHARS = 64
MAX_TRIPLES_PER_TURN = 25

_ARTICLES = ("the ", "a ", "an ")
_STRIP = " \t\n\r\"'`“”‘’.,;:!?()[]{}"

# Canonical predicate -> phrasings that mean it (already snake_cased).
# fmt: off
_VOCABULARY: dict[str, tuple[str, ...]] = {
    "lives_in": (
        "live_in", "living_in", "lives_at", "live_at", "resides_in", "reside_in",
        "resides_at", "residence", "location", "lives", "based_in", "home_is", "moved_to",
    ),
    "works_at": (
        "work_at", "works_for", "work_for", "working_at", "working_for", "employed_by",
        "employed_at", "employer", "job_at", "is_employed_by",
    ),
    "married_to": ("is_married_to", "spouse", "spouse_of", "wife", "husband", "married"),
    "age": ("is_age", "aged", "age_is", "years_old", "has_age", "is_years_old"),
    "name": ("is_named", "named", "called", "is_called", "name_is", "has_name"),
    "born_in": ("was_born_in", "birthplace", "born_at", "place_of_birth"),
    "birthday": ("born_on", "was_born_on", "birth_date", "date_of_birth", "birthday_is"),
    "occupation": ("job", "profession", "works_as", "work_as", "job_title", "is_a_job", "role"),
    "studies_at": ("study_at", "studying_at", "student_at", "attends", "goes_to_school_at"),
    "likes": ("like", "loves", "love", "enjoys", "enjoy", "is_fond_of", "fan_of", "prefers"),
    "dislikes": (
        "dislike", "hates", "hate", "does_not_like", "doesnt_like", "not_like", "can_t_stand",
        "cannot_stand", "can_not_stand",
    ),
    "has_pet": ("owns_pet", "pet", "has_a_pet", "has_dog", "has_cat"),
    "owns": ("own", "has_car", "possesses"),
    "speaks": ("speak", "speaks_language", "language"),
    "plays": ("play", "plays_instrument", "plays_sport"),
    "friend_of": ("friend", "is_friend_of", "friends_with", "is_friends_with"),
    "sibling_of": ("sibling", "brother_of", "sister_of", "is_sibling_of"),
    "parent_of": ("is_parent_of", "father_of", "mother_of"),
    "child_of": ("is_child_of", "son_of", "daughter_of"),
    "allergic_to": ("is_allergic_to", "allergy", "has_allergy_to"),
    "visited": ("visit", "has_visited", "went_to", "traveled_to", "travelled_to"),
    "located_in": ("is_in", "is_located_in", "in"),
    "favourite": ("favorite", "favourite_is", "favorite_is"),
}
# fmt: on

PREDICATE_SYNONYMS: dict[str, str] = {
    phrase: canonical for canonical, phrases in _VOCABULARY.items() for phrase in phrases
}
"""Synonym -> canonical predicate. Documented vocabulary; unlisted predicates pass through."""

CANONICAL_PREDICATES = frozenset(_VOCABULARY)

# fmt: off
SINGLE_VALUED = frozenset({
    "lives_in", "works_at", "married_to", "age", "name", "born_in", "birthday", "occupation",
    "studies_at",
})
# fmt: on
"""Predicates with one current value per subject; a new object invalidates the old one."""


class Triple(BaseModel):
    """One fact the user stated: (subject, predicate, object), with the model's confidence."""

    subject: str = Field(description="Who or what the fact is about. Use 'I' for the user.")
    predicate: str = Field(
        description="Relation in snake_case, e.g. lives_in, works_at, married_to, age, likes."
    )
    object: str = Field(description="The value or other entity, e.g. 'Berlin', '32', 'Acme'.")
    confidence: float = Field(
        default=0.8, description="0 to 1: how clearly the user stated this as true."
    )

    @field_validator("subject", "predicate", "object", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> str:
        # Small models send ages and years as numbers; they are still valid objects.
        return "" if value is None else str(value)

    @field_validator("confidence", mode="before")
    @classmethod
    def _clamp(cls, value: Any) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            return 0.5
        if number != number:  # NaN
            return 0.5
        return min(1.0, max(0.0, number / 100 if 1 < number <= 100 else number))


class ExtractedTriples(BaseModel):
    """Facts about the user and the people, places and things in their life, as triples."""

    triples: list[Triple] = Field(
        default_factory=list,
        description="Every durable fact the user stated in this exchange; empty if none.",
    )



def _clean_text(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = " ".join(text.split())
    return text.strip(_STRIP)


def display_name(text: str) -> str:
    """The surface form worth showing: trimmed, whitespace collapsed, pronouns → 'user'."""
    cleaned = _clean_text(str(text))[:MAX_ENTITY_CHARS]
    if cleaned.casefold() in FIRST_PERSON:
        return USER_ENTITY
    if cleaned.casefold().startswith("my ") and len(cleaned) > 3:
        return f"{USER_ENTITY}'s {cleaned[3:]}"[:MAX_ENTITY_CHARS]
    return cleaned


def normalize_entity(text: str) -> str:
    """Canonical entity key (see module docstring). Idempotent; '' means 'no entity'."""
    name = _clean_text(str(text)).casefold()
    if name in FIRST_PERSON:
        return USER_ENTITY
    for prefix in ("my ", "user's ", "the user's "):
        if name.startswith(prefix) and len(name) > len(prefix):
            rest = normalize_entity(name[len(prefix) :])
            return f"{USER_ENTITY}'s {rest}"[:MAX_ENTITY_CHARS] if rest else USER_ENTITY
    for article in _ARTICLES:
        if name.startswith(article) and len(name) > len(article):
            name = name[len(article) :]
            break
    return name[:MAX_ENTITY_CHARS]


def match_key(text: str) -> str:
    """A looser key for finding mentions in free text: letters and digits only."""
    return " ".join(re.findall(r"\w+", normalize_entity(text)))


def normalize_predicate(text: str) -> str:
    """snake_case, then map through the synonym vocabulary; '' if nothing usable is left."""
    pred = unicodedata.normalize("NFKC", str(text)).strip()
    pred = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", pred)  # camelCase -> camel_Case
    pred = re.sub(r"[^0-9a-zA-Z]+", "_", pred).strip("_").casefold()
    pred = re.sub(r"_+", "_", pred)[:MAX_PREDICATE_CHARS].strip("_")
    # One spelling, so "favorite_band" and "favourite_band" are the same relation.
    pred = re.sub(r"(^|_)favorite(?=_|$)", r"\1favourite", pred)
    if pred in PREDICATE_SYNONYMS:
        return PREDICATE_SYNONYMS[pred]
    for prefix in ("is_", "has_", "was_"):
        rest = pred[len(prefix) :]
        if pred.startswith(prefix) and rest in CANONICAL_PREDICATES:
            return rest
    return pred


_AGE_UNIT = re.compile(r"^(\d{1,3})\s*(?:years?(?:\s+old)?|yrs?(?:\s+old)?|y/?o)$")


def normalize_object(predicate: str, key: str) -> str:
    """Predicate-aware cleanup of an already normalized object key.

    Models often say an age with its unit ("29 years old"); the canonical value is the
    number, so "I'm 29" and "29 years old" are one fact and a later "30" replaces it.
    """
    if predicate == "age":
        found = _AGE_UNIT.match(key)
        if found:
            return found.group(1)
    return key


_FILLER = frozenset({"user", "s", "the", "a", "an", "of", "my"})


def _stem(token: str) -> str:
    for suffix in ("ies", "es", "s", "ing", "ed"):
        if token.endswith(suffix) and len(token) - len(suffix) >= 3:
            return token[: -len(suffix)]
    return token


def _tokens(text: str) -> set[str]:
    return {_stem(t) for t in re.findall(r"\w+", unicodedata.normalize("NFKC", text).casefold())}


def grounded(triple: Triple, source_text: str) -> bool:
    """Whether every entity of the triple was actually named in ``source_text``.

    This is the deterministic half of "only the user's words count": the extraction prompt
    asks the model for user-stated facts, and this check drops any triple whose subject or
    object the user never mentioned (the assistant's suggestions, the model's world
    knowledge). The user entity itself is always grounded; for other entities at least half
    of their content words (crudely stemmed) must appear.
    """
    words = _tokens(source_text)
    for entity in (triple.subject, triple.object):
        key = normalize_entity(entity)
        if key == USER_ENTITY:
            continue
        needed = [_stem(t) for t in re.findall(r"\w+", key) if t not in _FILLER]
        if not needed:
            continue
        hits = sum(1 for t in needed if t in words)
        if hits * 2 < len(needed):
            return False
    return True


# "my name is Ada", "call me Ada", "I'm Ada": the cue is case-insensitive, the name must be
# capitalized (so "I'm allergic" names nobody).
_SELF_NAME = re.compile(
    r"\b(?i:my\s+name\s+is|my\s+name's|call\s+me|i\s+am|i'm)\s+([A-Z][\w'-]*(?:\s+[A-Z][\w'-]*)?)"
)


def alias_self(triples: Sequence[Triple], user_text: str) -> list[Triple]:
    """Write the user's own name as the user: "my name is Ada… I live in Paris" is one person.

    Small models often make the user's name the subject of the user's facts
    ((Ada, lives_in, Paris)). Recall starts from the user entity, so such facts would never
    be found for "Where do I live?". Names come from this batch's (I, name, X) triples and
    from self-introductions in the user's words; the name triple itself is kept as it is.
    """
    names = {
        normalize_entity(t.object)
        for t in triples
        if normalize_entity(t.subject) == USER_ENTITY and normalize_predicate(t.predicate) == "name"
    }
    names |= {normalize_entity(m) for m in _SELF_NAME.findall(user_text)}
    names.discard(USER_ENTITY)
    if not names:
        return list(triples)
    out: list[Triple] = []
    for t in triples:
        if normalize_predicate(t.predicate) != "name":
            subject = "I" if normalize_entity(t.subject) in names else t.subject
            obj = "I" if normalize_entity(t.object) in names else t.object
            t = t.model_copy(update={"subject": subject, "object": obj})
        out.append(t)
    return out


# People a user speaks of as "my …"; a fact stated about one of them is not about the user.
# fmt: off
_PEOPLE = (
    "mother", "mom", "mum", "father", "dad", "sister", "brother", "wife", "husband", "son",
    "daughter", "partner", "boyfriend", "girlfriend", "fiance", "fiancé", "fiancee",
    "fiancée", "friend", "boss", "grandma", "grandpa", "grandmother", "grandfather", "aunt",
    "uncle", "cousin", "niece", "nephew", "colleague", "coworker", "roommate", "flatmate",
    "neighbour", "neighbor", "parents", "kids", "children", "child", "kid", "baby",
    "stepmother", "stepfather", "stepson", "stepdaughter", "twin",
)
# fmt: on
_MY_PERSON = re.compile(  # the relation in any case, the name capitalized
    r"\b(?i:my\s+(?:(?:little|older|younger|elder|big|best|late|dear|twin|ex)[\s-]+)?"
    r"(" + "|".join(_PEOPLE) + r"))\b(?:,?\s+([A-Z][\w'-]*))?"
)
_SELF_AS_SUBJECT = re.compile(r"\b(?:i|i'm|i've|i'd|i'll|me|myself|we|we're|we've|us)\b", re.I)


def attribute_subjects(triples: Sequence[Triple], user_text: str) -> list[Triple]:
    """Give facts about "my mother" to the mother: a user fact needs the user as a subject.

    Small models write "My mother lives in Osaka" as (I, lives_in, Osaka), which would move
    the user to Osaka and invalidate where they really live. When the message never has the
    user as a subject ("I", "me", "we" …) but speaks of one person as "my <relation>", a
    triple about the user is that person's, unless it relates the user to that person by
    name ((I, sibling_of, Ines) for "My sister Ines is a vet"). With several such people the
    owner is unknown, and the triple is dropped rather than guessed.
    """
    if _SELF_AS_SUBJECT.search(user_text):
        return list(triples)
    people = {(m.group(1).casefold(), m.group(2)) for m in _MY_PERSON.finditer(user_text)}
    if not people:
        return list(triples)
    names = {normalize_entity(name) for _, name in people if name}
    out: list[Triple] = []
    for t in triples:
        if normalize_entity(t.subject) != USER_ENTITY or normalize_entity(t.object) in names:
            out.append(t)
        elif len(people) == 1:
            relation, name = next(iter(people))
            out.append(t.model_copy(update={"subject": name or f"my {relation}"}))
    return out
