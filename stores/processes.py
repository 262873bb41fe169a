"""Processes this package starts and may have to adopt: the embedded PostgreSQL, the graph
server's JVM and the local model server. One liveness test and one stop for all three, so
an orphan left by a SIGKILLed owner is judged and stopped the same way everywhere."""

from __future__ import annotations

import contextlib
import signal
import time

import psutil


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process; a zombie (exited, not yet reaped) is not."""
    if pid <= 0:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # exists but cannot be inspected (another user's): alive
        return True


def stop_pid(pid: int, timeout_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout_s``, for a process that is not our child."""
    with contextlib.suppress(psutil.Error):
        psutil.Process(pid).send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(psutil.Error):
        psutil.Process(pid).kill()
