"""HTTP router: Kong ``traditional_compatible`` semantics with indexes so a match does not scan every route.

A route is compiled into one or more matchers (one per group of regex paths or of prefix paths of equal
length, as Kong splits them). Matchers are ranked once by Kong's priority key, then route id descending; a
request gets the best-ranked matcher whose every configured category matches.

Rebuilds: matchers are immutable and carry no rank, so a router built with ``previous=`` reuses those of every
unchanged route while ``previous`` keeps serving. ``Router.build`` runs the constructor's build steps with a
turn of the event loop every ``slice_s`` seconds.

Lookup: every matcher sits in a dict keyed by the literal text a matching path must start with (a prefix
path itself, the literal head of a regex, or "" for path-less routes and regexes without one); the request
path is probed at each distinct key length. Each bucket is split by plain host (exact dict lookup) with a
remainder list for wildcard-host and host-less matchers, and each list is scanned in rank order only while it
can still beat the best rank found so far. Results are memoised in a bounded LRU keyed by method, Host,
port, path and the values of the header names that some route tests.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import re
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any

from servegate.proxy.paths import join_v0, join_v1

__all__ = ["Match", "Router", "split_host_port"]

log = logging.getLogger(__name__)

HTTP_PROTOCOLS = frozenset(("http", "https", "grpc", "grpcs"))
MAX_HEADER_COUNT = 255
CACHE_SIZE = 10_000
# Above this many distinct header names in routes, a cache key would be too costly to build: no caching.
MAX_CACHED_HEADER_NAMES = 16

# Build step sizes (Router._build_steps), each well under a millisecond: a reused route counts 1 towards
# _STEP_WORK, a fresh matcher _FRESH_WORK (10-100 µs to compile, against about 1 µs for a reuse).
_STEP_WORK = 64
_FRESH_WORK = 16
_SORT_CHUNK = 1024
_INDEX_CHUNK = 128

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
    """One (route, path group) pair with its category checks; path is tested by the index that holds it.

    Immutable once built: routers built from one another share matchers (see ``Router``)."""

    __slots__ = (
        "headers", "hosts", "index_hosts", "index_keys", "join", "methods", "order", "prefixes", "priority",
        "regexes", "route", "route_id", "service", "service_path", "snis", "strip",
    )

    def __init__(self, route: dict[str, Any], service: dict[str, Any] | None, paths: list[str] | None) -> None:
        self.route = route
        self.route_id = str(route.get("id") or "")
        self.service = service
        self.service_path = _service_path(service)
        self.strip = bool(route.get("strip_path"))
        # Kong's traditional router honoured the deprecated "v1" joining; chosen once here, not per request.
        self.join = join_v1 if route.get("path_handling") == "v1" else join_v0
        methods = route.get("methods")
        self.methods = frozenset(methods) if methods else None
        host_specs = route.get("hosts")
        self.hosts = tuple(_HostRule(h) for h in host_specs) if host_specs else None
        # The hosts a bucket files it under; () when it has no host or a wildcard one (bucket.other).
        plain = self.hosts is not None and all(h.kind == 0 for h in self.hosts)
        self.index_hosts = tuple(sorted({h.value for h in self.hosts or ()})) if plain else ()
        sni_specs = route.get("snis")
        # SNI values: a trailing dot of a FQDN is not used for routing.
        self.snis = (
            tuple(_HostRule(v[:-1] if len(v) > 1 and v.endswith(".") and not v.endswith("*") else v) for v in sni_specs)
            if sni_specs
            else None
        )
        header_specs = route.get("headers") or {}
        self.headers = tuple(_HeaderRule(k, list(v or ())) for k, v in header_specs.items())
        self.prefixes: tuple[str, ...] = ()
        self.regexes: tuple[re.Pattern[str], ...] = ()
        self.index_keys: tuple[str, ...] = ("",)
        if paths:
            if paths[0].startswith("~"):
                self.regexes = tuple(_compile_path_regex(p[1:]) for p in paths)
                self.index_keys = tuple(sorted({_literal_head(p[1:]) for p in paths}))
            else:
                self.prefixes = tuple(paths)
                self.index_keys = tuple(sorted(set(paths)))
        self.priority = _priority(route, paths, len(self.headers))
        self.order = _order_key(self.priority, self.route_id)

    def matches_rest(
        self, method: str, host: str | None, port: int | None, headers: Mapping[str, Any] | None
    ) -> bool:
        """Everything but the path."""
        if self.methods is not None and method not in self.methods:
            return False
        if self.hosts is not None:
            if host is None:
                return False
            for host_rule in self.hosts:
                if host_rule.matches(host, port):
                    break
            else:
                return False
        if self.headers:
            if headers is None:
                return False
            for header_rule in self.headers:
                if not header_rule.matches(headers):
                    return False
        return True


def _service_path(service: dict[str, Any] | None) -> str:
    if service is None:
        return "/"
    return service.get("path") or "/"


_LEADING_FLAGS = re.compile(r"^(?:\(\?[aiLmsux]+\))+")


def _compile_path_regex(pattern: str) -> re.Pattern[str]:
    """Kong prepends "^" to the route's regex (so with a top-level "|" only the first alternative is
    anchored) and searches. Named groups use PCRE/Rust syntax, which Python spells (?P<name>...); leading
    inline flags must come before the "^" in Python."""
    body = _NAMED_GROUP.sub("(?P<", pattern)
    flags = _LEADING_FLAGS.match(body)
    lead = flags.group(0) if flags else ""
    return re.compile(lead + "^" + body[len(lead):])


_REGEX_META = frozenset(".^$*+?{}[]()|\\")


def _literal_head(pattern: str) -> str:
    """Text every path matching ``^pattern`` starts with ("" when unsure); lets regexes share the index."""
    if "|" in pattern:  # an alternative could start anywhere
        return ""
    end = 0
    while end < len(pattern) and pattern[end] not in _REGEX_META:
        end += 1
    if end < len(pattern) and pattern[end] in "?*{":  # the last literal may occur zero times
        end -= 1
    return pattern[:max(end, 0)]


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


def _order_key(priority: tuple[int, ...], route_id: str) -> str:
    """(priority, route id) as one string that sorts the same way, for a build's ranking sort: comparing
    strings is several times cheaper than tuples. Fixed-width hex priority fields (regex_priority made
    non-negative; it and the path length clamped to 32 bits, beyond any real configuration), then the id."""
    weight, plain_hosts, header_count, regex, regex_priority, length = priority
    shifted = min(max(regex_priority, -0x80000000), 0x7FFFFFFF) + 0x80000000
    # %-formatting: a third cheaper than the same f-string, and this runs for every fresh matcher.
    return "%x%x%02x%x%08x%08x%s" % (  # noqa: UP031
        weight, plain_hosts, header_count, regex, shifted, min(length, 0xFFFFFFFF), route_id
    )


def _group_paths(paths: list[str] | None) -> list[list[str] | None]:
    """Kong splits a route's paths into one group for all regexes and one per prefix length."""
    if not paths:
        return [None]
    groups: dict[int, list[str]] = {}
    for p in paths:
        groups.setdefault(-1 if p.startswith("~") else len(p.encode("utf-8")), []).append(p)
    return list(groups.values())


