"""Processes under test: start pinned, measure CPU and RSS over the process tree, stop the whole group."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def _children(pid: int) -> list[int]:
    out: list[int] = []
    task_dir = Path(f"/proc/{pid}/task")
    try:
        for task in task_dir.iterdir():
            text = (task / "children").read_text()
            out.extend(int(x) for x in text.split())
    except OSError:
        pass
    return out


def tree(pid: int) -> list[int]:
    """pid and all its descendants (alive now)."""
    pids, stack = [], [pid]
    while stack:
        p = stack.pop()
        pids.append(p)
        stack.extend(_children(p))
    return pids


def cpu_seconds(pid: int) -> float:
    """utime + stime of the tree; exited children are not included."""
    total = 0
    for p in tree(pid):
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def rss_kb(pid: int) -> int:
    total = 0
    for p in tree(pid):
        try:
            statm = Path(f"/proc/{p}/statm").read_text().split()
        except OSError:
            continue
        total += int(statm[1]) * PAGE_KB
    return total


class Proc:
    """A started process group, optionally pinned to a CPU set."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cpus: set[int] | None,
        env: Mapping[str, str] | None = None,
        log_path: Path,
        cwd: str | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_path
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        self.started_at = time.monotonic()
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()

        def pin() -> None:
            if cpus is not None:
                os.sched_setaffinity(0, cpus)

        self.popen = subprocess.Popen(
            list(argv),
            env=full_env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=pin,
            cwd=cwd,
        )
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 3) -> str:
        """Last meaningful log lines (skips decoration such as rich's box drawing)."""
        try:
            data = self.log_path.read_bytes()[-8192:]
        except OSError:
            return ""
        text = [ln.strip(" │|╭╰─╮╯") for ln in data.decode("utf-8", "replace").splitlines()]
        keep = [ln for ln in text if any(ch.isalnum() for ch in ln)]
        return " | ".join(keep[-lines:])[:400]

    def stop(self, timeout: float = 8.0) -> None:
        """SIGTERM to the group this process leads, SIGKILL after timeout."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # the group may still have members (workers) after the leader exits
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.popen.wait(2)
        except subprocess.TimeoutExpired:
            pass
        self.log.close()


class Sampler:
    """Samples the tree RSS every `interval` seconds in a thread; `peak_kb` after stop()."""

    def __init__(self, pid: int | None, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.pid is not None:
                self.peak_kb = max(self.peak_kb, rss_kb(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
