"""Building a router's index (see router.py, which looks requests up in it): routes compiled into matchers,
ranked by Kong's priority key then route id descending, filed by the literal text a matching path must start
with and by plain host.

An ``Index`` is never changed once built, so that routers built from one another can share its parts while the
previous router keeps serving. A build from a previous index (an update) costs O(routes changed) in Python
work and in new objects, not O(routes): a full build at 10,000 routes allocates some 20,000 objects for the
garbage collector to track, whose full collections then stop the proxy for tens of milliseconds. What stays
O(routes) is a few passes in C (the diff below, copies of the index's dicts): about 1 ms at 10,000 routes.

- a matcher's rank is its ``order`` string (priority key, then route id), not its position in one global sort:
  adding a matcher renumbers nothing, and the bucket lists stay sorted by it;
- the changed routes are found by comparing the new route list with the previous one by identity, run by run
  in C (callers keep an unchanged row's identity, and the configuration feed the list's order);
- buckets are copied on write: the new index shares every bucket, and every list, that no change touches.

A larger change (over a quarter of the routes, or a reordered list) takes the full build, which still reuses
the matchers of unchanged routes.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Iterator, Mapping
from itertools import compress, count
from types import MappingProxyType
from typing import Any

from servegate.proxy.matchers import Matcher, compile_route

__all__ = ["Bucket", "Index", "build_index", "ranked"]

# The router's logger: these lines are about routing, wherever the code that writes them lives.
log = logging.getLogger("servegate.proxy.router")

Row = dict[str, Any]

HTTP_PROTOCOLS = frozenset(("http", "https", "grpc", "grpcs"))
_DEFAULT_PROTOCOLS = ("http", "https")

# Build step sizes, each well under a millisecond: a reused route counts 1 towards _STEP_WORK, a fresh
# matcher _FRESH_WORK (10-100 µs to compile, against about 1 µs for a reuse).
_STEP_WORK = 64
_FRESH_WORK = 16
_SORT_CHUNK = 1024
_INDEX_CHUNK = 128
# Rows compared by identity per step of an update's diff (in C: 25 ns each when the rows are in the CPU cache,
# 100 ns when not, as after serving requests for a while: comparing increments each row's reference count), and
# Python-level diff steps (one per place where the lists part) or rows scanned for a changed service between
# two yields.
_RUN_CHUNK = 2048
_DIFF_STEPS = 64
# How far down the new list a diff looks for the old row where the lists part (see _diff_steps).
_LOOKAHEAD = 8
_SCAN_CHUNK = 512
# An update handles at most this share of the routes changed (1/4), and at least _MIN_BUDGET routes.
_CHANGED_SHARE = 4
_MIN_BUDGET = 64

_MISS: Any = object()

def _service_id(route: Row) -> str | None:
    ref = route.get("service")
    service_id = ref.get("id") if isinstance(ref, dict) else None
    return service_id if isinstance(service_id, str) else None


def _route_service(route: Row, services_by_id: Mapping[str, Row]) -> Any:
    """The route's service row, ``None`` for a service-less route, or ``_MISS`` when it must be left out."""
    ref = route.get("service")
    if not ref:
        return None
    service_id = _service_id(route)
    service = services_by_id.get(service_id) if service_id is not None else None
    if service is None:
        log.error("route %s skipped: service %s not found", route.get("id"), ref)
        return _MISS
    if service.get("enabled") is False:
        return _MISS
    return service


def _evaluate(route: Row, services_by_id: Mapping[str, Row]) -> tuple[Matcher, ...]:
    """A fresh route's matchers; () when it is left out (its service missing or disabled, no HTTP protocol)."""
    service = _route_service(route, services_by_id)
    if service is _MISS or not HTTP_PROTOCOLS.intersection(route.get("protocols") or _DEFAULT_PROTOCOLS):
        return ()
    return compile_route(route, service)


def _copy_services(services_by_id: Mapping[str, Row]) -> dict[str, Row]:
    """A private copy, so that a later build compares with what this one saw even if the caller's dict is
    edited in place. ``.copy()`` copies a dict, or the dict behind a mappingproxy, in C (dict() of a
    mappingproxy goes key by key: 20 times slower)."""
    if isinstance(services_by_id, (dict, MappingProxyType)):
        return services_by_id.copy()
    return dict(services_by_id)


