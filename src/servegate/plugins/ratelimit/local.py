"""`local` policy: counters shared by every worker of this node (see shm.py); exact per node."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from servegate.plugins.ratelimit import HitResult, Window, runtime
from servegate.plugins.ratelimit.shm import ProcessCounters, SharedCounters, table
from servegate.plugins.ratelimit.windows import EXPIRATION

# Calendar months/years can be a day longer than Kong's nominal 30/365 days: keep their slots a
# day past that so a live counter is never taken for expired.
_SLACK = {"month": 86400, "year": 86400}


def _d(text: str, size: int) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=size).digest()


_CLIENTS_MAX = 4096
_PROCESS: ProcessCounters | None = None


def _process_counters() -> ProcessCounters:
    """One table per process: every LocalPolicy (one per plugin instance and snapshot) shares it."""
    global _PROCESS
    if _PROCESS is None:
        _PROCESS = ProcessCounters()
    return _PROCESS


class LocalPolicy:
    __slots__ = ("_path", "_table", "_clients")

    def __init__(self, path: str | None = None) -> None:
        self._path = path
        self._table: SharedCounters | ProcessCounters | None = None
        # (route, service, identifier) -> (windows list, periods, stripe key, key digests, counter entries).
        # The same clients come back, so hashing is skipped for them, and within one second (the same
        # windows list, see RateLimitConf.windows) their counter entries are reused as they are. Entries
        # are replaced whole, never changed in place, so a thread reading one sees a consistent tuple.
        # Bounded by clearing when full.
        self._clients: dict[tuple[str, str, str], tuple[Any, ...]] = {}

    def _tbl(self) -> SharedCounters | ProcessCounters:
        t = self._table
        if t is None:
            if self._path is None and runtime.workers == 1:
                t = self._table = _process_counters()
            else:
                t = self._table = table(self._path or runtime.counters_path())
        return t

    def hit(self, route_id: str, service_id: str, identifier: str, windows: Sequence[Window],
            now: int) -> HitResult:
        ck = (route_id, service_id, identifier)
        c = self._clients.get(ck)
        if c is None or c[0] is not windows:
            c = self._client(ck, windows)
        return (self._table or self._tbl()).hit(c[2], c[4], now)

    def _client(self, ck: tuple[str, str, str], windows: Sequence[Window]) -> tuple[Any, ...]:
        periods = tuple(w[0] for w in windows)
        old = self._clients.get(ck)
        if old is not None and old[1] == periods:
            stripe, digests = old[2], old[3]
        else:
            scope = f"ratelimit:{ck[0]}:{ck[1]}:{ck[2]}"
            stripe, digests = _d(scope, 8), [_d(f"{scope}:{p}", 16) for p in periods]
            if len(self._clients) >= _CLIENTS_MAX:
                self._clients.clear()
        entries = [
            (kd, start, start + EXPIRATION[period] + _SLACK.get(period, 0), limit)
            for kd, (period, limit, start) in zip(digests, windows, strict=True)
        ]
        c = self._clients[ck] = (windows, periods, stripe, digests, entries)
        return c
