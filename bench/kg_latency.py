"""Graph-store latency: a 10-triple upsert and a 2-hop recall, with 5,000 triples per user.

Run ``python -m bench.kg_latency`` (embedded ArcadeDB in a temp dir, or ``NEO4J_URI``).
Prints one table: start-up time, and median / p95 of each operation.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from graph.facts import Triple
from stores.knowledge.arcadedb import start_arcadedb
from stores.knowledge.bolt import GraphStore
from stores.settings import get_settings


def _p95(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.95) - 1)]


def _batch(user_round: int, size: int = 10) -> list[Triple]:
    """Ten facts spread over a few hundred entities, so the graph has real fan-out."""
    return [
        Triple(
            subject="I" if i == 0 else f"person {(user_round * 7 + i) % 300}",
            predicate=["knows", "likes", "visited", "works_with"][i % 4],
            object=f"thing {(user_round * 13 + i * 31) % 500}",
            confidence=0.9,
        )
        for i in range(size)
    ]


async def run(triples_per_user: int, samples: int) -> None:
    settings = get_settings()
    server = None
    started = 0.0
    if settings.neo4j_uri:
        password = settings.neo4j_password.get_secret_value() if settings.neo4j_password else None
        graph = await GraphStore.open(
            settings.neo4j_uri, settings.neo4j_user, password, settings.neo4j_database
        )
    else:
        tmp = Path(tempfile.mkdtemp(prefix="kgbench-"))
        server = start_arcadedb(tmp / "arcadedb", join=False)
        started = server.started_in_s
        graph = await GraphStore.open(server.uri, server.user, server.password, server.database)
    try:
        await graph.setup()
        user = f"bench-{uuid.uuid4().hex[:8]}"
        rounds = triples_per_user // 10
        t_load = time.perf_counter()
        upserts: list[float] = []
        for r in range(rounds):
            t0 = time.perf_counter()
            await graph.upsert_triples(user, _batch(r), thread_id="b", message_id=str(r), at_ms=r)
            upserts.append((time.perf_counter() - t0) * 1000)
        load_s = time.perf_counter() - t_load
        facts = len(await graph.current_facts(user))
        hops: list[float] = []
        for i in range(samples):
            t0 = time.perf_counter()
            await graph.neighbourhood(user, [f"person {i % 300}"], hops=2, limit=50)
            hops.append((time.perf_counter() - t0) * 1000)
        tail = upserts[-samples:]
        print(f"graph: {graph.dialect}; facts for the user: {facts}; load {load_s:.1f}s")
        print(f"{'operation':<34}{'median ms':>10}{'p95 ms':>10}")
        if server is not None:
            print(f"{'embedded ArcadeDB start (s)':<34}{started:>10.2f}{'':>10}")
        print(
            f"{'10-triple upsert (last ' + str(len(tail)) + ')':<34}"
            f"{statistics.median(tail):>10.2f}{_p95(tail):>10.2f}"
        )
        print(
            f"{'2-hop neighbourhood (limit 50)':<34}"
            f"{statistics.median(hops):>10.2f}{_p95(hops):>10.2f}"
        )
        await graph.delete_user(user)
    finally:
        await graph.close()
        if server is not None:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--triples", type=int, default=5000)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(run(args.triples, args.samples))


if __name__ == "__main__":
    main()
