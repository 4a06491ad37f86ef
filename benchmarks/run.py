"""Benchmark harness: servegate against direct, nginx, a minimal aiohttp proxy and LiteLLM.

    python benchmarks/run.py --rounds 3 --out benchmarks/results/2026-11-23.md
    python benchmarks/run.py --quick --systems direct,nginx,aiohttp --out /tmp/smoke.md

Writes a markdown report and the raw data as JSON next to it (same name, .json). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib.aggregate import summarize  # noqa: E402
from benchlib.checks import check_all, format_checks  # noqa: E402
from benchlib.load import Target, build_sseclient, wait_proxied_ok  # noqa: E402
from benchlib.procs import Proc  # noqa: E402
from benchlib.report import render  # noqa: E402
from benchlib.scenarios import FULL, QUICK, run_round  # noqa: E402
from benchlib.systems import BACKEND_HOSTS, BENCH_DIR, REPO, Ctx, SystemFailed, all_systems, free_port  # noqa: E402

DEFAULT_SYSTEMS = (
    "direct,nginx,aiohttp,servegate-1w,servegate-1w+plugins,servegate-2w,servegate-2w+plugins,litellm"
)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _versions() -> str:
    parts = [f"Python {platform.python_version()}"]
    for mod in ("aiohttp", "uvloop", "httptools"):
        try:
            parts.append(f"{mod} {__import__(mod).__version__}")
        except Exception:
            pass
    try:
        import servegate

        parts.append(f"servegate {servegate.__version__}")
    except Exception:
        pass
    return ", ".join(parts)


def _setup_host() -> None:
    # runner, backend and load generators share CPU 0; proxies get CPU 1 (see systems.PROXY_CPUS)
    if os.cpu_count() and os.cpu_count() >= 2:  # type: ignore[operator]
        os.sched_setaffinity(0, {0})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 20000 if hard == resource.RLIM_INFINITY else min(hard, 20000)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def start_backend(workdir: Path) -> tuple[Proc, int]:
    port = free_port()
    # Three loopback addresses: the balancer variants' upstream has one target on each.
    argv = [sys.executable, str(BENCH_DIR / "backend.py"), "--port", str(port), "--host", ",".join(BACKEND_HOSTS)]
    proc = Proc(
        "backend", argv, cpus={0} if (os.cpu_count() or 1) >= 2 else None, log_path=workdir / "backend.log"
    )
    if wait_proxied_ok(Target(port), 10, alive=proc.alive) is None:
        proc.stop()
        raise SystemExit("fake backend did not start: " + proc.log_tail())
    return proc, port


def _servegate_build(kind: str) -> str | None:
    """PYTHONPATH entry holding the compiled build, or None to run the editable source tree."""
    if kind == "source":
        return None
    log("building servegate (compiled hot modules)")
    target = BENCH_DIR / "work" / "compiled"
    proc = subprocess.run(["bash", str(REPO / "scripts" / "build-compiled"), str(target)],
                          cwd=REPO, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit("scripts/build-compiled failed:\n" + proc.stderr[-2000:])
    return str(target)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="servegate benchmark harness")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="~1 s per scenario: a smoke run, not a measurement")
    ap.add_argument("--systems", default=DEFAULT_SYSTEMS, help=f"comma list (default: {DEFAULT_SYSTEMS})")
    ap.add_argument("--out", type=Path, help="markdown report path (default benchmarks/results/<date>.md)")
    ap.add_argument("--title", default="")
    ap.add_argument("--keep-work", action="store_true", help="keep logs and prefixes under benchmarks/work")
    ap.add_argument(
        "--build", choices=("compiled", "source"), default="compiled",
        help="servegate as installed for production (hot modules compiled, scripts/build-compiled; default) "
        "or the editable source tree",
    )
    ap.add_argument(
        "--rerender", type=Path, metavar="JSON", help="rebuild --out from a run's JSON, run nothing"
    )
    args = ap.parse_args(argv)
    if args.rerender:
        raw = json.loads(args.rerender.read_text())
        target = args.out or args.rerender.with_suffix(".md")
        notes = {n: s.note for n, s in all_systems().items()}
        target.write_text(render(raw["meta"], raw["summary"], notes))
        print(format_checks(check_all(raw["summary"])))
        return 0

    known = all_systems()
    names = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in names if s not in known]
    if unknown:
        ap.error(f"unknown systems {unknown}; known: {', '.join(known)}")
    if args.rounds < 1:
        ap.error("--rounds must be >= 1")
    plan = QUICK if args.quick else FULL
    now = dt.datetime.now(dt.UTC)
    out = args.out or BENCH_DIR / "results" / f"{now:%Y-%m-%d}.md"
    out.parent.mkdir(parents=True, exist_ok=True)

    # SIGTERM unwinds through the finally blocks, so no proxy or backend outlives the run
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    _setup_host()
    build_sseclient()
    (BENCH_DIR / "work").mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="run-", dir=BENCH_DIR / "work"))
    systems = {n: known[n] for n in names}
    backend, backend_port = start_backend(workdir)
    ctx = Ctx(workdir, backend_port, servegate_path=_servegate_build(args.build))
    prep_failed: dict[str, str] = {}
    rounds: list[dict[str, dict]] = []
    try:
        for name, system in systems.items():
            log(f"prepare {name}")
            try:
                system.prepare(ctx)
            except SystemFailed as e:
                prep_failed[name] = str(e)
            except Exception as e:
                prep_failed[name] = f"{type(e).__name__}: {e}"
            if name in prep_failed:
                log(f"  {name} failed: {prep_failed[name][:300]}")
        order = list(systems)
        for r in range(args.rounds):
            k = r % len(order)
            rotated = order[k:] + order[:k]
            log(f"round {r + 1}/{args.rounds}: {', '.join(rotated)}")
            results: dict[str, dict] = {}
            for name in rotated:
                if name in prep_failed:
                    results[name] = {"failed": prep_failed[name]}
                    continue
                if not backend.alive():
                    backend.stop()
                    backend, backend_port = start_backend(workdir)
                    ctx.backend_port = backend_port
                results[name] = run_round(systems[name], ctx, plan, backend.pid, log)
                if "failed" in results[name]:
                    log(f"  {name} failed: {results[name]['failed'][:300]}")
            rounds.append(results)
            # keep what we have if the run is cut short
            partial = out.with_suffix(".partial.json")
            partial.write_text(json.dumps({"rounds": rounds}, indent=1, default=str))
    finally:
        for system in systems.values():
            system.stop()
        backend.stop()

    summary = summarize(rounds, names, plan.paced2000.conns, plan.paced500.conns)
    meta = {
        "title": args.title or ("quick smoke run" if args.quick else "full run"),
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "rounds": args.rounds,
        "quick": args.quick,
        "versions": _versions(),
        "plan": dataclasses.asdict(plan),
        "systems": names,
        "servegate_build": args.build,
    }
    notes = {n: s.note for n, s in systems.items()}
    out.write_text(render(meta, summary, notes))
    raw = {"meta": meta, "rounds": rounds, "summary": summary}
    out.with_suffix(".json").write_text(json.dumps(raw, indent=1, default=str))
    out.with_suffix(".partial.json").unlink(missing_ok=True)
    log(f"wrote {out} and {out.with_suffix('.json')}")
    print(format_checks(check_all(summary)))
    if not args.keep_work:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