class Bucket:
    """Matchers sharing one path key: lists per plain host, and one for wildcard-host and host-less matchers
    (``other``), each best first. Never changed once in an index: an update files changes in new lists."""

    __slots__ = ("by_host", "other")

    def __init__(self, by_host: dict[str, list[Matcher]], other: list[Matcher] | None) -> None:
        self.by_host = by_host
        self.other = other


class Index:
    """A router's matchers filed for lookup, and what a build from it starts from. Never changed once built."""

    __slots__ = (
        "buckets", "compiled", "count", "header_counts", "header_names", "keyed", "length_counts", "lengths",
        "routes", "services", "skipped",
    )

    def __init__(
        self,
        routes: list[Row],
        compiled: dict[str, tuple[Matcher, ...]],
        skipped: dict[str, Row],
        services: dict[str, Row],
        keyed: bool,
        buckets: dict[str, Bucket],
        length_counts: dict[int, int],
        header_counts: dict[str, int],
        matcher_count: int,
    ) -> None:
        # The route rows given, in their order (a copy: the next build diffs against it).
        self.routes = routes
        # Route id -> its matchers (which hold its row), or -> its row when it was left out (service missing or
        # disabled, no HTTP protocol, invalid regexes): every route given, once. Not one dict of rows: an update
        # copies these dicts, and copying a value touches it (a row is bigger and further away than a tuple).
        self.compiled = compiled
        self.skipped = skipped
        # The services given (a copy): a build from this index recompiles the routes of those that changed.
        self.services = services
        # Route ids were distinct strings, so that compiled and skipped describe every route: an update may
        # start from this index. Otherwise the next build is a full one.
        self.keyed = keyed
        # Path key -> bucket; number of keys of each length (the lengths a lookup probes, longest first);
        # number of matchers testing each header name (the header values a cache key holds).
        self.buckets = buckets
        self.length_counts = length_counts
        self.lengths = tuple(sorted(length_counts, reverse=True))
        self.header_counts = header_counts
        self.header_names = tuple(sorted(header_counts))
        self.count = matcher_count

    def row(self, route_id: str) -> Row | None:
        """The route row of that id this index was built from."""
        ms = self.compiled.get(route_id)
        if ms:
            return ms[0].route
        return self.skipped.get(route_id)


def build_index(
    routes: list[Row], services_by_id: Mapping[str, Row], previous: Index | None
) -> Iterator[Index | None]:
    """Build the index, yielding None after each bounded step (where ``Router.build`` lets the loop run), then
    the index. From ``previous`` when it can: an update when few routes changed, else a full build that reuses
    the matchers of routes whose route and service rows are the very objects ``previous`` compiled."""
    if previous is not None and previous.keyed:
        updated: Index | None = None
        for step in _update_steps(routes, services_by_id, previous):
            if step is None:
                yield None
            else:
                updated = step
        if updated is not None:
            yield updated
            return
    yield from _full_steps(routes, services_by_id, previous)


_BY_ORDER = operator.attrgetter("order")


