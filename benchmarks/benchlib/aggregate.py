"""Medians over rounds, and the derived figures (added latency vs direct, KB per stream)."""

from __future__ import annotations

import statistics
from typing import Any

SCENARIOS = ("c1", "c64", "stream0", "paced500", "paced2000")
SSE_SCENARIOS = ("stream0", "paced500", "paced2000")


def _flatten(res: dict[str, Any]) -> dict[str, float]:
    flat: dict[str, float] = {}
    for k, v in res.items():
        if isinstance(v, dict):
            for pk in ("p50", "p90", "p99", "max"):
                if isinstance(v.get(pk), int | float) and v.get("n", 1):
                    flat[f"{k.removesuffix('_ms')}_{pk}"] = float(v[pk])
        elif isinstance(v, bool):
            continue
        elif isinstance(v, int | float):
            flat[k] = float(v)
    return flat


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(rounds: list[dict[str, dict]], names: list[str], conns2000: int, conns500: int) -> dict:
    """rounds: [{system: round_result}] -> {system: summary}."""
    summary: dict[str, dict[str, Any]] = {}
    for name in names:
        per_round = [r[name] for r in rounds if name in r]
        ok_rounds = [r for r in per_round if "failed" not in r]
        s: dict[str, Any] = {"rounds": len(per_round), "ok_rounds": len(ok_rounds)}
        if not ok_rounds:
            reasons = [r.get("failed", "?") for r in per_round]
            s["failed"] = reasons[0] if reasons else "not run"
            summary[name] = s
            continue
        failures = [r["failed"] for r in per_round if "failed" in r]
        if failures:
            s["partial"] = f"failed in {len(failures)}/{len(per_round)} rounds: {failures[0]}"
        for key in ("startup_s", "rss_idle_kb", "rss_warm_kb"):
            s[key] = _median([r[key] for r in ok_rounds if isinstance(r.get(key), int | float)])
        for sc in SCENARIOS:
            results = [r[sc] for r in ok_rounds if isinstance(r.get(sc), dict)]
            good = [_flatten(x) for x in results if "failed" not in x]
            if not good:
                failed = [x.get("failed", "missing") for x in results]
                s[sc] = {"failed": failed[0] if failed else "not run"}
                continue
            keys = sorted({k for g in good for k in g})
            agg: dict[str, Any] = {k: _median([g[k] for g in good if k in g]) for k in keys}
            for k in ("rps", "events_per_s"):
                vals = [g[k] for g in good if k in g]
                if vals:
                    agg[f"{k}_min"], agg[f"{k}_max"] = min(vals), max(vals)
            agg["n"] = len(good)
            s[sc] = agg
        summary[name] = s
    _derive(summary, conns2000, conns500)
    return summary


def get(summary: dict, name: str, scenario: str | None, key: str) -> float | None:
    s = summary.get(name)
    if not s or "failed" in s:
        return None
    src = s.get(scenario) if scenario else s
    if not isinstance(src, dict) or "failed" in src:
        return None
    v = src.get(key)
    return float(v) if isinstance(v, int | float) else None


def _derive(summary: dict, conns2000: int, conns500: int) -> None:
    for name, s in summary.items():
        if "failed" in s:
            continue
        for sc, key, scale in (("c1", "p50_ms", 1000), ("c1", "p99_ms", 1000)):
            mine, direct = get(summary, name, sc, key), get(summary, "direct", sc, key)
            if mine is not None and direct is not None and name != "direct":
                s[sc][f"added_{key.removesuffix('_ms')}_us"] = (mine - direct) * scale
        for sc in SSE_SCENARIOS:
            for key in ("ttfb_p50", "ttfb_p99", "gap_p99"):
                mine, direct = get(summary, name, sc, key), get(summary, "direct", sc, key)
                if mine is not None and direct is not None and name != "direct":
                    s[sc][f"added_{key}"] = mine - direct
        warm = s.get("rss_warm_kb")
        p500 = get(summary, name, "paced500", "peak_rss_kb")
        p2000 = get(summary, name, "paced2000", "peak_rss_kb")
        if warm and p2000:
            s["kb_per_stream"] = (p2000 - warm) / conns2000
        if p500 and p2000:
            s["kb_per_stream_slope"] = (p2000 - p500) / (conns2000 - conns500)
