"""Limits by client address (issue 16 item 10): requests without a valid key were never
rate-limited. Failed authentications spend the address's budget, and once it is spent the
gate answers 429 with ``Retry-After`` before looking at any key; other addresses, and the
same address's open routes, are unaffected. Open routes have their own, higher budget."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from mnemograph.services import Services
from stores.settings import Settings
from tests.integration.test_metrics import new_key, serving


@pytest.fixture(scope="module")
async def served(services: Services) -> AsyncIterator[tuple[str, FastAPI]]:
    async with serving(services) as pair:
        yield pair


class Counting:
    """Wraps the key registry's ``authenticate`` to count the auth work done."""

    def __init__(self, app: FastAPI) -> None:
        self.users = app.state.users
        self.original = self.users.authenticate
        self.calls = 0

    async def __call__(self, key: str) -> Any:
        self.calls += 1
        return await self.original(key)

    def __enter__(self) -> Counting:
        self.users.authenticate = self
        return self

    def __exit__(self, *_: object) -> None:
        del self.users.authenticate  # the instance attribute: the method shows again


def address(ip: str) -> dict[str, str]:
    """A request from ``ip`` through a proxy uvicorn trusts (127.0.0.1 by default)."""
    return {"X-Forwarded-For": ip}


async def test_a_burst_of_wrong_keys_gets_429_before_any_auth_work(
    served: tuple[str, FastAPI], services: Services
) -> None:
    """With the default budget (MNEMOGRAPH_ADDRESS_RATE_LIMIT_PER_MIN)."""
    base, app = served
    budget = getattr(services.settings, "address_rate_limit_per_min", 120)
    attacker, elsewhere = "203.0.113.7", "198.51.100.9"
    _user, key = await new_key(services)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            with Counting(app) as auth:
                codes = []
                started = time.monotonic()
                for i in range(budget + 40):
                    headers = address(attacker)
                    if i % 3:  # wrong keys, and no key at all: both spend the budget
                        headers["Authorization"] = f"Bearer mg_wrong{i}"
                    res = await http.post("/agent/invoke", headers=headers, json={})
                    codes.append(res.status_code)
                    if res.status_code == 429:
                        assert int(res.headers["retry-after"]) >= 1
                        assert "address" in res.json()["detail"]
                elapsed = time.monotonic() - started
                # The whole budget is a burst, then 429s but for the refill (budget / 60 s).
                assert set(codes[:budget]) == {401}, codes
                assert codes.count(401) <= budget + math.ceil(elapsed * budget / 60), codes
                assert codes.count(429) >= 40 - math.ceil(elapsed * budget / 60), codes
                keyed = sum(1 for i, code in enumerate(codes) if code == 401 and i % 3)
                assert auth.calls == keyed  # keys were checked only while the budget lasted
            # Stop the refill (2 tokens a second by default) for the checks below, after one
            # more failure has taken whatever trickled back in meanwhile.
            bucket = app.state.address_limits.failed
            frozen = time.monotonic()
            bucket.clock = lambda: frozen
            await http.get("/api/threads", headers=address(attacker))
            # A valid user elsewhere is unaffected ...
            good = {"Authorization": f"Bearer {key}", **address(elsewhere)}
            assert (await http.get("/api/threads", headers=good)).status_code == 200
            # ... and so are the attacker's address's open routes.
            assert (await http.get("/health", headers=address(attacker))).status_code == 200
            # A key from the spent address waits too: it is not looked at.
            mine = {"Authorization": f"Bearer {key}", **address(attacker)}
            assert (await http.get("/api/threads", headers=mine)).status_code == 429
    finally:
        app.state.address_limits.failed.clock = time.monotonic
        app.state.address_limits.failed._buckets.clear()


async def test_valid_keys_spend_nothing_of_the_address_budget(
    served: tuple[str, FastAPI], services: Services
) -> None:
    base, app = served
    limits = app.state.address_limits
    kept, limits.failed.per_min = limits.failed.per_min, 3
    _user, key = await new_key(services)
    headers = {"Authorization": f"Bearer {key}", **address("192.0.2.44")}
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            for _ in range(10):
                assert (await http.get("/api/threads", headers=headers)).status_code == 200
    finally:
        limits.failed.per_min = kept
        limits.failed._buckets.clear()


async def test_open_routes_have_their_own_higher_budget_per_address(
    served: tuple[str, FastAPI],
) -> None:
    base, app = served
    limits = app.state.address_limits
    assert limits.open.per_min > limits.failed.per_min  # the defaults
    kept, limits.open.per_min = limits.open.per_min, 4
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            codes = [(await http.get("/livez", headers=address("203.0.113.99"))).status_code
                     for _ in range(6)]  # fmt: skip
            assert codes == [200] * 4 + [429] * 2, codes
            res = await http.get("/metrics", headers=address("203.0.113.99"))
            assert res.status_code == 429 and int(res.headers["retry-after"]) >= 1
            assert (await http.get("/livez", headers=address("203.0.113.100"))).status_code == 200
    finally:
        limits.open.per_min = kept
        limits.open._buckets.clear()


def test_the_budgets_are_settings() -> None:
    settings = Settings(address_rate_limit_per_min=7, open_rate_limit_per_min=0)
    assert (settings.address_rate_limit_per_min, settings.open_rate_limit_per_min) == (7, 0)
    defaults = Settings()
    assert 0 < defaults.address_rate_limit_per_min < defaults.open_rate_limit_per_min