def _full_steps(
    routes: list[Row], services_by_id: Mapping[str, Row], previous: Index | None
) -> Iterator[Index | None]:
    reusable = previous.compiled if previous is not None else {}
    compiled: dict[str, tuple[Matcher, ...]] = {}
    skipped: dict[str, Row] = {}
    matchers: list[Matcher] = []
    keyed = True
    work = 0
    for route in routes:
        rid = route.get("id")
        if not isinstance(rid, str) or rid in compiled or rid in skipped:
            keyed = False
        ms: tuple[Matcher, ...] = ()
        service = _route_service(route, services_by_id)
        if service is not _MISS and HTTP_PROTOCOLS.intersection(route.get("protocols") or _DEFAULT_PROTOCOLS):
            old = reusable.get(rid) if isinstance(rid, str) else None
            if old and old[0].route is route and old[0].service is service:
                ms = old
                work += 1
            else:
                ms = compile_route(route, service)
                work += _FRESH_WORK * max(len(ms), 1)
            matchers.extend(ms)
        else:
            work += 1
        if isinstance(rid, str):
            if ms:
                compiled[rid] = ms
            else:
                skipped[rid] = route
        if work >= _STEP_WORK:
            work = 0
            yield None

    # Higher priority first; equal priority: higher route id first (atc-router's reverse BTreeMap order).
    # Sorted in steps: chunks, then adjacent runs merged pairwise (timsort merges two sorted runs in
    # linear time). Every step is stable, so the result is exactly that of one stable sort.
    runs: list[list[Matcher]] = []
    for start in range(0, len(matchers), _SORT_CHUNK):
        runs.append(sorted(matchers[start : start + _SORT_CHUNK], key=_BY_ORDER, reverse=True))
        yield None
    while len(runs) > 1:
        merged: list[list[Matcher]] = []
        for i in range(0, len(runs) - 1, 2):
            pair = runs[i] + runs[i + 1]
            pair.sort(key=_BY_ORDER, reverse=True)
            merged.append(pair)
            yield None
        if len(runs) % 2:
            merged.append(runs[-1])
        runs = merged
    best_first = runs[0] if runs else []

    # One index for all matchers, keyed by the literal text a matching path must start with: the prefix
    # itself, the literal head of a regex, or "" (path-less routes, regexes without a literal head). Filed
    # best first, so that every list comes out sorted.
    buckets: dict[str, Bucket] = {}
    length_counts: dict[int, int] = {}
    header_counts: dict[str, int] = {}
    for done, m in enumerate(best_first, 1):
        for rule in m.headers:
            for name in rule.names:
                header_counts[name] = header_counts.get(name, 0) + 1
        for key in m.index_keys:
            bucket = buckets.get(key)
            if bucket is None:
                bucket = buckets[key] = Bucket({}, None)
                length_counts[len(key)] = length_counts.get(len(key), 0) + 1
            if m.index_hosts:
                for host in m.index_hosts:
                    seq = bucket.by_host.get(host)
                    if seq is None:
                        bucket.by_host[host] = [m]
                    else:
                        seq.append(m)
            elif bucket.other is None:
                bucket.other = [m]
            else:
                bucket.other.append(m)
        if done % _INDEX_CHUNK == 0:
            yield None
    yield Index(
        list(routes), compiled, skipped, _copy_services(services_by_id), keyed, buckets, length_counts,
        header_counts, len(best_first),
    )


class _Diff:
    """A new route list against the previous index's, by identity."""

    __slots__ = ("fresh", "gone", "ok")

    def __init__(self) -> None:
        self.fresh: list[Row] = []  # rows the previous index does not hold: new routes, new versions of routes
        self.gone: list[Row] = []  # previous rows no longer listed: deleted routes, old versions
        self.ok = True  # False: too many changes (or a reordered list) for an update to pay off


def _same_run(new: list[Row], i: int, old: list[Row], j: int, limit: int) -> int:
    """How many rows from ``new[i]`` and ``old[j]`` on are the very same objects, at most ``limit``. Compared
    in C, in growing pieces so that a short run does not copy long slices."""
    done = 0
    size = 8
    while done < limit:
        size = min(size * 4, limit - done)
        pairs = map(operator.is_not, new[i + done : i + done + size], old[j + done : j + done + size])
        differs = next(compress(count(), pairs), -1)
        if differs >= 0:
            return done + differs
        done += size
    return limit


