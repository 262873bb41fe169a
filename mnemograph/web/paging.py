"""Pages of a list route: ``limit`` and an opaque ``cursor``, so no response is unbounded.

The cursor is the next page's position, base64url-encoded so clients treat it as a token
and the server can change what it holds later. List-bodied routes return the next cursor in
an ``X-Next-Cursor`` header (their JSON stays a list); object-bodied routes add
``next_cursor`` to the body. No cursor means the last page.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Response

from stores.errors import InvalidInput

MAX_LIMIT = 500
NEXT_HEADER = "X-Next-Cursor"


@dataclass(frozen=True)
class Page:
    """Where a page starts and how long it is."""

    offset: int
    limit: int

    def fetch(self) -> int:
        """Rows to ask the store for: one more than the page, to learn if another follows."""
        return self.limit + 1

    def cut(self, rows: Sequence[object]) -> tuple[int, str | None]:
        """How many of ``rows`` belong to this page, and the next page's cursor."""
        if len(rows) > self.limit:
            return self.limit, encode(self.offset + self.limit)
        return len(rows), None


def encode(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode().rstrip("=")


def decode(cursor: str) -> int:
    """The offset in ``cursor``; a cursor this server did not issue is a clear 422."""
    bad = InvalidInput("invalid cursor: pass back the X-Next-Cursor / next_cursor value")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        kind, _, number = raw.partition(":")
        offset = int(number)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad from None
    if kind != "o" or not 0 <= offset <= 10_000_000:
        raise bad
    return offset


def page_of(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")] = 100,
    cursor: Annotated[
        str | None,
        Query(max_length=40, pattern=r"^[A-Za-z0-9_-]+$",
              description="The previous page's next cursor."),
    ] = None,
) -> Page:
    return Page(offset=decode(cursor) if cursor else 0, limit=limit)


PageDep = Annotated[Page, Depends(page_of)]


def link_next(response: Response, cursor: str | None) -> None:
    """Tell a list-bodied route's client where the next page starts."""
    if cursor is not None:
        response.headers[NEXT_HEADER] = cursor
