"""Admin API writes: the throughput test (8 writers, consumer + key) and the write storm that runs next to wrk
(route create / update / delete and key creates).

Every writer is one keep-alive client. A POST's latency is measured from send to the last byte of the answer;
each POST, PATCH or DELETE is one write. A shared budget caps the count, a deadline the duration, and a hard
timeout around the whole gather ends writers stuck on a request.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from .client import call, session
from .common import Deadline, Plan, dist
from .nodes import Node


class _Tally:
    """What the writers of one phase share: remaining budget, latencies, unexpected statuses."""

    def __init__(self, cap: int) -> None:
        self.left = cap
        self.ok_ms: list[float] = []
        self.errors: Counter[str] = Counter()
        self.last_done = time.perf_counter()

    def take(self, n: int) -> bool:
        if self.left < n:
            return False
        self.left -= n
        return True

    def record(self, what: str, status: int, want: int, ms: float) -> bool:
        self.last_done = time.perf_counter()
        if status == want:
            self.ok_ms.append(ms)
            return True
        self.errors[f"{what} {status or 'transport error'}"] += 1
        return False


async def _gather_bounded(tasks: list[asyncio.Task[None]], timeout_s: float) -> bool:
    """Wait for the writers; cancel what is still running after timeout_s. True when they all finished."""
    done, pending = await asyncio.wait(tasks, timeout=timeout_s)
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.wait(pending, timeout=5)
    for t in done:
        t.result()  # a writer's own bug must not pass silently
    return not pending


async def write_throughput(node: Node, plan: Plan, tag: str) -> dict[str, Any]:
    """`plan.writers` writers, each POST /consumers then POST /consumers/{id}/key-auth, until `write_cap` POSTs
    or `write_s` seconds. Usernames and keys carry `tag` so repeated phases on one database never collide."""
    tally = _Tally(plan.write_cap)
    deadline = Deadline(plan.write_s)

    async def writer(w: int) -> None:
        async with session(plan.request_timeout_s) as s:
            i = 0
            while not deadline.passed() and tally.take(2):
                i += 1
                st, body, ms = await call(s, "POST", node.admin_url("/consumers"), {"username": f"w{tag}-{w}-{i}"})
                if not tally.record("POST /consumers", st, 201, ms) or not isinstance(body, dict):
                    await asyncio.sleep(0.01 if st else 0.2)  # a dead node must not make this a busy loop
                    continue
                st, _, ms = await call(s, "POST", node.admin_url(f"/consumers/{body['id']}/key-auth"),
                                       {"key": f"wkey{tag}-{w}-{i}"})
                tally.record("POST /consumers/{id}/key-auth", st, 201, ms)

    started = time.perf_counter()
    tasks = [asyncio.create_task(writer(w)) for w in range(plan.writers)]
    finished = await _gather_bounded(tasks, plan.write_s + plan.request_timeout_s + 5)
    elapsed = max(tally.last_done - started, 1e-9)
    lat = dist(tally.ok_ms)
    return {
        "writes": len(tally.ok_ms),
        "seconds": elapsed,
        "writes_per_s": len(tally.ok_ms) / elapsed,
        "p50_ms": lat["p50"],
        "p99_ms": lat["p99"],
        "max_ms": lat["max"],
        "errors": sum(tally.errors.values()),
        "error_kinds": dict(tally.errors),
        "cut_short": not finished,
    }


async def storm_while(node: Node, plan: Plan, load: Callable[[], dict[str, Any]], consumer: str,
                      tag: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run `load` (wrk, blocking, in a thread) while `plan.storm_writers` writers change routes and add keys.
    Returns (load result, storm figures)."""
    tally = _Tally(1 << 30)  # bounded by the load's duration, not a count
    stop = asyncio.Event()
    hard = Deadline(plan.load_s + 30)

    async def writer(w: int) -> None:
        async with session(plan.request_timeout_s) as s:
            i = 0
            while not stop.is_set() and not hard.passed():
                i += 1
                path = f"/storm{tag}-{w}-{i}"
                st, body, ms = await call(s, "POST", node.admin_url("/services/scale/routes"), {"paths": [path]})
                if not tally.record("POST route", st, 201, ms) or not isinstance(body, dict):
                    await asyncio.sleep(0.01 if st else 0.2)
                    continue
                route = node.admin_url(f"/routes/{body['id']}")
                st, _, ms = await call(s, "PATCH", route, {"paths": [path + "b"]})
                tally.record("PATCH route", st, 200, ms)
                st, _, ms = await call(s, "POST", node.admin_url(f"/consumers/{consumer}/key-auth"),
                                       {"key": f"storm{tag}-{w}-{i}"})
                tally.record("POST key", st, 201, ms)
                st, _, ms = await call(s, "DELETE", route)
                tally.record("DELETE route", st, 204, ms)

    started = time.perf_counter()
    tasks = [asyncio.create_task(writer(w)) for w in range(plan.storm_writers)]
    try:
        result = await asyncio.to_thread(load)
    finally:
        stop.set()
        finished = await _gather_bounded(tasks, plan.request_timeout_s + 5)
    elapsed = max(tally.last_done - started, 1e-9)
    lat = dist(tally.ok_ms)
    storm = {"writes": len(tally.ok_ms), "writes_per_s": len(tally.ok_ms) / elapsed, "p50_ms": lat["p50"],
             "p99_ms": lat["p99"], "errors": sum(tally.errors.values()), "error_kinds": dict(tally.errors),
             "cut_short": not finished}
    return result, storm
