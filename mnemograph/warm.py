"""The warm keeper: embedded services that outlive one CLI call, until they sit idle.

``mnemograph chat -m "…"`` is a process per message. Starting embedded PostgreSQL, the graph
server and the 1.1 GB local model for each one would cost the user most of a minute every
time, so the first call starts a detached keeper process that owns those servers; later
calls join them (PostgreSQL by its data dir, ArcadeDB and llama.cpp by the state files they
leave) and touch an activity file. The keeper stops everything when nothing touched it for
``Settings.keep_warm_s`` seconds, on SIGTERM, or on ``mnemograph stop``.

Only what is embedded is kept: a configured ``DATABASE_URL``, ``NEO4J_URI`` or OpenAI
endpoint needs no keeper. Run as ``python -m mnemograph.warm``; the settings come from the
environment it inherits.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stores.errors import ServiceUnavailable
from stores.settings import Settings, get_settings

log = logging.getLogger(__name__)

STATE_FILE = "warm.json"
ACTIVITY_FILE = "warm.activity"
LOCK_FILE = "warm.lock"
LOG_FILE = "warm.log"
POLL_S = 1.0


@dataclass(frozen=True)
class Needs:
    """Which embedded services this configuration uses (what a keeper would hold)."""

    postgres: bool
    graph: bool
    model: bool

    @property
    def any(self) -> bool:
        return self.postgres or self.graph or self.model


def needs(settings: Settings) -> Needs:
    from stores.models.llama_server import local_llm_available

    local_model = (
        settings.model != "fake"
        and settings.openai_api_key is None
        and settings.openai_base_url is None
        and local_llm_available()
    )
    return Needs(
        postgres=settings.database_url is None,
        graph=settings.neo4j_uri is None,
        model=local_model,
    )


def _paths(settings: Settings) -> tuple[Path, Path, Path, Path]:
    base = settings.data_dir.resolve()
    return base / STATE_FILE, base / ACTIVITY_FILE, base / LOCK_FILE, base / "logs" / LOG_FILE


def read_state(settings: Settings) -> dict[str, Any] | None:
    """The keeper's state file, if a keeper process is alive."""
    state_path = _paths(settings)[0]
    try:
        state: dict[str, Any] = json.loads(state_path.read_text(encoding="utf-8"))
        os.kill(int(state["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return state


def _write_state(path: Path, **state: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), **state}), encoding="utf-8")
    tmp.replace(path)


def touch(settings: Settings) -> None:
    """Mark the keeper as in use now (its idle clock restarts)."""
    activity = _paths(settings)[1]
    activity.parent.mkdir(parents=True, exist_ok=True)
    activity.touch()


