"""`redis` policy: counters in Redis, shared by every node using the same Redis.

Keys follow Kong: `ratelimit:<route_id>:<service_id>:<identifier>:<window_start_ms>:<period>`,
expiring after the window length. One server-side script reads every window and increments all
of them only when each has room, so check-and-count is atomic and exactly `limit` requests pass.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from servegate.plugins.ratelimit import HitResult, Window
from servegate.plugins.ratelimit.windows import EXPIRATION

# KEYS: one per window. ARGV: limits (n), then expirations in seconds (n).
# Returns the usage of each window before this request; increments only when all have room.
_SCRIPT = """
local n = #KEYS
local usage = {}
local room = true
for i = 1, n do
  local v = tonumber(redis.call('GET', KEYS[i]) or '0')
  usage[i] = v
  if v >= tonumber(ARGV[i]) then room = false end
end
if room then
  for i = 1, n do
    if redis.call('INCR', KEYS[i]) == 1 then
      redis.call('EXPIRE', KEYS[i], ARGV[n + i])
    end
  end
end
return usage
"""

_ClientKey = tuple[Any, ...]
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[_ClientKey, tuple[Any, Any]]] = (
    weakref.WeakKeyDictionary()
)


def _client_key(conf: dict[str, Any]) -> _ClientKey:
    return tuple(conf.get(k) for k in ("host", "port", "database", "username", "password", "ssl",
                                       "ssl_verify", "server_name", "timeout"))


def _client(conf: dict[str, Any]) -> tuple[Any, Any]:
    loop = asyncio.get_running_loop()
    per_loop = _clients.setdefault(loop, {})
    key = _client_key(conf)
    hit = per_loop.get(key)
    if hit is None:
        timeout = (conf.get("timeout") or 2000) / 1000.0
        kwargs: dict[str, Any] = {
            "host": conf.get("host"),
            "port": conf.get("port") or 6379,
            "db": conf.get("database") or 0,
            "username": conf.get("username") or None,
            "password": conf.get("password") or None,
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            # On the request path: fail fast (fault_tolerant decides), never back off and retry.
            "retry": Retry(NoBackoff(), 0),
        }
        if conf.get("ssl"):
            kwargs["ssl"] = True
            kwargs["ssl_cert_reqs"] = "required" if conf.get("ssl_verify") else "none"
            kwargs["ssl_check_hostname"] = bool(conf.get("ssl_verify"))
        client = aioredis.Redis(**kwargs)
        hit = per_loop[key] = (client, client.register_script(_SCRIPT))
    return hit


async def close_clients() -> None:
    for client, _ in _clients.pop(asyncio.get_running_loop(), {}).values():
        await client.aclose()


class RedisPolicy:
    __slots__ = ("_conf",)

    def __init__(self, conf: dict[str, Any]) -> None:
        self._conf = dict(conf)

    def hit(self, route_id: str, service_id: str, identifier: str, windows: Sequence[Window],
            now: int) -> Any:
        return self._hit(route_id, service_id, identifier, windows)

    async def _hit(self, route_id: str, service_id: str, identifier: str,
                   windows: Sequence[Window]) -> HitResult:
        _, script = _client(self._conf)
        keys = [f"ratelimit:{route_id}:{service_id}:{identifier}:{start * 1000}:{period}"
                for period, _, start in windows]
        args = [repr(float(limit)) for _, limit, _ in windows] + [EXPIRATION[p] for p, _, _ in windows]
        usage = [int(v) for v in await script(keys=keys, args=args)]
        admitted = all(u < limit for u, (_, limit, _) in zip(usage, windows, strict=True))
        return usage, admitted
