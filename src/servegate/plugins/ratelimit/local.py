"""`local` policy: counters shared by every worker of this node (see shm.py); exact per node."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from servegate.plugins.ratelimit import HitResult, Window, runtime
from servegate.plugins.ratelimit.shm import ProcessCounters, SharedCounters, table
from servegate.plugins.ratelimit.windows import EXPIRATION

# Calendar months/years can be a day longer than Kong's nominal 30/365 days: keep their slots a
# day past that so a live counter is never taken for expired.
_SLACK = {"month": 86400, "year": 86400}


def _d(text: str, size: int) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=size).digest()


_DIGEST_CACHE_MAX = 4096
_PROCESS: ProcessCounters | None = None


def _process_counters() -> ProcessCounters:
    """One table per process: every LocalPolicy (one per plugin instance and snapshot) shares it."""
    global _PROCESS
    if _PROCESS is None:
        _PROCESS = ProcessCounters()
    return _PROCESS


class LocalPolicy:
    __slots__ = ("_path", "_table", "_digests")

    def __init__(self, path: str | None = None) -> None:
        self._path = path
        self._table: SharedCounters | ProcessCounters | None = None
        # (route, service, identifier, periods) -> (stripe key, per-window key digests): the same
        # clients come back, so hashing is skipped for them; bounded by clearing when full.
        self._digests: dict[tuple[str, str, str, tuple[str, ...]], tuple[bytes, list[bytes]]] = {}

    def _tbl(self) -> SharedCounters | ProcessCounters:
        t = self._table
        if t is None:
            if self._path is None and runtime.workers == 1:
                t = self._table = _process_counters()
            else:
                t = self._table = table(self._path or runtime.counters_path())
        return t

    def _keys(self, route_id: str, service_id: str, identifier: str,
              periods: tuple[str, ...]) -> tuple[bytes, list[bytes]]:
        ck = (route_id, service_id, identifier, periods)
        hit = self._digests.get(ck)
        if hit is None:
            scope = f"ratelimit:{route_id}:{service_id}:{identifier}"
            hit = (_d(scope, 8), [_d(f"{scope}:{p}", 16) for p in periods])
            if len(self._digests) >= _DIGEST_CACHE_MAX:
                self._digests.clear()
            self._digests[ck] = hit
        return hit

    def hit(self, route_id: str, service_id: str, identifier: str, windows: Sequence[Window],
            now: int) -> HitResult:
        stripe_key, digests = self._keys(route_id, service_id, identifier, tuple(w[0] for w in windows))
        entries = [
            (kd, start, start + EXPIRATION[period] + _SLACK.get(period, 0), limit)
            for kd, (period, limit, start) in zip(digests, windows, strict=True)
        ]
        return self._tbl().hit(stripe_key, entries, now)
