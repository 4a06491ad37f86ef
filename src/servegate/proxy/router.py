"""HTTP router: Kong ``traditional_compatible`` semantics with indexes so a match does not scan every route.

A route is compiled into one or more matchers (one per group of regex paths or of prefix paths of equal
length, as Kong splits them). Matchers are ranked once by Kong's priority key, then route id descending; a
request gets the lowest-ranked matcher whose every configured category matches.

Lookup: prefix-path matchers sit in a dict keyed by the prefix string; the request path is probed at each
distinct prefix length. Path-less matchers are stored under the empty prefix. Regex matchers are kept apart in
rank order. Every bucket is split by plain host (exact dict lookup) with a remainder list for wildcard-host and
host-less matchers, and each list is scanned in rank order only while it can still beat the best rank found.
Results are memoised in a bounded LRU keyed by method, host, port, path and the values of the header names that
some route tests.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from servegate.proxy.paths import join_v0

__all__ = ["Match", "Router", "split_host_port"]

log = logging.getLogger(__name__)

HTTP_PROTOCOLS = frozenset(("http", "https", "grpc", "grpcs"))
MAX_HEADER_COUNT = 255
CACHE_SIZE = 10_000
# Above this many distinct header names in routes, a cache key would be too costly to build: no caching.
MAX_CACHED_HEADER_NAMES = 16

_NAMED_GROUP = re.compile(r"\(\?<(?=[A-Za-z_])")
_MISS = object()


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


def split_host_port(value: str) -> tuple[str, int | None]:
    """Split ``host[:port]`` (``[v6]:port`` too); a non-numeric port is left in the host, as Kong does."""
    if value.startswith("["):
        end = value.find("]")
        if end > 0:
            rest = value[end + 1 :]
            if rest.startswith(":") and rest[1:].isdigit():
                return value[: end + 1], int(rest[1:])
        return value, None
    colon = value.find(":")
    if colon < 0:
        return value, None
    port = value[colon + 1 :]
    if port.isdigit():
        return value[:colon], int(port)
    return value, None


class _HostRule:
    __slots__ = ("kind", "port", "value")

    def __init__(self, spec: str) -> None:
        host, port = split_host_port(spec.lower())
        self.port = port
        if host.startswith("*"):
            self.kind = 1  # suffix: "*.example.com" -> ends with ".example.com"
            self.value = host[1:]
        elif host.endswith("*"):
            self.kind = 2  # prefix: "example.*" -> starts with "example."
            self.value = host[:-1]
        else:
            self.kind = 0
            self.value = host

    def matches(self, host: str, port: int | None) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.kind == 0:
            return host == self.value
        if self.kind == 1:
            return host.endswith(self.value)
        return host.startswith(self.value)


class _HeaderRule:
    __slots__ = ("names", "plain", "regexes")

    def __init__(self, name: str, values: list[str]) -> None:
        lowered = name.lower()
        # Kong compares names with "-" and "_" folded together.
        dashed = lowered.replace("_", "-")
        self.names = (dashed,) if dashed == lowered else (dashed, lowered)
        plain: set[str] = set()
        regexes: list[re.Pattern[str]] = []
        for raw in values:
            value = raw.lower()
            if value.startswith("~*"):
                regexes.append(re.compile(value[2:]))
            else:
                plain.add(value)
        self.plain = frozenset(plain)
        self.regexes = tuple(regexes)

    def matches(self, headers: Mapping[str, Any]) -> bool:
        for name in self.names:
            got = headers.get(name)
            if got is None:
                continue
            for value in (got,) if isinstance(got, str) else got:
                low = value.lower()
                if low in self.plain:
                    return True
                for rx in self.regexes:
                    if rx.search(low):
                        return True
        return False


class _Matcher:
    """One (route, path group) pair with its category checks; path is tested by the index that holds it."""

    __slots__ = (
        "headers",
        "hosts",
        "methods",
        "plain_hosts",
        "prefixes",
        "priority",
        "rank",
        "regexes",
        "route",
        "route_id",
        "service",
        "service_path",
        "strip",
    )

    def __init__(self, route: dict[str, Any], service: dict[str, Any] | None, paths: list[str] | None) -> None:
        self.route = route
        self.route_id = str(route.get("id") or "")
        self.service = service
        self.service_path = _service_path(service)
        self.strip = bool(route.get("strip_path"))
        self.rank = 0
        methods = route.get("methods")
        self.methods = frozenset(methods) if methods else None
        host_specs = route.get("hosts")
        self.hosts = tuple(_HostRule(h) for h in host_specs) if host_specs else None
        self.plain_hosts = tuple(sorted({h.value for h in self.hosts if h.kind == 0})) if self.hosts else ()
        header_specs = route.get("headers") or {}
        self.headers = tuple(_HeaderRule(k, list(v or ())) for k, v in header_specs.items())
        self.prefixes: tuple[str, ...] = ()
        self.regexes: tuple[re.Pattern[str], ...] = ()
        if paths:
            if paths[0].startswith("~"):
                self.regexes = tuple(_compile_path_regex(p[1:]) for p in paths)
            else:
                self.prefixes = tuple(paths)
        self.priority = _priority(route, paths, len(self.headers))

    @property
    def all_hosts_plain(self) -> bool:
        return self.hosts is not None and all(h.kind == 0 for h in self.hosts)

    def matches_rest(
        self, method: str, host: str | None, port: int | None, headers: Mapping[str, Any] | None
    ) -> bool:
        """Everything but the path."""
        if self.methods is not None and method not in self.methods:
            return False
        if self.hosts is not None:
            if host is None:
                return False
            for rule in self.hosts:
                if rule.matches(host, port):
                    break
            else:
                return False
        if self.headers:
            if headers is None:
                return False
            for rule in self.headers:
                if not rule.matches(headers):
                    return False
        return True


def _service_path(service: dict[str, Any] | None) -> str:
    if service is None:
        return "/"
    return service.get("path") or "/"


def _compile_path_regex(pattern: str) -> re.Pattern[str]:
    # Routes use PCRE/Rust syntax for named groups; Python only knows (?P<name>...).
    return re.compile("^(?:" + _NAMED_GROUP.sub("(?P<", pattern) + ")")


def _priority(route: dict[str, Any], paths: list[str] | None, header_count: int) -> tuple[int, ...]:
    """Kong's priority fields, most significant first (compared as a tuple instead of packed bits)."""
    weight = 0
    for field in ("sources", "destinations", "methods", "hosts", "snis"):
        if route.get(field):
            weight += 1
    if header_count:
        weight += 1
    hosts = route.get("hosts")
    plain_hosts = hosts is not None and not any("*" in h for h in hosts)
    regex = False
    length = 0
    if paths:
        weight += 1
        if paths[0].startswith("~"):
            regex = True
        else:
            length = len(paths[0].encode("utf-8"))
    regex_priority = int(route.get("regex_priority") or 0) if regex else 0
    return (
        weight,
        int(plain_hosts),
        min(header_count, MAX_HEADER_COUNT),
        int(regex),
        regex_priority,
        length,
    )


