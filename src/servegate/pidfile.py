"""The node's pid file, `<prefix>/servegate.pid`: one running node per prefix, and how the CLI finds it.

The running node holds an flock on the file for its whole life (forked workers share it), so "does a node run
here?" is answered by the lock, not by guessing from a pid that may be stale or reused. A second `start` that
finds the lock taken leaves the file alone; a file left by a node that died is unlocked and simply taken over.
Stdlib only: `servegate start` and `stop` import this without typer.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import time
from pathlib import Path

NAME = "servegate.pid"


class AlreadyRunning(RuntimeError):
    def __init__(self, pid: int | None) -> None:
        super().__init__(f"servegate is already running (pid {pid})" if pid else "servegate is already running")
        self.pid = pid


def path(prefix: str) -> Path:
    return Path(prefix) / NAME


def _read_pid(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(fd, 32, 0).decode().strip())
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class PidFile:
    """Held by a running node: `acquire()` before anything else at start-up, `release()` on the way out."""

    def __init__(self, prefix: str) -> None:
        self.path = path(prefix)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Lock the file and write our pid, or raise AlreadyRunning without changing the file."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        pid: int | None = None
        # A CLI command (health, stop) may hold a shared lock for a moment, and a node that is exiting holds
        # its lock until its last worker is gone: retry briefly before calling the lock a running node.
        for _ in range(40):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                pid = _read_pid(fd)
                if pid is not None and _alive(pid):
                    os.close(fd)
                    raise AlreadyRunning(pid) from None
                time.sleep(0.05)
        else:
            os.close(fd)
            raise AlreadyRunning(pid)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None


def running_pid(prefix: str) -> int | None:
    """The pid of the node running under prefix, or None when none runs (no file, or nobody holds its lock)."""
    try:
        fd = os.open(path(prefix), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd) or None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def signal_node(prefix: str, sig: int) -> int | None:
    """Send sig to the node under prefix; its pid, or None when none runs."""
    pid = running_pid(prefix)
    if pid is None:
        return None
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return None
    return pid


def stop_node(prefix: str, timeout_s: float) -> tuple[int | None, bool]:
    """SIGTERM the node and wait until it (and its workers) are gone: (pid or None if none ran, stopped)."""
    pid = signal_node(prefix, signal.SIGTERM)
    if pid is None:
        return None, True
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if running_pid(prefix) is None:
            return pid, True
        time.sleep(0.1)
    return pid, False
