"""A LangGraph ``BaseStore`` over the hybrid long-term memory.

LangGraph code reaches its store through one interface (``BaseStore``: ``get_store()`` in a
tool or node, ``runtime.store``, LangMem's tools, Studio). :class:`HybridMemoryStore` is that
interface for Mnemograph: the memories namespace ``(user_id, "memories")`` goes to
:class:`~stores.memory.store.MemoryStore` (dedup on write, hybrid BM25 + vector search with
importance and recency on read, the derived index kept in step), and every other namespace
goes to the wrapped LangGraph store (``AsyncPostgresStore`` from
``stores.postgres.savers.make_store``). Both keep their rows in the same ``store`` table, so
namespace listings and prefix searches see the memories too.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from langgraph.store.base import (
    BaseStore,
    GetOp,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    validate_op_namespace,
)

from stores.errors import InvalidInput, NotFound
from stores.memory.model import NAMESPACE_LEAF, MemoryItem, namespace, parse_dt, value_of
from stores.memory.store import MemoryStore

__all__ = ["HybridMemoryStore", "matches_filter", "memory_user"]

LIST_PAGE = 500
"""Items read per round trip when a filtered listing pages through a user's memories."""

_VALUE_FIELDS = frozenset(
    {"text", "content", "kind", "importance", "subject", "event_at", "provenance",
     "metadata", "context"}
)  # fmt: skip
"""Keys of a put value that become fields of the memory (the rest go to ``metadata``)."""
_SERVER_FIELDS = frozenset({"id", "user_id", "created_at", "last_seen_at", "seen_count"})
"""Keys of the stored value the store itself keeps: ignored on put, so a value read with
``get`` can be changed and put back as it is."""


def memory_user(namespace_: tuple[str, ...]) -> str | None:
    """The user whose memories ``namespace_`` is (``(user_id, "memories")``), else ``None``."""
    if len(namespace_) == 2 and namespace_[1] == NAMESPACE_LEAF:
        return namespace_[0]
    return None


