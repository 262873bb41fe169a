"""JWTs name accounts (issue 16 item 6): over real HTTP, a token whose `sub` names no live
account is a 401 and creates nothing; a token's lifetime is capped; a short secret refuses to
start."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from pydantic import SecretStr, ValidationError

from mnemograph.lifecycle import delete_user
from mnemograph.services import Services
from stores.settings import Settings
from tests.conftest import cli_env
from tests.servers import serve

ROOT = Path(__file__).resolve().parents[2]
SECRET = "jwt-accounts-test-secret-0123456789abcdef"


@pytest.fixture
async def base(services: Services) -> AsyncIterator[str]:
    services.settings.jwt_secret = SecretStr(SECRET)
    try:
        async with serve(services) as url:
            yield url
    finally:
        services.settings.jwt_secret = None


def token(sub: str, *, ttl: float = 600, **claims: Any) -> dict[str, str]:
    body = {"sub": sub, "exp": int(time.time() + ttl), **claims}
    return {"Authorization": f"Bearer {jwt.encode(body, SECRET, 'HS256')}"}


async def test_sub_must_name_a_live_account(base: str, services: Services) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        # Never created: refused, and nothing is created for it.
        ghost = f"ghost-{uuid.uuid4().hex[:8]}"
        res = await http.post("/api/threads", json={"thread_id": "g-1"}, headers=token(ghost))
        assert res.status_code == 401, res.text
        assert await services.thread_registry().list(ghost) == []
        res = await http.get("/api/threads", headers=token(f"usr_{uuid.uuid4().hex[:16]}"))
        assert res.status_code == 401, res.text

        # An account: its id or its name is the subject; both act as the account's id.
        user, key = await services.user_registry().create(f"jwt-{uuid.uuid4().hex[:8]}")
        res = await http.post("/api/threads", json={"thread_id": f"j-{user.user_id}"},
                              headers=token(user.user_id))  # fmt: skip
        assert res.status_code == 201, res.text
        by_name = (await http.get("/api/threads", headers=token(user.name))).json()
        by_key = (await http.get("/api/threads", headers={"X-Api-Key": key})).json()
        assert [t["thread_id"] for t in by_name] == [t["thread_id"] for t in by_key]
        assert [t["thread_id"] for t in by_key] == [f"j-{user.user_id}"]

        # Deleted: the same token is refused from then on, by id and by name.
        await delete_user(services, user.user_id)
        for sub in (user.user_id, user.name):
            res = await http.get("/api/threads", headers=token(sub))
            assert res.status_code == 401, (sub, res.text)
            res = await http.post("/api/threads", json={"thread_id": "again"}, headers=token(sub))
            assert res.status_code == 401, (sub, res.text)
        assert await services.thread_registry().list(user.user_id) == []


async def test_token_lifetime_is_capped(base: str, services: Services) -> None:
    user, _key = await services.user_registry().create(f"jwt-{uuid.uuid4().hex[:8]}")
    now = int(time.time())
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        res = await http.get("/api/threads", headers=token(user.user_id, ttl=3600))
        assert res.status_code == 200, res.text
        year_9999 = {"Authorization": "Bearer " + jwt.encode(
            {"sub": user.user_id, "exp": 253402300799}, SECRET, "HS256")}  # fmt: skip
        res = await http.get("/api/threads", headers=year_9999)
        assert res.status_code == 401 and "MNEMOGRAPH_JWT_MAX_TTL_S" in res.text, res.text
        res = await http.get("/api/threads", headers=token(user.user_id, ttl=25 * 3600))
        assert res.status_code == 401, res.text
        # Issued 23 h ago and valid for 2 h more: a 25 h token, over the 24 h default.
        old = token(user.user_id, ttl=2 * 3600, iat=now - 23 * 3600)
        res = await http.get("/api/threads", headers=old)
        assert res.status_code == 401, res.text
        services.settings.jwt_max_ttl_s = 30 * 3600
        try:
            res = await http.get("/api/threads", headers=old)
            assert res.status_code == 200, res.text
        finally:
            services.settings.jwt_max_ttl_s = 24 * 3600


def test_short_secret_refused_at_startup(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="32 bytes"):
        Settings(jwt_secret="secret")  # type: ignore[arg-type]
    assert Settings(jwt_secret="x" * 32).jwt_secret is not None  # type: ignore[arg-type]
    env = cli_env("postgresql://127.0.0.1:1/none", tmp_path, MNEMOGRAPH_JWT_SECRET="secret")
    res = subprocess.run(
        [sys.executable, "-m", "mnemograph.cli", "serve", "--port", "1"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2, res.stderr
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    assert "MNEMOGRAPH_JWT_SECRET" in lines[0] and "32 bytes" in lines[0], lines[0]
