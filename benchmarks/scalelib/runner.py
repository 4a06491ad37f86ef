"""One store's measurements: fill to each size and measure it, then the route-storm test on its own database.

Nodes are started after each fill (the fill runs with no node up) and always stopped, databases always dropped,
whatever fails in between. A phase that fails records `{"failed": reason}` and the run goes on.
"""

from __future__ import annotations

import asyncio
import functools
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from benchlib.load import run_wrk

from .common import LOAD_CPUS, Plan, log
from .dbs import Database, open_database
from .fill import Filler, key_of
from .nodes import Node
from .probes import cache_probe, propagation
from .writes import storm_while, write_throughput

T = TypeVar("T")
PROP_CONSUMER = "scale-00000000"  # propagation and storm keys go to the first filled consumer


@dataclass
class Ctx:
    plan: Plan
    workdir: Path
    backend_url: str
    pg_url: str
    pythonpath: str | None  # servegate's compiled build, or None for the source tree


def _guard(what: str, fn: Callable[[], T]) -> T | dict[str, str]:
    """Run one phase; a failure becomes its result (the report says why) instead of ending the run."""
    try:
        return fn()
    except Exception as e:
        log(f"  {what} failed: {type(e).__name__}: {e}")
        log("".join(traceback.format_exception(e)[-3:]).rstrip())
        return {"failed": f"{type(e).__name__}: {e}"[:500]}


