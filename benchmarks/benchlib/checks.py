"""Issue-5 performance targets, checked against a run summary (see benchmarks/README.md)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .aggregate import get


@dataclass
class Check:
    system: str
    target: str
    value: float | None
    limit: float | None
    ok: bool | None  # None: not measurable (a figure is missing)

    @property
    def verdict(self) -> str:
        return {True: "MET", False: "NOT MET", None: "n/a"}[self.ok]


def _cmp(value: float | None, limit: float | None, at_least: bool) -> bool | None:
    if value is None or limit is None:
        return None
    return value >= limit if at_least else value <= limit


def _scaled(x: float | None, k: float, floor: float | None = None) -> float | None:
    """k times a reference figure; an "added" reference is clamped to `floor` first, because on a noisy
    run nginx can come out faster than direct and a limit of k times a negative number means nothing."""
    if x is None:
        return None
    return k * (max(x, floor) if floor is not None else x)


def check_system(summary: dict, name: str) -> list[Check]:
    plugins = "+plugins" in name
    workers = 2 if name.startswith("servegate-2w") else 1
    out: list[Check] = []

    def add(target: str, value: float | None, limit: float | None, at_least: bool) -> None:
        out.append(Check(name, target, value, limit, _cmp(value, limit, at_least)))

    g: Callable[..., float | None] = lambda *a: get(summary, *a)  # noqa: E731
    rps = g(name, "c64", "rps")
    k = 0.4 if plugins else 0.5
    add(f"c64 RPS >= {k}x nginx (bare)", rps, _scaled(g("nginx", "c64", "rps"), k), True)
    add("c64 RPS >= 6x aiohttp", rps, _scaled(g("aiohttp", "c64", "rps"), 6), True)
    add(
        "c1 added p50 <= 1.5x nginx added p50 (us)",
        g(name, "c1", "added_p50_us"),
        _scaled(g("nginx", "c1", "added_p50_us"), 1.5, floor=20.0),
        False,
    )
    add("c1 added p99 <= 1 ms (us)", g(name, "c1", "added_p99_us"), 1000.0, False)
    add(
        "CPU per chunk (paced500) <= 1.5x nginx (us)",
        g(name, "paced500", "cpu_us_per_chunk"),
        _scaled(g("nginx", "paced500", "cpu_us_per_chunk"), 1.5),
        False,
    )
    add("paced500 added TTFB p99 <= 5 ms", g(name, "paced500", "added_ttfb_p99"), 5.0, False)
    add("paced500 added gap p99 <= 2 ms", g(name, "paced500", "added_gap_p99"), 2.0, False)
    add(
        "paced2000 events/s >= 0.95x nginx",
        g(name, "paced2000", "events_per_s"),
        _scaled(g("nginx", "paced2000", "events_per_s"), 0.95),
        True,
    )
    add(
        "paced2000 added TTFB p99 <= 3x nginx (ms)",
        g(name, "paced2000", "added_ttfb_p99"),
        _scaled(g("nginx", "paced2000", "added_ttfb_p99"), 3, floor=1.0),
        False,
    )
    errs = g(name, "paced2000", "errors")
    short = g(name, "paced2000", "short_streams")
    unfinished = g(name, "paced2000", "unfinished")
    total = None if errs is None else errs + (short or 0) + (unfinished or 0)
    add("paced2000 zero errors (errors+short+unfinished)", total, 0.0, False)
    idle = g(name, None, "rss_idle_kb")
    add("RSS idle <= 40 MB per worker (MB)", None if idle is None else idle / 1024 / workers, 40.0, False)
    add("<= 10 KB per open stream (paced2000)", g(name, None, "kb_per_stream"), 10.0, False)
    add("start-up <= 1 s", g(name, None, "startup_s"), 1.0, False)
    return out


def check_all(summary: dict) -> list[Check]:
    checks: list[Check] = []
    for name in summary:
        if name.startswith("servegate"):
            checks.extend(check_system(summary, name))
    return checks


def format_checks(checks: list[Check]) -> str:
    if not checks:
        return "No servegate system in this run: no issue-5 target to check.\n"
    lines = ["| system | target | value | limit | verdict |", "|---|---|---|---|---|"]
    for c in checks:
        v = "–" if c.value is None else f"{c.value:,.2f}"
        lim = "–" if c.limit is None else f"{c.limit:,.2f}"
        lines.append(f"| {c.system} | {c.target} | {v} | {lim} | {c.verdict} |")
    met = sum(c.ok is True for c in checks)
    lines.append("")
    lines.append(
        f"{met} of {len(checks)} target checks met ({sum(c.ok is None for c in checks)} not measurable)."
    )
    return "\n".join(lines) + "\n"
