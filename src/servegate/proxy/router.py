"""HTTP router: Kong ``traditional_compatible`` semantics with indexes so a match does not scan every route.

A route is compiled into one or more matchers (one per group of regex paths or of prefix paths of equal
length, as Kong splits them), ranked by Kong's priority key, then route id descending; a request gets the
best-ranked matcher whose every configured category matches. Compiling and indexing: router_build.py.

Rebuilds: a router's index is immutable, so a router built with ``previous=`` shares what the change leaves
alone (matchers of unchanged routes, untouched buckets) while ``previous`` keeps serving, and a rebuild costs
O(routes changed). ``Router.build`` runs the constructor's build steps with a turn of the event loop every
``slice_s`` seconds.

Lookup: every matcher sits in a dict keyed by the literal text a matching path must start with (a prefix
path itself, the literal head of a regex, or "" for path-less routes and regexes without one); the request
path is probed at each distinct key length. Each bucket is split by plain host (exact dict lookup) with a
remainder list for wildcard-host and host-less matchers, and each list is scanned best first only while it
can still beat the best match found so far (a matcher's rank is its ``order`` string: higher wins). Results
are memoised in a bounded LRU keyed by method, Host, port, path and the values of the header names that some
route tests.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from servegate.proxy.matchers import Matcher, split_host_port
from servegate.proxy.router_build import Index, build_index, ranked

__all__ = ["Match", "Router", "split_host_port"]

CACHE_SIZE = 10_000
# Above this many distinct header names in routes, a cache key would be too costly to build: no caching.
MAX_CACHED_HEADER_NAMES = 16

_MISS = object()
# Below every matcher's order (see Matcher.order): where a lookup starts.
_LOWEST = ""


class Match:
    """Result of a routing decision. Shared between requests via the cache: treat as read-only."""

    __slots__ = ("captures", "prefix", "route", "service", "upstream_path")

    def __init__(
        self,
        route: dict[str, Any],
        service: dict[str, Any] | None,
        prefix: str,
        upstream_path: str,
        captures: dict[int | str, str | None] | None,
    ) -> None:
        self.route = route
        self.service = service
        self.prefix = prefix
        self.upstream_path = upstream_path
        # {0: full match, 1..n: groups, name: group} when the regex has groups, else None (Kong's uri_captures).
        self.captures = captures

    def __repr__(self) -> str:
        return f"Match(route={self.route.get('id')!r}, prefix={self.prefix!r}, upstream_path={self.upstream_path!r})"


_Hit = tuple[Matcher, "re.Match[str] | None"]


def _first(
    seq: list[Matcher], best_order: str, method: str, host: str | None, port: int | None,
    headers: Mapping[str, Any] | None, path: str, sni: str | None,
) -> _Hit | None:
    """The first matcher of ``seq`` (best first) ranked above ``best_order`` that matches; regexes are tried
    last."""
    for m in seq:
        # Nothing found yet (best_order ""): no string comparison, the costly part of this loop compiled.
        if best_order and m.order <= best_order:
            return None
        # Kong only tests `snis` on https requests.
        if m.matches_rest(method, host, port, headers) and (
            sni is None or m.snis is None or any(r.matches(sni, None) for r in m.snis)
        ):
            if not m.regexes:
                return m, None
            for rx in m.regexes:
                hit = rx.search(path)
                if hit is not None:
                    return m, hit
    return None


class Router:
    """Immutable once built; ``match`` is safe to call concurrently from one event loop.

    ``previous``: a router built from earlier rows. A route whose route and service rows are the very objects
    ``previous`` compiled reuses its matchers (callers keep an unchanged row's identity across snapshots), and
    when few routes changed the new router copies only the parts of ``previous``'s index they touch.
    ``previous`` is only read, and keeps matching as before.
    """

    def __init__(
        self,
        routes: list[dict[str, Any]],
        services_by_id: Mapping[str, dict[str, Any]],
        *,
        previous: Router | None = None,
        cache_size: int = CACHE_SIZE,
    ) -> None:
        self._cache: OrderedDict[tuple[Any, ...], Match | None] = OrderedDict()
        self._cache_size = cache_size
        index: Index | None = None
        for step in build_index(routes, services_by_id, previous._index if previous is not None else None):
            if step is not None:
                index = step
        assert index is not None
        self._use(index)

    @classmethod
    async def build(
        cls,
        routes: list[dict[str, Any]],
        services_by_id: Mapping[str, dict[str, Any]],
        *,
        previous: Router | None = None,
        slice_s: float = 0.001,
        cache_size: int = CACHE_SIZE,
    ) -> Router:
        """The same router as ``Router(routes, services_by_id, previous=previous)``, built in slices of about
        ``slice_s`` seconds with a turn of the event loop after each, so that requests keep flowing. The
        rows must not change until it returns."""
        router = cls([], {}, cache_size=cache_size)  # empty, then given the index built below
        index: Index | None = None
        deadline = time.perf_counter() + slice_s
        for step in build_index(routes, services_by_id, previous._index if previous is not None else None):
            if step is not None:
                index = step
            elif time.perf_counter() >= deadline:
                await asyncio.sleep(0)
                deadline = time.perf_counter() + slice_s
        assert index is not None
        router._use(index)
        return router

    def _use(self, index: Index) -> None:
        # The index, and the parts of it a lookup reads, as the router's own fields.
        self._index = index
        self._buckets = index.buckets
        self._lengths = index.lengths
        self._header_names = index.header_names
        self._cacheable = len(index.header_names) <= MAX_CACHED_HEADER_NAMES

    def __len__(self) -> int:
        return self._index.count

    def _ranked(self) -> list[Matcher]:
        """Every matcher, best first (for tests and tools)."""
        return ranked(self._index)

    def match(
        self,
        method: str,
        host: str | None,
        path: str,
        headers: Mapping[str, Any] | None = None,
        port: int | None = None,
        sni: str | None = None,
    ) -> Match | None:
        """Route a request. ``path`` is normalized (see ``paths.normalize``); ``host`` is the Host header,
        possibly with ``:port``; ``port`` is the listening port, used when the Host header carries none;
        ``sni`` is the TLS server name of an https request ("" when the client sent none), None for http."""
        if not self._cacheable:
            return self._find_raw(method, host, port, path, headers, sni)
        if self._header_names and headers is not None:
            key: tuple[Any, ...] = (
                method, host, port, path, sni, *map(_hashable, map(headers.get, self._header_names))
            )
        else:
            key = (method, host, port, path, sni)
        cache = self._cache
        hit = cache.get(key, _MISS)
        if hit is not _MISS:
            cache.move_to_end(key)
            return hit  # type: ignore[return-value]
        result = self._find_raw(method, host, port, path, headers, sni)
        cache[key] = result
        if len(cache) > self._cache_size:
            cache.popitem(last=False)
        return result

    def _find_raw(
        self,
        method: str,
        host: str | None,
        port: int | None,
        path: str,
        headers: Mapping[str, Any] | None,
        sni: str | None = None,
    ) -> Match | None:
        host_name: str | None = None
        if host:
            host_name, host_port = split_host_port(host.lower())
            if host_port is not None:
                port = host_port
        if sni:
            sni = sni.lower()
        return self._find(method, host_name, port, path, headers, sni)

    def _find(
        self,
        method: str,
        host: str | None,
        port: int | None,
        path: str,
        headers: Mapping[str, Any] | None,
        sni: str | None,
    ) -> Match | None:
        best: _Hit | None = None
        best_order = _LOWEST
        best_key = ""
        buckets = self._buckets
        path_len = len(path)
        for length in self._lengths:
            if length > path_len:
                continue
            key = path[:length]
            bucket = buckets.get(key)
            if bucket is None:
                continue
            if bucket.other is not None:
                found = _first(bucket.other, best_order, method, host, port, headers, path, sni)
                if found is not None:
                    best, best_order, best_key = found, found[0].order, key
            if host is not None and bucket.by_host:
                seq = bucket.by_host.get(host)
                if seq is not None:
                    found = _first(seq, best_order, method, host, port, headers, path, sni)
                    if found is not None:
                        best, best_order, best_key = found, found[0].order, key
        if best is None:
            return None
        m, rx_hit = best
        captures = None
        if rx_hit is not None:
            matched = rx_hit.group(0)
            captures = _captures(rx_hit)
        else:
            matched = best_key
        # Kong strips the matched path text; a path-less route has nothing to strip but "/".
        prefix = matched if m.strip and (m.prefixes or m.regexes) else "/"
        upstream = m.join(m.service_path, prefix, path, m.strip)
        return Match(m.route, m.service, prefix, upstream, captures)


def _hashable(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    return tuple(value)


def _captures(hit: re.Match[str]) -> dict[int | str, str | None] | None:
    groups = hit.groups()
    if not groups:
        return None
    caps: dict[int | str, str | None] = {0: hit.group(0)}
    for i, value in enumerate(groups, 1):
        caps[i] = value
    caps.update(hit.groupdict())
    return caps