class KeyPicker:
    """Stored keys never used before on this database (a miss must be a first use)."""

    def __init__(self) -> None:
        self.used: set[int] = set()

    def take(self, count: int, stored: int) -> list[str]:
        free = [i for i in range(stored) if i not in self.used]
        step = max(1, len(free) // max(count, 1))
        picked = free[::step][:count]  # spread over the whole key range, not only the newest rows
        self.used.update(picked)
        return [key_of(i) for i in picked]

    def reserve(self, indexes: range) -> list[str]:
        self.used.update(indexes)
        return [key_of(i) for i in indexes]


def _ms(v: Any) -> str:
    return f"{v:.2f} ms" if isinstance(v, int | float) else "n/a"


def _warm(node: Node, ctx: Ctx, apikey: str) -> dict[str, float]:
    return run_wrk(node.target(apikey), 64, ctx.plan.warmup_s, ctx.workdir)


def _start(ctx: Ctx, db: Database, name: str, keys: int, *, workers: int, pinned: bool,
           cpus: set[int] | None = None) -> Node:
    node = Node(name, db, ctx.workdir, workers=workers, pinned=pinned, pythonpath=ctx.pythonpath, cpus=cpus)
    try:
        node.wait_ready(key_of(0), ctx.plan.start_deadline(keys))
    except BaseException:
        node.stop()
        raise
    return node


def measure_store(ctx: Ctx, kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {"sizes": {}, "storm": {}}
    db = open_database(kind, ctx.workdir, "keys", ctx.pg_url)
    db.create()
    try:
        picker = KeyPicker()
        hit_keys = picker.reserve(range(ctx.plan.hit_keys))
        filled = 0
        for n in ctx.plan.all_sizes():
            log(f"{kind}: fill to {n:,} consumers with keys")
            fill = _guard(f"fill to {n:,}", functools.partial(asyncio.run, _fill(ctx, db, filled, n)))
            if "failed" in fill:  # the next sizes would build on a half-filled database: stop here
                out["sizes"][str(n)] = {"fill": fill}
                break
            filled = n
            log(f"{kind}: {n:,} filled in {fill['seconds']:.1f} s ({'insert_many' if fill['bulk'] else 'insert loop'})")
            out["sizes"][str(n)] = {"fill": fill, **_measure_size(ctx, db, n, hit_keys, picker)}
    finally:
        db.drop()
    out["storm"] = _guard("storm", lambda: _storm(ctx, kind))
    return out


async def _fill(ctx: Ctx, db: Database, start: int, stop: int) -> dict[str, Any]:
    async with Filler(db.url(), ctx.plan.fill_batch) as f:
        if start == 0:
            await f.base_config(ctx.backend_url)
        seconds = await f.consumers(start, stop)
        return {"from": start, "to": stop, "seconds": seconds, "rows_per_s": 2 * (stop - start) / max(seconds, 1e-9),
                "bulk": f.bulk}


def _measure_size(ctx: Ctx, db: Database, n: int, hit_keys: list[str], picker: KeyPicker) -> dict[str, Any]:
    res: dict[str, Any] = {}
    tag = f"{n}"

    def single() -> dict[str, Any]:
        node = _start(ctx, db, f"{db.kind}-{n}-w1", n, workers=1, pinned=True)
        try:
            got: dict[str, Any] = {"startup_s": node.startup_s}
            got["warmup"] = _warm(node, ctx, hit_keys[0])
            got["rss"] = node.rss()
            log(f"  {n:,} w1: start-up {node.startup_s:.2f} s, RSS {got['rss']['tree_mb']:.1f} MB")
            misses = picker.take(ctx.plan.cache_requests, n)
            got["cache"] = _guard("cache", lambda: asyncio.run(cache_probe(node, ctx.plan, hit_keys, misses)))
            got["writes"] = _guard("writes", lambda: asyncio.run(write_throughput(node, ctx.plan, tag)))
            w = got["writes"]
            if "failed" not in w:
                log(f"  {n:,} writes: {w['writes_per_s']:.0f}/s, p50 {_ms(w['p50_ms'])} p99 {_ms(w['p99_ms'])}, "
                    f"{w['errors']} errors")
            return got
        finally:
            node.stop()

    def pair() -> dict[str, Any]:
        a = _start(ctx, db, f"{db.kind}-{n}-A", n, workers=2, pinned=False)
        b: Node | None = None
        try:
            got: dict[str, Any] = {"startup_s": a.startup_s}
            got["warmup"] = _warm(a, ctx, hit_keys[0])
            got["rss"] = a.rss()
            b = node_b = _start(ctx, db, f"{db.kind}-{n}-B", n, workers=1, pinned=False)
            got["propagation"] = _guard(
                "propagation", lambda: asyncio.run(propagation(a, node_b, ctx.plan, PROP_CONSUMER, tag)))
            return got
        finally:
            a.stop()
            if b is not None:
                b.stop()

    res["w1"] = _guard(f"{n:,} workers=1", single)
    res["w2"] = _guard(f"{n:,} workers=2 + node B", pair)
    return res


def _storm(ctx: Ctx, kind: str) -> dict[str, Any]:
    """Its own database: the base consumers with keys and `routes` routes /r{i} next to the key-auth route. With
    a control-node setup, a second such database (the decoy) takes the same storm once, so that the cost of the
    storm's CPU on the load generator's side is measured apart from the proxy applying its events."""
    db = open_database(kind, ctx.workdir, "routes", ctx.pg_url)
    decoy = open_database(kind, ctx.workdir, "decoy", ctx.pg_url)
    db.create()
    out: dict[str, Any] = {"routes": ctx.plan.routes}
    wants_decoy = any(m.endswith("+ctl") for m in ctx.plan.storm_workers)
    try:
        out["fill"] = asyncio.run(_fill_routes(ctx, db))
        log(f"{kind}: {ctx.plan.routes:,} routes filled in {out['fill']['seconds']:.1f} s")
        if wants_decoy:
            decoy.create()
            asyncio.run(_fill_routes(ctx, decoy))
        for workers in ctx.plan.storm_workers:
            out[f"w{workers}"] = _guard(f"storm workers={workers}",
                                        functools.partial(_storm_one, ctx, db, workers, decoy))
    finally:
        db.drop()
        if wants_decoy:
            decoy.drop()
    return out


async def _fill_routes(ctx: Ctx, db: Database) -> dict[str, Any]:
    async with Filler(db.url(), ctx.plan.fill_batch) as f:
        ids = await f.base_config(ctx.backend_url)
        await f.consumers(0, ctx.plan.base)
        seconds = await f.routes(ids["service"], ctx.plan.routes)
        return {"seconds": seconds, "bulk": f.bulk}


def _storm_one(ctx: Ctx, db: Database, mode: str, decoy: Database) -> dict[str, Any]:
    """`mode`: "1", "2" (workers of the measured node, which also takes the storm) or "1+ctl" (one worker; the
    storm goes through a control node on CPU 0, the load generator's CPU: first on the decoy database, which
    the measured node does not read, then on its own; the difference is what applying the events costs)."""
    workers = 2 if mode == "2" else 1
    pinned = workers == 1  # as benchlib: one worker on CPU 1; two workers unpinned, sharing CPU 0 with the load
    tag = "w" + mode.replace("+", "")
    node = _start(ctx, db, f"{db.kind}-storm-{tag}", ctx.plan.base, workers=workers, pinned=pinned)
    key = key_of(1)

    def load() -> dict[str, Any]:
        return run_wrk(node.target(key), 64, ctx.plan.load_s, ctx.workdir)

    def storm_through(target: Database | None, label: str) -> tuple[dict[str, Any], dict[str, Any]]:
        control = None
        if target is not None:
            control = _start(ctx, target, f"{db.kind}-storm-{tag}-{label}", ctx.plan.base, workers=1, pinned=False,
                             cpus=LOAD_CPUS)
        try:
            return asyncio.run(storm_while(control or node, ctx.plan, load, PROP_CONSUMER, f"{tag}{label}"))
        finally:
            if control is not None:
                control.stop()

    try:
        _warm(node, ctx, key)
        quiet = load()
        out: dict[str, Any] = {"pinned": pinned, "control": mode.endswith("+ctl"), "quiet": quiet}
        baseline = quiet
        if out["control"]:
            out["decoy"], out["decoy_writes"] = storm_through(decoy, "decoy")
            baseline = out["decoy"]
        loaded, storm = storm_through(db if out["control"] else None, "ctl")
        diff = loaded["p99_ms"] - baseline["p99_ms"] if "p99_ms" in loaded and "p99_ms" in baseline else None
        log(f"  storm {mode}: quiet p99 {_ms(quiet.get('p99_ms'))}, baseline p99 {_ms(baseline.get('p99_ms'))}, "
            f"storm p99 {_ms(loaded.get('p99_ms'))}, {storm['writes_per_s']:.0f} writes/s")
        out.update(storm=loaded, writes=storm, p99_diff_ms=diff)
        return out
    finally:
        node.stop()
