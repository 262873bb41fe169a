"""Fitting recalled lines into a prompt's token budget: one rule for every kind of memory.

Lines come best first. A line that does not fit is skipped and the next (perhaps shorter)
one is tried, so the budget is never exceeded and one long line cannot starve the rest.
Pure, like ``graph.facts``, so adapters may use it.
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages.utils import count_tokens_approximately


def fit_to_budget(lines: Sequence[str], token_budget: int) -> list[int]:
    """Positions of the lines kept, in order, whose approximate tokens fit the budget."""
    kept: list[int] = []
    used = 0
    for i, line in enumerate(lines):
        cost = count_tokens_approximately([line])
        if used + cost > token_budget:
            continue
        kept.append(i)
        used += cost
    return kept
