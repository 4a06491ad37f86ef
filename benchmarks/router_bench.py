"""Router micro-benchmark: build time and µs per match on a synthetic 10,000-route configuration.

    python benchmarks/router_bench.py [--routes 10000] [--scaling]
    PYTHONPATH=.build/compiled python benchmarks/router_bench.py     # the mypyc build (scripts/build-compiled)

Route mix (per 10,000): 55% prefix paths (a third with a plain host), 15% one shared path across tenant hosts,
10% regex paths, 10% wildcard hosts + prefix, 8% method-limited prefixes, 2% header-matched routes.
"uncached" calls the lookup behind the LRU (every request a cache miss); "cached" repeats one request;
"linear_scan_miss" is an unindexed scan of the same ranked matchers, for comparison.

Builds: "build_ms" from scratch; "rebuild_1_ms" with one route row changed and ``previous=`` the first router
(an update: it copies only what that route touches); "rebuild_1_new_objects" the objects that rebuild makes for
the garbage collector to track; "async_*" run ``Router.build`` on an event loop beside a task that only yields,
whose longest wait between two turns (or from the last one to the build's end) is the longest slice the build
held the loop ("max_slice", median of 5 runs). "async_max_gc_ms" is the longest garbage-collector pause seen
during those async runs ("async_rebuild_max_gc_ms": during the 1-route ones): a full collection stops the loop
wherever it lands, build or not, and can be the longest slice. "storm_*": 200 rebuilds in a row, each from the
last, after a create, an edit and a delete (see ``storm``): mean ms per rebuild, longest garbage-collector pause.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

# After PYTHONPATH, so that a compiled build given there is the one measured.
sys.path.append(str(Path(__file__).resolve().parents[1] / "src"))

import servegate.proxy.router as router_module  # noqa: E402
from servegate.proxy.router import Router  # noqa: E402

SERVICE = {"id": "5b0f6a28-4c3b-4d0c-9e6f-3f6d2d2a0001", "path": "/v1", "enabled": True}
WORDS = ["api", "chat", "models", "embed", "infer", "gen", "tok", "img", "audio", "batch", "admin", "team"]


def _route(rnd: random.Random, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
        "protocols": ["http", "https"],
        "methods": None, "hosts": None, "paths": None, "headers": None,
        "snis": None, "sources": None, "destinations": None,
        "regex_priority": 0, "strip_path": True, "preserve_host": False,
        "service": {"id": SERVICE["id"]},
    }
    row.update(fields)
    return row


def make_routes(n: int, seed: int = 7) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    routes: list[dict[str, Any]] = []
    hosts = [f"h{i}.example.com" for i in range(100)]
    for i in range(n):
        r = i % 100
        segs = "/".join(rnd.choice(WORDS) for _ in range(rnd.randint(0, 3)))
        base = f"/{segs}/r{i}" if segs else f"/r{i}"
        if r < 55:
            fields: dict[str, Any] = {"paths": [base]}
            if r < 18:
                fields["hosts"] = [rnd.choice(hosts)]
        elif r < 70:
            fields = {"paths": ["/v1/chat/completions"], "hosts": [f"tenant{i}.llm.test"]}
        elif r < 80:
            fields = {"paths": [f"~/models/m{i}/(?<op>[a-z]+)$"]}
        elif r < 90:
            fields = {"paths": [base], "hosts": [f"*.w{i}.example.net"]}
        elif r < 98:
            fields = {"paths": [base], "methods": ["POST"]}
        else:
            fields = {"paths": [base], "headers": {"x-tenant": [f"t{i}"]}}
        routes.append(_route(rnd, **fields))
    return routes


def request_for(route: dict[str, Any]) -> tuple[str, str | None, str, dict[str, str]]:
    method = (route["methods"] or ["GET"])[0]
    host = None
    if route["hosts"]:
        host = route["hosts"][0].replace("*", "a")
    path = route["paths"][0] if route["paths"] else "/"
    if path.startswith("~"):
        num = path[len("~/models/m"):].split("/", 1)[0]
        path = f"/models/m{num}/chat"
    else:
        path += "/x/y"
    headers = {k: v[0] for k, v in (route["headers"] or {}).items()}
    return method, host, path, headers


def _linear_scan(ranked: list[Any], method: str, host: str | None, path: str, headers: dict[str, str]) -> Any:
    """Baseline for comparison: test every matcher in priority order (what an unindexed router does)."""
    for m in ranked:
        if not m.matches_rest(method, host, None, headers):
            continue
        if m.regexes:
            if any(rx.search(path) for rx in m.regexes):
                return m
        elif not m.prefixes or any(path.startswith(p) for p in m.prefixes):
            return m
    return None


def per_call_us(fn: Callable[[], Any], loops: int) -> float:
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(loops):
            fn()
        best = min(best, (time.perf_counter() - t0) / loops)
    return best * 1e6


def best_ms(fn: Callable[[], Any], runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def new_objects(fn: Callable[[], Any]) -> float:
    """Net objects for the garbage collector to track made by ``fn()`` (what it keeps, and what it makes and
    drops; the collector's generation 0 counter, with the collector off meanwhile)."""
    gc.collect()
    gc.disable()
    try:
        before = gc.get_count()[0]
        kept = fn()
        made = gc.get_count()[0] - before
    finally:
        gc.enable()
    del kept
    return float(made)


class GcPauses:
    """The longest garbage-collector pause while installed (gc.callbacks)."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.longest = max(self.longest, time.perf_counter() - self._start)


def async_build(routes: list[dict[str, Any]], previous: Router | None, runs: int = 5) -> dict[str, float]:
    """Router.build beside a task that only yields: best total ms, median longest slice ms, longest GC ms."""

    async def one() -> tuple[float, float]:
        turns: list[float] = []
        building = True

        async def ticker() -> None:
            while building:
                turns.append(time.perf_counter())
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        t0 = time.perf_counter()
        # Held until measured: freeing a 10,000-route router takes milliseconds, which are not the build's.
        router = await Router.build(routes, {SERVICE["id"]: SERVICE}, previous=previous)
        done = time.perf_counter()
        del router
        total = done - t0
        building = False
        await task
        # The build's end closes its last slice (a build that never yields is one slice).
        marks = [t for t in turns if t < done] + [done]
        return total, max(b - a for a, b in zip(marks, marks[1:], strict=False))

    pauses = GcPauses()
    totals, slices = [], []
    for _ in range(runs):
        gc.collect()
        gc.callbacks.append(pauses)
        try:
            total, longest = asyncio.run(one())
        finally:
            gc.callbacks.remove(pauses)
        totals.append(total)
        slices.append(longest)
    return {"ms": min(totals) * 1e3, "max_slice_ms": statistics.median(slices) * 1e3, "gc": pauses.longest * 1e3}


def storm(routes: list[dict[str, Any]], rebuilds: int = 200) -> dict[str, float]:
    """The scale benchmark's write storm, as the configuration feed sees it: per poll a route is created, one
    edited (its new row moves to the end of the list) and one deleted, and the router rebuilt from the last one
    with ``Router.build``. Mean ms per rebuild, and the longest garbage-collector pause meanwhile."""
    rnd = random.Random(5)
    services = {SERVICE["id"]: SERVICE}
    by_id = {r["id"]: r for r in routes}
    extra = make_routes(rebuilds, seed=77)
    pauses = GcPauses()

    async def run() -> float:
        router = await Router.build(list(by_id.values()), services)
        gc.collect()
        gc.callbacks.append(pauses)
        spent = 0.0
        try:
            for i in range(rebuilds):
                by_id[extra[i]["id"]] = extra[i]
                edited = by_id.pop(rnd.choice(list(by_id)))
                by_id[edited["id"]] = {**edited, "strip_path": not edited["strip_path"]}
                del by_id[rnd.choice(list(by_id))]
                new_routes = list(by_id.values())
                t0 = time.perf_counter()
                router = await Router.build(new_routes, services, previous=router)
                spent += time.perf_counter() - t0
        finally:
            gc.callbacks.remove(pauses)
        return spent

    spent = asyncio.run(run())
    return {"ms": spent / rebuilds * 1e3, "gc": pauses.longest * 1e3}


def bench(n: int, loops: int) -> dict[str, float]:
    routes = make_routes(n)
    services = {SERVICE["id"]: SERVICE}
    build_ms = best_ms(lambda: Router(routes, services), 3)
    router = Router(routes, services)
    changed = list(routes)
    changed[n // 2] = {**routes[n // 2], "strip_path": not routes[n // 2]["strip_path"]}
    rebuild_ms = best_ms(lambda: Router(changed, services, previous=router), 5)
    rebuild_objects = new_objects(lambda: Router(changed, services, previous=router))
    full = async_build(routes, None)
    re1 = async_build(changed, router)
    stormed = storm(routes)
    ranked = router._ranked()  # noqa: SLF001 — benchmark looks at the ranking to pick first/last routes
    first, last = ranked[0].route, ranked[-1].route

    def check(req: tuple[str, str | None, str, dict[str, str]], want: dict[str, Any] | None) -> None:
        got = router.match(req[0], req[1], req[2], req[3])
        assert (got.route if got else None) is want, (req, got)

    rnd = random.Random(1)
    sample = rnd.sample(routes, min(2000, n))
    hit_reqs = [request_for(r) for r in sample]
    for req in hit_reqs[:200]:
        # a sampled request may land on a higher-priority route, but it must match something
        assert router.match(*req) is not None
    regex_route = next(r for r in routes if r["paths"] and r["paths"][0].startswith("~"))
    tenant_route = next(r for r in routes if r["paths"] == ["/v1/chat/completions"])
    cases = {
        "first": request_for(first),
        "last": request_for(last),
        "regex": request_for(regex_route),
        "tenant": request_for(tenant_route),
        "miss": ("GET", "nohost.test", "/definitely/not/routed/anywhere", {}),
    }
    check(cases["first"], first)
    check(cases["regex"], regex_route)
    check(cases["tenant"], tenant_route)
    check(cases["miss"], None)
    assert router.match(*cases["last"]) is not None

    out = {
        "build_ms": build_ms,
        "rebuild_1_ms": rebuild_ms,
        "rebuild_1_new_objects": rebuild_objects,
        "async_build_ms": full["ms"],
        "async_build_max_slice_ms": full["max_slice_ms"],
        "async_rebuild_1_ms": re1["ms"],
        "async_rebuild_max_slice_ms": re1["max_slice_ms"],
        "async_max_gc_ms": max(full["gc"], re1["gc"]),
        "async_rebuild_max_gc_ms": re1["gc"],
        "storm_rebuild_ms": stormed["ms"],
        "storm_max_gc_ms": stormed["gc"],
    }
    find = router._find_raw  # noqa: SLF001 — the lookup behind the cache
    for name, (m, h, p, hd) in cases.items():
        out[f"{name}_uncached_us"] = per_call_us(lambda m=m, h=h, p=p, hd=hd: find(m, h, None, p, hd), loops)
    idx = [0]

    def random_hit() -> Any:
        i = idx[0] = (idx[0] + 1) % len(hit_reqs)
        m, h, p, hd = hit_reqs[i]
        return find(m, h, None, p, hd)

    out["random_hit_uncached_us"] = per_call_us(random_hit, loops)
    out["linear_scan_miss_us"] = per_call_us(lambda: _linear_scan(ranked, *cases["miss"]), 10)
    m, h, p, hd = cases["tenant"]
    router.match(m, h, p, hd)
    out["hit_cached_us"] = per_call_us(lambda: router.match(m, h, p, hd), loops)
    m, h, p, hd = cases["miss"]
    out["miss_cached_us"] = per_call_us(lambda: router.match(m, h, p, hd), loops)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--routes", type=int, default=10_000)
    ap.add_argument("--loops", type=int, default=5_000)
    ap.add_argument("--scaling", action="store_true", help="also run 1k / 50k routes")
    args = ap.parse_args()
    sizes = [1_000, args.routes, 50_000] if args.scaling else [args.routes]
    rows = {n: bench(n, args.loops) for n in sizes}
    keys = list(next(iter(rows.values())))
    compiled = not (router_module.__file__ or "").endswith(".py")
    print(f"python {sys.version.split()[0]}; router {'compiled' if compiled else 'pure Python'}; "
          f"best of 5 x {args.loops} calls")
    print(f"{'metric':<26}" + "".join(f"{n:>12,}" for n in sizes))
    for k in keys:
        print(f"{k:<26}" + "".join(f"{rows[n][k]:>12.2f}" for n in sizes))
    if len(sizes) > 1:
        a, b = rows[sizes[0]], rows[sizes[-1]]
        ratio = statistics.mean(b[k] / a[k] for k in keys if k.endswith("uncached_us"))
        print(f"mean uncached cost ratio {sizes[-1]:,} vs {sizes[0]:,} routes: {ratio:.2f}x")


if __name__ == "__main__":
    main()
