"""Kong's spec/fixtures/router_path_handling_tests.lua (3.9.3), run through normalize + match + join.

The fixture (113 rows) is stored as data in router_path_handling_tests.json. Rows are expanded as Kong's
``line:expand()`` does (strip_path, then path_handling): 106 ``v0`` and 106 ``v1`` cases. Each case sets the
route's ``path_handling``, which the router honours per route as Kong's traditional router did (Kong 3.9's
default traditional_compatible flavor ignores ``v1``). The cases with a route path are run a second time as
a regex route, as spec/01-unit/08-router_spec.lua does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from router_rows import make_router, route_row, service_row

from servegate.proxy.paths import normalize

ROWS: list[dict[str, Any]] = json.loads((Path(__file__).parent / "router_path_handling_tests.json").read_text())


def _expand(row: dict[str, Any]) -> list[dict[str, Any]]:
    tests = [row]
    for field in ("strip_path", "path_handling"):
        grown = []
        for t in tests:
            if isinstance(t[field], list):
                grown.extend({**t, field: v} for v in t[field])
            else:
                grown.append(t)
        tests = grown
    return tests


CASES = [
    pytest.param(i, j, t, id=f"{i}-{j}")
    for i, row in enumerate(ROWS, 1)
    for j, t in enumerate(_expand(row), 1)
]
REGEX_CASES = [c for c in CASES if c.values[2]["route_path"] is not None]


def _count(cases: list[Any], handling: str) -> int:
    return sum(1 for c in cases if c.values[2]["path_handling"] == handling)


def test_fixture_counts() -> None:
    counts = {
        "rows": len(ROWS),
        "v0": _count(CASES, "v0"),
        "v1": _count(CASES, "v1"),
        "regex_v0": _count(REGEX_CASES, "v0"),
        "regex_v1": _count(REGEX_CASES, "v1"),
    }
    print(f"router_path_handling_tests: {counts}")
    assert counts == {"rows": 113, "v0": 106, "v1": 106, "regex_v0": 88, "regex_v1": 88}
    # every row contributes, row for row: each one expands to at least one v0 or v1 case
    assert {c.values[0] for c in CASES} == set(range(1, len(ROWS) + 1))


def _run(test: dict[str, Any], route: dict[str, Any], host: str) -> None:
    service = service_row(path=test["service_path"])
    router = make_router([route], service)
    match = router.match("GET", host, normalize(test["request_path"]), {})
    assert match is not None
    assert match.route is route
    assert match.upstream_path == test["expected_path"]


@pytest.mark.parametrize(("i", "j", "test"), CASES)
def test_plain(i: int, j: int, test: dict[str, Any]) -> None:
    host = f"localbin-{i}-{j}.com"
    if test["route_path"] is not None:
        route = route_row(
            paths=[test["route_path"]], strip_path=test["strip_path"], path_handling=test["path_handling"]
        )
    else:
        route = route_row(hosts=[host], strip_path=test["strip_path"], path_handling=test["path_handling"])
    _run(test, route, host)


@pytest.mark.parametrize(("i", "j", "test"), REGEX_CASES)
def test_regex(i: int, j: int, test: dict[str, Any]) -> None:
    host = f"localbin-{i}.com"
    regex = "~/[0]?" + test["route_path"][1:]
    route = route_row(
        paths=[regex], hosts=[host], strip_path=test["strip_path"], path_handling=test["path_handling"]
    )
    _run(test, route, host)