def _group_paths(paths: list[str] | None) -> list[list[str] | None]:
    """Kong splits a route's paths into one group for all regexes and one per prefix length."""
    if not paths:
        return [None]
    groups: dict[int, list[str]] = {}
    for p in paths:
        groups.setdefault(-1 if p.startswith("~") else len(p.encode("utf-8")), []).append(p)
    return list(groups.values())


class _Bucket:
    """Matchers sharing one path key, split by plain host; every list is kept in rank order."""

    __slots__ = ("by_host", "other")

    def __init__(self) -> None:
        self.by_host: dict[str, list[_Matcher]] = {}
        self.other: list[_Matcher] = []

    def add(self, m: _Matcher) -> None:
        if m.hosts is not None and m.all_hosts_plain:
            for h in m.plain_hosts:
                self.by_host.setdefault(h, []).append(m)
        else:
            self.other.append(m)


class Router:
    """Immutable once built; ``match`` is safe to call concurrently from one event loop."""

    def __init__(
        self,
        routes: list[dict[str, Any]],
        services_by_id: Mapping[str, dict[str, Any]],
        *,
        cache_size: int = CACHE_SIZE,
    ) -> None:
        matchers: list[_Matcher] = []
        for route in routes:
            service = _route_service(route, services_by_id)
            if service is _MISS:
                continue
            protocols = route.get("protocols") or ("http", "https")
            if not HTTP_PROTOCOLS.intersection(protocols):
                continue
            for group in _group_paths(route.get("paths")):
                try:
                    matchers.append(_Matcher(route, service, group))  # type: ignore[arg-type]
                except re.error as exc:
                    log.error("route %s skipped: invalid regex: %s", route.get("id"), exc)
        # Higher priority first; equal priority: higher route id first (atc-router's reverse BTreeMap order).
        matchers.sort(key=lambda m: (m.priority, m.route_id), reverse=True)
        self._prefix_buckets: dict[str, _Bucket] = {}
        self._regex_bucket = _Bucket()
        header_names: set[str] = set()
        for rank, m in enumerate(matchers):
            m.rank = rank
            for rule in m.headers:
                header_names.update(rule.names)
            if m.regexes:
                self._regex_bucket.add(m)
            else:
                for prefix in m.prefixes or ("",):
                    bucket = self._prefix_buckets.get(prefix)
                    if bucket is None:
                        bucket = self._prefix_buckets[prefix] = _Bucket()
                    bucket.add(m)
        self._matchers = matchers
        self._lengths = sorted({len(p) for p in self._prefix_buckets}, reverse=True)
        self._has_regex = bool(self._regex_bucket.by_host or self._regex_bucket.other)
        self._header_names = tuple(sorted(header_names))
        self._cacheable = len(self._header_names) <= MAX_CACHED_HEADER_NAMES
        self._cache: OrderedDict[tuple[Any, ...], Match | None] = OrderedDict()
        self._cache_size = cache_size

    def __len__(self) -> int:
        return len(self._matchers)

    def match(
        self,
        method: str,
        host: str | None,
        path: str,
        headers: Mapping[str, Any] | None = None,
        port: int | None = None,
    ) -> Match | None:
        """Route a request. ``path`` is normalized (see ``paths.normalize``); ``host`` is the Host header,
        possibly with ``:port``; ``port`` is the listening port, used when the Host header carries none."""
        if not self._cacheable:
            return self._find_raw(method, host, port, path, headers)
        if self._header_names and headers is not None:
            key: tuple[Any, ...] = (method, host, port, path, *map(_hashable, map(headers.get, self._header_names)))
        else:
            key = (method, host, port, path)
        cache = self._cache
        hit = cache.get(key, _MISS)
        if hit is not _MISS:
            cache.move_to_end(key)
            return hit  # type: ignore[return-value]
        result = self._find_raw(method, host, port, path, headers)
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
    ) -> Match | None:
        host_name: str | None = None
        if host:
            host_name, host_port = split_host_port(host.lower())
            if host_port is not None:
                port = host_port
        return self._find(method, host_name, port, path, headers)

    def _find(
        self,
        method: str,
        host: str | None,
        port: int | None,
        path: str,
        headers: Mapping[str, Any] | None,
    ) -> Match | None:
        best: _Matcher | None = None
        best_rank = len(self._matchers)
        best_prefix = ""
        buckets = self._prefix_buckets
        path_len = len(path)
        for length in self._lengths:
            if length > path_len:
                continue
            prefix = path[:length]
            bucket = buckets.get(prefix)
            if bucket is None:
                continue
            m = _scan(bucket, host, best_rank, method, port, headers)
            if m is not None:
                best, best_rank, best_prefix = m, m.rank, prefix
        captures: dict[int | str, str | None] | None = None
        if self._has_regex:
            found = self._scan_regex(host, best_rank, method, port, path, headers)
            if found is not None:
                best, rx_match = found
                best_prefix = rx_match.group(0)
                captures = _captures(rx_match)
        if best is None:
            return None
        # Kong: the prefix to strip is the matched path text; a path-less route strips nothing but "/".
        prefix = best_prefix if best.strip and (best.prefixes or best.regexes) else "/"
        upstream = join_v0(best.service_path, prefix, path, best.strip)
        return Match(best.route, best.service, prefix, upstream, captures)

    def _scan_regex(
        self,
        host: str | None,
        best_rank: int,
        method: str,
        port: int | None,
        path: str,
        headers: Mapping[str, Any] | None,
    ) -> tuple[_Matcher, re.Match[str]] | None:
        found: tuple[_Matcher, re.Match[str]] | None = None
        bucket = self._regex_bucket
        lists = [bucket.other]
        if host is not None:
            by_host = bucket.by_host.get(host)
            if by_host is not None:
                lists.append(by_host)
        for candidates in lists:
            for m in candidates:
                if m.rank >= best_rank:
                    break
                if not m.matches_rest(method, host, port, headers):
                    continue
                for rx in m.regexes:
                    hit = rx.match(path)
                    if hit is not None:
                        found = (m, hit)
                        best_rank = m.rank
                        break
                if found is not None and found[0] is m:
                    break
        return found


def _scan(
    bucket: _Bucket,
    host: str | None,
    best_rank: int,
    method: str,
    port: int | None,
    headers: Mapping[str, Any] | None,
) -> _Matcher | None:
    found: _Matcher | None = None
    for m in bucket.other:
        if m.rank >= best_rank:
            break
        if m.matches_rest(method, host, port, headers):
            found, best_rank = m, m.rank
            break
    if host is not None:
        candidates = bucket.by_host.get(host)
        if candidates is not None:
            for m in candidates:
                if m.rank >= best_rank:
                    break
                if m.matches_rest(method, host, port, headers):
                    found = m
                    break
    return found


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


def _route_service(route: dict[str, Any], services_by_id: Mapping[str, dict[str, Any]]) -> Any:
    """The route's service row, ``None`` for a service-less route, or ``_MISS`` when it must be left out."""
    ref = route.get("service")
    if not ref:
        return None
    service = services_by_id.get(ref.get("id")) if isinstance(ref, dict) else None
    if service is None:
        log.error("route %s skipped: service %s not found", route.get("id"), ref)
        return _MISS
    if service.get("enabled") is False:
        return _MISS
    return service
