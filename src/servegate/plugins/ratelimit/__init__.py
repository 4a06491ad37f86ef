"""Rate-limit counter policies (local, cluster, redis) and their process-wide runtime settings.

Every policy offers one operation, `hit(route_id, service_id, identifier, windows, now)`:
atomically read each window's usage and, only when every window still has room, count this
request in all of them. It returns (usage before this request per window, admitted). `local`
answers synchronously; `cluster` and `redis` return an awaitable.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

# (period, limit, window start in epoch seconds)
Window = tuple[str, float, int]
HitResult = tuple[list[int], bool]

EMPTY_UUID = "00000000-0000-0000-0000-000000000000"


class Policy(Protocol):
    def hit(self, route_id: str, service_id: str, identifier: str, windows: Sequence[Window],
            now: int) -> HitResult | Awaitable[HitResult]: ...


@dataclass
class Runtime:
    """Where node-wide state lives; set once per process by the server (`configure`)."""

    prefix: str | None = None
    pg_dsn: str | None = None
    # Connect and statement timeout for the cluster policy (settings.pg_timeout, ms).
    pg_timeout_s: float = 5.0
    # Worker processes on this node; with exactly one, local counters need not be shared.
    # 0 = unknown: use the shared table, which is exact whatever the count.
    workers: int = 0

    def counters_path(self) -> str:
        base = self.prefix or os.path.join(os.path.expanduser("~"), ".servegate")
        return os.path.join(base, "ratelimit-counters.shm")


runtime = Runtime()


def configure(*, prefix: str | None = None, pg_dsn: str | None = None, pg_timeout_s: float = 5.0,
              workers: int = 0) -> None:
    runtime.prefix = prefix
    runtime.pg_dsn = pg_dsn
    runtime.pg_timeout_s = pg_timeout_s
    runtime.workers = workers


def configure_from_settings(settings: Any) -> None:
    """Use the node's prefix for local counters, and its PostgreSQL (if any) for `cluster`."""
    dsn = settings.pg_dsn() if getattr(settings, "database", None) == "postgres" else None
    configure(prefix=settings.prefix, pg_dsn=dsn, pg_timeout_s=settings.pg_timeout_ms / 1000.0,
              workers=int(getattr(settings, "workers", 0) or 0))


def make_policy(name: str, redis_conf: dict[str, Any] | None) -> Policy:
    if name == "redis":
        from servegate.plugins.ratelimit.redis_policy import RedisPolicy

        return RedisPolicy(redis_conf or {})
    if name == "cluster":
        from servegate.plugins.ratelimit.cluster import ClusterPolicy

        return ClusterPolicy()
    from servegate.plugins.ratelimit.local import LocalPolicy

    return LocalPolicy()
