"""Where the prometheus plugin's numbers live: plain dicts per worker, a file per worker, merged at scrape time.

The log phase of every request on a route with the plugin adds to this process's `VALUES` (dict lookups and
additions, no lock, no syscall). Once a second (`FLUSH_INTERVAL_S`, Kong's counter sync interval) a worker
timer writes all of its values, as they are, to `<prefix>/prometheus/worker-<id>.metrics` (written aside, then
renamed over: a reader sees the old file or the new one, never half of one). The process serving `/metrics`
(the Admin API's: the master of a multi-worker node, or the single process) reads every worker's file and adds
them up; its own values, when it is a worker too, it reads from memory. So the node-wide view lags a worker by at
most one flush interval, and a scrape costs one file read per worker.

Values are cumulative from the node's start. A reload (SIGHUP) keeps the worker processes, hence `VALUES`; a
file is only a copy of them. `NODE_TOKEN`, set when this module is first imported (in the node's first process,
before the workers fork, so all of them share it), is written into every file: the reader ignores files a
previous run of a node left under the same prefix.

A cell is a float for counters and gauges; for a histogram a list: the count of observations per bucket (not
cumulative, the +Inf bucket last), then their sum.
"""

from __future__ import annotations

import marshal
import os
import time
from typing import Any

from servegate.plugins.prometheus.families import ALL, HISTOGRAM, STREAMS_IN_FLIGHT, WORKER_FAMILIES

FLUSH_INTERVAL_S = 1.0
DIRECTORY = "prometheus"
_FORMAT = 1

NODE_TOKEN = f"{os.getpid()}-{time.time_ns()}"

Series = dict[tuple[str, ...], Any]


class Values:
    """One process's accumulated values: `series[family name][label values] -> cell`."""

    __slots__ = ("series", "changes")

    def __init__(self) -> None:
        self.series: dict[str, Series] = {f.name: {} for f in WORKER_FAMILIES}
        # changes[0] is bumped by every log call: a flush with nothing new writes nothing. (A list cell: the
        # compiled log phase adds to it without a Python attribute write.)
        self.changes = [0]


VALUES = Values()
# Streams in progress in this process: record -> its consumer label (counted into a gauge at flush and scrape).
LIVE: dict[Any, str] = {}
# A finished record left here (its log phase never ran) is dropped after this long.
_LIVE_GRACE_S = 10.0


def in_flight(labels_of: Any) -> Series:
    """The streams-in-flight gauge of this process, from LIVE; drops records finished long ago."""
    out: Series = {}
    stale = []
    now = time.monotonic()
    for rec, consumer in LIVE.items():
        if rec.finished:
            t_end = rec.t_end
            if t_end is None or now - t_end > _LIVE_GRACE_S:
                stale.append(rec)
            continue
        key = labels_of(rec, consumer)
        out[key] = out.get(key, 0) + 1
    for rec in stale:
        LIVE.pop(rec, None)
    return out


class WorkerFile:
    """A worker's file: `write` from the worker, `read` from the process serving /metrics."""

    def __init__(self, prefix: str, worker_id: int) -> None:
        self.directory = os.path.join(prefix, DIRECTORY)
        self.path = os.path.join(self.directory, f"worker-{worker_id}.metrics")
        self.written = -1

    def write(self, series: dict[str, Series]) -> None:
        data = marshal.dumps((_FORMAT, NODE_TOKEN, os.getpid(), series))
        tmp = self.path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)

    def read(self) -> tuple[int, dict[str, Series]] | None:
        """(pid, series) of this node's worker, or None (no file yet, one from an earlier run, unreadable)."""
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except OSError:
            return None
        try:
            fmt, token, pid, series = marshal.loads(raw)
        except (ValueError, EOFError, TypeError):
            return None
        if fmt != _FORMAT or token != NODE_TOKEN or not isinstance(series, dict):
            return None
        return pid, series


class Local:
    """This process's part as a worker: which worker it is and its file (None outside a worker, e.g. the master
    of a multi-worker node, which serves /metrics but no proxy)."""

    worker_id: int | None = None
    file: WorkerFile | None = None
    labels_of: Any = None
    # Brings VALUES up to date with counters kept elsewhere (record.sync), before they are written or read.
    sync: Any = None


def attach(prefix: str, worker_id: int, labels_of: Any, sync: Any = None) -> None:
    """Called by init_worker (again after a reload: the values stay)."""
    Local.worker_id = worker_id
    Local.labels_of = labels_of
    Local.sync = sync
    file = WorkerFile(prefix, worker_id)
    os.makedirs(file.directory, mode=0o700, exist_ok=True)
    Local.file = file
    flush(force=True)  # the scraper learns this worker's pid even before its first request


def flush(force: bool = False) -> None:
    """Write this worker's values to its file when anything changed (streams in progress always count)."""
    file = Local.file
    if file is None:
        return
    if not force and file.written == VALUES.changes[0] and not LIVE:
        return
    if Local.sync is not None:
        Local.sync()
    series = dict(VALUES.series)
    series[STREAMS_IN_FLIGHT.name] = in_flight(Local.labels_of)
    file.written = VALUES.changes[0]
    file.write(series)


def merge(into: dict[str, Series], series: dict[str, Series]) -> None:
    """Add a worker's series to `into` (cells of `into` are its own: the worker's are never changed)."""
    for name, cells in series.items():
        family = ALL.get(name)
        if family is None or not isinstance(cells, dict):
            continue
        dst = into.setdefault(name, {})
        if family.kind == HISTOGRAM:
            for labels, cell in cells.items():
                cur = dst.get(labels)
                if cur is None:
                    dst[labels] = list(cell)
                elif len(cur) == len(cell):
                    for i, v in enumerate(cell):
                        cur[i] += v
        else:
            for labels, v in cells.items():
                dst[labels] = dst.get(labels, 0) + v


def node_values(prefix: str, workers: int) -> tuple[dict[str, Series], list[int]]:
    """Every worker's values added up, and the workers' pids: this process's own from memory, the others' from
    their files."""
    merged: dict[str, Series] = {}
    pids: list[int] = []
    for worker_id in range(workers):
        if worker_id == Local.worker_id:
            if Local.sync is not None:
                Local.sync()
            own = dict(VALUES.series)
            own[STREAMS_IN_FLIGHT.name] = in_flight(Local.labels_of)
            merge(merged, own)
            pids.append(os.getpid())
            continue
        got = WorkerFile(prefix, worker_id).read()
        if got is not None:
            pids.append(got[0])
            merge(merged, got[1])
    return merged, pids
