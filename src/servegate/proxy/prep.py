"""Per-match request constants (upstream key, Host, target path, timeouts, plugin plan), computed once and reused.

A `Match` from the router is immutable and shared by every request that routed the same way, so what the
relay derives from it and its route/service rows is cached by the Match object itself. The cache belongs to
one snapshot: it is emptied when the snapshot changes, and bounded (router misses make new Match objects).
"""

from __future__ import annotations

from typing import Any, Final

from servegate.plugins.runner import Plan
from servegate.proxy.paths import escape

CACHE_MAX: Final = 4096


class Prep:
    __slots__ = ("key", "host", "target", "fwd_prefix", "preserve_host", "max_tries", "connect_timeout",
                 "read_timeout", "write_timeout", "https_only", "plan", "balancer", "body_key")

    def __init__(self, match: Any, plugins: Any, balancer: Any = None) -> None:
        route = match.route
        service = match.service
        proto = service.get("protocol") or "http"
        tls = proto in ("https", "grpcs")
        port = service.get("port") or (443 if tls else 80)
        shost = service["host"]
        self.key: tuple[str, int, bool] = (shost, port, tls)
        self.host = shost.encode() if port == (443 if tls else 80) else f"{shost}:{port}".encode()
        self.preserve_host = bool(route.get("preserve_host"))
        self.target = escape(match.upstream_path).encode("utf-8", "surrogateescape")
        prefix = match.prefix
        self.fwd_prefix = (prefix.encode("utf-8", "surrogateescape")
                           if route.get("strip_path") and prefix != "/" else None)
        self.max_tries = 1 + (service.get("retries") or 0)
        self.connect_timeout = (service.get("connect_timeout") or 60000) / 1000.0
        self.read_timeout = (service.get("read_timeout") or 60000) / 1000.0
        self.write_timeout = (service.get("write_timeout") or 60000) / 1000.0
        protocols = route.get("protocols")
        # Whether https_allowed() has anything to check for this route.
        self.https_only = bool(protocols) and "http" not in protocols and "https" in protocols
        # The plugin phase plan of this route and service (None: no plugin applies).
        self.plan: Plan | None = plugins.plan(route.get("id"), service.get("id")) if plugins else None
        # The upstream the service's host names (servegate.proxy.balancer), None for a plain host.
        self.balancer = balancer
        self.body_key = balancer is not None and balancer.needs_body


class PrepCache:
    __slots__ = ("snapshot", "preps", "balancers")

    def __init__(self, balancers: Any = None) -> None:
        self.balancers = balancers
        self.snapshot: Any = None
        self.preps: dict[Any, Prep] = {}

    def get(self, snapshot: Any, match: Any) -> Prep:
        preps = self.preps
        if snapshot is not self.snapshot:
            self.snapshot = snapshot
            preps.clear()
        prep = preps.get(match)
        if prep is None:
            if len(preps) >= CACHE_MAX:
                preps.clear()
            service = match.service
            balancers = self.balancers
            balancer = (balancers.get(snapshot, service["host"])
                        if balancers is not None and service is not None else None)
            prep = preps[match] = Prep(match, snapshot.plugins, balancer)
        return prep
