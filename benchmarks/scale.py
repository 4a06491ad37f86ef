"""Configuration at scale: admin writes, RSS, credential cache, proxy p99 under a write storm and propagation,
at N consumers with keys, on SQLite and PostgreSQL, with real `servegate start` nodes on loopback.

    python benchmarks/scale.py --out benchmarks/results/$(date -u +%F)-scale.md        # full run
    python benchmarks/scale.py --quick --stores sqlite --out /tmp/scale.md           # smoke run, ~1 min

Writes a markdown report and the raw data as JSON next to it (same name, .json). See benchmarks/README.md,
"Configuration at scale".
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib.load import BENCH_DIR  # noqa: E402
from benchlib.systems import REPO  # noqa: E402
from run import _servegate_build, _setup_host, _versions, start_backend  # noqa: E402
from scalelib.common import FULL, QUICK, log, with_overrides  # noqa: E402
from scalelib.report import format_goals, goals, render  # noqa: E402
from scalelib.runner import Ctx, measure_store  # noqa: E402

STORES = ("sqlite", "postgres")


STORM_MODES = ("1+ctl", "1", "2")


def _modes(text: str) -> tuple[str, ...]:
    modes = tuple(m.strip() for m in text.split(",") if m.strip())
    bad = [m for m in modes if m not in STORM_MODES]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown storm setup {', '.join(bad)} (known: {', '.join(STORM_MODES)})")
    return modes


def _ints(text: str) -> tuple[int, ...]:
    """'10k,100k,1M' -> (10000, 100000, 1000000)."""
    out = []
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        mult = {"k": 1000, "m": 1_000_000}.get(part[-1], 1)
        out.append(int(float(part.rstrip("km")) * mult))
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"expected sizes like 10k,100k,1M, got {text!r}")
    return tuple(sorted(set(out)))


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _fill_api() -> str:
    from servegate.store.dao import EntityDao

    return "store.insert_many" if hasattr(EntityDao, "insert_many") else "store.insert loop (no insert_many)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="servegate configuration-at-scale benchmark")
    ap.add_argument("--stores", default=",".join(STORES), help="comma list of sqlite, postgres (default both)")
    ap.add_argument("--sizes", type=_ints, help="consumers with keys, e.g. 10k,100k,1M (default; quick: 1k,2k)")
    ap.add_argument("--base", type=int, help="the RSS reference size (default 1000; quick: 200)")
    ap.add_argument("--routes", type=int, help="routes for the write-storm test (default 10000; quick: 300)")
    ap.add_argument("--load-seconds", type=float, dest="load_s", help="wrk duration (default 10; quick: 2)")
    ap.add_argument("--write-seconds", type=float, dest="write_s", help="write test duration (default 10)")
    ap.add_argument("--prop-repeats", type=int, dest="prop_repeats", help="propagation repeats (default 50)")
    ap.add_argument("--storm-workers", type=_modes, dest="storm_workers",
                    help="storm setups: 1+ctl (storm through a second node), 1, 2 (default: all three)")
    ap.add_argument("--quick", action="store_true", help="small sizes, short loads: a smoke run, not a measurement")
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432",
                    help="PostgreSQL server (loopback, trust auth); the run creates and drops its databases")
    ap.add_argument("--out", type=Path, help="markdown report (default benchmarks/results/<date>-scale.md)")
    ap.add_argument("--title", default="")
    ap.add_argument("--build", choices=("compiled", "source"), default="compiled",
                    help="nodes run servegate's compiled build (scripts/build-compiled, default) or the source tree")
    ap.add_argument("--keep-work", action="store_true", help="keep node logs and prefixes under benchmarks/work")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a goal fails")
    ap.add_argument("--rerender", type=Path, metavar="JSON", help="rebuild --out from a run's JSON, run nothing")
    args = ap.parse_args(argv)
    if args.rerender:
        raw = json.loads(args.rerender.read_text())
        raw["goals"] = goals(raw)
        (args.out or args.rerender.with_suffix(".md")).write_text(render(raw))
        print(format_goals(raw["goals"]))
        return 0
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    if not stores or any(s not in STORES for s in stores):
        ap.error(f"--stores takes {', '.join(STORES)}")
    if shutil.which("wrk") is None:
        ap.error("wrk is needed (Debian package wrk)")
    plan = with_overrides(QUICK if args.quick else FULL, sizes=args.sizes, base=args.base, routes=args.routes,
                          load_s=args.load_s, write_s=args.write_s, prop_repeats=args.prop_repeats,
                          storm_workers=args.storm_workers)
    now = dt.datetime.now(dt.UTC)
    out = args.out or BENCH_DIR / "results" / f"{now:%Y-%m-%d}-scale.md"
    out.parent.mkdir(parents=True, exist_ok=True)

    # SIGTERM unwinds through the finally blocks: nodes and backend stopped, databases dropped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    _setup_host()
    (BENCH_DIR / "work").mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="scale-", dir=BENCH_DIR / "work"))
    results: dict[str, dict[str, Any]] = {}
    backend = None
    try:
        pythonpath = _servegate_build(args.build)
        backend, backend_port = start_backend(workdir)
        ctx = Ctx(plan, workdir, f"http://127.0.0.1:{backend_port}", args.pg, pythonpath)
        for kind in stores:
            log(f"== {kind}")
            try:
                results[kind] = measure_store(ctx, kind)
            except Exception as e:  # e.g. no PostgreSQL server: that store's tables say why, the run goes on
                log(f"{kind} failed: {type(e).__name__}: {e}")
                results[kind] = {"failed": f"{type(e).__name__}: {e}"[:500], "sizes": {}, "storm": {}}
            out.with_suffix(".partial.json").write_text(json.dumps(results, indent=1, default=str))
    finally:
        if backend is not None:
            backend.stop()
        if not args.keep_work:
            shutil.rmtree(workdir, ignore_errors=True)

    meta = {
        "title": args.title or ("quick smoke run" if args.quick else "full run"),
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "commit": (_git("rev-parse", "--short", "HEAD") or "?") + (" (dirty tree)" if _git("status", "--porcelain", "src") else ""),
        "build": args.build,
        "versions": _versions(),
        "fill_api": _fill_api(),
        "quick": args.quick,
        "stores": stores,
        "plan": dataclasses.asdict(plan),
    }
    raw = {"meta": meta, "stores": results}
    raw["goals"] = goals(raw)
    out.write_text(render(raw))
    out.with_suffix(".json").write_text(json.dumps(raw, indent=1, default=str))
    out.with_suffix(".partial.json").unlink(missing_ok=True)
    log(f"wrote {out} and {out.with_suffix('.json')}")
    print(format_goals(raw["goals"]))
    return 1 if args.strict and any(g["pass"] is False for g in raw["goals"]) else 0


if __name__ == "__main__":
    sys.exit(main())