def _diff_steps(diff: _Diff, new: list[Row], prev: Index, budget: int) -> Iterator[None]:
    """Fill ``diff``: walk both lists together, skipping runs of identical rows. Where they part, a new row that
    is not the previous row of its id is fresh. Otherwise one of the two rows there is out of place: the new
    one moved here (when the old one comes soon after it in the new list), or else the old one left or moved
    away, and is passed over. Which one is only a guess, for speed: either way, a previous row met in the new
    list out of place is not gone in the end. The configuration feed keeps the list's order (an edited row
    goes to the end), so each write costs one or two such steps."""
    old = prev.routes
    n = len(new)
    m = len(old)
    i = 0
    j = 0
    met: set[int] = set()  # id() of previous rows met out of place in the new list
    passed: list[Row] = []  # previous rows passed over in the old list
    steps = 0
    while i < n and j < m:
        limit = min(n - i, m - j, _RUN_CHUNK)
        run = _same_run(new, i, old, j, limit)
        i += run
        j += run
        if run == limit:
            yield None
            continue
        row = new[i]
        rid = row.get("id")
        if not isinstance(rid, str) or prev.row(rid) is not row:
            diff.fresh.append(row)
            i += 1
        else:
            met.add(id(row))
            here = old[j]
            if _is_among(here, new, i + 1, min(n, i + 1 + _LOOKAHEAD)):
                i += 1  # `row` moved up the list, to here
            else:
                passed.append(here)
                j += 1
        steps += 1
        if steps > budget:
            diff.ok = False
            return
        if steps % _DIFF_STEPS == 0:
            yield None
    if steps + (n - i) + (m - j) > budget:
        diff.ok = False
        return
    for row in new[i:]:
        rid = row.get("id")
        if isinstance(rid, str) and prev.row(rid) is row:
            met.add(id(row))
        else:
            diff.fresh.append(row)
    passed.extend(old[j:])
    diff.gone = [row for row in passed if id(row) not in met]


def _is_among(row: Row, seq: list[Row], start: int, stop: int) -> bool:
    for k in range(start, stop):
        if seq[k] is row:
            return True
    return False


def _changed_services(old: dict[str, Row], new: Mapping[str, Row]) -> set[str]:
    """Ids of the services whose row is not the very object ``old`` holds: added, replaced or removed."""
    changed = set(compress(new.keys(), map(operator.is_not, new.values(), map(old.get, new.keys()))))
    added = sum(1 for sid in changed if sid not in old)
    if len(old) != len(new) - added:  # some of old's ids are not in new
        changed.update(sid for sid in old if sid not in new)
    return changed


def _rows(index: Index) -> Iterator[Row]:
    for ms in index.compiled.values():
        yield ms[0].route
    yield from index.skipped.values()