class _Ranked:
    """A matcher with its rank in one router, and the next-ranked entry of the same candidate chain. Ranks
    live here, not on matchers, which routers built from one another share. A chain rather than lists of
    (rank, matcher) pairs: fewer objects per build for the garbage collector to track."""

    __slots__ = ("matcher", "next", "rank")

    def __init__(self, rank: int, matcher: _Matcher, following: _Ranked | None) -> None:
        self.rank = rank
        self.matcher = matcher
        self.next = following


class _Bucket:
    """Matchers sharing one path key, split by plain host; every chain runs in rank order."""

    __slots__ = ("by_host", "other")

    def __init__(self) -> None:
        self.by_host: dict[str, _Ranked] = {}
        self.other: _Ranked | None = None

    def push(self, rank: int, m: _Matcher) -> None:
        """File ``m`` ahead of what is already here: the build pushes matchers from the worst-ranked up."""
        if m.index_hosts:
            for h in m.index_hosts:
                self.by_host[h] = _Ranked(rank, m, self.by_host.get(h))
        else:
            self.other = _Ranked(rank, m, self.other)


_Hit = tuple[_Ranked, "re.Match[str] | None"]


def _first(
    entry: _Ranked | None, best_rank: int, method: str, host: str | None, port: int | None,
    headers: Mapping[str, Any] | None, path: str, sni: str | None,
) -> _Hit | None:
    """The first entry of the chain ranked above ``best_rank`` that matches; regexes are tried last."""
    while entry is not None and entry.rank < best_rank:
        m = entry.matcher
        # Kong only tests `snis` on https requests.
        if m.matches_rest(method, host, port, headers) and (
            sni is None or m.snis is None or any(r.matches(sni, None) for r in m.snis)
        ):
            if not m.regexes:
                return entry, None
            for rx in m.regexes:
                hit = rx.search(path)
                if hit is not None:
                    return entry, hit
        entry = entry.next
    return None


def _compile(route: dict[str, Any], service: dict[str, Any] | None) -> tuple[_Matcher, ...]:
    """The route's matchers, one per path group; a group with an invalid regex is logged and left out."""
    matchers: list[_Matcher] = []
    for group in _group_paths(route.get("paths")):
        try:
            matchers.append(_Matcher(route, service, group))
        except re.error as exc:
            log.error("route %s skipped: invalid regex: %s", route.get("id"), exc)
    return tuple(matchers)


_BY_ORDER = operator.attrgetter("order")


