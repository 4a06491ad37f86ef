"""One round for one system: start it, record idle RSS, warm up, run every scenario, stop it.

Every scenario records the proxy's and the backend's process-tree CPU over the load window, so each result
shows both what the proxy cost and how busy the backend was (the backend must never be the limit)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .load import Target, run_sse, run_wrk
from .procs import Sampler, cpu_seconds, rss_kb
from .systems import Ctx, System, SystemFailed


@dataclass(frozen=True)
class SSESpec:
    conns: int
    tokens: int
    pace_ms: int
    duration_s: float
    ramp_s: float
    hardstop_s: float


@dataclass(frozen=True)
class Plan:
    c1_s: float
    c64_s: float
    warm_sse_s: float
    stream0: SSESpec
    paced500: SSESpec
    paced2000: SSESpec


FULL = Plan(
    c1_s=8,
    c64_s=10,
    warm_sse_s=1,
    stream0=SSESpec(64, 200, 0, 10, 0.5, 30),
    paced500=SSESpec(500, 100, 20, 12, 2, 45),
    paced2000=SSESpec(2000, 100, 20, 12, 2, 45),
)
# ~1 s of load per scenario: enough to prove every part works end to end, not to measure
QUICK = Plan(
    c1_s=1,
    c64_s=1,
    warm_sse_s=0.3,
    stream0=SSESpec(64, 50, 0, 1, 0.1, 10),
    paced500=SSESpec(500, 20, 20, 1, 0.3, 10),
    paced2000=SSESpec(2000, 20, 20, 1, 0.3, 10),
)


class Meter:
    """CPU of the proxy tree and of the backend over one load window, plus the proxy's peak RSS."""

    def __init__(self, proxy_pid: int | None, backend_pid: int) -> None:
        self.proxy_pid = proxy_pid
        self.backend_pid = backend_pid

    def run(self, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        p0 = cpu_seconds(self.proxy_pid) if self.proxy_pid else 0.0
        b0 = cpu_seconds(self.backend_pid)
        t0 = time.monotonic()
        with Sampler(self.proxy_pid) as sampler:
            res = fn()
        wall = time.monotonic() - t0
        b1 = cpu_seconds(self.backend_pid)
        res["wall_s"] = wall
        res["backend_cpu_pct"] = 100 * (b1 - b0) / wall
        if self.proxy_pid:
            proxy_cpu = cpu_seconds(self.proxy_pid) - p0
            res["proxy_cpu_s"] = proxy_cpu
            res["proxy_cpu_pct"] = 100 * proxy_cpu / wall
            res["peak_rss_kb"] = sampler.peak_kb
        return res


def _wrk(meter: Meter, target: Target, conns: int, secs: float, workdir: Path) -> dict[str, Any]:
    res = meter.run(lambda: run_wrk(target, conns, secs, workdir))
    if "proxy_cpu_s" in res and res.get("requests"):
        res["cpu_us_per_req"] = 1e6 * res["proxy_cpu_s"] / res["requests"]
    return res


def _sse(meter: Meter, target: Target, spec: SSESpec) -> dict[str, Any]:
    res = meter.run(
        lambda: run_sse(
            target,
            spec.conns,
            spec.duration_s,
            tokens=spec.tokens,
            pace_ms=spec.pace_ms,
            ramp_s=spec.ramp_s,
            hardstop_s=spec.hardstop_s,
        )
    )
    if "proxy_cpu_s" in res and res.get("events"):
        res["cpu_us_per_chunk"] = 1e6 * res["proxy_cpu_s"] / res["events"]
    return res


def run_round(system: System, ctx: Ctx, plan: Plan, backend_pid: int, log: Callable[[str], None]) -> dict:
    try:
        target = system.start(ctx)
    except SystemFailed as e:
        return {"failed": str(e)}
    except Exception as e:  # a broken system must not stop the run
        system.stop()
        return {"failed": f"{type(e).__name__}: {e}"}
    out: dict[str, Any] = {"startup_s": system.startup_s}
    try:
        pid = system.proc.pid if system.proc else None
        meter = Meter(pid, backend_pid)
        if pid:
            time.sleep(0.3)
            out["rss_idle_kb"] = rss_kb(pid)
        log(f"  {system.name}: warm-up")
        run_wrk(target, 64, system.warmup_s if plan is FULL else 1, ctx.workdir)
        warm = plan.stream0
        run_sse(target, 16, plan.warm_sse_s, tokens=20, pace_ms=0, ramp_s=0.1, hardstop_s=warm.hardstop_s)
        if pid:
            out["rss_warm_kb"] = rss_kb(pid)
        steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            ("c1", lambda: _wrk(meter, target, 1, plan.c1_s, ctx.workdir)),
            ("c64", lambda: _wrk(meter, target, 64, plan.c64_s, ctx.workdir)),
            ("stream0", lambda: _sse(meter, target, plan.stream0)),
            ("paced500", lambda: _sse(meter, target, plan.paced500)),
            ("paced2000", lambda: _sse(meter, target, plan.paced2000)),
        ]
        for name, step in steps:
            if system.proc is not None and not system.proc.alive():
                out[name] = {"failed": "process died: " + system.proc.log_tail()}
                continue
            log(f"  {system.name}: {name}")
            try:
                out[name] = step()
            except Exception as e:  # one broken scenario must not lose the others
                out[name] = {"failed": f"{type(e).__name__}: {e}"}
        if system.proc is not None and not system.proc.alive():
            out["died"] = system.proc.log_tail()
    except Exception as e:
        out["failed"] = f"{type(e).__name__}: {e}"
    finally:
        system.stop()
    return out