def _update_steps(routes: list[Row], services_by_id: Mapping[str, Row], prev: Index) -> Iterator[Index | None]:
    """An index from ``prev`` by copying only what the changed routes touch; yields no index (only steps) when
    the change is too large for that to pay off, or the new routes' ids are not distinct strings: the caller
    then makes a full build."""
    n = len(routes)
    budget = max(n // _CHANGED_SHARE, _MIN_BUDGET)
    diff = _Diff()
    yield from _diff_steps(diff, routes, prev, budget)
    if not diff.ok:
        return
    fresh = diff.fresh
    gone = diff.gone
    services = _copy_services(services_by_id)
    changed_services = _changed_services(prev.services, services)
    if changed_services:
        # Listed routes of a changed service are compiled again: out with the old matchers, in with new ones.
        # O(routes), but only when a service changed.
        gone_ids = {row["id"] for row in gone}
        affected: list[Row] = []
        for scanned, row in enumerate(_rows(prev), 1):
            if _service_id(row) in changed_services and row["id"] not in gone_ids:
                affected.append(row)
            if scanned % _SCAN_CHUNK == 0:
                yield None
        fresh = fresh + affected
        gone = gone + affected
    if len(fresh) + len(gone) > budget:
        return

    # Each copy below is one call into C, O(routes) but some 4 ns a route: a step of its own.
    compiled = prev.compiled.copy()
    yield None
    skipped = prev.skipped
    removed: list[Matcher] = []
    for row in gone:
        rid = row["id"]  # a previous row: its id is a distinct string (prev.keyed)
        ms = compiled.pop(rid, None)
        if ms is not None:
            removed.extend(ms)
        else:
            if skipped is prev.skipped:
                skipped = skipped.copy()
            del skipped[rid]
    added: list[Matcher] = []
    work = 0
    for route in fresh:
        rid = route.get("id")
        if not isinstance(rid, str) or rid in compiled or rid in skipped:
            return  # an id that is no string, or two listed routes with one id: the full build's business
        ms = _evaluate(route, services_by_id)
        if ms:
            compiled[rid] = ms
            added.extend(ms)
        else:
            if skipped is prev.skipped:
                skipped = skipped.copy()
            skipped[rid] = route
        work += _FRESH_WORK * max(len(ms), 1)
        if work >= _STEP_WORK:
            work = 0
            yield None
    if len(compiled) + len(skipped) != n:  # a route listed twice
        return

    buckets = prev.buckets.copy()
    yield None
    length_counts = prev.length_counts
    if removed or added:
        length_counts = length_counts.copy()
        _file_changes(buckets, length_counts, removed, added)
    header_counts = prev.header_counts
    if any(m.headers for m in removed) or any(m.headers for m in added):
        header_counts = header_counts.copy()
        _count_headers(header_counts, removed, -1)
        _count_headers(header_counts, added, 1)
    new_routes = list(routes)
    yield None
    yield Index(
        new_routes, compiled, skipped, services, True, buckets, length_counts, header_counts,
        prev.count - len(removed) + len(added),
    )


def _count_headers(counts: dict[str, int], matchers: list[Matcher], delta: int) -> None:
    for m in matchers:
        for rule in m.headers:
            for name in rule.names:
                left = counts.get(name, 0) + delta
                if left:
                    counts[name] = left
                else:
                    del counts[name]


def _file_changes(
    buckets: dict[str, Bucket], length_counts: dict[int, int], removed: list[Matcher], added: list[Matcher]
) -> None:
    """Take ``removed`` out of and put ``added`` into ``buckets`` (the new index's copy of the dict), replacing
    each bucket touched by a new one whose touched lists are new too: what the previous index holds stays."""
    edits: dict[str, list[tuple[Matcher, bool]]] = {}
    for m in removed:  # removals first: an edited route's new matcher can have the old one's order
        for key in m.index_keys:
            edits.setdefault(key, []).append((m, False))
    for m in added:
        for key in m.index_keys:
            edits.setdefault(key, []).append((m, True))
    for key, ops in edits.items():
        old = buckets.get(key)
        bucket = Bucket(old.by_host.copy(), old.other) if old is not None else Bucket({}, None)
        lists: dict[str, list[Matcher]] = {}  # host -> the new list for it, copied on first change
        other: list[Matcher] | None = None
        for m, add in ops:
            if m.index_hosts:
                for host in m.index_hosts:
                    seq = lists.get(host)
                    if seq is None:
                        seq = lists[host] = list(bucket.by_host.get(host) or ())
                    _edit(seq, m, add)
            else:
                if other is None:
                    other = list(bucket.other or ())
                _edit(other, m, add)
        for host, seq in lists.items():
            if seq:
                bucket.by_host[host] = seq
            else:
                bucket.by_host.pop(host, None)
        if other is not None:
            bucket.other = other or None
        length = len(key)
        if bucket.by_host or bucket.other:
            buckets[key] = bucket
            if old is None:
                length_counts[length] = length_counts.get(length, 0) + 1
        elif old is not None:
            del buckets[key]
            left = length_counts[length] - 1
            if left:
                length_counts[length] = left
            else:
                del length_counts[length]


def _position(seq: list[Matcher], order: str) -> int:
    """Index of the first matcher of ``seq`` (best first) not ranked above ``order``."""
    lo = 0
    hi = len(seq)
    while lo < hi:
        mid = (lo + hi) // 2
        if seq[mid].order > order:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _edit(seq: list[Matcher], m: Matcher, add: bool) -> None:
    i = _position(seq, m.order)
    if add:
        seq.insert(i, m)
        return
    while seq[i] is not m:  # matchers of one order (routes sharing an id) sit side by side
        i += 1
    del seq[i]


def ranked(index: Index) -> list[Matcher]:
    """Every matcher of ``index``, best first: for tests and tools (a lookup never needs the whole ranking)."""
    seen: dict[int, Matcher] = {}
    for bucket in index.buckets.values():
        for seq in bucket.by_host.values():
            for m in seq:
                seen[id(m)] = m
        for m in bucket.other or ():
            seen[id(m)] = m
    return sorted(seen.values(), key=_BY_ORDER, reverse=True)