@contextlib.contextmanager
def _spawn_lock(path: Path) -> Iterator[None]:
    """One CLI process at a time decides whether to start a keeper."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_warm(
    settings: Settings | None = None,
    *,
    on_stage: Callable[[str], None] = lambda stage: None,
    timeout_s: float = 1800.0,
) -> float | None:
    """Make sure a keeper holds this configuration's embedded services; wait until ready.

    Returns the seconds spent starting them (``None`` when a ready keeper was found or none is
    needed). ``on_stage`` receives each stage the keeper reports ("starting PostgreSQL", …),
    so a first start never leaves the user in silence. Raises ``ServiceUnavailable`` with the
    keeper's log if it fails.
    """
    settings = settings or get_settings()
    if not settings.keep_warm_s or not needs(settings).any:
        return None
    state_path, _, lock_path, log_path = _paths(settings)
    with _spawn_lock(lock_path):
        state = read_state(settings)
        if state is not None and state.get("ready"):
            touch(settings)
            return None
        t0 = time.monotonic()
        if state is None:
            state_path.unlink(missing_ok=True)
            log_path.parent.mkdir(parents=True, exist_ok=True)
            touch(settings)
            with log_path.open("ab") as log_fh:
                subprocess.Popen(
                    [sys.executable, "-m", "mnemograph.warm"],
                    stdin=subprocess.DEVNULL,
                    stdout=log_fh,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # outlives this CLI call and its terminal's Ctrl-C
                    env=dict(os.environ, MNEMOGRAPH_DATA_DIR=str(settings.data_dir.resolve())),
                )
        shown = ""
        while True:
            current = read_state(settings)
            if current is not None:
                if current.get("stage") not in (None, "ready", shown):
                    shown = current["stage"]
                    on_stage(shown)
                if current.get("ready"):
                    touch(settings)
                    return time.monotonic() - t0
            elif state_path.exists() or time.monotonic() - t0 > 30:
                failed = _failure(state_path)
                raise ServiceUnavailable(
                    "embedded services", f"{failed or 'the keeper exited'}; see {log_path}"
                )
            if time.monotonic() - t0 > timeout_s:
                raise ServiceUnavailable("embedded services", f"not ready; see {log_path}")
            time.sleep(0.2)


def _failure(state_path: Path) -> str:
    try:
        return str(json.loads(state_path.read_text(encoding="utf-8")).get("error", ""))
    except (OSError, ValueError):
        return ""


def stop_warm(settings: Settings | None = None, *, timeout_s: float = 60.0) -> bool:
    """Stop the keeper and the servers it holds; ``False`` when none was running."""
    settings = settings or get_settings()
    state = read_state(settings)
    if state is None:
        return False
    pid = int(state["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    return True


def _idle_for(activity: Path) -> float:
    try:
        return time.time() - activity.stat().st_mtime
    except OSError:
        return float("inf")


@contextlib.contextmanager
def holding(settings: Settings, every_s: float = 30.0) -> Iterator[None]:
    """Keep the keeper from going idle while this process uses its servers (a long chat)."""
    import threading

    done = threading.Event()

    def beat() -> None:
        while not done.wait(every_s):
            with contextlib.suppress(OSError):
                touch(settings)

    thread = threading.Thread(target=beat, name="mnemograph-warm-touch", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()


def _try_lock(path: Path, timeout_s: float) -> Any:
    """The spawn lock within ``timeout_s``, or ``None`` (a caller stuck waiting on us)."""
    fh = path.open("a")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fh
        except BlockingIOError:
            if time.monotonic() > deadline:
                fh.close()
                return None
            time.sleep(0.1)


def keep(settings: Settings) -> None:
    """The keeper's body: start what is needed, report stages, then wait for idleness.

    It stops holding the spawn lock, so no CLI call joins a server that is going away and no
    new keeper starts until this one's servers are down.
    """
    from stores.knowledge.arcadedb import start_arcadedb
    from stores.models.llama_server import ensure_model, start_llama_server
    from stores.postgres.embedded import start_embedded_postgres

    state_path, activity, lock_path, _ = _paths(settings)
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    signal.signal(signal.SIGINT, lambda signum, frame: stopping.append(signum))
    want = needs(settings)
    stops: list[Callable[[], None]] = []
    started = time.monotonic()
    failed = False

    def stage(text: str) -> None:
        log.warning("%s", text)
        _write_state(state_path, stage=text, ready=False)

    def idle() -> bool:
        return bool(stopping) or _idle_for(activity) >= settings.keep_warm_s

    lock = None
    try:
        if want.postgres:
            stage("starting PostgreSQL")
            pg = start_embedded_postgres(settings.pg_data_dir, keep_running=False)
            stops.append(pg.release)
        if want.graph:
            stage("starting the graph server")
            graph = start_arcadedb(settings.graph_data_dir)
            stops.append(graph.stop)
        if want.model:
            stage("assembling and checking the packaged model (1.1 GB)")
            ensure_model(settings.model_dir)
            stage("loading the model")
            llm = start_llama_server(
                settings.model_dir,
                port=settings.local_llm_port,
                threads=settings.local_llm_threads,
                timeout_s=600,
            )
            stops.append(llm.stop)
        took = time.monotonic() - started
        _write_state(state_path, stage="ready", ready=True, started_in_s=round(took, 1))
        log.warning("ready in %.1f s; stopping after %.0f s idle", took, settings.keep_warm_s)
        while True:
            while not idle():
                time.sleep(POLL_S)
            lock = _try_lock(lock_path, 5.0)
            if stopping or idle():  # re-checked under the lock: a caller may just have come
                break
            if lock is not None:
                lock.close()
                lock = None
    except Exception as exc:
        failed = True
        log.exception("keeper failed")
        _write_state(state_path, stage="failed", ready=False, error=str(exc)[:500])
        raise
    finally:
        for stop in reversed(stops):
            try:
                stop()
            except Exception:
                log.exception("could not stop an embedded service")
        if not failed:
            state_path.unlink(missing_ok=True)
        if lock is not None:
            lock.close()
        log.warning("stopped")


def main() -> None:
    """``python -m mnemograph.warm``."""
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr
    )
    keep(get_settings())


if __name__ == "__main__":
    main()