class HybridMemoryStore(BaseStore):
    """LangGraph's store interface with the memories namespace served by the hybrid memory.

    **Routing.** An op on exactly ``(user_id, "memories")`` goes to ``memory``; every other
    op, and every ``ListNamespacesOp``, goes to ``postgres`` unchanged. A ``SearchOp`` over a
    shorter prefix (``(user_id,)`` or ``()``) is not a memories op: the wrapped store answers
    it from the same table (memories included, as stored, unranked).

    **The memories namespace.**

    - ``GetOp`` -> :meth:`MemoryStore.get`; a missing key is ``None``.
    - ``PutOp`` with a value -> :meth:`MemoryStore.put` under the op's key. The text is
      ``value["text"]``, else ``value["content"]`` (a non-string content is stored as its
      JSON); ``kind``, ``importance``, ``subject``, ``event_at``, ``provenance``,
      ``context`` and ``metadata`` are taken from the value when present; any other key
      is kept in ``metadata``; ``created_at``, ``last_seen_at``, ``seen_count`` (and
      ``id``, ``user_id``) are the store's and ignored, so a value read with ``get`` can
      be edited and put back. A key that exists is edited in place (given fields replace,
      absent ones stay). A new key is added with MemoryStore's dedup: if the text repeats
      a memory stored under another key, that memory is merged (importance bumped,
      provenance united) and **moves to the new key**; its old key no longer exists. The
      key follows the id alphabet (``stores.ids``); ``index`` and ``ttl`` are ignored
      (memories are always indexed and expire by retention, not TTL). A value without
      text raises ``InvalidInput``.
    - ``PutOp`` with ``None`` -> :meth:`MemoryStore.delete` (a missing key is no error).
    - ``SearchOp`` with a non-blank ``query`` -> :meth:`MemoryStore.search`: full text (BM25)
      and vectors fused, blended with importance and recency; ``SearchItem.score`` is that
      final score, best first (in [0, 1] when the three weights sum to 1, as the defaults
      do). ``filter`` is applied to the ranked candidates (a filtered search takes a
      larger candidate pool, but may still return fewer than ``limit`` items where more
      would match further down), then ``offset`` and ``limit``; a plain ``kind`` filter
      is applied before the cut.
    - ``SearchOp`` without a query (or a blank one) -> :meth:`MemoryStore.list`, most
      recently updated first, ``score`` ``None``; ``filter``, ``offset`` and ``limit`` hold
      exactly.

    Filters compare top-level keys of the value as LangGraph's Postgres store does: a plain
    value must equal the stored one, an operator map uses ``$eq``, ``$ne``, ``$gt``,
    ``$gte``, ``$lt``, ``$lte`` (numbers compare as numbers, anything else as text); a map
    without operators matches nested keys (``{"metadata": {"session": 3}}``).

    **The value shape.** A memory's ``Item.value`` is what the ``store`` row holds, whichever
    path reads it (this store, the wrapped store through a prefix search, Studio)::

        {"text": str, "kind": "fact" | "preference" | "semantic" | "turn",
         "importance": float,            # 0..1
         "event_at": str | None,         # ISO 8601, when what it says happened
         "created_at": str, "last_seen_at": str,   # ISO 8601
         "provenance": [str, ...],       # message / turn ids it came from
         "metadata": {str: Any},         # incl. unknown keys of the put value
         "subject": str | None, "seen_count": int,
         "context": str}                 # only when the item has indexing context

    ``Item.key`` is the memory id, ``Item.namespace`` is ``(user_id, "memories")``,
    ``created_at`` the item's, ``updated_at`` its ``last_seen_at`` (the wrapped store's own
    path reports the row's timestamps, which differ from these by the write's duration).

    **Batches.** Within one ``abatch`` the reads run first, then the writes (as LangGraph's
    Postgres store does); the memory writes run in the order given. :meth:`batch` (and so
    the synchronous ``get``/``put``/``search``) runs :meth:`abatch` on the event loop the
    store was made on and must be called from another thread, like LangGraph's own async
    stores; on that loop it raises ``asyncio.InvalidStateError``.
    """

    supports_ttl = True  # for the namespaces the wrapped store serves

    def __init__(
        self,
        postgres: BaseStore,
        memory: MemoryStore,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.postgres = postgres
        self.memory = memory
        self.ttl_config = postgres.ttl_config
        self.supports_ttl = postgres.supports_ttl
        if loop is None:
            loop = getattr(postgres, "loop", None)
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
        self._loop = loop

    # ------------------------------------------------------------------ batches
    def batch(self, ops: Iterable[Op]) -> list[Result]:
        loop = self._loop
        if loop is None:
            raise RuntimeError(
                "HybridMemoryStore was made outside an event loop: use the async methods"
            )
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise asyncio.InvalidStateError(
                "Synchronous calls to HybridMemoryStore detected in the main event loop: "
                "use the asynchronous methods (await store.aget(...), store.asearch(...), ...)"
            )
        return asyncio.run_coroutine_threadsafe(self.abatch(ops), loop).result()

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        ops = list(ops)
        results: list[Result] = [None] * len(ops)
        delegated: list[int] = []
        reads: list[tuple[int, str]] = []
        writes: list[tuple[int, str]] = []
        for i, op in enumerate(ops):
            validate_op_namespace(op)
            user = _user_of(op)
            if user is None:
                delegated.append(i)
            elif isinstance(op, PutOp):
                writes.append((i, user))
            else:
                reads.append((i, user))
        for i, user in reads:
            op = ops[i]
            if isinstance(op, GetOp):
                results[i] = await self._get(user, op)
            elif isinstance(op, SearchOp):
                results[i] = await self._search(user, op)
        if delegated:
            answers = await self.postgres.abatch([ops[i] for i in delegated])
            for i, answer in zip(delegated, answers, strict=True):
                results[i] = answer
        for i, user in writes:
            op = ops[i]
            assert isinstance(op, PutOp)
            await self._put(user, op)
        return results

    # ------------------------------------------------------------------ memories
    async def _get(self, user: str, op: GetOp) -> Item | None:
        try:
            item = await self.memory.get(user, op.key)
        except NotFound:
            return None
        return _item(item)

    async def _put(self, user: str, op: PutOp) -> None:
        if op.value is None:
            try:
                await self.memory.delete(user, op.key)
            except NotFound:
                pass
            return
        fields = memory_fields(op.value)
        await self.memory.put(user, op.key, **fields)

    async def _search(self, user: str, op: SearchOp) -> list[SearchItem]:
        limit, offset = max(op.limit, 0), max(op.offset, 0)
        query = " ".join((op.query or "").split())
        if limit == 0:
            return []
        if not query:
            return await self._list(user, op.filter, limit, offset)
        wanted = offset + limit
        kinds = None
        if op.filter:
            kind = op.filter.get("kind")
            if isinstance(kind, str):
                kinds = [kind]
            # Take more candidates, so the filter still leaves a page to return.
            wanted = max(4 * wanted, self.memory.config.candidates)
        hits = await self.memory.search(user, query, k=wanted, kinds=kinds)
        found = [_search_item(hit.item, hit.score) for hit in hits]
        if op.filter:
            found = [it for it in found if matches_filter(it.value, op.filter)]
        return found[offset : offset + limit]

    async def _list(
        self, user: str, filter_: dict[str, Any] | None, limit: int, offset: int
    ) -> list[SearchItem]:
        if not filter_:
            items = await self.memory.list(user, limit=limit, offset=offset)
            return [_search_item(it, None) for it in items]
        matched: list[SearchItem] = []
        start = 0
        while len(matched) < offset + limit:
            page = await self.memory.list(user, limit=LIST_PAGE, offset=start)
            matched.extend(
                _search_item(it, None) for it in page if matches_filter(value_of(it), filter_)
            )
            if len(page) < LIST_PAGE:
                break
            start += LIST_PAGE
        return matched[offset : offset + limit]

    # ------------------------------------------------------------------ the rest
    async def sweep_ttl(self) -> int:
        """Delete expired items of the wrapped store (memories have no TTL)."""
        sweep = getattr(self.postgres, "sweep_ttl", None)
        return int(await sweep()) if sweep is not None else 0


def _user_of(op: Op) -> str | None:
    if isinstance(op, GetOp | PutOp):
        return memory_user(op.namespace)
    if isinstance(op, SearchOp):
        return memory_user(op.namespace_prefix)
    if isinstance(op, ListNamespacesOp):
        return None
    raise ValueError(f"unknown store operation {type(op).__name__}")


def _item(item: MemoryItem) -> Item:
    """The ``Item`` of a memory (see the value shape in :class:`HybridMemoryStore`)."""
    return Item(
        value=value_of(item),
        key=item.id,
        namespace=namespace(item.user_id),
        created_at=item.created_at,
        updated_at=item.last_seen_at,
    )


def _search_item(item: MemoryItem, score: float | None) -> SearchItem:
    return SearchItem(
        namespace=namespace(item.user_id),
        key=item.id,
        value=value_of(item),
        created_at=item.created_at,
        updated_at=item.last_seen_at,
        score=None if score is None else float(score),
    )


def memory_fields(value: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of :meth:`MemoryStore.put` for a LangGraph put ``value``.

    See :class:`HybridMemoryStore` for the rules; fields absent from the value are ``None``
    (kept on an edit, defaults on an add).
    """
    if not isinstance(value, Mapping):
        raise InvalidInput("a memory value must be a JSON object")
    text_key = "text" if value.get("text") is not None else "content"
    text = value.get(text_key)
    if text is None:
        raise InvalidInput("a memory value needs a 'text' (or 'content') to remember")
    if not isinstance(text, str):
        text = json.dumps(text, ensure_ascii=False, sort_keys=True, default=str)
    other_alias = "content" if text_key == "text" else "text"
    extras = {
        k: v
        for k, v in value.items()
        if k not in _SERVER_FIELDS
        and (k not in _VALUE_FIELDS or (k == other_alias and v is not None))
    }
    metadata = value.get("metadata")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise InvalidInput("a memory's 'metadata' must be a JSON object")
    if extras:
        metadata = {**(metadata or {}), **extras}
    provenance = value.get("provenance")
    if isinstance(provenance, str):
        provenance = [provenance]
    elif provenance is not None and not isinstance(provenance, list | tuple):
        raise InvalidInput("a memory's 'provenance' must be a list of ids")
    importance = value.get("importance")
    if importance is not None and (
        isinstance(importance, bool) or not isinstance(importance, int | float)
    ):
        raise InvalidInput(f"importance must be a number in [0, 1], got {importance!r}")
    try:
        event_at = parse_dt(value.get("event_at"))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"event_at is not an ISO date: {value.get('event_at')!r}") from exc
    optional_text = {}
    for name in ("kind", "subject", "context"):
        field = value.get(name)
        if field is not None and not isinstance(field, str):
            raise InvalidInput(f"a memory's {name!r} must be a string")
        optional_text[name] = field
    return {
        "text": text,
        "importance": importance,
        "event_at": event_at,
        "provenance": provenance,
        "metadata": dict(metadata) if metadata is not None else None,
        **optional_text,
    }


def matches_filter(value: Mapping[str, Any], filter_: Mapping[str, Any]) -> bool:
    """Whether a stored ``value`` passes a LangGraph search ``filter`` (top-level keys)."""
    return all(_matches(value.get(key), wanted) for key, wanted in filter_.items())


def _matches(actual: Any, wanted: Any) -> bool:
    if isinstance(wanted, Mapping):
        if wanted and all(str(k).startswith("$") for k in wanted):
            return all(_operator(actual, op, arg) for op, arg in wanted.items())
        return isinstance(actual, Mapping) and all(
            _matches(actual.get(k), v) for k, v in wanted.items()
        )
    return bool(_json_equal(actual, wanted))


def _json_equal(a: Any, b: Any) -> bool:
    """Equality of two JSON values as ``jsonb`` sees it (``true`` is not ``1``)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    return bool(a == b)


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float | str):
        return None
    try:
        n = float(x)
    except ValueError:
        return None
    return None if math.isnan(n) else n


def _operator(actual: Any, op: str, arg: Any) -> bool:
    if op == "$eq":
        return _json_equal(actual, arg)
    if op == "$ne":
        return not _json_equal(actual, arg)
    if op not in ("$gt", "$gte", "$lt", "$lte"):
        raise ValueError(f"Unsupported operator: {op}")
    if actual is None:
        return False
    a, b = _number(actual), _number(arg)
    if a is None or b is None:  # text order, as Postgres compares ``value->>key``
        left, right = str(actual), str(arg)
        return {
            "$gt": left > right, "$gte": left >= right,
            "$lt": left < right, "$lte": left <= right,
        }[op]  # fmt: skip
    return {"$gt": a > b, "$gte": a >= b, "$lt": a < b, "$lte": a <= b}[op]
