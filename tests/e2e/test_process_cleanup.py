"""Nothing embedded outlives `mnemograph` (issue 16 item 4).

Real subprocesses, real signals, on the embedded defaults (no ``DATABASE_URL``, no
``NEO4J_URI``) and a data dir of its own per test: a server stopped by SIGTERM or SIGINT
stops the PostgreSQL and the ArcadeDB it started; a server restarted after SIGKILL adopts the
orphans and stops them when it is stopped; a CLI command stops what it started, on its error
path and when SIGTERM or SIGHUP ends it too, and the next command adopts what a SIGKILLed one
left behind. Each test kills whatever of its data dir is still running at the end, so a
failure does not leak into the next one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
START_S = 180.0  # a cold start (initdb, JVM) on a busy 2-core box
STOP_S = 60.0


def embedded_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """`cli_env` without ``DATABASE_URL``: the embedded PostgreSQL and graph server."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "MNEMOGRAPH_DATABASE_URL", "NEO4J_URI",
                     "MNEMOGRAPH_NEO4J_URI", "OPENAI_API_KEY", "OPENAI_BASE_URL",
                     "MNEMOGRAPH_KEEP_WARM_S", "MNEMOGRAPH_EMBEDDED_PG_KEEP_RUNNING")
    }  # fmt: skip
    env.update(
        MNEMOGRAPH_DATA_DIR=str(data_dir),
        MNEMOGRAPH_MODEL="fake",
        MNEMOGRAPH_EMBEDDINGS="local",
    )
    env.update(extra)
    return env


def leftovers(data_dir: Path) -> list[psutil.Process]:
    """PostgreSQL and Java processes whose command line mentions ``data_dir``."""
    needle = str(data_dir.resolve())
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        name = proc.info["name"] or ""
        if ("postgres" in name or "java" in name) and any(needle in arg for arg in cmdline):
            found.append(proc)
    return found


def describe(procs: list[psutil.Process]) -> list[str]:
    out = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            out.append(f"{proc.pid} (parent {proc.ppid()}): {' '.join(proc.cmdline())[:160]}")
    return out


def assert_nothing_left(data_dir: Path, within_s: float = 15.0) -> None:
    """No postgres or java of ``data_dir`` (given a few seconds to finish exiting)."""
    deadline = time.monotonic() + within_s
    while (procs := leftovers(data_dir)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not procs, "still running:\n" + "\n".join(describe(procs))


def kill_all(data_dir: Path) -> None:
    """SIGKILL what is left of ``data_dir`` (postmaster children die with it)."""
    procs = leftovers(data_dir)
    everything = list(procs)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            everything += proc.children(recursive=True)
    for proc in everything:  # the postmaster first: it would restart a killed backend
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(everything, timeout=10)


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    try:
        yield data_dir
    finally:
        kill_all(data_dir)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def serving(
    data_dir: Path, log: Path, workers: int = 1
) -> Iterator[subprocess.Popen[bytes]]:
    """`mnemograph serve` on ``data_dir``, answering /health; killed if a test leaves it."""
    port = free_port()
    with log.open("ab") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mnemograph.cli", "serve", "--port", str(port),
             "--workers", str(workers)],
            cwd=ROOT, env=embedded_env(data_dir), stdin=subprocess.DEVNULL,
            stdout=sink, stderr=sink,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + START_S
        while True:
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            time.sleep(0.5)
        # Both embedded servers are up (the health check answered 200, not "degraded").
        names = {p.info["name"] for p in leftovers(data_dir)}
        assert any("postgres" in n for n in names) and any("java" in n for n in names), names
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=STOP_S)


