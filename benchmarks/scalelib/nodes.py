"""`servegate start` processes for the scale benchmark: pinned or not, any worker count, on a given database.

Reuses benchlib: Proc (process group, pinning, stop), free_port, the servegate command lookup, the proxied-200
wait, and the tree RSS. Every node listens on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from benchlib.load import Target, post
from benchlib.procs import PAGE_KB, Proc, rss_kb, tree
from benchlib.systems import ALL_CPUS, PROXY_CPUS, Servegate, free_port

from .common import Deadline
from .dbs import Database


class NodeFailed(RuntimeError):
    pass


def servegate_binary() -> str:
    # benchlib's lookup (the venv's `servegate` next to this Python, else PATH); it needs no instance state
    return Servegate(1, False)._binary()


class Node:
    """One started node: its proxy and admin ports, process group and start-up time."""

    def __init__(
        self, name: str, db: Database, workdir: Path, *, workers: int, pinned: bool, pythonpath: str | None,
        cpus: set[int] | None = None,
    ) -> None:
        self.name = name
        self.workers = workers
        self.port = free_port()
        self.admin_port = free_port()
        self.prefix = workdir / name
        self.prefix.mkdir(parents=True, exist_ok=True)
        env = {
            **db.env(),
            "SERVEGATE_PROXY_LISTEN": f"127.0.0.1:{self.port}",
            "SERVEGATE_ADMIN_LISTEN": f"127.0.0.1:{self.admin_port}",
            "SERVEGATE_STATUS_LISTEN": "off",
            "SERVEGATE_PREFIX": str(self.prefix),
            "SERVEGATE_WORKERS": str(workers),
            "SERVEGATE_PROXY_ACCESS_LOG": "off",
            # stops are not measured: don't wait 30 s for keep-alive clients to leave
            "SERVEGATE_GRACEFUL_TIMEOUT": "1",
        }
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        if cpus is None:
            cpus = PROXY_CPUS if pinned else ALL_CPUS
        self.proc = Proc(name, [servegate_binary(), "start"], cpus=cpus, env=env, log_path=self.prefix / "run.log")
        self.startup_s: float | None = None

    def admin_url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.admin_port}{path}"

    def target(self, apikey: str) -> Target:
        return Target(self.port, headers={"apikey": apikey})

    def wait_ready(self, apikey: str, deadline_s: float) -> float:
        """Admin API answers and a proxied request with `apikey` gets 200 on `workers * 5` fresh connections in
        a row (so, very likely, every worker has its snapshot). Returns the start-up time in seconds."""
        deadline = Deadline(deadline_s)
        while not self._admin_ok():
            self._check(deadline, "admin API")
            time.sleep(0.05)
        need, streak = self.workers * 5, 0
        while streak < need:
            self._check(deadline, "proxied 200")
            try:
                status, _ = post(self.target(apikey), timeout=5.0)
            except OSError:
                status = 0
            streak = streak + 1 if status == 200 else 0
            if status != 200:
                time.sleep(0.02)
        self.startup_s = time.monotonic() - self.proc.started_at
        return self.startup_s

    def _check(self, deadline: Deadline, what: str) -> None:
        if not self.proc.alive():
            raise NodeFailed(f"{self.name} exited: {self.proc.log_tail()}")
        if deadline.passed():
            raise NodeFailed(f"{self.name}: no {what} in time: {self.proc.log_tail()}")

    def _admin_ok(self) -> bool:
        try:
            with urllib.request.urlopen(self.admin_url("/"), timeout=2) as resp:
                return bool(resp.status == 200)
        except (OSError, urllib.error.HTTPError):
            return False

    def status(self) -> dict[str, Any]:
        """GET /status (the cache counters live under "servegate" -> "caches" when the node has them)."""
        try:
            with urllib.request.urlopen(self.admin_url("/status"), timeout=10) as resp:
                return dict(json.loads(resp.read()))
        except (OSError, ValueError):
            return {}

    def rss(self) -> dict[str, float | list[float]]:
        """Tree RSS in MB, and each worker's (the master's children) when workers > 1."""
        out: dict[str, float | list[float]] = {"tree_mb": rss_kb(self.proc.pid) / 1024}
        if self.workers > 1:
            out["worker_mb"] = [rss_kb(p) / 1024 for p in tree(self.proc.pid)[1:]]
            out["master_mb"] = _own_rss_kb(self.proc.pid) / 1024
        return out

    def stop(self) -> None:
        self.proc.stop()


def _own_rss_kb(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KB
    except OSError:
        return 0
