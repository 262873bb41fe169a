"""Server-wide figures in Prometheus' text format, for ``GET /metrics``.

One :class:`Metrics` per app (``app.state.metrics``), each with its own
``CollectorRegistry``: nothing goes to prometheus_client's global default registry, so two
apps in one process (or two tests) share no series. Labels never carry a user id or a thread
id, only bounded sets: HTTP method, route template (``/threads/{thread_id}``, never the
raw path), status class, door, outcome, graph node and limit kind.

What is measured, and where:

* request latency: the gate (:class:`mnemograph.web.middleware.Gate`) wraps ``send`` with
  :meth:`Metrics.timed`, observed when the response's last byte is sent; requests the gate
  answers itself (401, 413, 429, 400) carry the route ``gate``, unmatched paths
  ``unmatched``;
* turns and node latency: the turn runner opens a :class:`TurnWatch` around each graph run
  and hands it the ``tasks`` events it already streams; a node's time is from its task's
  start event to its result event, as the runner sees them;
* rate limiting: the gate counts each 429 it gives, by limit (``user``, ``address``,
  ``open``);
* outbox depth and age: read from PostgreSQL when scraped (:meth:`Metrics.refresh`);
* vector-cache lookups: counters kept by each ``VectorCache``, read when scraped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import Message, Scope, Send

if TYPE_CHECKING:
    from mnemograph.services import Services

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "TurnWatch"]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Seconds; fine at the low end (a zero-latency model's turn takes ~20 ms) and up to a
slow model's minute."""

LIMITS = ("user", "address", "open")
"""What a 429 was for: a user's request rate, an address's failed authentications, an
address's requests to the open routes."""


class TurnWatch:
    """One graph run: times its nodes from the ``tasks`` events and counts the run's
    outcome on exit (``ok``, ``error``, or ``cancelled`` when the run was cut or its
    consumer went away)."""

    __slots__ = ("_door", "_metrics", "_started")

    def __init__(self, metrics: Metrics, door: str) -> None:
        self._metrics = metrics
        self._door = door
        self._started: dict[str, float] = {}

    def __call__(self, mode: str, chunk: Any) -> None:
        """Note one streamed ``(mode, chunk)``; only ``tasks`` events are looked at."""
        if mode != "tasks" or not isinstance(chunk, dict):
            return
        task_id = str(chunk.get("id"))
        if "input" in chunk:
            self._started[task_id] = time.perf_counter()
        elif task_id in self._started:
            seconds = time.perf_counter() - self._started.pop(task_id)
            self._metrics.nodes.labels(str(chunk.get("name"))).observe(seconds)

    def __enter__(self) -> TurnWatch:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            outcome = "ok"
        elif issubclass(kind, (asyncio.CancelledError, GeneratorExit)):
            outcome = "cancelled"
        else:
            outcome = "error"
        self._metrics.turns.labels(self._door, outcome).inc()


class _VectorCacheCollector:
    """Reads the vector cache's own counters at scrape time (the store layer keeps plain
    integers and knows nothing of Prometheus)."""

    def __init__(self, source: Callable[[], Services | None]) -> None:
        self._source = source

    def describe(self) -> list[Metric]:
        return [self._family()]

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(
            "mnemograph_vector_cache_lookups",
            "Long-term memory vector searches by how the in-process cache served them: hit "
            "(copy in memory, at most the newest rows read), miss (copy loaded whole), sql "
            "(user below the cache's size threshold, or cache off: searched in PostgreSQL)",
            labels=["result"],
        )

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        services = self._source()
        memory = services.memory if services is not None else None
        stats = memory.vector_cache_stats() if memory is not None else None
        for result in ("hit", "miss", "sql"):
            family.add_metric([result], float((stats or {}).get(result, 0)))
        yield family


class Metrics:
    """The app's series and registry; see the module docstring."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.services: Services | None = None
        """Set when the app starts serving; scrape-time readings come from it."""
        self.requests = Histogram(
            "mnemograph_http_request_duration_seconds",
            "HTTP requests from first byte in to last byte out, by method, route template "
            "and status class",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.turns = Counter(
            "mnemograph_turns",
            "Graph runs of turns, by door and outcome (ok, error, cancelled)",
            ["door", "outcome"],
            registry=registry,
        )
        self.nodes = Histogram(
            "mnemograph_node_duration_seconds",
            "Time of each LangGraph node of a turn, from its task's start to its result",
            ["node"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.rate_limited = Counter(
            "mnemograph_rate_limited",
            "Requests answered 429, by limit: user (a user's rate), address (an address's "
            "failed authentications), open (an address's requests to the open routes)",
            ["limit"],
            registry=registry,
        )
        for limit in LIMITS:
            self.rate_limited.labels(limit)
        self.outbox_depth = Gauge(
            "mnemograph_graph_outbox_depth",
            "Knowledge-graph writes waiting in the outbox (read when scraped)",
            registry=registry,
        )
        self.outbox_age = Gauge(
            "mnemograph_graph_outbox_oldest_age_seconds",
            "Age of the oldest write waiting in the outbox, 0 when empty (read when scraped)",
            registry=registry,
        )
        self.outbox_up = Gauge(
            "mnemograph_graph_outbox_readable",
            "1 if the outbox could be read at the last scrape (PostgreSQL answered), else 0",
            registry=registry,
        )
        registry.register(_VectorCacheCollector(lambda: self.services))

    def turn(self, door: str) -> TurnWatch:
        """A watch for one graph run through ``door``."""
        return TurnWatch(self, door)

    def limited(self, limit: str) -> None:
        """Count one 429 given for ``limit`` (one of :data:`LIMITS`)."""
        self.rate_limited.labels(limit).inc()

    def timed(self, scope: Scope, send: Send) -> Send:
        """``send`` that observes the request's latency when the response ends, labelled by
        the route template the router put in ``scope`` (``gate`` when the gate answered
        before any route ran, ``unmatched`` when the router found none)."""
        t0 = time.perf_counter()
        status = 0

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                template = getattr(scope.get("route"), "path", None)
                if not isinstance(template, str):  # the gate never answers 404; the router does
                    template = "unmatched" if status in (404, 405, 307) else "gate"
                self.requests.labels(scope["method"], template, f"{status // 100}xx").observe(
                    time.perf_counter() - t0
                )

        return timed_send

    async def refresh(self) -> None:
        """Read what lives in PostgreSQL (the outbox) for this scrape."""
        services = self.services
        outbox = services.outbox if services is not None else None
        if outbox is None:
            return
        try:
            depth, age = await outbox.depth()
        except Exception:  # PostgreSQL down: the scrape still answers, with the gauge at 0
            self.outbox_up.set(0)
            return
        self.outbox_up.set(1)
        self.outbox_depth.set(depth)
        self.outbox_age.set(age)

    def exposition(self) -> bytes:
        """Every series in the text format (``CONTENT_TYPE_LATEST``)."""
        return generate_latest(self.registry)
