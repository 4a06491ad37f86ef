"""Smoke run of the configuration-at-scale benchmark (benchmarks/scale.py): tiny sizes, SQLite, ~40 s.

It proves every part runs and reports numbers; the figures themselves mean nothing at this size.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCALE = REPO / "benchmarks" / "scale.py"

pytestmark = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is needed for the proxy load")


def _is_num(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


@pytest.mark.timeout(100)
def test_quick_scale_run_reports_every_section(tmp_path: Path) -> None:
    out = tmp_path / "scale.md"
    argv = [sys.executable, str(SCALE), "--quick", "--stores", "sqlite", "--build", "source", "--base", "100",
            "--sizes", "150,200", "--routes", "300", "--load-seconds", "2", "--write-seconds", "2",
            "--prop-repeats", "3", "--storm-workers", "1", "--out", str(out)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        _, stderr = proc.communicate(timeout=80)
    except subprocess.TimeoutExpired:
        proc.terminate()  # the script stops its nodes and backend and drops its databases on SIGTERM
        _, stderr = proc.communicate(timeout=15)
        pytest.fail("scale smoke run timed out: " + stderr[-2000:])
    assert proc.returncode == 0, stderr[-2000:]
    raw = json.loads(out.with_suffix(".json").read_text())
    table = out.read_text()
    for heading in ("## Goals", "## 1. Admin writes", "## 2. RSS", "## 3. Credential cache", "## 4. Proxy c64",
                    "## 5. Propagation"):
        assert heading in table, heading
    res = raw["stores"]["sqlite"]
    assert "failed" not in res, res.get("failed")
    assert set(res["sizes"]) == {"100", "150", "200"}
    for n, size in res["sizes"].items():
        assert size["fill"]["to"] == int(n) and _is_num(size["fill"]["seconds"])
        w1, w2 = size["w1"], size["w2"]
        assert "failed" not in w1 and "failed" not in w2, (n, w1.get("failed"), w2.get("failed"))
        writes = w1["writes"]
        assert writes["writes"] > 0 and writes["writes_per_s"] > 0 and _is_num(writes["p99_ms"]), writes
        assert writes["errors"] == 0, writes["error_kinds"]
        assert w1["rss"]["tree_mb"] > 5 and w2["rss"]["tree_mb"] > w1["rss"]["tree_mb"] / 2
        assert len(w2["rss"]["worker_mb"]) == 2 and all(x > 5 for x in w2["rss"]["worker_mb"])
        cache = w1["cache"]
        assert cache["hit_ms"]["n"] > 0 and cache["miss_ms"]["n"] > 0 and not cache["errors"], cache
        assert _is_num(cache["added_p50_ms"]) and _is_num(cache["added_p99_ms"])
        # the counters are the node's to expose: a rate or None ("n/a"), never a failure
        assert cache["hit_rate_hits"] is None or 0 <= cache["hit_rate_hits"] <= 1
        prop = w2["propagation"]
        assert prop["repeats"] == 3 and not prop["timeouts"] and not prop["errors"], prop
        for op in ("create", "delete"):
            for name in ("A_first", "A_all", "B_first"):
                assert prop[op][name]["n"] == 3 and _is_num(prop[op][name]["p99"]), (op, name, prop[op][name])
    storm = res["storm"]["w1"]
    assert "failed" not in storm, storm.get("failed")
    for kind in ("quiet", "storm"):
        assert storm[kind]["rps"] > 0 and _is_num(storm[kind]["p99_ms"]), storm[kind]
    assert storm["writes"]["writes"] > 0 and _is_num(storm["p99_diff_ms"])
    # every goal is computed (pass or fail: at these sizes the figures mean nothing)
    assert [g["goal"].split(" ")[0] for g in raw["goals"]] == ["writes/s", "RSS", "RSS", "proxy"], raw["goals"]
    assert all(g["pass"] is not None for g in raw["goals"]), raw["goals"]
