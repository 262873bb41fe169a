"""Query-side cues of recall: what the question's own words say about where its answer is.

Two cues, each a cheap regular expression over the question and the candidates' stored
values, applied after fusion (``MemoryStore._relevance``); both were chosen on two LoCoMo
dev conversations and checked on the third (``bench.locomo_ablation``, README "Recall
ablations"):

- a *when*-question is answered by an item that names a time ("last Friday", "in May");
- a question that names a person favours what that person said (``metadata.speaker``, which
  transcript imports record), since a name in the question is otherwise a common word that
  BM25 gives little weight.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# When-questions: the answer is usually in a turn that carries a time expression.
WHEN_Q = re.compile(r"^\s*(when|what (year|month|day|date|time)|how long ago)\b", re.I)
TIME_WORDS = re.compile(
    r"\b(yesterday|today|tonight|tomorrow|last|next|ago|weekend|week|month|year|since|"
    r"morning|evening|monday|tuesday|wednesday|thursday|friday|saturday|sunday|january|"
    r"february|march|april|may|june|july|august|september|october|november|december|"
    r"19\d\d|20\d\d)\b",
    re.I,
)


def boost_time(
    query: str,
    relevances: Mapping[str, float],
    values: Mapping[str, Mapping[str, Any]],
    boost: float,
) -> dict[str, float]:
    """For a when-question, raise the relevance of items naming a time (no cap at 1: a cap
    would tie the best candidates; the caller renormalizes)."""
    out = dict(relevances)
    if boost <= 0 or not WHEN_Q.search(query):
        return out
    for key, rel in relevances.items():
        value = values.get(key)
        if value is not None and TIME_WORDS.search(str(value.get("text", ""))):
            out[key] = rel + boost
    return out


def boost_speaker(
    query: str,
    relevances: Mapping[str, float],
    values: Mapping[str, Mapping[str, Any]],
    boost: float,
) -> dict[str, float]:
    """Raise items said by a speaker the question names (no cap; the caller renormalizes)."""
    if boost <= 0:
        return dict(relevances)
    words = {w.lower() for w in re.findall(r"\w+", query)}
    out = dict(relevances)
    for key, rel in relevances.items():
        speaker = str(((values.get(key) or {}).get("metadata") or {}).get("speaker", ""))
        if speaker and speaker.split()[0].lower() in words:
            out[key] = rel + boost
    return out
