"""LoCoMo offline recall: Mnemograph's hybrid long-term memory against BM25 and dense baselines.

Protocol (DESIGN §6): per conversation a fresh user; every turn ingested in order as one
long-term item through the real :class:`MemoryStore` (dia_id, session number, session date,
speaker, text, photo caption); never the model-written ``observation``/``session_summary``/
``event_summary``; each included question searched with its own text; recall@5/@10, MRR@10
and recall within 256/512/1,024 tokens of returned text, per category and overall.

Each item is indexed with its neighbouring turns as *context* (searched, never returned), and
returned with its session date, while its provenance stays the one turn it came from: a
question's wording often matches the reply or the question around the evidence turn, yet the
token budget should only pay for the turn itself.

Run: ``python -m bench.locomo_recall --data ../shared/benchdata/locomo10_dev.json
--questions ../shared/benchdata/locomo_dev_questions.json --out bench/results/locomo.jsonl``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pickle
import re
import statistics
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings
from langchain_core.messages.utils import count_tokens_approximately

CATEGORY = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
TOKEN_BUDGETS = (256, 512, 1024)
RANKED_DEPTH = 50
DATE_FORMAT = "%I:%M %p on %d %B, %Y"
DIMS = 384
"""MiniLM's embedding size (both embedders here)."""


@dataclass
class Turn:
    """One dialogue turn with everything the protocol allows the system to see."""

    dia_id: str
    session: int
    date: datetime | None
    date_text: str
    speaker: str
    text: str
    caption: str | None

    def line(self) -> str:
        """The turn as one memory text: speaker, words, and the shared photo's caption."""
        photo = f" [shares a photo: {self.caption}]" if self.caption else ""
        return f"{self.speaker}: {self.text}{photo}"


@dataclass
class Question:
    sample_id: str
    qa_index: int
    category: int
    question: str
    evidence: list[str]


@dataclass
class Ranked:
    """One returned item: the text that would go into a prompt and the turns it stands for."""

    text: str
    provenance: list[str]


@dataclass
class Scores:
    """Per-question metric values, grouped by category for the table."""

    rows: dict[str, list[dict[str, float]]] = field(default_factory=lambda: defaultdict(list))

    def add(self, category: str, values: dict[str, float]) -> None:
        self.rows[category].append(values)
        self.rows["overall"].append(values)


