"""Counters for the rate-limiting `cluster` policy (Kong's ratelimiting_metrics table).

A counter row is keyed by (identifier, period, period_date, service_id, route_id); increments are a
single upsert `value = value + n`, so concurrent nodes never lose an update. Rows carry an expiry and
stale ones are deleted at most once a minute per store.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import Any

from servegate.schema.fields import UNIQUE_MAX_BYTES

from .backend import Backend, Dialect, Params
from .table import q

RATELIMIT_TABLE = "ratelimiting_metrics"
NIL_UUID = "00000000-0000-0000-0000-000000000000"
CLEANUP_EVERY_S = 60.0

# (identifier, period, period_start, service_id, route_id, ttl_s)
RateKey = tuple[str, str, float, str | None, str | None, float]


def ratelimit_ddl(dialect: Dialect) -> list[str]:
    int_t = dialect.column_type("integer")
    num_t = dialect.column_type("number")
    return [
        f"CREATE TABLE IF NOT EXISTS {q(RATELIMIT_TABLE)} (\n"
        f"  identifier TEXT NOT NULL, period TEXT NOT NULL, period_date {int_t} NOT NULL,\n"
        f"  service_id TEXT NOT NULL, route_id TEXT NOT NULL, value {int_t} NOT NULL DEFAULT 0,\n"
        f"  ttl {num_t},\n"
        f"  CONSTRAINT {q(RATELIMIT_TABLE + '_pkey')} "
        f"PRIMARY KEY (identifier, period, period_date, service_id, route_id)\n)",
        f"CREATE INDEX IF NOT EXISTS {q(RATELIMIT_TABLE + '_ttl_idx')} ON {q(RATELIMIT_TABLE)} (ttl)",
    ]


def stored_identifier(identifier: str) -> str:
    """The identifier as the primary key holds it. Header values and paths (limit_by header/path) can be
    longer than PostgreSQL's btree entries allow, or hold a NUL it cannot store: such ones are kept as
    their digest, on both stores alike, so every identifier counts the same everywhere."""
    try:
        raw = identifier.encode("utf-8")
    except UnicodeEncodeError:  # bytes that were not UTF-8 (surrogateescape)
        raw = b"\x00"
    if len(raw) <= UNIQUE_MAX_BYTES and b"\x00" not in raw:
        return identifier
    return "sha256:" + hashlib.sha256(identifier.encode("utf-8", "surrogatepass")).hexdigest()


def _order(key: RateKey) -> tuple[str, str, float, str, str]:
    return (key[0], key[1], key[2], key[3] or NIL_UUID, key[4] or NIL_UUID)


class RateLimitCounters:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._last_cleanup = 0.0

    async def incr(self, keys: Sequence[RateKey], value: int) -> None:
        now = time.time()
        async with self.backend.write() as conn:
            # a fixed order, so two nodes incrementing the same windows never lock them crosswise
            for identifier, period, start, service_id, route_id, ttl_s in sorted(keys, key=_order):
                p = Params(self.backend.dialect)
                await conn.execute(
                    f"INSERT INTO {q(RATELIMIT_TABLE)} "
                    "(identifier, period, period_date, service_id, route_id, value, ttl) VALUES "
                    f"({p(stored_identifier(identifier))}, {p(period)}, {p(int(start))}, {p(service_id or NIL_UUID)}, "
                    f"{p(route_id or NIL_UUID)}, {p(int(value))}, {p(now + float(ttl_s))}) "
                    "ON CONFLICT (identifier, period, period_date, service_id, route_id) "
                    f"DO UPDATE SET value = {q(RATELIMIT_TABLE)}.value + excluded.value",
                    p.values,
                )
            if now - self._last_cleanup >= CLEANUP_EVERY_S:
                self._last_cleanup = now
                p = Params(self.backend.dialect)
                await conn.execute(f"DELETE FROM {q(RATELIMIT_TABLE)} WHERE ttl < {p(now)}", p.values)

    async def get(
        self,
        identifier: str,
        periods: Sequence[tuple[str, float]],
        service_id: str | None,
        route_id: str | None,
    ) -> dict[str, int]:
        result = {period: 0 for period, _ in periods}
        if not periods:
            return result
        p = Params(self.backend.dialect)
        head = (
            f"SELECT period, period_date, value FROM {q(RATELIMIT_TABLE)} WHERE identifier = {p(stored_identifier(identifier))} "
            f"AND service_id = {p(service_id or NIL_UUID)} AND route_id = {p(route_id or NIL_UUID)}"
        )
        ors = " OR ".join(f"(period = {p(period)} AND period_date = {p(int(start))})" for period, start in periods)
        async with self.backend.read() as conn:
            rows: list[dict[str, Any]] = await conn.fetch(f"{head} AND ({ors})", p.values)
        for r in rows:
            result[r["period"]] = int(r["value"])
        return result
