"""Print which issue-5 performance targets a benchmark run meets.

    python benchmarks/check.py benchmarks/results/<date>.json [--strict]

--strict exits 1 when a measurable target is not met (for a CI gate on a full run).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib.checks import check_all, format_checks  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="check a run's JSON against the issue-5 targets")
    ap.add_argument("results", type=Path, help="the .json written next to a run's markdown report")
    ap.add_argument("--strict", action="store_true", help="exit 1 if a measurable target is not met")
    args = ap.parse_args(argv)
    summary = json.loads(args.results.read_text())["summary"]
    checks = check_all(summary)
    print(format_checks(checks), end="")
    return 1 if args.strict and any(c.ok is False for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
