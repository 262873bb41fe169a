"""Limits by client address, applied by the gate before any credential is checked.

A user's own rate (``MNEMOGRAPH_RATE_LIMIT_PER_MIN``, :class:`mnemograph.web.deps.RateLimiter`)
can only apply once the caller is known, so requests without a valid key were never limited.
Two per-address budgets close that gap (:class:`AddressLimits`, on ``app.state``):

* ``failed``: every 401 (no key, a wrong key, a bad token) spends a token of the client
  address's bucket (``MNEMOGRAPH_ADDRESS_RATE_LIMIT_PER_MIN``, default 120, burst as large).
  While that bucket is empty, every request from the address to a route that needs a key is
  answered 429 with ``Retry-After`` from its headers alone, before its key is looked at, so a
  storm of guesses costs no database lookups. Requests that authenticate spend nothing.
* ``open``: the routes anyone may call (``/health``, ``/metrics``, the docs, the inspector
  page...) spend a token per request (``MNEMOGRAPH_OPEN_RATE_LIMIT_PER_MIN``, default 1200 =
  20 a second, far above any probe or scraper), since ``/health`` reaches the databases.

The address is the ASGI client's (uvicorn puts the ``X-Forwarded-For`` address there for
proxies listed in ``FORWARDED_ALLOW_IPS``, default 127.0.0.1 and ::1).
Buckets are in process memory, one set per app; 0 turns a budget off.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from starlette.types import Scope

MAX_ADDRESSES = 100_000
"""Buckets kept before idle (full) ones are dropped, so memory stays bounded."""


class AddressBuckets:
    """Token buckets keyed by address: ``per_min`` tokens a minute, bursts up to ``per_min``."""

    def __init__(self, per_min: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_min = per_min
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def _level(self, address: str, now: float) -> float:
        tokens, last = self._buckets.get(address, (float(self.per_min), now))
        return min(float(self.per_min), tokens + (now - last) * self.per_min / 60.0)

    def _wait(self, level: float) -> int:
        """Whole seconds until ``level`` reaches one token (at least 1)."""
        return max(1, math.ceil((1.0 - level) * 60.0 / self.per_min))

    def blocked(self, address: str) -> int:
        """Seconds until ``address`` has a token, 0 if it has one now (nothing is spent)."""
        if self.per_min <= 0:
            return 0
        level = self._level(address, self.clock())
        return 0 if level >= 1.0 else self._wait(level)

    def spend(self, address: str) -> None:
        """Take a token from ``address`` (its bucket never goes below empty)."""
        if self.per_min <= 0:
            return
        now = self.clock()
        level = self._level(address, now)
        self._bound(now)
        self._buckets[address] = (max(0.0, level - 1.0), now)

    def take(self, address: str) -> int:
        """Spend a token if there is one (0), else the seconds until there is."""
        wait = self.blocked(address)
        if not wait:
            self.spend(address)
        return wait

    def _bound(self, now: float) -> None:
        if len(self._buckets) < MAX_ADDRESSES:
            return
        full = float(self.per_min)
        for address in [a for a in self._buckets if self._level(a, now) >= full]:
            del self._buckets[address]
        if len(self._buckets) >= MAX_ADDRESSES:
            self._buckets.clear()


class AddressLimits:
    """The two per-address budgets of the module docstring."""

    def __init__(
        self, failed_per_min: int, open_per_min: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.failed = AddressBuckets(failed_per_min, clock)
        self.open = AddressBuckets(open_per_min, clock)


def client_address(scope: Scope) -> str:
    """The client's address as the server saw it (``unknown`` without one, e.g. a socket)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"
