"""Markdown report: one table per scenario, every figure plus ratios to direct, nginx and the aiohttp yardstick."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .aggregate import get
from .checks import check_all, format_checks

Cell = Callable[[str], str]


def n(x: float | None, digits: int = 0) -> str:
    if x is None:
        return "–"
    return f"{x:,.{digits}f}"


def ratio(a: float | None, b: float | None, digits: int = 2) -> str:
    if a is None or not b:
        return "–"
    return f"{a / b:.{digits}f}"


def _status(summary: dict, name: str, scenario: str | None) -> str | None:
    s = summary[name]
    if "failed" in s:
        return "failed: " + _short(s["failed"])
    if scenario and isinstance(s.get(scenario), dict) and "failed" in s[scenario]:
        return "failed: " + _short(s[scenario]["failed"])
    return None


def _short(reason: str, limit: int = 160) -> str:
    reason = reason.replace("|", "/").replace("\n", " ")
    return reason if len(reason) <= limit else reason[:limit] + "…"


def table(summary: dict, scenario: str | None, headers: list[str], cells: list[Cell]) -> str:
    lines = ["| system | " + " | ".join(headers) + " |", "|---" * (len(headers) + 1) + "|"]
    for name in summary:
        bad = _status(summary, name, scenario)
        if bad:
            lines.append(f"| {name} | {bad} |" + " |" * (len(headers) - 1))
            continue
        lines.append(f"| {name} | " + " | ".join(c(name) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _rps_table(summary: dict) -> str:
    def g(name: str, key: str) -> float | None:
        return get(summary, name, "c64", key)

    return table(
        summary,
        "c64",
        ["RPS (min–max)", "×direct", "×nginx", "×aiohttp", "p50 / p99 ms", "proxy CPU%", "µs CPU/req",
         "backend CPU%", "errors"],
        [
            lambda s: f"{n(g(s, 'rps'))} ({n(g(s, 'rps_min'))}–{n(g(s, 'rps_max'))})",
            lambda s: ratio(g(s, "rps"), g("direct", "rps")),
            lambda s: ratio(g(s, "rps"), g("nginx", "rps")),
            lambda s: ratio(g(s, "rps"), g("aiohttp", "rps")),
            lambda s: f"{n(g(s, 'p50_ms'), 3)} / {n(g(s, 'p99_ms'), 3)}",
            lambda s: n(g(s, "proxy_cpu_pct")),
            lambda s: n(g(s, "cpu_us_per_req"), 1),
            lambda s: n(g(s, "backend_cpu_pct")),
            lambda s: n(g(s, "errors")),
        ],
    )  # fmt: skip


def _c1_table(summary: dict) -> str:
    def g(name: str, key: str) -> float | None:
        return get(summary, name, "c1", key)

    return table(
        summary,
        "c1",
        ["RPS", "p50 / p99 ms", "added p50 / p99 µs", "added p50 ×nginx", "added p50 ×aiohttp",
         "proxy CPU%", "µs CPU/req", "backend CPU%", "errors"],
        [
            lambda s: n(g(s, "rps")),
            lambda s: f"{n(g(s, 'p50_ms'), 3)} / {n(g(s, 'p99_ms'), 3)}",
            lambda s: f"{n(g(s, 'added_p50_us'))} / {n(g(s, 'added_p99_us'))}",
            lambda s: ratio(g(s, "added_p50_us"), g("nginx", "added_p50_us"), 1),
            lambda s: ratio(g(s, "added_p50_us"), g("aiohttp", "added_p50_us"), 2),
            lambda s: n(g(s, "proxy_cpu_pct")),
            lambda s: n(g(s, "cpu_us_per_req"), 1),
            lambda s: n(g(s, "backend_cpu_pct")),
            lambda s: n(g(s, "errors")),
        ],
    )  # fmt: skip


def _sse_table(summary: dict, sc: str) -> str:
    def g(name: str, key: str) -> float | None:
        return get(summary, name, sc, key)

    return table(
        summary,
        sc,
        ["events/s (min–max)", "×direct", "×nginx", "×aiohttp", "TTFB p50 / p99 ms", "added TTFB p50 / p99 ms",
         "gap p50 / p99 ms", "added gap p99 ms", "stream p99 ms", "proxy CPU%", "µs CPU/chunk",
         "CPU/chunk ×nginx", "CPU/chunk ×aiohttp", "backend CPU%", "errors / short / unfinished",
         "peak RSS MB"],
        [
            lambda s: f"{n(g(s, 'events_per_s'))} ({n(g(s, 'events_per_s_min'))}–{n(g(s, 'events_per_s_max'))})",
            lambda s: ratio(g(s, "events_per_s"), g("direct", "events_per_s")),
            lambda s: ratio(g(s, "events_per_s"), g("nginx", "events_per_s")),
            lambda s: ratio(g(s, "events_per_s"), g("aiohttp", "events_per_s")),
            lambda s: f"{n(g(s, 'ttfb_p50'), 2)} / {n(g(s, 'ttfb_p99'), 2)}",
            lambda s: f"{n(g(s, 'added_ttfb_p50'), 2)} / {n(g(s, 'added_ttfb_p99'), 2)}",
            lambda s: f"{n(g(s, 'gap_p50'), 2)} / {n(g(s, 'gap_p99'), 2)}",
            lambda s: n(g(s, "added_gap_p99"), 2),
            lambda s: n(g(s, "stream_p99")),
            lambda s: n(g(s, "proxy_cpu_pct")),
            lambda s: n(g(s, "cpu_us_per_chunk"), 1),
            lambda s: ratio(g(s, "cpu_us_per_chunk"), g("nginx", "cpu_us_per_chunk")),
            lambda s: ratio(g(s, "cpu_us_per_chunk"), g("aiohttp", "cpu_us_per_chunk")),
            lambda s: n(g(s, "backend_cpu_pct")),
            lambda s: f"{n(g(s, 'errors'))} / {n(g(s, 'short_streams'))} / {n(g(s, 'unfinished'))}",
            lambda s: n(_mb(g(s, "peak_rss_kb")), 1),
        ],
    )  # fmt: skip


def _mb(kb: float | None) -> float | None:
    return None if kb is None else kb / 1024


def _mem_table(summary: dict) -> str:
    def g(name: str, sc: str | None, key: str) -> float | None:
        return get(summary, name, sc, key)

    return table(
        summary,
        None,
        ["start-up s", "idle MB", "after warm-up MB", "peak paced500 MB", "peak paced2000 MB",
         "KB/stream (peak2000−warm)/conns", "KB/stream slope 500→2000"],
        [
            lambda s: n(g(s, None, "startup_s"), 2),
            lambda s: n(_mb(g(s, None, "rss_idle_kb")), 1),
            lambda s: n(_mb(g(s, None, "rss_warm_kb")), 1),
            lambda s: n(_mb(g(s, "paced500", "peak_rss_kb")), 1),
            lambda s: n(_mb(g(s, "paced2000", "peak_rss_kb")), 1),
            lambda s: n(g(s, None, "kb_per_stream"), 1),
            lambda s: n(g(s, None, "kb_per_stream_slope"), 1),
        ],
    )  # fmt: skip


def _backend_check(summary: dict) -> str:
    lines = [
        "| scenario | direct throughput | backend CPU% (direct) | max backend CPU% in a proxied run (system) |",
        "|---|---|---|---|",
    ]
    for sc, key in (("c64", "rps"), ("stream0", "events_per_s"), ("paced500", "events_per_s"),
                    ("paced2000", "events_per_s")):  # fmt: skip
        proxied = [
            (v, name)
            for name in summary
            if name != "direct" and (v := get(summary, name, sc, "backend_cpu_pct")) is not None
        ]
        top = max(proxied) if proxied else None
        unit = "req/s" if key == "rps" else "events/s"
        lines.append(
            f"| {sc} | {n(get(summary, 'direct', sc, key))} {unit} | {n(get(summary, 'direct', sc, 'backend_cpu_pct'))}"
            f" | {n(top[0]) + ' (' + top[1] + ')' if top else '–'} |"
        )
    lines += [
        "",
        "In direct runs the backend shares CPU 0 with the load generator, so its direct figures are a floor on"
        " what it can serve; a proxied run that keeps the backend well under 100% CPU is limited elsewhere.",
    ]
    return "\n".join(lines) + "\n"


def _build_line(build: str | None) -> str:
    if build == "compiled":
        return ("servegate build: as installed for production, hot modules compiled with mypyc"
                " (`scripts/build-compiled`, the same source).")
    if build == "source":
        return "servegate build: the editable source tree, pure Python (`--build source`)."
    return "servegate build: pure Python (run before compiled builds existed)."


def render(meta: dict[str, Any], summary: dict, notes: dict[str, str]) -> str:
    plan = meta["plan"]
    out = [
        f"# servegate benchmark: {meta['title']}",
        "",
        f"Date {meta['date']} · host {meta['host']} · {meta['cpus']} CPUs · rounds {meta['rounds']}"
        f" ({'quick smoke run, figures not meaningful' if meta['quick'] else 'full run'}) · medians over rounds.",
        f"Versions: {meta['versions']}.",
        "",
        _build_line(meta.get("servegate_build")),
        "",
        "Pinning: backend, load generators and runner on CPU 0; every single-process proxy on CPU 1 (taskset);"
        " servegate with 2 workers unpinned (CPUs 0–1, competing with backend and load: a second figure, not a"
        " clean 2×). Systems alternate round by round (order rotated each round).",
        "",
        "## Systems",
        "",
        "| system | setup | status |",
        "|---|---|---|",
    ]
    for name, s in summary.items():
        status = (
            "failed: " + _short(s["failed"])
            if "failed" in s
            else s.get("partial", f"ok ({s['ok_rounds']} round(s))")
        )
        out.append(f"| {name} | {notes.get(name, '')} | {status} |")
    sections = [
        (f"Non-streaming, concurrency 1 (wrk -t1 -c1, {plan['c1_s']} s)", _c1_table(summary)),
        (f"Non-streaming, concurrency 64 (wrk -t1 -c64, {plan['c64_s']} s)", _rps_table(summary)),
        (_sse_title("stream0", plan["stream0"]), _sse_table(summary, "stream0")),
        (_sse_title("paced500", plan["paced500"]), _sse_table(summary, "paced500")),
        (_sse_title("paced2000", plan["paced2000"]), _sse_table(summary, "paced2000")),
        ("Memory (RSS summed over the process tree) and start-up", _mem_table(summary)),
        ("Is the backend a bottleneck?", _backend_check(summary)),
        ("Issue-5 targets", format_checks(check_all(summary))),
    ]
    for title, body in sections:
        out += ["", f"## {title}", "", body.rstrip()]
    out += ["", "## Definitions", "", DEFINITIONS.strip(), ""]
    return "\n".join(out)


def _sse_title(name: str, spec: dict) -> str:
    pace = f"{spec['pace_ms']} ms pacing" if spec["pace_ms"] else "unpaced"
    return (
        f"{name}: {spec['conns']} streams × {spec['tokens']} chunks, {pace}"
        f" (closed loop {spec['duration_s']} s, ramp {spec['ramp_s']} s, hard stop {spec['hardstop_s']} s)"
    )


DEFINITIONS = """
- TTFB: request start (connect included for a new connection) to the first SSE event at the client.
- Gap: time between consecutive events of one stream at the client; events that arrive in the same read count as 0.
- events/s: events received in the steady window (ramp end to duration end) divided by its length.
- "added": system median minus direct median from the same run. ×X: ratio to system X's median.
- CPU%: process-tree utime+stime over the load window (100 = one core). µs CPU/req and /chunk: proxy CPU time
  divided by requests (wrk count) or events delivered, kernel time included.
- backend CPU%: the fake backend's CPU over the same window; it stays well below 100 in proxied runs, so the
  backend is not what limits them (direct rows show what it sustains alone while sharing CPU 0 with the load).
- errors: non-200 answers, connect/read failures; short: completed streams with fewer events than sent;
  unfinished: streams cut by the hard stop.
- KB/stream: (peak RSS at paced2000 − RSS after warm-up) / 2000; an upper bound when a proxy never had all
  streams open at once. Start-up: process start to the first successful proxied request.
"""
