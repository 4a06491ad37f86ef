"""Smoke run of the benchmark harness: ~1 s per scenario on direct, nginx, aiohttp and servegate."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUN = REPO / "benchmarks" / "run.py"

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is needed to build the SSE client")


def _have_nginx() -> bool:
    return shutil.which("nginx") is not None or os.path.exists("/usr/sbin/nginx")


@pytest.mark.timeout(150)
def test_quick_run_writes_table_with_a_row_per_system(tmp_path: Path) -> None:
    systems = ["direct", "aiohttp", "servegate-1w"]
    if _have_nginx():
        systems.insert(1, "nginx")
    out = tmp_path / "smoke.md"
    argv = [sys.executable, str(RUN), "--quick", "--rounds", "1", "--systems", ",".join(systems), "--build", "source"]
    argv += ["--out", str(out)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        _, stderr = proc.communicate(timeout=140)
    except subprocess.TimeoutExpired:
        proc.terminate()  # the harness stops its proxies and backend on SIGTERM
        _, stderr = proc.communicate(timeout=30)
        pytest.fail("harness smoke run timed out: " + stderr[-2000:])
    assert proc.returncode == 0, stderr[-2000:]
    table = out.read_text()
    raw = json.loads(out.with_suffix(".json").read_text())
    summary = raw["summary"]
    for name in systems:
        assert f"| {name} |" in table, f"no row for {name}"
        assert name in summary

    have_wrk = shutil.which("wrk") is not None
    # the references must work: they are what every servegate figure is compared with
    references = [s for s in systems if s != "servegate-1w"]
    for name in references:
        s = summary[name]
        assert "failed" not in s, f"{name}: {s.get('failed')}"
        for sc in ("stream0", "paced500", "paced2000"):
            assert s[sc]["events_per_s"] > 0, (name, sc, s[sc])
            assert s[sc]["errors"] == 0, (name, sc, s[sc])
            assert s[sc]["short_streams"] == 0, (name, sc, s[sc])
        if have_wrk:
            assert s["c64"]["rps"] > 0 and s["c1"]["p50_ms"] > 0, (name, s["c64"], s["c1"])
        if name != "direct":
            assert s["startup_s"] is not None and 0 < s["startup_s"] < 20
            assert s["rss_idle_kb"] > 1000
            assert s["paced500"]["cpu_us_per_chunk"] > 0
            assert s["paced500"]["backend_cpu_pct"] < 100
    # servegate is being built alongside this harness: it may fail, but then the table says why
    sg = summary["servegate-1w"]
    if "failed" in sg:
        assert "| servegate-1w | failed: " in table
    else:
        for sc in ("c1", "c64", "stream0", "paced500", "paced2000"):
            assert "failed" in sg[sc] or sg[sc].get("rps", sg[sc].get("events_per_s", 0)) > 0, (sc, sg[sc])
    assert "## Issue-5 targets" in table
    assert "servegate-1w | c64 RPS >= 0.5x nginx" in table