def parse_date(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.strptime(text.strip(), DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def load_turns(conversation: dict[str, Any]) -> list[Turn]:
    """Every turn in session order; only the fields the protocol allows."""
    turns: list[Turn] = []
    sessions = sorted(
        int(m.group(1))
        for key in conversation
        if (m := re.fullmatch(r"session_(\d+)", key)) and isinstance(conversation[key], list)
    )
    for n in sessions:
        date_text = str(conversation.get(f"session_{n}_date_time") or "")
        for t in conversation[f"session_{n}"]:
            turns.append(
                Turn(
                    dia_id=str(t["dia_id"]),
                    session=n,
                    date=parse_date(date_text),
                    date_text=date_text,
                    speaker=str(t.get("speaker", "")),
                    text=str(t.get("text", "")),
                    caption=t.get("blip_caption") or None,
                )
            )
    return turns


def load_questions(path: Path) -> list[Question]:
    raw = json.loads(path.read_text())
    items = raw["questions"] if isinstance(raw, dict) else raw
    return [
        Question(
            sample_id=q["sample_id"],
            qa_index=int(q["qa_index"]),
            category=int(q["category"]),
            question=str(q["question"]),
            evidence=list(q["evidence"]),
        )
        for q in items
        if q.get("included")
    ]


def tokens(text: str) -> int:
    return count_tokens_approximately([text])


def score(ranked: Sequence[Ranked], evidence: Sequence[str]) -> dict[str, float]:
    """recall@k: share of evidence ids covered by the provenance of the top k items."""
    gold = set(evidence)

    def covered(items: Sequence[Ranked]) -> float:
        found = set().union(*(set(r.provenance) for r in items)) if items else set()
        return len(gold & found) / len(gold)

    mrr = 0.0
    for i, r in enumerate(ranked[:10]):
        if gold & set(r.provenance):
            mrr = 1.0 / (i + 1)
            break
    out = {"R@5": covered(ranked[:5]), "R@10": covered(ranked[:10]), "MRR@10": mrr}
    for budget in TOKEN_BUDGETS:
        used, kept = 0, []
        for r in ranked:
            cost = tokens(r.text)
            if used + cost > budget:
                break
            used += cost
            kept.append(r)
        out[f"R@{budget}t"] = covered(kept)
    return out


# ---------------------------------------------------------------------------- baselines
_WORD = re.compile(r"\w+")


def word_tokens(texts: Sequence[str]) -> list[list[str]]:
    return [_WORD.findall(t.lower()) for t in texts]


_LEXEME = re.compile(r"'((?:[^']|'')*)':([\d,]+)")


async def english_tokens(pool: Any, texts: Sequence[str]) -> list[list[str]]:
    """Postgres' 'english' analyzer (stemming, stop words), each lexeme repeated by its
    frequency: the same analysis the system's full-text side uses."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT to_tsvector('english', x)::text AS v FROM unnest(%s::text[]) "
            "WITH ORDINALITY AS t(x, i) ORDER BY i",
            (list(texts),),
        )
        rows = await cur.fetchall()
    return [
        [
            m.group(1).replace("''", "'")
            for m in _LEXEME.finditer(r["v"])
            for _ in m.group(2).split(",")
        ]
        for r in rows
    ]


def bm25_baseline(
    turns: Sequence[Turn],
    doc_tokens: Sequence[Sequence[str]],
    query_tokens: Callable[[str], Sequence[str]],
) -> Callable[[str], list[Ranked]]:
    """Okapi BM25 (rank-bm25 defaults) over single turns (speaker, text, photo caption)."""
    from rank_bm25 import BM25Okapi

    docs = [t.line() for t in turns]
    bm25 = BM25Okapi([list(d) for d in doc_tokens])

    def search(query: str) -> list[Ranked]:
        s = bm25.get_scores(list(query_tokens(query)))
        order = sorted(range(len(docs)), key=lambda i: -s[i])[:RANKED_DEPTH]
        return [Ranked(docs[i], [turns[i].dia_id]) for i in order]

    return search


def dense_baseline(turns: Sequence[Turn], embeddings: Embeddings) -> Callable[[str], list[Ranked]]:
    """MiniLM cosine over single turns (vectors are normalised, so a dot product)."""
    import numpy as np

    docs = [t.line() for t in turns]
    matrix = np.asarray(embeddings.embed_documents(docs), dtype=np.float32)

    def search(query: str) -> list[Ranked]:
        q = np.asarray(embeddings.embed_query(query), dtype=np.float32)
        s = matrix @ q
        order = np.argsort(-s)[:RANKED_DEPTH]
        return [Ranked(docs[i], [turns[i].dia_id]) for i in order]

    return search


class CachedEmbeddings(Embeddings):
    """Memoises document vectors in a pickle file, so repeated bench runs skip re-embedding
    the same turns (development convenience; the cache key is the exact text). Queries are
    always embedded afresh, so latencies stay honest."""

    def __init__(self, inner: Embeddings, path: Path | None) -> None:
        self._inner = inner
        self._path = path
        self._cache: dict[str, list[float]] = {}
        if path is not None and path.exists():
            self._cache = pickle.loads(path.read_bytes())

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            for t, v in zip(missing, self._inner.embed_documents(missing), strict=True):
                self._cache[t] = v
        return [self._cache[t] for t in texts]

    def embed_query(self, text: str) -> list[float]:
        # Never cached: search latency must include embedding the question.
        return self._inner.embed_query(text)

    def save(self) -> None:
        if self._path is not None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._path.write_bytes(pickle.dumps(self._cache))


# ---------------------------------------------------------------------------- the system
def memories_for(turns: Sequence[Turn], *, window: int = 2) -> list[Any]:
    """One ``NewMemory`` per turn, with its session and position in it (replies inherit
    their question's relevance by them); neighbouring turns of the same session become
    indexing context only (see ``with_neighbour_context``)."""
    from stores.memory.model import NewMemory, with_neighbour_context

    position: dict[int, int] = defaultdict(int)
    items = []
    for t in turns:
        items.append(
            NewMemory(
                text=t.line(),
                kind="turn",
                importance=0.5,
                event_at=t.date,
                provenance=[t.dia_id],
                metadata={
                    "dia_id": t.dia_id,
                    "session": t.session,
                    "position": position[t.session],
                    "session_date": t.date_text,
                    "speaker": t.speaker,
                },
            )
        )
        position[t.session] += 1
    return with_neighbour_context(items, window=window, group_key="session")


async def synthesize_to(
    pool: Any, user_id: str, donors: Sequence[str], target: int, current: int
) -> float:
    """Grow ``user_id`` to ``target`` items by cloning other users' items (text, context,
    vectors) under new keys, in two INSERT … SELECT statements; returns seconds taken."""
    from stores.memory.model import store_prefix

    need = target - current
    if need <= 0:
        return 0.0
    t0 = time.perf_counter()
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(
            """
            CREATE TEMP TABLE synth ON COMMIT DROP AS
            SELECT s.key AS src_key, s.prefix AS src_prefix, g AS copy,
                   md5(s.prefix || s.key || g::text) AS new_key
            FROM store s CROSS JOIN generate_series(1, %(copies)s) g
            WHERE s.prefix = ANY(%(donors)s)
            ORDER BY g, s.key LIMIT %(need)s
            """,
            {
                "donors": [store_prefix(d) for d in donors],
                "copies": need // 100 + 1,
                "need": need,
            },
        )
        await conn.execute(
            """
            INSERT INTO store (prefix, key, value, created_at, updated_at)
            SELECT %(p)s, y.new_key,
                   jsonb_set(s.value, '{text}', to_jsonb((s.value->>'text') || ' #' || y.copy)),
                   now(), now()
            FROM synth y JOIN store s ON s.prefix = y.src_prefix AND s.key = y.src_key
            """,
            {"p": store_prefix(user_id)},
        )
        await conn.execute(
            """
            INSERT INTO mnemo_memory_index (prefix, key, user_id, kind, subject, text, context)
            SELECT %(p)s, y.new_key, %(u)s, m.kind, m.subject, m.text || ' #' || y.copy,
                   m.context
            FROM synth y JOIN mnemo_memory_index m
              ON m.prefix = y.src_prefix AND m.key = y.src_key
            """,
            {"p": store_prefix(user_id), "u": user_id},
        )
        await conn.execute(
            """
            INSERT INTO mnemo_memory_vectors (prefix, key, user_id, embedding)
            SELECT %(p)s, y.new_key, %(u)s, v.embedding
            FROM synth y JOIN mnemo_memory_vectors v
              ON v.prefix = y.src_prefix AND v.key = y.src_key
            """,
            {"p": store_prefix(user_id), "u": user_id},
        )
    await settle(pool)
    return time.perf_counter() - t0


async def settle(pool: Any) -> None:
    """VACUUM (ANALYZE) the memory tables after a bulk load: the state autovacuum reaches a
    little later. Measured right after a load instead, searches run beside autovacuum's
    first pass and read postings through the heap (no visibility map yet): 7-8 ms more p95
    at 10k memories, a cost of the load, not of steady-state search."""
    async with pool.connection() as conn:
        for table in ("store", "mnemo_memory_index", "mnemo_memory_postings",
                      "mnemo_memory_vectors"):  # fmt: skip
            await conn.execute(f"VACUUM (ANALYZE) {table}")


class ConcurrentWriter:
    """Writes long-term memories for another user at ``rate`` per second while searches run:
    the "loaded" condition of the latency goal (issue 17). Each write is what the agent's
    ``write_memory`` node does per extracted item: embed the text, look for a duplicate, insert
    (index, postings, vector). Texts are the conversation's own turns, made unique, so each
    one is really embedded and really inserted."""

    def __init__(self, store: Any, user_id: str, texts: Sequence[str], rate: float) -> None:
        self._store = store
        self._user = user_id
        self._texts = list(texts) or ["a note"]
        self._rate = rate
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.seconds = 0.0

    async def _loop(self) -> None:
        t0 = time.perf_counter()
        try:
            while True:
                text = f"{self._texts[self.written % len(self._texts)]} (note {self.written})"
                await self._store.add(self._user, text, kind="fact")
                self.written += 1
                due = t0 + self.written / self._rate
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
        finally:
            self.seconds = time.perf_counter() - t0

    async def __aenter__(self) -> ConcurrentWriter:
        self._task = asyncio.create_task(self._loop())
        await asyncio.sleep(0.2)  # let the load start before the first timed search
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass

    @property
    def achieved(self) -> float:
        """Writes per second actually done (below ``rate`` if the machine could not keep up)."""
        return self.written / self.seconds if self.seconds else 0.0


async def timed_searches(store: Any, user: str, questions: Sequence[Question]) -> list[float]:
    """Milliseconds of each question's search (query embedding included)."""
    out: list[float] = []
    for q in questions:
        t1 = time.perf_counter()
        await store.search(user, q.question, k=RANKED_DEPTH)
        out.append((time.perf_counter() - t1) * 1000)
    return out


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    idx = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[idx]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from psycopg_pool import AsyncConnectionPool
    from rich.console import Console

    from bench.recall_variants import VariantMemoryStore, split_overrides
    from stores.memory.model import render_memory
    from stores.models.embeddings import LocalMiniLM
    from stores.postgres.embedded import start_embedded_postgres
    from stores.postgres.migrations import migrate
    from stores.postgres.savers import has_pgvector, make_checkpointer, make_store, open_pool

    console = Console()
    data: list[dict[str, Any]] = args.loaded_data
    questions: list[Question] = args.loaded_questions
    by_conv: dict[str, list[Question]] = defaultdict(list)
    for q in questions:
        by_conv[q.sample_id].append(q)

    base_embeddings: Any
    if args.embeddings == "local-torch":
        base_embeddings = LocalMiniLM(threads=args.threads)
    else:
        from stores.models.minilm_onnx import OnnxMiniLM
        from stores.settings import Settings

        base_embeddings = OnnxMiniLM(Settings().model_cache_dir, threads=args.threads)
    embeddings = CachedEmbeddings(
        base_embeddings, Path(args.embed_cache) if args.embed_cache else None
    )

    tmp: tempfile.TemporaryDirectory[str] | None = None
    url = os.environ.get("DATABASE_URL")
    if not url:
        tmp = tempfile.TemporaryDirectory(prefix="mnemo-locomo-")
        embedded = start_embedded_postgres(Path(tmp.name) / "pg", keep_running=False)
        url = embedded.url
    pool: AsyncConnectionPool[Any] = await open_pool(url, max_size=4)
    config, variant = split_overrides(json.loads(args.config) if args.config else {})
    # The whole schema, as a first start makes it: the version `migrate` records promises
    # LangGraph's tables too, should this database (DATABASE_URL) later serve Mnemograph.
    pgvector = await has_pgvector(pool)
    await make_checkpointer(pool)
    await make_store(pool, embeddings=embeddings if pgvector else None, dims=DIMS)
    await migrate(pool, dims=DIMS, pgvector=pgvector)
    store = VariantMemoryStore(pool, embeddings, config=config, variant=variant, dims=DIMS)
    await store.setup()

    systems = ("mnemograph", "bm25", "bm25-english", "dense")
    scores = {s: Scores() for s in systems}
    latencies: list[float] = []
    loaded: list[float] = []
    rates: list[float] = []
    users: dict[str, str] = {}
    lines: list[str] = args.out_lines
    run_id = uuid.uuid4().hex[:8]
    ingest_s = 0.0
    sizes: dict[str, int] = {}
    for conv in data:
        sid = conv["sample_id"]
        if sid not in by_conv:
            continue
        turns = load_turns(conv["conversation"])
        user = f"locomo-{sid}-{run_id}"
        users[sid] = user
        t0 = time.perf_counter()
        await store.add_many(user, memories_for(turns, window=args.window))
        ingest_s += time.perf_counter() - t0
        await settle(pool)
        sizes[sid] = len(turns)
        lines_ = [t.line() for t in turns]
        bm25 = bm25_baseline(turns, word_tokens(lines_), lambda q: word_tokens([q])[0])
        questions_ = [q.question for q in by_conv[sid]]
        q_tokens = dict(zip(questions_, await english_tokens(pool, questions_), strict=True))
        bm25_en = bm25_baseline(turns, await english_tokens(pool, lines_), q_tokens.__getitem__)
        dense = dense_baseline(turns, embeddings)
        # Warm the query path once, so the first timed search is not a cold start.
        await store.search(user, "hello", k=10)
        for q in by_conv[sid]:
            t1 = time.perf_counter()
            hits = await store.search(user, q.question, k=RANKED_DEPTH)
            latencies.append((time.perf_counter() - t1) * 1000)
            ranked = [Ranked(render_memory(h.item), h.item.provenance) for h in hits]
            cat = CATEGORY.get(q.category, str(q.category))
            scores["mnemograph"].add(cat, score(ranked, q.evidence))
            scores["bm25"].add(cat, score(bm25(q.question), q.evidence))
            scores["bm25-english"].add(cat, score(bm25_en(q.question), q.evidence))
            scores["dense"].add(cat, score(dense(q.question), q.evidence))
            lines.append(
                json.dumps(
                    {
                        "sample_id": q.sample_id,
                        "qa_index": q.qa_index,
                        "ranked": [{"text": r.text, "provenance": r.provenance} for r in ranked],
                    }
                )
            )
        if args.write_rate > 0:
            async with ConcurrentWriter(
                store, f"locomo-writer-{run_id}", lines_, args.write_rate
            ) as writer:
                loaded.extend(await timed_searches(store, user, by_conv[sid]))
            rates.append(writer.achieved)
    await asyncio.to_thread(embeddings.save)

    latency_10k: list[float] = []
    loaded_10k: list[float] = []
    synth_s = 0.0
    big = max(sizes, key=lambda s: sizes[s]) if sizes else None
    if big is not None and not args.skip_10k:
        donors = [u for s, u in users.items() if s != big]
        synth_s = await synthesize_to(pool, users[big], donors, 10_000, sizes[big])
        # The store noted this user as small (searched in SQL) when it had 700 items and
        # would check again 30 s later; a long-lived server has, so check now.
        store.recheck_size(users[big])
        await store.search(users[big], "hello", k=10)
        for q in by_conv[big]:
            t1 = time.perf_counter()
            await store.search(users[big], q.question, k=RANKED_DEPTH)
            latency_10k.append((time.perf_counter() - t1) * 1000)
        if args.write_rate > 0:
            async with ConcurrentWriter(
                store, f"locomo-writer-{run_id}", [q.question for q in by_conv[big]],
                args.write_rate,
            ) as writer:  # fmt: skip
                loaded_10k.extend(await timed_searches(store, users[big], by_conv[big]))
            rates.append(writer.achieved)
        size_10k = await store.count(users[big])
    else:
        size_10k = 0

    embed_q: list[float] = []
    for q in questions[:100]:
        t1 = time.perf_counter()
        base_embeddings.embed_query(q.question + " ")
        embed_q.append((time.perf_counter() - t1) * 1000)

    summary = report(
        console,
        scores,
        latencies=latencies,
        latency_10k=latency_10k,
        loaded=loaded,
        loaded_10k=loaded_10k,
        write_rate=statistics.fmean(rates) if rates else 0.0,
        size_700=f"{min(sizes.values())}-{max(sizes.values())}" if sizes else "0",
        size_10k=size_10k,
        embed_q=embed_q,
        ingest_s=ingest_s,
        synth_s=synth_s,
        n_turns=sum(sizes.values()),
    )
    if not args.keep:
        for user in [*users.values(), f"locomo-writer-{run_id}"]:
            await store.delete_user(user)
    await pool.close()
    if tmp is not None:
        embedded.release()  # stopped before its files are removed
        tmp.cleanup()
    return summary


def _mean(rows: Sequence[dict[str, float]], key: str) -> float:
    return statistics.fmean(r[key] for r in rows) if rows else float("nan")


def report(
    console: Any,
    scores: dict[str, Scores],
    *,
    latencies: Sequence[float],
    latency_10k: Sequence[float],
    loaded: Sequence[float],
    loaded_10k: Sequence[float],
    write_rate: float,
    size_700: str,
    size_10k: int,
    embed_q: Sequence[float],
    ingest_s: float,
    synth_s: float,
    n_turns: int,
) -> dict[str, Any]:
    from rich.table import Table

    metrics = ["R@5", "R@10", "MRR@10", *(f"R@{b}t" for b in TOKEN_BUDGETS)]
    table = Table(title="LoCoMo recall (dev): Mnemograph hybrid vs single-turn baselines")
    table.add_column("category (n)")
    table.add_column("system")
    for m in metrics:
        table.add_column(m, justify="right")
    cats = ["overall", *CATEGORY.values()]
    summary: dict[str, Any] = {}
    for cat in cats:
        n = len(scores["mnemograph"].rows.get(cat, []))
        if n == 0:
            continue
        for i, (name, s) in enumerate(scores.items()):
            rows = s.rows.get(cat, [])
            values = {m: _mean(rows, m) for m in metrics}
            summary.setdefault(cat, {})[name] = values
            style = "bold" if name == "mnemograph" else None
            table.add_row(
                f"{cat} ({n})" if i == 0 else "",
                name,
                *(f"{values[m]:.3f}" for m in metrics),
                style=style,
                end_section=i == len(scores) - 1,
            )
    console.print(table)
    console.print(
        "bm25: rank-bm25 over single turns, lower-cased \\w+ tokens; bm25-english: the same "
        "with Postgres' 'english' analyzer (stems, stop words); dense: MiniLM cosine over "
        "single turns; mnemograph: MemoryStore.search (BM25 + pgvector fused, turns indexed "
        "with 2 neighbours each side)",
        highlight=False,
    )
    lat = Table(title="MemoryStore.search latency (ms, includes query embedding)")
    for col in ("memories/user", "condition", "searches", "p50", "p95", "max"):
        lat.add_column(col, justify="right")
    busy = f"{write_rate:.0f} writes/s alongside"
    for size, cond, vals in (
        (size_700, "quiet", latencies),
        (size_700, busy, loaded),
        (str(size_10k), "quiet", latency_10k),
        (str(size_10k), busy, loaded_10k),
    ):
        if vals:
            lat.add_row(
                size,
                cond,
                str(len(vals)),
                f"{percentile(vals, 50):.1f}",
                f"{percentile(vals, 95):.1f}",
                f"{max(vals):.1f}",
            )
    console.print(lat)
    console.print(
        f"query embedding alone: p50 {percentile(embed_q, 50):.1f} ms, "
        f"p95 {percentile(embed_q, 95):.1f} ms; ingest of {n_turns} turns "
        f"{ingest_s:.1f}s; synthetic bulk load to {size_10k} items {synth_s:.1f}s"
    )
    summary["latency_ms"] = {
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
        "p50_10k": percentile(latency_10k, 50),
        "p95_10k": percentile(latency_10k, 95),
        "loaded_p50": percentile(loaded, 50),
        "loaded_p95": percentile(loaded, 95),
        "loaded_p50_10k": percentile(loaded_10k, 50),
        "loaded_p95_10k": percentile(loaded_10k, 95),
        "loaded_writes_per_s": write_rate,
    }
    return summary


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--questions", required=True)
    parser.add_argument("--out", default="bench/results/locomo.jsonl")
    parser.add_argument("--window", type=int, default=2, help="neighbour turns as context")
    parser.add_argument(
        "--config", default=None,
        help="JSON overrides of MemoryConfig and of bench.recall_variants.Variant (ablations), "
        'e.g. \'{"fusion": "rrf", "candidates": 100}\'',
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=1, help="embedding threads")
    parser.add_argument(
        "--embeddings", choices=("local", "local-torch"), default="local",
        help="int8 ONNX MiniLM (the default) or the float32 torch model",
    )  # fmt: skip
    parser.add_argument("--embed-cache", default=None, help="pickle cache of vectors (dev)")
    parser.add_argument("--skip-10k", action="store_true")
    parser.add_argument(
        "--write-rate", type=float, default=20.0,
        help="memory writes per second (another user) during the loaded pass; 0: quiet only",
    )  # fmt: skip
    parser.add_argument("--conversations", default=None, help="comma-separated sample ids")
    parser.add_argument("--keep", action="store_true", help="keep the bench users' items")
    parser.add_argument("--summary", default=None, help="write the metric summary as JSON")
    args = parser.parse_args(argv)
    only = set(args.conversations.split(",")) if args.conversations else None
    args.loaded_data = [
        c for c in json.loads(Path(args.data).read_text()) if only is None or c["sample_id"] in only
    ]
    args.loaded_questions = [
        q for q in load_questions(Path(args.questions)) if only is None or q.sample_id in only
    ]
    args.out_lines = []
    summary = asyncio.run(run(args))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(line + "\n" for line in args.out_lines))
    if args.summary:
        Path(args.summary).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