def stop(proc: subprocess.Popen[bytes], sig: signal.Signals, log: Path) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=STOP_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_S)
        pytest.fail(f"serve did not exit {STOP_S:.0f} s after {sig.name}:\n"
                    + log.read_text(errors="replace")[-3000:])  # fmt: skip


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_stopped_by_a_signal_stops_what_it_started(
    home: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    log = tmp_path / "serve.log"
    with serving(home, log) as proc:
        stop(proc, sig, log)
    assert_nothing_left(home)


def test_two_workers_start_on_a_fresh_database_and_stop_cleanly(
    home: Path, tmp_path: Path
) -> None:
    """Each worker sets the schema up under one lock; waiting for it inside a transaction
    deadlocked against the other worker's ``CREATE INDEX CONCURRENTLY`` on a fresh database
    (serve hung at start and SIGTERM could not stop it)."""
    log = tmp_path / "serve.log"
    with serving(home, log, workers=2) as proc:
        stop(proc, signal.SIGTERM, log)
    assert_nothing_left(home)


def test_serve_after_sigkill_adopts_the_orphans(home: Path, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    with serving(home, log) as proc:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=STOP_S)
    orphans = {p.pid for p in leftovers(home)}
    assert orphans, "SIGKILL leaves the embedded servers running (what this test is about)"
    with serving(home, log) as proc:
        code = stop(proc, signal.SIGTERM, log)
    assert_nothing_left(home)
    assert code == 0, log.read_text(errors="replace")[-3000:]  # a clean stop, not a crash


def mg(data_dir: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mnemograph.cli", *args],
        cwd=ROOT, env=embedded_env(data_dir, **extra), stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=START_S,
    )  # fmt: skip


@pytest.mark.parametrize("keep_warm", ["0", None], ids=["keep-warm-0", "keep-warm-default"])
def test_a_failing_cli_command_leaves_nothing_running(home: Path, keep_warm: str | None) -> None:
    extra = {} if keep_warm is None else {"MNEMOGRAPH_KEEP_WARM_S": keep_warm}
    res = mg(home, "history", "--user", "u", "--thread", "nosuch", **extra)
    assert res.returncode == 1, res.stderr
    assert "not found" in res.stderr
    assert_nothing_left(home)


@contextlib.contextmanager
def chatting(data_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """An interactive `mnemograph chat` (no keeper) with its services open, at its prompt."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mnemograph.cli", "chat", "--user", "u", "--thread", "t"],
        cwd=ROOT, env=embedded_env(data_dir, MNEMOGRAPH_KEEP_WARM_S="0"),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        seen, deadline = b"", time.monotonic() + START_S
        while b"type /exit" not in seen:  # the services are open, the prompt is up
            assert proc.poll() is None and time.monotonic() < deadline, seen
            seen += proc.stdout.read() or b""
            time.sleep(0.2)
        names = {p.info["name"] for p in leftovers(data_dir)}
        assert any("postgres" in n for n in names) and any("java" in n for n in names), names
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=STOP_S)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_cli_command_ended_by_a_signal_stops_what_it_started(
    home: Path, sig: signal.Signals
) -> None:
    """`kill` or a closed terminal ends the command, not the servers it started."""
    with chatting(home) as proc:
        proc.send_signal(sig)
        try:
            code = proc.wait(timeout=STOP_S)  # stdin stays open: a pending input() must not hold it
        except subprocess.TimeoutExpired:
            pytest.fail(f"chat did not exit {STOP_S:.0f} s after {sig.name}")
    assert_nothing_left(home)
    assert code == 128 + sig


def test_a_cli_command_after_a_sigkilled_one_stops_the_orphans(home: Path) -> None:
    """A CLI call killed outright leaves its servers behind; the next call adopts them."""
    with chatting(home) as proc:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=STOP_S)
    assert leftovers(home), "SIGKILL leaves the embedded servers running"

    res = mg(home, "history", "--user", "u", "--thread", "nosuch", MNEMOGRAPH_KEEP_WARM_S="0")
    assert res.returncode == 1 and "not found" in res.stderr, res.stderr
    postgres = [p for p in leftovers(home) if "postgres" in (p.info["name"] or "")]
    assert not postgres, "\n".join(describe(postgres))

    res = mg(home, "graph", "--user", "u", MNEMOGRAPH_KEEP_WARM_S="0")  # opens the graph too
    assert res.returncode == 0, res.stderr
    assert_nothing_left(home)


def gone(pid: int) -> bool:
    """Exited (a zombie waiting for init to reap it counts as exited)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_an_orphaned_model_server_is_adopted_and_stopped(tmp_path: Path) -> None:
    """A keeper killed with SIGKILL leaves its llama.cpp server running; the next process on
    that model dir adopts it (it was only joined, and never stopped, before) and stops it."""
    from stores.models.llama_server import STATE_FILE, local_llm_available, start_llama_server

    assert local_llm_available(), "the [local] extra (llama-cpp-python + model parts) is missing"
    model_dir = tmp_path / "models"
    owner = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from pathlib import Path\n"
         "from stores.models.llama_server import start_llama_server\n"
         f"start_llama_server(Path({str(model_dir)!r}), threads=1, timeout_s=300)\n"
         "print('ready', flush=True)\n"
         "time.sleep(3600)\n"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    orphan = 0
    try:
        assert owner.stdout is not None and owner.stdout.readline().strip() == "ready"
        import json

        orphan = int(json.loads((model_dir / STATE_FILE).read_text())["pid"])
        owner.kill()  # SIGKILL: its server is orphaned
        owner.wait(timeout=STOP_S)
        assert psutil.pid_exists(orphan)

        server = start_llama_server(model_dir, threads=1, timeout_s=300)
        assert server.adopted_pid == orphan and server.process is None
        assert httpx.get(server.base_url + "/models", timeout=10).status_code == 200
        server.stop()
        deadline = time.monotonic() + 30
        while not gone(orphan):
            assert time.monotonic() < deadline, "the adopted model server is still running"
            time.sleep(0.2)
    finally:
        if owner.poll() is None:
            owner.kill()
        if orphan and psutil.pid_exists(orphan):
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(orphan).kill()
