"""The balancing algorithms. Each picks one endpoint from the balancer's usable ones (healthy, weight > 0)
and never one in `exclude` (the endpoints this request already tried) unless nothing else is usable.

Kong's: round-robin (weighted), least-connections, consistent-hashing, latency. servegate's own:
least-outstanding and prefix-affinity (docs/load-balancing.md says how they differ from Kong's).
"""

from __future__ import annotations

import bisect
import math
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from servegate.proxy.balancer.endpoint import Endpoint

Usable = Callable[[Endpoint], bool]


def candidates(endpoints: Sequence[Endpoint], usable: Usable, exclude: Any) -> list[Endpoint]:
    """Usable endpoints not yet tried; every usable one when all were tried (a retry may reuse one)."""
    fresh = [ep for ep in endpoints if usable(ep) and (exclude is None or ep not in exclude)]
    if fresh or exclude is None:
        return fresh
    return [ep for ep in endpoints if usable(ep)]


class Algorithm:
    """`pick(endpoints, usable, exclude, key)`: `key` is the request's hash input (consistent-hashing,
    prefix-affinity), None for the others."""

    needs_key = False
    node_load = False  # counts open requests over the node's workers (Endpoint.load_cells)

    def __init__(self, upstream: dict[str, Any], endpoints: Sequence[Endpoint]) -> None:
        self.endpoints = endpoints
        self.turn = 0

    def pick(self, usable: Usable, exclude: Any, key: str | None) -> Endpoint | None:
        raise NotImplementedError


class RoundRobin(Algorithm):
    """Smooth weighted round-robin (nginx's): over any run of sum(weights) picks each endpoint gets exactly its
    weight's share, interleaved rather than in bursts."""

    def pick(self, usable: Usable, exclude: Any, key: str | None) -> Endpoint | None:
        best: Endpoint | None = None
        total = 0
        for ep in self.endpoints if exclude is None else candidates(self.endpoints, usable, exclude):
            if exclude is None and not usable(ep):
                continue
            w = ep.weight
            current = ep.current + w
            ep.current = current
            total += w
            if best is None or current > best.current:
                best = ep
        if best is not None:
            best.current -= total
        return best


def _least(eps: Sequence[Endpoint], usable: Usable, exclude: Any, score: Callable[[Endpoint], float],
           turn: int) -> Endpoint | None:
    """The usable endpoint with the lowest score; ties go round (starting at `turn`) so that equal endpoints
    share."""
    if exclude is not None:
        eps = candidates(eps, usable, exclude)
    n = len(eps)
    best = None
    best_score = 0.0
    for i in range(n):
        ep = eps[(turn + i) % n]
        if exclude is None and not usable(ep):
            continue
        s = score(ep)
        if best is None or s < best_score:
            best, best_score = ep, s
    return best


def _connections(ep: Endpoint) -> float:
    return (ep.active + 1) / ep.weight


def _outstanding(ep: Endpoint) -> float:
    return (ep.load() + 1) / ep.weight


def _latency(ep: Endpoint) -> float:
    return ep.ewma * (ep.active + 1) / ep.weight


class LeastConnections(Algorithm):
    """Kong's: the fewest requests in flight relative to weight, counted by this worker."""

    def pick(self, usable: Usable, exclude: Any, key: str | None) -> Endpoint | None:
        self.turn += 1
        return _least(self.endpoints, usable, exclude, _connections, self.turn)


class LeastOutstanding(Algorithm):
    """servegate's: the fewest open requests relative to weight, counted over every worker of the node, from
    the pick to the last byte of the response (a stream counts until it ends)."""

    node_load = True

    def pick(self, usable: Usable, exclude: Any, key: str | None) -> Endpoint | None:
        self.turn += 1
        return _least(self.endpoints, usable, exclude, _outstanding, self.turn)


class Latency(Algorithm):
    """Kong's latency: the lowest smoothed time to the response head, scaled by the requests in flight; an
    endpoint without a measure yet is tried first."""

    def pick(self, usable: Usable, exclude: Any, key: str | None) -> Endpoint | None:
        self.turn += 1
        return _least(self.endpoints, usable, exclude, _latency, self.turn)


def hash32(value: str) -> int:
    """CRC-32 with murmur3's finalizer. CRC-32 alone is linear: the points of two targets whose names differ
    in a few characters were XOR-translates of one set, so a ring shared out equally gave them 29% and 40%
    of the keys; the finalizer mixes the bits (shares within ~3% of the weights at 10,000 slots)."""
    h = zlib.crc32(value.encode("utf-8", "surrogateescape"))
    h = ((h ^ (h >> 16)) * 0x85EBCA6B) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * 0xC2B2AE35) & 0xFFFFFFFF
    return h ^ (h >> 16)


