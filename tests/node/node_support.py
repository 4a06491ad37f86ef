"""Helpers for node-hook tests: a node running the nodetest plugin, its event file, its listening ports."""

from __future__ import annotations

import http.client
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from helpers import Servegate

RUN_NODE = str(Path(__file__).with_name("run_node.py"))


def node(tmp_path: Path, workers: int = 1, **env: str) -> Servegate:
    events = tmp_path / "events"
    events.mkdir(exist_ok=True)
    return Servegate(prefix=str(tmp_path / "prefix"), workers=workers, argv=[RUN_NODE],
                     extra_env={"NODETEST_DIR": str(events), **env})


def events(sg: Servegate) -> list[list[str]]:
    path = Path(sg.prefix or "").parent / "events" / "events.log"
    try:
        return [line.split() for line in path.read_text().splitlines() if line]
    except FileNotFoundError:
        return []


def wait_for(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def get(port: int, path: str, method: str = "GET", body: bytes | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection: (status, headers with lower-case names, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def listening_ports(pid: int) -> set[int]:
    """TCP ports the processes `pid` and its children listen on (from /proc: no tool needed)."""
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    inodes: set[str] = set()
    for p in pids:
        for fd in Path(f"/proc/{p}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports
