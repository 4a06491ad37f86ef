"""servegate-specific router behaviour: service states, protocols, priorities, caching, ports."""

from __future__ import annotations

from router_rows import make_router, route_row, service_row

from servegate.proxy.router import Router, split_host_port


def test_disabled_service_routes_are_left_out() -> None:
    off = service_row(id="00000000-0000-4000-8000-000000000002", enabled=False)
    on = service_row()
    r_off = route_row(paths=["/x/longer"], service={"id": off["id"]})
    r_on = route_row(paths=["/x"])
    router = make_router([r_off, r_on], on, off)
    match = router.match("GET", None, "/x/longer", {})
    assert match is not None and match.route is r_on
    assert make_router([r_off], on, off).match("GET", None, "/x/longer", {}) is None


def test_route_with_unknown_service_is_left_out() -> None:
    route = route_row(paths=["/x"], service={"id": "00000000-0000-4000-8000-00000000dead"})
    assert make_router([route]).match("GET", None, "/x", {}) is None


def test_service_less_route_matches_with_no_service() -> None:
    route = route_row(paths=["/x"], service=None)
    match = make_router([route]).match("GET", None, "/x/y", {})
    assert match is not None and match.service is None and match.upstream_path == "/y"


def test_stream_routes_are_not_http_routes() -> None:
    tcp = route_row(protocols=["tcp"], paths=None, sources=[{"ip": "10.0.0.1", "port": None}])
    grpc = route_row(protocols=["grpc"], paths=["/pkg.Svc/"], strip_path=False)
    router = make_router([tcp, grpc])
    match = router.match("POST", None, "/pkg.Svc/Call", {})
    assert match is not None and match.route is grpc
    assert len(router) == 1


def test_invalid_regex_route_is_skipped() -> None:
    bad = route_row(paths=["~/(unclosed"])
    good = route_row(paths=["/"])
    match = make_router([bad, good]).match("GET", None, "/(unclosed", {})
    assert match is not None and match.route is good


def test_regex_priority_orders_regex_routes() -> None:
    low = route_row(id="ffffffff-0000-4000-8000-000000000000", paths=["~/api/.*"], regex_priority=0)
    high = route_row(id="00000000-0000-4000-8000-000000000000", paths=["~/api/v\\d+"], regex_priority=10)
    match = make_router([low, high]).match("GET", None, "/api/v1/x", {})
    assert match is not None and match.route is high


def test_regex_priority_ignored_for_prefix_routes() -> None:
    a = route_row(id="00000000-0000-4000-8000-000000000001", paths=["/api"], regex_priority=100)
    b = route_row(id="00000000-0000-4000-8000-000000000002", paths=["/ap1"])
    match = make_router([a, b]).match("GET", None, "/api", {})
    assert match is not None and match.route is a
    # equal priority: higher route id wins
    c = route_row(id="00000000-0000-4000-8000-000000000003", paths=["/api"])
    match = make_router([a, c]).match("GET", None, "/api", {})
    assert match is not None and match.route is c


def test_route_with_regex_and_prefix_paths_is_split() -> None:
    mixed = route_row(id="00000000-0000-4000-8000-000000000001", paths=["/static", "~/dyn/\\d+$"])
    longer = route_row(id="00000000-0000-4000-8000-000000000002", paths=["/static/deeper"])
    router = make_router([mixed, longer])
    m = router.match("GET", None, "/dyn/42", {})
    assert m is not None and m.route is mixed and m.prefix == "/dyn/42" and m.upstream_path == "/"
    m = router.match("GET", None, "/static/deeper/x", {})
    assert m is not None and m.route is longer
    m = router.match("GET", None, "/static/x", {})
    assert m is not None and m.route is mixed and m.upstream_path == "/x"


def test_host_is_case_insensitive_and_port_comes_from_listener() -> None:
    plain = route_row(hosts=["API.example.com"])
    ported = route_row(hosts=["api.example.com:8000"], paths=["/p"])
    router = make_router([plain, ported])
    m = router.match("GET", "Api.Example.COM", "/", {})
    assert m is not None and m.route is plain
    m = router.match("GET", "api.example.com", "/p", {}, port=8000)
    assert m is not None and m.route is ported
    m = router.match("GET", "api.example.com", "/p", {}, port=8443)
    assert m is not None and m.route is plain
    m = router.match("GET", "api.example.com:8000", "/p", {}, port=80)
    assert m is not None and m.route is ported


def test_cache_respects_header_values() -> None:
    v1 = route_row(paths=["/"], headers={"x-version": ["v1"]})
    any_ = route_row(paths=["/"])
    router = make_router([v1, any_])
    for _ in range(2):
        m = router.match("GET", None, "/a", {"x-version": "v1"})
        assert m is not None and m.route is v1
        m = router.match("GET", None, "/a", {"x-version": "v2"})
        assert m is not None and m.route is any_
        m = router.match("GET", None, "/a", {"x-version": ["v2", "V1"]})
        assert m is not None and m.route is v1
        m = router.match("GET", None, "/a", {})
        assert m is not None and m.route is any_


def test_cache_is_bounded() -> None:
    router = Router([route_row(paths=["/"])], {service_row()["id"]: service_row()}, cache_size=8)
    for i in range(100):
        assert router.match("GET", None, f"/p{i}", {}) is not None
    assert len(router._cache) == 8


def test_negative_results_are_cached_too() -> None:
    router = make_router([route_row(paths=["/only"])])
    assert router.match("GET", None, "/nope", {}) is None
    assert router.match("GET", None, "/nope", {}) is None


def test_upstream_path_uses_service_path() -> None:
    svc = service_row(path="/v1/")
    route = route_row(paths=["/llm"], strip_path=True)
    m = make_router([route], svc).match("POST", None, "/llm/chat/completions", {})
    assert m is not None and m.upstream_path == "/v1/chat/completions" and m.prefix == "/llm"


def test_split_host_port() -> None:
    assert split_host_port("a.test") == ("a.test", None)
    assert split_host_port("a.test:8080") == ("a.test", 8080)
    assert split_host_port("a.test:x") == ("a.test:x", None)
    assert split_host_port("[::1]:81") == ("[::1]", 81)
    assert split_host_port("[::1]") == ("[::1]", None)


def test_many_routes_pick_right_one() -> None:
    routes = [route_row(paths=[f"/svc{i}/"], hosts=[f"h{i % 7}.test"]) for i in range(2000)]
    regexes = [route_row(paths=[f"~/re{i}/(\\d+)$"]) for i in range(200)]
    router = make_router(routes + regexes)
    m = router.match("GET", "h2.test", "/svc1234/x", {})  # 1234 % 7 == 2
    assert m is not None and m.route is routes[1234]
    assert router.match("GET", "h4.test", "/svc1234/x", {}) is None
    m = router.match("GET", "h4.test", "/re150/77", {})
    assert m is not None and m.route is regexes[150] and m.captures == {0: "/re150/77", 1: "77"}


def test_snis_apply_to_https_requests_only() -> None:
    tls = route_row(id="00000000-0000-4000-8000-000000000002", paths=["/s"], snis=["*.secure.test", "exact.test."])
    plain = route_row(id="00000000-0000-4000-8000-000000000001", paths=["/s"])
    router = make_router([tls, plain])
    # more categories: the sni route wins whenever its snis are not in the way
    m = router.match("GET", None, "/s", {})
    assert m is not None and m.route is tls
    m = router.match("GET", None, "/s", {}, sni="a.secure.test")
    assert m is not None and m.route is tls
    m = router.match("GET", None, "/s", {}, sni="EXACT.test")
    assert m is not None and m.route is tls
    m = router.match("GET", None, "/s", {}, sni="other.test")
    assert m is not None and m.route is plain
    m = router.match("GET", None, "/s", {}, sni="")
    assert m is not None and m.route is plain
