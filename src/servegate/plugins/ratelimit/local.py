"""`local` policy: counters shared by every worker of this node (see shm.py); exact per node."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from servegate.plugins.ratelimit import HitResult, Window, runtime
from servegate.plugins.ratelimit.shm import SharedCounters, table
from servegate.plugins.ratelimit.windows import EXPIRATION

# Calendar months/years can be a day longer than Kong's nominal 30/365 days: keep their slots a
# day past that so a live counter is never taken for expired.
_SLACK = {"month": 86400, "year": 86400}


def _d(text: str, size: int) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=size).digest()


class LocalPolicy:
    __slots__ = ("_path", "_table")

    def __init__(self, path: str | None = None) -> None:
        self._path = path
        self._table: SharedCounters | None = None

    def _tbl(self) -> SharedCounters:
        t = self._table
        if t is None:
            t = self._table = table(self._path or runtime.counters_path())
        return t

    def hit(self, route_id: str, service_id: str, identifier: str, windows: Sequence[Window],
            now: int) -> HitResult:
        scope = f"ratelimit:{route_id}:{service_id}:{identifier}"
        entries = [
            (_d(f"{scope}:{period}", 16), start, start + EXPIRATION[period] + _SLACK.get(period, 0), limit)
            for period, limit, start in windows
        ]
        return self._tbl().hit(_d(scope, 8), entries, now)
