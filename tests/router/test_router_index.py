"""The indexes must not change answers: compare with a plain linear scan over all routes in priority order."""

from __future__ import annotations

import random
from typing import Any

import pytest
from router_rows import make_router, route_row

from servegate.proxy.matchers import _compile_path_regex, _literal_head, split_host_port


@pytest.mark.parametrize(
    ("pattern", "head"),
    [
        ("/users/\\d+", "/users/"),
        ("/api/?x", "/api"),
        ("/a*", "/"),
        ("/ab{0,2}", "/a"),
        ("/ab+", "/ab"),
        ("/(a|b)", ""),
        ("/x|/y", ""),
        ("(?i)/abc", ""),
        ("[0-9]", ""),
        ("/plain", "/plain"),
        ("/a.b", "/a"),
    ],
)
def test_literal_head(pattern: str, head: str) -> None:
    assert _literal_head(pattern) == head
    rx = _compile_path_regex(pattern)
    for sample in ("/users/12", "/apix", "/api/x", "/abb", "/a", "/b", "/x", "/y", "/ABC", "/plain", "/a-b", "1"):
        if rx.search(sample):
            assert sample.startswith(head)


def _sorted_matchers(routes: list[dict[str, Any]]) -> list[Any]:
    from servegate.proxy.matchers import Matcher, _group_paths

    ms = [Matcher(r, None, g) for r in routes for g in _group_paths(r.get("paths"))]
    ms.sort(key=lambda m: (m.priority, m.route_id), reverse=True)
    return ms


def _linear(ms: list[Any], method: str, host: str | None, path: str,
            headers: dict[str, str]) -> dict[str, Any] | None:
    """Reference: every (route, path group) in Kong priority order, first full match wins."""
    host_name, port = split_host_port(host.lower()) if host else (None, None)
    for m in ms:
        if not m.matches_rest(method, host_name, port, headers):
            continue
        if m.regexes:
            if any(rx.search(path) for rx in m.regexes):
                return m.route
        elif m.prefixes:
            if any(path.startswith(p) for p in m.prefixes):
                return m.route
        else:
            return m.route
    return None


def test_index_agrees_with_linear_scan() -> None:
    rnd = random.Random(1234)
    words = ["a", "ab", "abc", "v1", "v2", "chat", "models", "x"]
    hosts = ["h1.test", "h2.test", "api.h1.test"]

    def rpath() -> str:
        return "/" + "/".join(rnd.choice(words) for _ in range(rnd.randint(0, 3)))

    routes = []
    for i in range(400):
        fields: dict[str, Any] = {"id": f"00000000-0000-4000-8000-{i:012d}"}
        kind = rnd.random()
        if kind < 0.6:
            fields["paths"] = [rpath() for _ in range(rnd.randint(1, 2))]
        elif kind < 0.8:
            fields["paths"] = ["~" + rpath() + rnd.choice(["/\\d+", "(/.*)?$", "[a-z]*", "/?", "|/v1/x"])]
        if rnd.random() < 0.3:
            fields["hosts"] = rnd.sample(hosts + ["*.h1.test", "h2.*"], rnd.randint(1, 2))
        if rnd.random() < 0.2:
            fields["methods"] = rnd.sample(["GET", "POST"], 1)
        if rnd.random() < 0.1:
            fields["headers"] = {"x-v": rnd.sample(["1", "2"], 1)}
        if rnd.random() < 0.2:
            fields["regex_priority"] = rnd.randint(-2, 2)
        if not any(k in fields for k in ("paths", "hosts", "methods", "headers")):
            fields["methods"] = ["GET"]
        routes.append(route_row(service=None, **fields))
    router = make_router(routes)
    ms = _sorted_matchers(routes)
    checked = 0
    for _ in range(3000):
        method = rnd.choice(["GET", "POST"])
        host = rnd.choice([None, *hosts, "other.test", "H1.TEST:8000"])
        path = rpath() + rnd.choice(["", "/", "/12", "zz"])
        headers = {"x-v": rnd.choice(["1", "2"])} if rnd.random() < 0.5 else {}
        want = _linear(ms, method, host, path, headers)
        got = router.match(method, host, path, headers)
        assert (got.route if got else None) is want, (method, host, path, headers)
        checked += want is not None
    assert checked > 1000
