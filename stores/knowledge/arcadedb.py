"""The embedded graph server: ArcadeDB with its Bolt plugin, run as a child process.

It is what the app talks to when ``NEO4J_URI`` is not set, and what the tests use. The
process is a plain JVM started from the ``arcadedb-jvm`` wheel's own JRE (the system Java
is too old); we never import the ``arcadedb`` Python package, because importing it may boot
a JVM inside this process. Clients reach it exactly like Neo4j: Bolt URL, user, password,
database name (see DESIGN.md §4).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import secrets
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from stores.errors import ServiceUnavailable
from stores.processes import pid_alive

log = logging.getLogger(__name__)

DATABASE = "graph"
USER = "root"
PASSWORD_FILE = "root-password"
SECRET_ARGS_FILE = "jvm-secret.args"
STATE_FILE = "server.json"
LOG_FILE = "server.log"


def package_dir() -> Path:
    """Folder of the installed ``arcadedb`` package, found without importing it."""
    spec = importlib.util.find_spec("arcadedb")
    if spec is None or not spec.submodule_search_locations:
        raise ServiceUnavailable(
            "embedded graph server",
            "the arcadedb-jvm package is not installed; set NEO4J_URI or "
            "pip install arcadedb-jvm==26.11.1.dev2",
        )
    return Path(next(iter(spec.submodule_search_locations)))


def free_port() -> int:
    """A port the OS considers free right now (there is a small race until the JVM binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def root_password(data_dir: Path) -> str:
    """The data dir's root password, created on first use and kept (mode 0600).

    ArcadeDB records the root user on the first start of a root path and ignores a different
    password later, so the password must survive restarts; a file next to the data is the
    simplest durable place that only the owner can read.
    """
    path = data_dir / PASSWORD_FILE
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(password)
    return password


def _secret_args_file(data_dir: Path, password: str) -> Path:
    """Write the password into a 0600 java ``@argfile``.

    On the command line it would be readable by every local user through ``ps``; the JVM
    expands ``@file`` itself and never echoes it.
    """
    path = data_dir / SECRET_ARGS_FILE
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(f'"-Darcadedb.server.rootPassword={password}"\n')
    return path


def java_command(
    pkg: Path, data_dir: Path, *, secret_args: Path, bolt_port: int, http_port: int, heap: str
) -> list[str]:
    """The command line from DESIGN.md §4 (loopback only, one ``graph`` database)."""
    return [
        str(pkg / "jre" / "bin" / "java"),
        f"-Xmx{heap}",
        "--add-exports",
        "java.management/sun.management=ALL-UNNAMED",
        "--add-modules",
        "jdk.incubator.vector",
        f"-Darcadedb.server.rootPath={data_dir}",
        f"-Darcadedb.server.databaseDirectory={data_dir / 'databases'}",
        f"@{secret_args}",
        "-Darcadedb.server.httpIncomingHost=127.0.0.1",
        f"-Darcadedb.server.httpIncomingPort={http_port}",
        "-Darcadedb.server.plugins=Bolt:com.arcadedb.bolt.BoltProtocolPlugin",
        "-Darcadedb.bolt.host=127.0.0.1",
        f"-Darcadedb.bolt.port={bolt_port}",
        f"-Darcadedb.server.defaultDatabases={DATABASE}[{USER}]",
        "-Darcadedb.dateTimeImplementation=java.time.ZonedDateTime",
        "-cp",
        str(pkg / "jars" / "*"),
        "com.arcadedb.server.ArcadeDBServer",
    ]


@dataclass
class EmbeddedGraphServer:
    """A running ArcadeDB child process and how to reach it over Bolt."""

    uri: str
    password: str = field(repr=False)
    process: subprocess.Popen[bytes] | None = field(repr=False)
    """``None`` when we joined a server another process of this data dir started."""
    log_path: Path
    started_in_s: float
    bolt_port: int = 0
    user: str = USER
    database: str = DATABASE
    adopted: psutil.Process | None = field(default=None, repr=False)
    """A server whose starter died (SIGKILL): taken over, so this process stops it."""

    def alive(self) -> bool:
        if self.adopted is not None:
            return _running(self.adopted)
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, no shutdown hook: what a crash looks like (used by resilience tests)."""
        if self.adopted is not None:
            _halt(self.adopted, timeout=0)
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self, timeout: float = 15.0) -> None:
        """Ask the JVM to shut down cleanly (SIGTERM runs its shutdown hook), then kill it.

        A joined server belongs to the process that started it and is left running; an
        adopted one (its starter died) is ours to stop.
        """
        if self.adopted is not None:
            _halt(self.adopted, timeout=timeout)
            return
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.warning("graph server did not stop in %.0fs; killing it", timeout)
            self.process.kill()
            self.process.wait(timeout=5)


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _halt(proc: psutil.Process, timeout: float) -> None:
    """SIGTERM (after ``timeout`` s, SIGKILL) a server that is not our child."""
    try:
        if timeout > 0:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
                return
            except psutil.TimeoutExpired:
                log.warning("graph server did not stop in %.0fs; killing it", timeout)
        proc.kill()
        proc.wait(timeout=10)
    except psutil.NoSuchProcess:
        return


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _bolt_ready(uri: str, password: str) -> bool:
    """One ``RETURN 1`` over Bolt: the only proof that the server can really answer."""
    from neo4j import GraphDatabase

    try:
        # A bare session, not execute_query: the latter retries with back-off for up to 30 s.
        with (
            GraphDatabase.driver(uri, auth=(USER, password), connection_timeout=2.0) as driver,
            driver.session(database=DATABASE) as session,
        ):
            session.run("RETURN 1 AS ok").consume()
        return True
    except Exception:
        return False


def _read_state(data_dir: Path) -> dict[str, int] | None:
    try:
        state = json.loads((data_dir / STATE_FILE).read_text(encoding="utf-8"))
        return {key: int(value) for key, value in state.items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def _write_state(data_dir: Path, **state: int) -> None:
    path = data_dir / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state), encoding="utf-8")
    tmp.replace(path)


def _our_jvm(pid: int, data_dir: Path) -> psutil.Process | None:
    """The live ArcadeDB process ``pid`` serving ``data_dir`` (not a reused pid), if any."""
    try:
        proc = psutil.Process(pid)
        marker = f"-Darcadedb.server.rootPath={data_dir}"
        if marker in proc.cmdline() and proc.status() != psutil.STATUS_ZOMBIE:
            return proc
    except psutil.Error:
        pass
    return None


def _join_running(
    data_dir: Path, password: str, *, join: bool, timeout_s: float = 90.0
) -> EmbeddedGraphServer | None:
    """The server already running on this data dir, if it answers; stops an unusable orphan.

    ArcadeDB locks its database files, so a second JVM on the same directory cannot start;
    the CLI and the HTTP server share one instead, the way they share embedded Postgres.
    The state file names the JVM and its ``owner``, the process that started it (and stops
    it). A server whose owner is alive is joined (with ``join``) and left to its owner. A
    server whose owner died (SIGKILL) is an orphan: it is adopted if it answers, so this
    process stops it when done, and stopped otherwise, so a fresh one can start.
    """
    state = _read_state(data_dir)
    if state is None or "pid" not in state or "bolt_port" not in state:
        return None
    jvm = _our_jvm(state["pid"], data_dir)
    if jvm is None:
        return None
    owner = state.get("owner")
    orphan = owner is None or (owner != os.getpid() and not pid_alive(owner))
    if not orphan and not join:
        return None
    uri = f"bolt://127.0.0.1:{state['bolt_port']}"
    ready = _bolt_ready(uri, password)
    deadline = time.monotonic() + timeout_s
    while not ready and not orphan and time.monotonic() < deadline:
        # Its owner is still starting it: wait for that rather than race it for the files.
        time.sleep(0.25)
        if not _running(jvm) or not pid_alive(owner or 0):
            return None
        ready = _bolt_ready(uri, password)
    if not ready:
        if orphan:
            log.warning("stopping the orphaned graph server %d (it does not answer)", jvm.pid)
            _halt(jvm, timeout=15.0)
        return None
    server = EmbeddedGraphServer(
        uri=uri,
        password=password,
        process=None,
        log_path=data_dir / LOG_FILE,
        started_in_s=0.0,
        bolt_port=state["bolt_port"],
    )
    if orphan:
        log.warning("adopted the graph server %d its starter left behind", jvm.pid)
        server.adopted = jvm
        _write_state(data_dir, **{**state, "owner": os.getpid()})
    return server


def start_arcadedb(
    data_dir: Path,
    password: str | None = None,
    *,
    timeout_s: float = 90.0,
    heap: str = "256m",
    bolt_port: int | None = None,
    join: bool = True,
) -> EmbeddedGraphServer:
    """Start ArcadeDB on loopback ports with its data in ``data_dir``; wait until ready.

    Blocks until a Bolt query succeeds (2–3 s on a quiet box). Raises ``ServiceUnavailable``
    naming the server log if the process exits or does not answer in ``timeout_s``. With
    ``join`` a server already running on this data dir is reused (and not stopped by us).
    ``bolt_port`` pins the port, so a restarted server is reachable at the same URI.
    """
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    pkg = package_dir()
    java = pkg / "jre" / "bin" / "java"
    if not java.exists():
        raise ServiceUnavailable("embedded graph server", f"no bundled JRE at {java}")
    password = password or root_password(data_dir)
    running = _join_running(data_dir, password, join=join, timeout_s=timeout_s)
    if running is not None:
        log.info("using the embedded ArcadeDB already running on %s", running.uri)
        return running
    bolt_port, http_port = bolt_port or free_port(), free_port()
    log_path = data_dir / LOG_FILE
    cmd = java_command(
        pkg,
        data_dir,
        secret_args=_secret_args_file(data_dir, password),
        bolt_port=bolt_port,
        http_port=http_port,
        heap=heap,
    )
    t0 = time.perf_counter()
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(log_fd, "ab") as log_fh:
        # The log handle is inherited by the child; closing ours does not stop its output.
        process = subprocess.Popen(
            cmd,
            cwd=data_dir,
            stdin=subprocess.DEVNULL,
            stdout=log_fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the terminal is handled by us, not the JVM
        )
    # Recorded at once, with its owner: if this process is killed before the server is
    # ready, the next start finds the orphan (and stops or adopts it).
    _write_state(
        data_dir, pid=process.pid, bolt_port=bolt_port, http_port=http_port, owner=os.getpid()
    )
    uri = f"bolt://127.0.0.1:{bolt_port}"
    server = EmbeddedGraphServer(
        uri=uri,
        password=password,
        process=process,
        log_path=log_path,
        started_in_s=0.0,
        bolt_port=bolt_port,
    )
    deadline = t0 + timeout_s
    while True:
        if process.poll() is not None:
            raise ServiceUnavailable(
                "embedded graph server",
                f"ArcadeDB exited with code {process.returncode}; see {log_path}:\n"
                f"{_tail(log_path)}",
            )
        if _bolt_ready(uri, password):
            break
        if time.perf_counter() > deadline:
            server.stop()
            raise ServiceUnavailable(
                "embedded graph server",
                f"ArcadeDB did not answer on {uri} within {timeout_s:.0f}s; see {log_path}",
            )
        time.sleep(0.25)
    server.started_in_s = time.perf_counter() - t0
    log.info("embedded ArcadeDB ready on %s in %.2fs", uri, server.started_in_s)
    return server
