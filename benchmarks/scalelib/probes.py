"""Proxied probes: the credential cache (hits against misses) and the propagation of key changes.

Cache: keep-alive, one request at a time, so each latency is one request's. Hits and misses alternate in rounds
(a block of hits, then a block of keys never used before) so drift on the box hits both alike; the node's
/status is read around each block, which separates the counters of the two kinds.

Propagation: a key is created (or deleted) through node A's Admin API, then both nodes' proxies are polled on
fresh connections (a new connection may land on any of A's workers) until the change shows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from .client import call, proxied, session, unrouted
from .common import Deadline, Plan, dist
from .nodes import Node

CACHE_FIELDS = ("hits", "misses", "negative_hits", "evictions")


def cache_counters(status: dict[str, Any]) -> dict[str, dict[str, float]] | None:
    """/status -> "servegate" -> "caches" -> name -> counters; None when the node does not expose them."""
    caches = status.get("servegate", {}).get("caches") if isinstance(status.get("servegate"), dict) else None
    if not isinstance(caches, dict):
        return None
    out: dict[str, dict[str, float]] = {}
    for name, c in caches.items():
        if isinstance(c, dict):
            out[name] = {k: float(v) for k, v in c.items() if isinstance(v, int | float)}
    return out


def _delta(before: dict[str, dict[str, float]] | None, after: dict[str, dict[str, float]] | None,
           into: dict[str, dict[str, float]]) -> None:
    if before is None or after is None:
        return
    for name, now in after.items():
        was = before.get(name, {})
        acc = into.setdefault(name, {k: 0.0 for k in CACHE_FIELDS})
        for k in CACHE_FIELDS:
            acc[k] += now.get(k, 0.0) - was.get(k, 0.0)
        for k in ("size", "capacity"):  # levels, not counters: the latest
            if k in now:
                acc[k] = now[k]


def hit_rate(deltas: dict[str, dict[str, float]] | None) -> float | None:
    """Hits over lookups summed over every cache (negative hits count as hits: they answered from memory)."""
    if not deltas:
        return None
    hits = sum(c.get("hits", 0) + c.get("negative_hits", 0) for c in deltas.values())
    looked = hits + sum(c.get("misses", 0) for c in deltas.values())
    return hits / looked if looked else None


async def cache_probe(node: Node, plan: Plan, hit_keys: Sequence[str], miss_keys: Sequence[str]
                      ) -> dict[str, Any]:
    hit_ms: list[float] = []
    miss_ms: list[float] = []
    bad: dict[str, int] = {}
    deltas: dict[str, dict[str, dict[str, float]]] = {"hit": {}, "miss": {}}
    exposed = True
    counters: dict[str, dict[str, float]] | None = None  # the node's, as last read
    budget = Deadline(plan.request_timeout_s * 2 + len(miss_keys) * 0.5)
    async with session(plan.request_timeout_s) as s, session(plan.request_timeout_s) as admin:

        async def status() -> dict[str, dict[str, float]] | None:
            await asyncio.sleep(plan.stats_settle_s)  # let every worker publish what the last block did
            st, body, _ = await call(admin, "GET", node.admin_url("/status"))
            return cache_counters(body) if st == 200 and isinstance(body, dict) else None

        async def block(kind: str, keys: Sequence[str], into: list[float]) -> None:
            nonlocal exposed, counters
            for _ in range(3):  # after the settle pause: wake the connection and both processes, untimed;
                # a path no route matches never reaches key-auth, so the node's cache counters stay the block's
                await unrouted(s, node.port)
            for key in keys:
                if budget.passed():
                    break
                st, ms = await proxied(s, node.port, key)
                if st == 200:
                    into.append(ms)
                else:
                    bad[f"{kind} {st}"] = bad.get(f"{kind} {st}", 0) + 1
            after = await status()
            exposed = exposed and after is not None
            _delta(counters, after, deltas[kind])
            counters = after

        for key in hit_keys:  # prime: a hit key's first use is itself a miss
            await proxied(s, node.port, key)
        counters = await status()
        per = max(1, len(miss_keys) // max(1, plan.cache_rounds))
        hits_cycle = [hit_keys[j % len(hit_keys)] for j in range(len(miss_keys))]
        for r in range(0, len(miss_keys), per):
            await block("hit", hits_cycle[r:r + per], hit_ms)
            await block("miss", miss_keys[r:r + per], miss_ms)
    hit, miss = dist(hit_ms), dist(miss_ms)
    added = {q: (miss[q] - hit[q]) if miss[q] is not None and hit[q] is not None else None  # type: ignore[operator]
             for q in ("p50", "p99")}
    return {
        "hit_ms": hit, "miss_ms": miss, "added_p50_ms": added["p50"], "added_p99_ms": added["p99"],
        "errors": bad,
        "counters": deltas if exposed else None,
        "hit_rate_hits": hit_rate(deltas["hit"]) if exposed else None,
        "hit_rate_misses": hit_rate(deltas["miss"]) if exposed else None,
    }


async def _watch(node: Node, key: str, want: int, t0: float, plan: Plan) -> tuple[float | None, float | None]:
    """Poll fresh connections until `want`: (seconds to the first, seconds to `prop_consecutive` in a row);
    None for what did not happen within prop_deadline_s."""
    first: float | None = None
    streak = 0
    deadline = Deadline(plan.prop_deadline_s)
    async with session(min(plan.request_timeout_s, plan.prop_deadline_s), fresh=True) as s:
        while not deadline.passed():
            st, _ = await proxied(s, node.port, key)
            now = time.perf_counter() - t0
            if st == want:
                first = now if first is None else first
                streak += 1
                if streak >= plan.prop_consecutive:
                    return first, now
            else:
                streak = 0
            await asyncio.sleep(plan.prop_poll_s)
    return first, None


async def propagation(a: Node, b: Node, plan: Plan, consumer: str, tag: str) -> dict[str, Any]:
    """Create then delete a key `prop_repeats` times through A; time it on A's and B's proxies."""
    samples: dict[str, dict[str, list[float]]] = {
        op: {"A_first": [], "A_all": [], "B_first": [], "B_all": []} for op in ("create", "delete")}
    timeouts: dict[str, int] = {}
    errors: dict[str, int] = {}
    budget = Deadline(plan.prop_budget_s)
    done = 0
    async with session(plan.request_timeout_s) as admin:
        for k in range(plan.prop_repeats):
            if budget.passed():
                break
            st, body, _ = await call(admin, "POST", a.admin_url(f"/consumers/{consumer}/key-auth"),
                                     {"key": f"prop{tag}-{k}"})
            t0 = time.perf_counter()
            if st != 201 or not isinstance(body, dict):
                errors[f"create {st}"] = errors.get(f"create {st}", 0) + 1
                continue
            await _round(a, b, body["key"], 200, t0, plan, samples["create"], timeouts, "create")
            st, _, _ = await call(admin, "DELETE", a.admin_url(f"/key-auths/{body['id']}"))
            t0 = time.perf_counter()
            if st != 204:
                errors[f"delete {st}"] = errors.get(f"delete {st}", 0) + 1
                continue
            await _round(a, b, body["key"], 401, t0, plan, samples["delete"], timeouts, "delete")
            done += 1
    out: dict[str, Any] = {"repeats": done, "timeouts": timeouts, "errors": errors}
    for op, series in samples.items():
        out[op] = {name: dist([v * 1000 for v in vals]) for name, vals in series.items()}
    return out


async def _round(a: Node, b: Node, key: str, want: int, t0: float, plan: Plan,
                 into: dict[str, list[float]], timeouts: dict[str, int], op: str) -> None:
    (af, aa), (bf, ba) = await asyncio.gather(_watch(a, key, want, t0, plan), _watch(b, key, want, t0, plan))
    for name, v in (("A_first", af), ("A_all", aa), ("B_first", bf), ("B_all", ba)):
        if v is None:
            timeouts[f"{op} {name}"] = timeouts.get(f"{op} {name}", 0) + 1
        else:
            into[name].append(v)
