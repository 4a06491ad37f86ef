"""The scale run's goals (pass/fail) and its markdown report, both built from the raw JSON alone."""

from __future__ import annotations

from typing import Any

FLAT_WITHIN = 0.20  # writes/s: slowest size >= (1 - this) x fastest
PG_WRITES_PER_S = 500.0
RSS_WITHIN_MB = 20.0
STORM_P99_WITHIN_MS = 1.0


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def _num(v: Any, fmt: str = "{:,.1f}") -> str:
    if isinstance(v, int | float):
        return fmt.format(v)
    return "n/a" if v is None else str(v)


def _failed(d: Any) -> str | None:
    return d.get("failed") if isinstance(d, dict) and "failed" in d else None


def _why(reason: str | None) -> str:
    return f"failed: {reason}" if reason else "n/a"


def goals(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per store and goal: value, limit, pass (None: not measurable in this run)."""
    rows: list[dict[str, Any]] = []
    sizes = [str(n) for n in raw["meta"]["plan"]["sizes"]]
    base = str(raw["meta"]["plan"]["base"])
    for store, res in raw["stores"].items():
        per = {n: _get(res, "sizes", n, "w1", "writes", "writes_per_s") for n in sizes}
        got = [v for v in per.values() if isinstance(v, int | float)]
        ratio = min(got) / max(got) if len(got) >= 2 and max(got) > 0 else None
        rows.append({"store": store, "goal": f"writes/s flat within {FLAT_WITHIN:.0%} across sizes",
                     "value": f"slowest/fastest = {_num(ratio, '{:.2f}')}", "limit": f">= {1 - FLAT_WITHIN:.2f}",
                     "pass": None if ratio is None or len(got) < len(sizes) else ratio >= 1 - FLAT_WITHIN})
        if store == "postgres":
            low = min(got) if got else None
            rows.append({"store": store, "goal": f">= {PG_WRITES_PER_S:.0f} writes/s at every size",
                         "value": f"min {_num(low, '{:,.0f}')}/s", "limit": f">= {PG_WRITES_PER_S:.0f}",
                         "pass": None if low is None or len(got) < len(sizes) else low >= PG_WRITES_PER_S})
        top = sizes[-1] if sizes else base
        for label, path in (("workers=1 tree", ("w1", "rss", "tree_mb")), ("workers=2, each worker", None)):
            if path is None:
                b_ws, t_ws = _get(res, "sizes", base, "w2", "rss", "worker_mb"), _get(res, "sizes", top, "w2", "rss", "worker_mb")
                b_v = max(b_ws) if b_ws else None
                t_v = max(t_ws) if t_ws else None
            else:
                b_v, t_v = _get(res, "sizes", base, *path), _get(res, "sizes", top, *path)
            diff = t_v - b_v if isinstance(b_v, int | float) and isinstance(t_v, int | float) else None
            rows.append({"store": store, "goal": f"RSS at {int(top):,} keys within {RSS_WITHIN_MB:.0f} MB of "
                         f"{int(base):,} ({label})", "value": f"{_num(diff, '{:+.1f}')} MB",
                         "limit": f"<= {RSS_WITHIN_MB:.0f} MB", "pass": None if diff is None else diff <= RSS_WITHIN_MB})
        for w in raw["meta"]["plan"]["storm_workers"]:
            diff = _get(res, "storm", f"w{w}", "p99_diff_ms")
            rows.append({"store": store, "goal": f"proxy p99 c64 with vs without write storm, workers={w}",
                         "value": f"{_num(diff, '{:+.2f}')} ms", "limit": f"<= {STORM_P99_WITHIN_MS:.0f} ms",
                         "pass": None if diff is None else diff <= STORM_P99_WITHIN_MS})
    return rows


def format_goals(rows: list[dict[str, Any]]) -> str:
    mark = {True: "PASS", False: "FAIL", None: "n/a"}
    return "\n".join(f"{mark[r['pass']]:4}  {r['store']}: {r['goal']}: {r['value']} (goal {r['limit']})" for r in rows)


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *("| " + " | ".join(r) + " |" for r in rows)]


def _size_rows(raw: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(store, n, d) for store, res in raw["stores"].items() for n, d in (res.get("sizes") or {}).items()]


def _writes(raw: dict[str, Any]) -> list[str]:
    rows = []
    for store, n, d in _size_rows(raw):
        w, fill = _get(d, "w1", "writes"), d.get("fill", {})
        why = _failed(fill) or _failed(_get(d, "w1")) or _failed(w)
        filled = "failed" if _failed(fill) else f"{_num(fill.get('seconds'))} s ({_num(fill.get('rows_per_s'), '{:,.0f}')} rows/s)"
        if why:
            rows.append([store, f"{int(n):,}", filled, f"failed: {why}", "", "", ""])
            continue
        rows.append([store, f"{int(n):,}", filled, _num(w["writes_per_s"], "{:,.0f}"), _num(w["p50_ms"], "{:.2f}"),
                     _num(w["p99_ms"], "{:.2f}"), f"{w['errors']}" + (" (cut short)" if w.get("cut_short") else "")])
    return _table(["store", "consumers with keys", "fill", "writes/s", "p50 ms", "p99 ms", "errors"], rows)


def _max_worker(d: Any) -> float | None:
    workers = _get(d, "w2", "rss", "worker_mb")
    return max(workers) if workers else None


def _rss(raw: dict[str, Any]) -> list[str]:
    rows = []
    base = str(raw["meta"]["plan"]["base"])
    for store, n, d in _size_rows(raw):
        w1, w2, b = d.get("w1", {}), d.get("w2", {}), _get(raw, "stores", store, "sizes", base)
        tree, b_tree = _get(w1, "rss", "tree_mb"), _get(b, "w1", "rss", "tree_mb")
        worker, b_worker = _max_worker(d), _max_worker(b)
        workers = _get(w2, "rss", "worker_mb")

        def vs_base(v: Any, ref: Any) -> str:
            ok = isinstance(v, int | float) and isinstance(ref, int | float)
            return f"{_num(v)} ({v - ref:+.1f})" if ok else _num(v)

        rows.append([store, f"{int(n):,}", _num(w1.get("startup_s"), "{:.2f}"), vs_base(tree, b_tree),
                     _num(w2.get("startup_s"), "{:.2f}"), _num(_get(w2, "rss", "tree_mb")),
                     _num(_get(w2, "rss", "master_mb")),
                     (" / ".join(_num(x) for x in workers) + f" (max {vs_base(worker, b_worker)})") if workers
                     else _why(_failed(w2) or _failed(d.get("fill")))])
    return _table(["store", "keys", "w1 start-up s", "w1 tree MB (vs base)", "w2 start-up s", "w2 tree MB",
                   "w2 master MB", "w2 workers MB"], rows)


def _cache(raw: dict[str, Any]) -> list[str]:
    rows = []
    for store, n, d in _size_rows(raw):
        c = _get(d, "w1", "cache")
        if not isinstance(c, dict) or _failed(c):
            rows.append([store, f"{int(n):,}", f"failed: {_failed(c) or _failed(d.get('w1')) or _failed(d.get('fill'))}", "", "", "", ""])
            continue
        rows.append([store, f"{int(n):,}",
                     f"{_num(c['hit_ms']['p50'], '{:.3f}')} / {_num(c['hit_ms']['p99'], '{:.3f}')}",
                     f"{_num(c['miss_ms']['p50'], '{:.3f}')} / {_num(c['miss_ms']['p99'], '{:.3f}')}",
                     f"{_num(c['added_p50_ms'], '{:+.3f}')} / {_num(c['added_p99_ms'], '{:+.3f}')}",
                     f"{_num(c['hit_rate_hits'], '{:.1%}')} / {_num(c['hit_rate_misses'], '{:.1%}')}",
                     str(sum(c["errors"].values()))])
    return _table(["store", "keys", "hit p50 / p99 ms", "miss p50 / p99 ms", "miss added p50 / p99 ms",
                   "node hit rate: hit / miss phase", "non-200"], rows)


def _storm(raw: dict[str, Any]) -> list[str]:
    rows = []
    for store, res in raw["stores"].items():
        s = res.get("storm") or {}
        for w in raw["meta"]["plan"]["storm_workers"]:
            r = s.get(f"w{w}")
            why = _failed(res) or _failed(s) or _failed(r)
            if why or not isinstance(r, dict):
                why = why or "not run"
                rows.append([store, str(w), f"failed: {why}", "", "", "", ""])
                continue
            q, st, wr = r["quiet"], r["storm"], r["writes"]
            where = " (CPU 1; storm through a control node on CPU 0)" if r.get("control") else (
                " (CPU 1)" if r.get("pinned") else " (unpinned)")
            d = r.get("decoy")
            dw = r.get("decoy_writes") or {}
            rows.append([store, f"{w}" + where,
                         f"{_num(q.get('rps'), '{:,.0f}')}, {_num(q.get('p50_ms'), '{:.2f}')} / {_num(q.get('p99_ms'), '{:.2f}')}",
                         (f"{_num(d.get('rps'), '{:,.0f}')}, {_num(d.get('p50_ms'), '{:.2f}')} / "
                          f"{_num(d.get('p99_ms'), '{:.2f}')} ({_num(dw.get('writes_per_s'), '{:,.0f}')} writes/s)")
                         if isinstance(d, dict) else "",
                         f"{_num(st.get('rps'), '{:,.0f}')}, {_num(st.get('p50_ms'), '{:.2f}')} / {_num(st.get('p99_ms'), '{:.2f}')}",
                         _num(r.get("p99_diff_ms"), "{:+.2f}"),
                         f"{_num(wr['writes_per_s'], '{:,.0f}')}/s, {wr['errors']} errors"
                         f"; wrk non-2xx/socket errors {int(q.get('errors', 0))} / {int(st.get('errors', 0))}"])
    return _table(["store", "workers", "quiet RPS, p50 / p99 ms", "decoy storm RPS, p50 / p99 ms",
                   "storm RPS, p50 / p99 ms", "p99 diff ms (storm - decoy, or - quiet)", "storm writes"], rows)


def _prop(raw: dict[str, Any]) -> list[str]:
    rows = []
    for store, n, d in _size_rows(raw):
        p = _get(d, "w2", "propagation")
        if not isinstance(p, dict) or _failed(p):
            rows.append([store, f"{int(n):,}", f"failed: {_failed(p) or _failed(d.get('w2')) or _failed(d.get('fill'))}", "", "", "", ""])
            continue
        for op in ("create", "delete"):
            cells = []
            for name in ("A_first", "A_all", "B_first"):
                x = p[op][name]
                cells.append(f"{_num(x['p50'], '{:.0f}')} / {_num(x['p99'], '{:.0f}')} / {_num(x['max'], '{:.0f}')}")
            t = sum(v for k, v in p["timeouts"].items() if k.startswith(op))
            rows.append([store, f"{int(n):,}", op, *cells, f"{p['repeats']}, {t} timeouts, {sum(p['errors'].values())} errors"])
    return _table(["store", "keys", "change", "A first ms p50/p99/max", "A all workers ms", "B first ms",
                   "repeats"], rows)


def render(raw: dict[str, Any]) -> str:
    m, plan = raw["meta"], raw["meta"]["plan"]
    out = [f"# Configuration at scale: {m['title']}", "",
           f"{m['date']} on {m['host']} ({m['cpus']} CPUs), commit {m['commit']}, servegate build: {m['build']}. "
           f"{m['versions']}. Fill: {m['fill_api']}.", ""]
    if m["quick"]:
        out += ["**Quick run: it proves every part works; its figures are not measurements.**", ""]
    for store, res in raw["stores"].items():
        if _failed(res):
            out += [f"**{store} failed:** {_failed(res)}", ""]
    out += ["## Goals", "", "```", format_goals(raw["goals"]), "```", "",
            f"## 1. Admin writes ({plan['writers']} writers, POST /consumers + POST /consumers/{{id}}/key-auth, "
            f"up to {plan['write_cap']:,} writes or {plan['write_s']:.0f} s; node workers=1 on CPU 1)", "",
            *_writes(raw), "",
            f"## 2. RSS after start-up and {plan['warmup_s']:.0f} s of c64 warm-up (workers=1 on CPU 1; "
            "workers=2 unpinned: node A of the propagation test)", "", *_rss(raw), "",
            f"## 3. Credential cache (c1 keep-alive, {plan['cache_requests']:,} hits and {plan['cache_requests']:,}"
            f" misses over {plan['hit_keys']} hot keys and first-use keys; node workers=1)", "",
            "Hit rates come from the node's `GET /status` -> `servegate.caches` (n/a: not exposed).", "",
            *_cache(raw), "",
            f"## 4. Proxy c64 at {plan['routes']:,} routes, quiet and under a write storm ({plan['storm_writers']} "
            f"writers: route create, update, delete, key create; wrk {plan['load_s']:.0f} s each)", "",
            *_storm(raw), "",
            f"## 5. Propagation of a new and a deleted key ({plan['prop_repeats']} repeats; A: workers=2, B: "
            f"workers=1, same database; 'all workers' = {plan['prop_consecutive']} fresh connections in a row)", "",
            *_prop(raw), ""]
    return "\n".join(out)