class Router:
    """Immutable once built; ``match`` is safe to call concurrently from one event loop.

    ``previous``: a router built from earlier rows. A route whose route and service rows are the very objects
    ``previous`` compiled reuses its matchers (callers keep an unchanged row's identity across snapshots);
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
        for _ in self._build_steps(routes, services_by_id, previous):
            pass

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
        router = cls([], {}, cache_size=cache_size)  # empty, then filled by the constructor's own steps
        deadline = time.perf_counter() + slice_s
        for _ in router._build_steps(routes, services_by_id, previous):
            if time.perf_counter() >= deadline:
                await asyncio.sleep(0)
                deadline = time.perf_counter() + slice_s
        return router

    def _build_steps(
        self,
        routes: list[dict[str, Any]],
        services_by_id: Mapping[str, dict[str, Any]],
        previous: Router | None,
    ) -> Iterator[None]:
        """Build the router, yielding after each bounded step: where ``build`` may let the loop run."""
        reusable = previous._compiled if previous is not None else {}
        compiled: dict[int, tuple[_Matcher, ...]] = {}
        matchers: list[_Matcher] = []
        work = 0
        for route in routes:
            service = _route_service(route, services_by_id)
            if service is _MISS:
                continue
            protocols = route.get("protocols") or ("http", "https")
            if not HTTP_PROTOCOLS.intersection(protocols):
                continue
            # By id(route): the matchers found hold their row alive, so that id is still that row's.
            ms = reusable.get(id(route))
            if ms is not None and ms[0].route is route and ms[0].service is service:
                work += 1
            else:
                ms = _compile(route, service)  # type: ignore[arg-type]
                work += _FRESH_WORK * max(len(ms), 1)
            if ms:
                compiled[id(route)] = ms
                matchers.extend(ms)
            if work >= _STEP_WORK:
                work = 0
                yield

        # Higher priority first; equal priority: higher route id first (atc-router's reverse BTreeMap order).
        # Sorted in steps: chunks, then adjacent runs merged pairwise (timsort merges two sorted runs in
        # linear time). Every step is stable, so the result is exactly that of one stable sort.
        runs: list[list[_Matcher]] = []
        for start in range(0, len(matchers), _SORT_CHUNK):
            runs.append(sorted(matchers[start : start + _SORT_CHUNK], key=_BY_ORDER, reverse=True))
            yield
        while len(runs) > 1:
            merged: list[list[_Matcher]] = []
            for i in range(0, len(runs) - 1, 2):
                pair = runs[i] + runs[i + 1]
                pair.sort(key=_BY_ORDER, reverse=True)
                merged.append(pair)
                yield
            if len(runs) % 2:
                merged.append(runs[-1])
            runs = merged
        ranked = runs[0] if runs else []

        # One index for all matchers, keyed by the literal text a matching path must start with: the prefix
        # itself, the literal head of a regex, or "" (path-less routes, regexes without a literal head).
        buckets: dict[str, _Bucket] = {}
        header_names: set[str] = set()
        for rank in range(len(ranked) - 1, -1, -1):  # worst-ranked first: each push goes ahead of the chain
            m = ranked[rank]
            for rule in m.headers:
                header_names.update(rule.names)
            for key in m.index_keys:
                bucket = buckets.get(key)
                if bucket is None:
                    bucket = buckets[key] = _Bucket()
                bucket.push(rank, m)
            if rank % _INDEX_CHUNK == 0:
                yield
        # The router's fields, all set here, once built.
        self._compiled: dict[int, tuple[_Matcher, ...]] = compiled  # by id(route), for the next build
        self._matchers = ranked
        self._buckets = buckets
        self._lengths = tuple(sorted({len(k) for k in buckets}, reverse=True))
        self._header_names = tuple(sorted(header_names))
        self._cacheable = len(self._header_names) <= MAX_CACHED_HEADER_NAMES

    def __len__(self) -> int:
        return len(self._matchers)

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
        best_rank = len(self._matchers)
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
                found = _first(bucket.other, best_rank, method, host, port, headers, path, sni)
                if found is not None:
                    best, best_rank, best_key = found, found[0].rank, key
            if host is not None and bucket.by_host:
                head = bucket.by_host.get(host)
                if head is not None:
                    found = _first(head, best_rank, method, host, port, headers, path, sni)
                    if found is not None:
                        best, best_rank, best_key = found, found[0].rank, key
        if best is None:
            return None
        entry, rx_hit = best
        m = entry.matcher
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


def _route_service(route: dict[str, Any], services_by_id: Mapping[str, dict[str, Any]]) -> Any:
    """The route's service row, ``None`` for a service-less route, or ``_MISS`` when it must be left out."""
    ref = route.get("service")
    if not ref:
        return None
    service_id = ref.get("id") if isinstance(ref, dict) else None
    service = services_by_id.get(service_id) if isinstance(service_id, str) else None
    if service is None:
        log.error("route %s skipped: service %s not found", route.get("id"), ref)
        return _MISS
    if service.get("enabled") is False:
        return _MISS
    return service
