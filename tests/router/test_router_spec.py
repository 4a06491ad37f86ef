"""Kong router_spec select()/exec() cases (traditional_compatible) run against servegate's Router."""

from __future__ import annotations

from typing import Any

import pytest
from router_rows import make_router, route_row
from router_spec_cases import SCENARIOS, Req

from servegate.proxy.paths import normalize

ID_PREFIX = "e8fb37f1-102d-461e-9c51-6608a6bb"


def _build(spec: list[tuple[str, dict[str, Any]]]) -> tuple[Any, dict[str, dict[str, Any]]]:
    routes = {}
    for suffix, fields in spec:
        routes[suffix] = route_row(id=ID_PREFIX + suffix, **fields)
    return make_router(list(routes.values())), routes


CASES = [
    pytest.param(name, i, req, id=f"{name}#{i}")
    for name, (_, reqs) in SCENARIOS.items()
    for i, req in enumerate(reqs)
]


@pytest.mark.parametrize(("name", "i", "req"), CASES)
def test_select(name: str, i: int, req: Req) -> None:
    router, routes = _build(SCENARIOS[name][0])
    method, path, host, headers, expected = req
    match = router.match(method, host, path, headers or {})
    if expected is None:
        assert match is None
    else:
        assert match is not None, "no match"
        assert match.route is routes[expected], match.route["id"]
        # the cached answer is the same
        assert router.match(method, host, path, headers or {}) is match


def test_serviceless_route_matches_without_service() -> None:
    router, routes = _build(SCENARIOS["select"][0])
    match = router.match("GET", None, "/serviceless", {})
    assert match is not None and match.service is None and match.captures is None


def _one(paths: list[str], strip: bool = True, service_path: str | None = None) -> Any:
    from router_rows import service_row

    route = route_row(id=ID_PREFIX + "8101", paths=paths, strip_path=strip)
    return make_router([route], service_row(path=service_path)), route


def test_captures_with_optional_group() -> None:
    router, _ = _one(["~/(users/)?1984/(?<subpath>profile)$"])
    match = router.match("GET", "domain.org", normalize("/1984/profile"), {})
    assert match is not None and match.captures is not None
    assert match.captures[1] is None
    assert match.captures["subpath"] == "profile"
    assert "scope" not in match.captures


def test_captures_from_regex() -> None:
    router, _ = _one(["~/users/(?P<user_id>\\d+)/profile/?(?P<scope>[a-z]*)"])
    for _ in range(2):  # second time from the cache
        match = router.match("GET", "domain.org", "/users/1984/profile", {})
        assert match is not None
        caps = match.captures
        assert caps == {0: "/users/1984/profile", 1: "1984", 2: "", "user_id": "1984", "scope": ""}
    match = router.match("GET", "domain.org", "/users/1984/profile/email", {})
    assert match is not None and match.captures is not None
    assert match.captures[2] == "email" and match.captures["scope"] == "email"
    assert match.captures[0] == "/users/1984/profile/email"


def test_captures_are_normalized() -> None:
    router, _ = _one(["~/users/(?P<fullname>[a-zA-Z\\s\\d%]+)/profile/?(?P<scope>[a-z]*)"])
    match = router.match("GET", "domain.org", normalize("/users/%6aohn%20doe/profile"), {})
    assert match is not None and match.captures is not None
    assert match.captures[1] == "john doe" == match.captures["fullname"]
    assert match.captures[0] == "/users/john doe/profile"


def test_no_captures_from_prefix_or_groupless_regex() -> None:
    router, _ = _one(["/hello"])
    match = router.match("GET", "domain.org", "/hello/world", {})
    assert match is not None and match.captures is None and match.upstream_path == "/world"
    router, _ = _one(["~/users/\\d+/profile"])
    match = router.match("GET", "domain.org", "/users/1984/profile", {})
    assert match is not None and match.captures is None


def test_reserved_escapes_are_matched_and_kept() -> None:
    router, route = _one(["/endel%2Fst"], strip=False)
    match = router.match("GET", "domain.org", normalize("/endel%2Fst"), {})
    assert match is not None and match.route is route and match.upstream_path == "/endel%2Fst"
    router, route = _one(["/endel%2Fst"], strip=True)
    match = router.match("GET", "domain.org", normalize("/endel%2Fst"), {})
    assert match is not None and match.prefix == "/endel%2Fst" and match.upstream_path == "/"


def test_stripped_paths() -> None:
    strip = route_row(id=ID_PREFIX + "8101", paths=["/my-route", "/xx-route"], strip_path=True)
    keep = route_row(id=ID_PREFIX + "8102", methods=["POST"], paths=["/my-route", "/xx-route"], strip_path=False)
    router = make_router([strip, keep])
    m = router.match("GET", "domain.org", "/my-route/hello/world", {})
    assert m is not None and m.route is strip and m.prefix == "/my-route" and m.upstream_path == "/hello/world"
    m = router.match("GET", "domain.org", "/my-route", {})
    assert m is not None and m.prefix == "/my-route" and m.upstream_path == "/"
    m = router.match("GET", "domain.org", "/xx-route", {})
    assert m is not None and m.prefix == "/xx-route" and m.upstream_path == "/"
    m = router.match("POST", "domain.org", "/my-route/hello/world", {})
    assert m is not None and m.route is keep and m.prefix == "/" and m.upstream_path == "/my-route/hello/world"


def test_root_route_strips_nothing() -> None:
    router, _ = _one(["/"])
    m = router.match("POST", "domain.org", "/my-route/hello/world", {})
    assert m is not None and m.prefix == "/" and m.upstream_path == "/my-route/hello/world"


@pytest.mark.parametrize("paths", [["~/users/\\d+/profile"], ["~/users/(\\d+)/profile"]])
def test_strips_regex_match(paths: list[str]) -> None:
    router, _ = _one(paths)
    m = router.match("GET", "domain.org", "/users/123/profile/hello/world", {})
    assert m is not None and m.prefix == "/users/123/profile" and m.upstream_path == "/hello/world"
