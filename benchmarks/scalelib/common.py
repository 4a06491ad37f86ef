"""What every phase shares: the plan (full or quick), logging, percentiles and a hard deadline helper."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

# The load generator's and backend's CPU (benchlib pins the measured proxy on CPU 1): a control node goes here.
LOAD_CPUS = {0}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Plan:
    """Sizes, durations and every bound of one run. QUICK proves each part works; its figures mean nothing."""

    sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    base: int = 1000  # the RSS reference size, measured first
    fill_batch: int = 5000  # rows per insert_many call, one transaction per batch
    # 1. admin writes
    writers: int = 8
    write_s: float = 10.0
    write_cap: int = 4000  # total POSTs over all writers
    request_timeout_s: float = 60.0  # one admin or proxied request; today's main reloads everything per write
    # 2. RSS (and the warm-up before it)
    warmup_s: float = 2.0
    # 3. credential cache
    hit_keys: int = 200
    cache_requests: int = 1000  # of each kind; misses are each a key never used before
    cache_rounds: int = 4  # hit block, miss block, ... (the node's counters are read between blocks)
    # Workers publish their cache counters after each configuration poll (db_update_frequency, 0.25 s by
    # default): wait this long before reading /status so the counters cover the block just run.
    stats_settle_s: float = 0.6
    # 4. proxy p99 under a write storm
    routes: int = 10_000
    load_s: float = 10.0
    storm_writers: int = 4
    # "1+ctl": the measured node has one worker on CPU 1 and the storm goes through a second node's Admin API
    # (on CPU 0): the worker only applies the change events, as in a deployment with a control node. "1": the
    # storm goes through the measured node's own Admin API, which shares its one CPU. "2": two workers unpinned,
    # the Admin API in the master.
    storm_workers: tuple[str, ...] = ("1+ctl", "1", "2")
    # 5. propagation
    prop_repeats: int = 50
    prop_deadline_s: float = 30.0  # per create or delete: no change seen by then counts as a timeout
    prop_budget_s: float = 600.0  # the whole propagation phase of one size
    prop_poll_s: float = 0.005
    prop_consecutive: int = 5
    # starting a node: base + per stored key (today's main loads every key into the snapshot)
    start_deadline_s: float = 60.0
    start_deadline_per_key_s: float = 1e-4

    def start_deadline(self, keys: int) -> float:
        return self.start_deadline_s + keys * self.start_deadline_per_key_s

    def all_sizes(self) -> list[int]:
        return sorted({self.base, *self.sizes})


FULL = Plan()
QUICK = Plan(
    sizes=(1000, 2000), base=200, fill_batch=500, write_s=2.0, write_cap=400, warmup_s=1.0, hit_keys=20,
    cache_requests=100, cache_rounds=2, routes=300, load_s=2.0, prop_repeats=5, prop_deadline_s=10.0, prop_budget_s=60.0,
    start_deadline_s=30.0,
)  # fmt: skip


def with_overrides(plan: Plan, **kw: Any) -> Plan:
    return replace(plan, **{k: v for k, v in kw.items() if v is not None})


def pct(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of unsorted values; None for no values."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))
    return s[k]


def dist(values: Sequence[float]) -> dict[str, float | int | None]:
    """p50, p99, max and count of latencies (ms)."""
    return {"p50": pct(values, 50), "p99": pct(values, 99), "max": max(values) if values else None,
            "n": len(values)}


class Deadline:
    """A monotonic deadline: every loop in this benchmark checks one, so none can run on forever."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def passed(self) -> bool:
        return time.monotonic() >= self.end