class Ring:
    """A hash ring of about `slots` points, shared out by weight, each point an endpoint."""

    def __init__(self, endpoints: Sequence[Endpoint], slots: int) -> None:
        total = sum(ep.weight for ep in endpoints) or 1
        points: list[tuple[int, int]] = []
        for i, ep in enumerate(endpoints):
            if ep.weight <= 0:
                continue
            for n in range(max(1, round(slots * ep.weight / total))):
                points.append((hash32(f"{ep.target}|{ep.address}|{n}"), i))
        points.sort()
        self.hashes = [h for h, _ in points]
        self.owners = [i for _, i in points]
        self.endpoints = endpoints
        self.distinct = len(set(self.owners))

    def walk(self, key: str) -> Iterator[Endpoint]:
        """Distinct endpoints in ring order from the key's position, lazily."""
        hashes = self.hashes
        n = len(hashes)
        if not n:
            return
        start = bisect.bisect_left(hashes, hash32(key)) % n
        seen: set[int] = set()
        owners, endpoints, want = self.owners, self.endpoints, self.distinct
        for step in range(n):
            i = owners[(start + step) % n]
            if i not in seen:
                seen.add(i)
                yield endpoints[i]
                if len(seen) == want:
                    return

    def first(self, key: str, usable: Usable, exclude: Any) -> Endpoint | None:
        """The first usable endpoint from the key's position (skipping `exclude` while another is usable)."""
        hashes = self.hashes
        n = len(hashes)
        if not n:
            return None
        start = bisect.bisect_left(hashes, hash32(key)) % n
        fallback = None
        owners, endpoints = self.owners, self.endpoints
        for step in range(n):
            ep = endpoints[owners[(start + step) % n]]
            if not usable(ep):
                continue
            if exclude is None or ep not in exclude:
                return ep
            if fallback is None:
                fallback = ep
        return fallback


class ConsistentHashing(Algorithm):
    """Kong's consistent-hashing: the request's hash input (hash_on, else hash_fallback) placed on a ring of
    `slots` points; without an input, round-robin."""

    needs_key = True

    def __init__(self, upstream: dict[str, Any], endpoints: Sequence[Endpoint]) -> None:
        super().__init__(upstream, endpoints)
        self.ring = Ring(endpoints, int(upstream.get("slots") or 10000))
        self.fallback = RoundRobin(upstream, endpoints)

    def pick(self, usable: Usable, exclude: Any, key: str | None) -> Endpoint | None:
        if key is None:
            return self.fallback.pick(usable, exclude, None)
        return self.ring.first(key, usable, exclude)


class PrefixAffinity(Algorithm):
    """servegate's: the first `prefix_chars` characters of the prompt placed on a ring (consistent hashing with
    bounded loads): the request goes to the first endpoint from that point whose open requests stay within
    (1 + load_factor) x its weighted share of the node's open requests, so requests sharing a system prompt or
    a conversation reach the replica that has its KV cache, until that replica is busier than the bound allows.
    `hits` counts requests placed on their first endpoint, `spills` those the bound moved on."""

    needs_key = True
    node_load = True

    def __init__(self, upstream: dict[str, Any], endpoints: Sequence[Endpoint]) -> None:
        super().__init__(upstream, endpoints)
        self.ring = Ring(endpoints, int(upstream.get("slots") or 10000))
        self.epsilon = float(upstream.get("load_factor", 0.25) or 0.0)
        self.fallback = LeastOutstanding(upstream, endpoints)
        self.hits = 0
        self.spills = 0

    def pick(self, usable: Usable, exclude: Any, key: str | None) -> Endpoint | None:
        if key is None:
            return self.fallback.pick(usable, exclude, None)
        eps = candidates(self.endpoints, usable, exclude)
        if not eps:
            return None
        total = sum(ep.load() for ep in eps) + 1  # this request included
        weights = sum(ep.weight for ep in eps)
        first = True
        for ep in self.ring.walk(key):
            if ep not in eps:
                continue
            # CHWBL: capacity ceil((1 + e) x weighted share of the load); the capacities sum to at least the
            # load, so some endpoint always has room.
            if ep.load() + 1 <= math.ceil((1.0 + self.epsilon) * total * ep.weight / weights):
                if first:
                    self.hits += 1
                else:
                    self.spills += 1
                return ep
            first = False
        self.spills += 1
        return self.fallback.pick(usable, exclude, None)


ALGORITHMS: dict[str, type[Algorithm]] = {
    "round-robin": RoundRobin,
    "least-connections": LeastConnections,
    "consistent-hashing": ConsistentHashing,
    "latency": Latency,
    "least-outstanding": LeastOutstanding,
    "prefix-affinity": PrefixAffinity,
}
