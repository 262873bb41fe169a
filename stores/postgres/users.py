"""Users and their API keys. Keys are random 256-bit tokens, so a plain SHA-256 digest is a safe
way to store them: there is nothing to brute-force, and lookup stays one indexed equality."""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

from stores.errors import InvalidInput, NotFound
from stores.postgres.migrations import GONE_USER_LOCK, USERS_DDL, create_tables

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
KEY_PREFIX = "mg_"
ID_PREFIX = "usr_"
"""Every account's user id starts with it; no name may (a name never reads as an id)."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class User:
    user_id: str
    name: str
    created_at: datetime


class UserRegistry:
    """Creates users, issues keys (shown once), and resolves a presented key to a user id."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool

    async def setup(self) -> None:
        """Create the registry's tables alone (tests, tools); hosts run ``migrate``."""
        await create_tables(self._pool, USERS_DDL)

    async def create(self, name: str) -> tuple[User, str]:
        """Create a user and its first key. The key is returned once and never stored."""
        if not _NAME.fullmatch(name):
            raise InvalidInput(
                f"invalid user name {name!r}: 1-64 letters, digits, _ or -, starting with a "
                "letter or digit"
            )
        if name.lower().startswith(ID_PREFIX):
            raise InvalidInput(
                f"invalid user name {name!r}: names may not start with {ID_PREFIX!r}, which "
                "marks user ids"
            )
        user_id = f"{ID_PREFIX}{uuid.uuid4().hex[:16]}"
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        async with self._pool.connection() as conn, conn.transaction():
            if await _has_data(conn, name):
                raise InvalidInput(
                    f"{name!r} is already the id of a user without an account (it has threads "
                    "or memories); choose another name"
                )
            cur = await conn.execute(
                "INSERT INTO mnemo_users (user_id, name) VALUES (%s, %s) "
                "ON CONFLICT (name) DO NOTHING RETURNING user_id, name, created_at",
                (user_id, name),
            )
            row = await cur.fetchone()
            if row is None:
                raise InvalidInput(f"a user named {name!r} already exists")
            await conn.execute(
                "INSERT INTO mnemo_api_keys (key_hash, user_id, prefix) VALUES (%s, %s, %s)",
                (hash_key(key), user_id, key[:8]),
            )
        return User(**row), key

    async def authenticate(self, key: str) -> str | None:
        """The user id owning ``key``, or None. Constant work whatever the key looks like."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT user_id FROM mnemo_api_keys WHERE key_hash = %s", (hash_key(key),)
            )
            row = await cur.fetchone()
        return str(row["user_id"]) if row else None

    async def get(self, name_or_id: str) -> User:
        """The account whose id or name is ``name_or_id`` (an id match wins)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT user_id, name, created_at FROM mnemo_users WHERE user_id = %s OR name = %s "
                "ORDER BY user_id = %s DESC LIMIT 1",
                (name_or_id, name_or_id, name_or_id),
            )
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"user {name_or_id!r} not found")
        return User(**row)

    async def resolve(self, name_or_id: str) -> str:
        """The user id ``name_or_id`` means, the one rule of the CLI's ``--user``: the id of
        the account with that id or name, else ``name_or_id`` itself (a user without an
        account, whose data is created on first use)."""
        try:
            return (await self.get(name_or_id)).user_id
        except NotFound:
            return name_or_id

    async def active(self, name_or_id: str) -> str | None:
        """The user id of the account whose id or name is ``name_or_id``, unless that account
        was deleted (tombstoned, even while its rows are still being removed); else None.
        An id match wins over a name match."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT u.user_id FROM mnemo_users u "
                "WHERE (u.user_id = %s OR u.name = %s) AND NOT EXISTS "
                "(SELECT 1 FROM mnemo_deleted_users d WHERE d.user_id = u.user_id) "
                "ORDER BY u.user_id = %s DESC LIMIT 1",
                (name_or_id, name_or_id, name_or_id),
            )
            row = await cur.fetchone()
        return str(row["user_id"]) if row else None

    async def list(self) -> list[User]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT user_id, name, created_at FROM mnemo_users ORDER BY created_at"
            )
            return [User(**r) for r in await cur.fetchall()]

    async def tombstone(self, user_id: str) -> None:
        """Record ``user_id`` as deleted: from the commit on, every write for them fails (in
        any process; see migration 2); writes that started before it have committed."""
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (GONE_USER_LOCK, user_id)
            )
            await conn.execute(
                "INSERT INTO mnemo_deleted_users (user_id) VALUES (%s) ON CONFLICT DO NOTHING",
                (user_id,),
            )

    async def revive(self, user_id: str) -> None:
        """Take the tombstone back (a wipe that keeps the account)."""
        async with self._pool.connection() as conn:
            await conn.execute("DELETE FROM mnemo_deleted_users WHERE user_id = %s", (user_id,))

    async def delete(self, user_id: str) -> int:
        """Remove the user row and its keys; returns rows removed (keys included)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute("DELETE FROM mnemo_api_keys WHERE user_id = %s", (user_id,))
            keys = cur.rowcount
            cur = await conn.execute("DELETE FROM mnemo_users WHERE user_id = %s", (user_id,))
            return keys + cur.rowcount


async def _has_data(conn: Any, user_id: str) -> bool:
    """Whether ``user_id`` already owns threads or memories (a user without an account)."""
    cur = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM mnemo_threads WHERE user_id = %s) "
        "OR EXISTS (SELECT 1 FROM mnemo_memory_index WHERE user_id = %s) AS used",
        (user_id, user_id),
    )
    row = await cur.fetchone()
    return bool(row and row["used"])
