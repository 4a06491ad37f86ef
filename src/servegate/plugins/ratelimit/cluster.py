"""`cluster` policy: counters in PostgreSQL's `ratelimiting_metrics`, shared by every node.

One transaction per request: an upsert of every window row (`value + 1`, rows taken in a fixed
order so concurrent requests cannot deadlock) RETURNING the new values; the row locks serialize
requests on the same counters, and when any window is over its limit the transaction rolls back,
so a rejected request is not counted and exactly `limit` requests are admitted per window.
Without PostgreSQL (SQLite store: a single node) the node-wide local counters are used instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import weakref
from collections.abc import Sequence
from typing import Any

import asyncpg

from servegate.plugins.ratelimit import HitResult, Window, runtime
from servegate.plugins.ratelimit.local import LocalPolicy
from servegate.plugins.ratelimit.windows import EXPIRATION
from servegate.schema.fields import UNIQUE_MAX_BYTES

log = logging.getLogger("servegate.plugins.rate-limiting")

# Table shape as the core 000_base migration creates it (store/core_migrations.py): period_date = window start
# in epoch seconds, service_id/route_id text (nil UUID when the plugin has none), ttl = expiry in
# epoch seconds.
_UPSERT = """
INSERT INTO ratelimiting_metrics AS m (identifier, period, period_date, service_id, route_id, value, ttl)
SELECT $1::text, t.period, t.start, $2::text, $3::text, 1,
       extract(epoch FROM clock_timestamp())::float8 + t.expire
  FROM unnest($4::text[], $5::bigint[], $6::float8[]) WITH ORDINALITY AS t(period, start, expire, ord)
 ORDER BY t.ord
ON CONFLICT (identifier, period, period_date, service_id, route_id)
DO UPDATE SET value = m.value + EXCLUDED.value
RETURNING m.period, m.value
"""

_CLEANUP = "DELETE FROM ratelimiting_metrics WHERE ttl < extract(epoch FROM clock_timestamp())::float8"
_CLEANUP_EVERY_S = 60.0


class _Rejected(Exception):  # noqa: N818 - rolls the transaction back
    pass


# After PostgreSQL could not be reached, requests fail fast for this long instead of each one
# waiting for its own connect timeout (fault_tolerant then decides what the client sees).
_RETRY_CONNECT_AFTER_S = 1.0


class _PoolEntry:
    __slots__ = ("pool", "lock", "last_cleanup", "task", "down_until", "down_error")

    def __init__(self) -> None:
        self.pool: asyncpg.Pool | None = None
        self.lock = asyncio.Lock()
        self.last_cleanup = time.monotonic()
        self.task: asyncio.Task[Any] | None = None
        self.down_until = 0.0
        self.down_error: Exception | None = None


# Pools are per event loop (a pool cannot be shared across loops) and per DSN.
_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _PoolEntry]] = weakref.WeakKeyDictionary()


async def _pool(dsn: str) -> _PoolEntry:
    loop = asyncio.get_running_loop()
    entry = _pools.setdefault(loop, {}).get(dsn)
    if entry is None:
        entry = _pools[loop][dsn] = _PoolEntry()
    if entry.pool is None:
        async with entry.lock:
            if entry.pool is None:
                if time.monotonic() < entry.down_until and entry.down_error is not None:
                    raise entry.down_error
                timeout = runtime.pg_timeout_s
                try:
                    entry.pool = await asyncpg.create_pool(
                        dsn, min_size=1, max_size=10, timeout=timeout, command_timeout=timeout)
                except Exception as e:
                    entry.down_until, entry.down_error = time.monotonic() + _RETRY_CONNECT_AFTER_S, e
                    raise
    return entry


async def _cleanup(pool: asyncpg.Pool) -> None:
    try:
        await pool.execute(_CLEANUP)
    except Exception as e:  # housekeeping only
        log.warning("rate-limiting: expired counters cleanup failed: %s", e)


async def close_pools() -> None:
    """Close this loop's pools (server shutdown, tests)."""
    for entry in _pools.pop(asyncio.get_running_loop(), {}).values():
        if entry.pool is not None:
            await entry.pool.close()


def stored_identifier(identifier: str) -> str:
    """The identifier as the counter row's key holds it. limit_by header and path values come from the
    client and may be longer than a PostgreSQL btree entry allows, hold a NUL it cannot store, or bytes
    that are not UTF-8 (surrogate escapes): those are kept as their digest, so they still count."""
    try:
        raw = identifier.encode("utf-8")
    except UnicodeEncodeError:
        raw = b"\x00"
    if len(raw) <= UNIQUE_MAX_BYTES and b"\x00" not in raw:
        return identifier
    return "sha256:" + hashlib.sha256(identifier.encode("utf-8", "surrogatepass")).hexdigest()


class ClusterPolicy:
    __slots__ = ("_dsn", "_local")

    def __init__(self, dsn: str | None = None) -> None:
        self._dsn = dsn
        self._local: LocalPolicy | None = None

    def hit(self, route_id: str, service_id: str, identifier: str, windows: Sequence[Window],
            now: int) -> Any:
        dsn = self._dsn or runtime.pg_dsn
        if dsn is None:
            if self._local is None:
                self._local = LocalPolicy()
            return self._local.hit(route_id, service_id, identifier, windows, now)
        return self._hit(dsn, route_id, service_id, identifier, windows)

    async def _hit(self, dsn: str, route_id: str, service_id: str, identifier: str,
                   windows: Sequence[Window]) -> HitResult:
        entry = await _pool(dsn)
        assert entry.pool is not None
        periods = [w[0] for w in windows]
        starts = [int(w[2]) for w in windows]
        expires = [float(EXPIRATION[w[0]]) for w in windows]
        values: dict[str, int] = {}
        admitted = True
        async with entry.pool.acquire() as conn:
            try:
                async with conn.transaction():
                    rows = await conn.fetch(_UPSERT, stored_identifier(identifier), service_id, route_id, periods, starts, expires)
                    values = {r["period"]: r["value"] for r in rows}
                    if any(values[p] - 1 >= limit for p, limit, _ in windows):
                        raise _Rejected
            except _Rejected:
                admitted = False
        if time.monotonic() - entry.last_cleanup > _CLEANUP_EVERY_S and (entry.task is None or entry.task.done()):
            entry.last_cleanup = time.monotonic()
            entry.task = asyncio.get_running_loop().create_task(_cleanup(entry.pool))
        return [values[p] - 1 for p, _, _ in windows], admitted
