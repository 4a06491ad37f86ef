"""Rebuilds: matchers reused from a previous router, the previous router left intact, the sliced async build."""

from __future__ import annotations

import asyncio
import gc
import random
import time
from typing import Any

import pytest
from router_rows import SERVICE_ID, bench_module, make_router, route_row, service_row
from router_spec_cases import SCENARIOS

from servegate.proxy.matchers import _order_key
from servegate.proxy.router import Match, Router


def _matchers_of(router: Router, route: dict[str, Any]) -> list[Any]:
    return [m for m in router._ranked() if m.route is route]


def _answer(match: Match | None) -> tuple[Any, ...] | None:
    """What a request gets from a match, with the route and service rows compared by identity."""
    if match is None:
        return None
    return id(match.route), id(match.service), match.prefix, match.upstream_path, match.captures


def _ranking(router: Router) -> list[tuple[int, str]]:
    return [(id(m.route), m.order) for m in router._ranked()]


def test_unchanged_routes_reuse_their_matchers() -> None:
    svc = service_row()
    other_svc = service_row(id="5b0f6a28-4c3b-4d0c-9e6f-3f6d2d2a0002", path="/other")
    multi = route_row(paths=["/a", "/bb", "~/c/\\d+"])  # three path groups: three matchers
    plain = route_row(paths=["/plain"])
    changed = route_row(paths=["/changed"])
    on_other = route_row(paths=["/other"], service={"id": other_svc["id"]})
    services = {svc["id"]: svc, other_svc["id"]: other_svc}
    r0 = Router([multi, plain, changed, on_other], services)
    assert len(_matchers_of(r0, multi)) == 3

    changed2 = {**changed, "paths": ["/changed", "/changed-too"]}  # a new row object: an edit
    other_svc2 = {**other_svc, "path": "/moved"}
    services2 = {svc["id"]: svc, other_svc["id"]: other_svc2}
    r1 = Router([multi, plain, changed2, on_other], services2, previous=r0)

    for route in (multi, plain):
        assert [id(m) for m in _matchers_of(r1, route)] == [id(m) for m in _matchers_of(r0, route)]
    old_ids = {id(m) for m in r0._ranked()}
    assert _matchers_of(r1, changed2) and not {id(m) for m in _matchers_of(r1, changed2)} & old_ids
    # Same route row, new service row: compiled afresh against the new service.
    fresh = _matchers_of(r1, on_other)
    assert fresh and not {id(m) for m in fresh} & old_ids and fresh[0].service is other_svc2
    assert r1.match("GET", None, "/other/x").upstream_path == "/moved/x"  # type: ignore[union-attr]
    assert r0.match("GET", None, "/other/x").upstream_path == "/other/x"  # type: ignore[union-attr]
    # Built with or without `previous`, the ranking is the same.
    assert _ranking(r1) == _ranking(Router([multi, plain, changed2, on_other], services2))


def test_route_dropped_when_its_service_goes() -> None:
    route = route_row(paths=["/x"])
    r0 = make_router([route])
    r1 = Router([route], {SERVICE_ID: service_row(enabled=False)}, previous=r0)
    assert r1.match("GET", None, "/x") is None
    assert r0.match("GET", None, "/x") is not None
    r2 = Router([route], {}, previous=r1)  # the service row is gone
    assert len(r2) == 0


def test_invalid_regex_group_left_out_on_every_build() -> None:
    bad = route_row(paths=["~/(unclosed"])
    good = route_row(paths=["/ok"])
    r0 = make_router([bad, good])
    r1 = Router([bad, good], {SERVICE_ID: service_row()}, previous=r0)
    for router in (r0, r1):
        assert len(router) == 1 and router.match("GET", None, "/ok") is not None


def _random_routes(rnd: random.Random, n: int) -> list[dict[str, Any]]:
    words = ["a", "ab", "v1", "chat", "models", "x"]
    hosts = ["h1.test", "h2.test", "*.h1.test"]
    routes = []
    for _ in range(n):
        fields: dict[str, Any] = {"paths": ["/" + "/".join(rnd.sample(words, rnd.randint(1, 2)))]}
        if rnd.random() < 0.2:
            fields["paths"] = ["~" + fields["paths"][0] + "(/\\d+)?$"]
            fields["regex_priority"] = rnd.randint(-2, 2)
        if rnd.random() < 0.4:
            fields["hosts"] = rnd.sample(hosts, 1)
        if rnd.random() < 0.2:
            fields["methods"] = ["POST"]
        routes.append(route_row(**fields))
    return routes


def _requests(rnd: random.Random, n: int) -> list[tuple[str, str | None, str]]:
    words = ["a", "ab", "v1", "chat", "models", "x", "12"]
    return [
        (
            rnd.choice(["GET", "POST"]),
            rnd.choice([None, "h1.test", "h2.test", "api.h1.test", "other.test"]),
            "/" + "/".join(rnd.choice(words) for _ in range(rnd.randint(1, 3))),
        )
        for _ in range(n)
    ]


def test_old_router_keeps_its_answers_after_a_rebuild() -> None:
    rnd = random.Random(99)
    old_routes = _random_routes(rnd, 300)
    svc = service_row()
    old = make_router(old_routes, svc)
    reqs = _requests(rnd, 1500)
    before = [_answer(old.match(*req)) for req in reqs]
    assert sum(a is not None for a in before) > 500

    # Remove some routes; add copies of others under a higher id: same priority, so they rank just above
    # the originals (ties go to the higher id); and a catch-all for h1.test GETs that outranks most routes.
    kept = [r for r in old_routes if rnd.random() < 0.8]
    twins = [{**r, "id": "ffffffff" + r["id"][8:]} for r in rnd.sample(old_routes, 60)]
    catch_all = [route_row(paths=["/"], hosts=["h1.test"], methods=["GET"])]
    new_routes = kept + twins + catch_all
    new = Router(new_routes, {SERVICE_ID: svc}, previous=old)
    shared = {id(m) for m in old._ranked()} & {id(m) for m in new._ranked()}
    assert len(shared) >= len(kept)

    reference = make_router(new_routes, svc)
    for i, req in enumerate(reqs):
        assert _answer(new.match(*req)) == _answer(reference.match(*req)), req
        # The old router, asked again (cached) and afresh (behind the cache), answers as before.
        assert _answer(old.match(*req)) == before[i], req
        assert _answer(old._find_raw(req[0], req[1], None, req[2], None)) == before[i], req
    assert any(_answer(new.match(*req)) != before[i] for i, req in enumerate(reqs))


def test_order_key_sorts_like_the_priority_tuple() -> None:
    rnd = random.Random(5)
    keys = []
    for _ in range(3000):
        priority = (
            rnd.randint(0, 7), rnd.randint(0, 1), rnd.randint(0, 255), rnd.randint(0, 1),
            rnd.choice([0, 1, -1, rnd.randint(-2**31, 2**31 - 1)]), rnd.choice([0, 1, rnd.randint(0, 5000)]),
        )
        route_id = rnd.choice(["", "0", "ffff", f"{rnd.getrandbits(128):032x}"])
        keys.append((priority, route_id))
    by_tuple = sorted(range(len(keys)), key=lambda i: keys[i])
    by_string = sorted(range(len(keys)), key=lambda i: _order_key(*keys[i]))
    assert [keys[i] for i in by_tuple] == [keys[i] for i in by_string]


def _spec_routes(spec: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [route_row(id="e8fb37f1-102d-461e-9c51-6608a6bb" + suffix, **fields) for suffix, fields in spec]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_async_build_matches_constructor_on_spec_cases(name: str) -> None:
    spec, reqs = SCENARIOS[name]
    routes = _spec_routes(spec)
    services = {SERVICE_ID: service_row()}
    sync = Router(routes, services)
    built = await Router.build(routes, services, slice_s=0)
    assert _ranking(built) == _ranking(sync)
    for method, path, host, headers, _ in reqs:
        assert _answer(built.match(method, host, path, headers or {})) == _answer(
            sync.match(method, host, path, headers or {})
        )


async def test_async_build_matches_constructor_on_bench_mix() -> None:
    bench = bench_module()
    routes = bench.make_routes(3000)
    services = {bench.SERVICE["id"]: bench.SERVICE}
    sync = Router(routes, services)
    built = await Router.build(routes, services)
    assert _ranking(built) == _ranking(sync)
    # From a previous router, with one route changed: the same again, reusing all the others.
    changed = list(routes)
    changed[7] = {**routes[7], "strip_path": False}
    rebuilt = await Router.build(changed, services, previous=built, slice_s=0)
    assert _ranking(rebuilt) == _ranking(Router(changed, services))
    assert len({id(m) for m in rebuilt._ranked()} - {id(m) for m in built._ranked()}) == 1
    rnd = random.Random(3)
    reqs = [bench.request_for(r) for r in rnd.sample(routes, 1000)]
    reqs.append(("GET", "nohost.test", "/not/routed", {}))
    answers = [_answer(sync.match(*req)) for req in reqs]
    assert [_answer(built.match(*req)) for req in reqs] == answers
    assert answers[-1] is None and sum(a is not None for a in answers) == len(reqs) - 1


async def test_async_build_lets_other_tasks_run() -> None:
    bench = bench_module()
    routes = bench.make_routes(10_000)
    services = {bench.SERVICE["id"]: bench.SERVICE}
    turns: list[float] = []
    done = False

    async def ticker() -> None:
        while not done:
            turns.append(time.perf_counter())
            await asyncio.sleep(0)

    # A full collection can land anywhere in a build of this size and stop the loop, build or not: keep it
    # out of the measure of how the build shares the loop.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        started = time.perf_counter()
        router = await Router.build(routes, services)
        total = time.perf_counter() - started
        done = True
        await task
    finally:
        if gc_was_enabled:
            gc.enable()
    assert len(router) == 10_000
    gaps = [b - a for a, b in zip(turns, turns[1:], strict=False)]
    assert len(turns) > 10
    # Loose on purpose (shared CI machines): the build is spread over many turns, no one of them
    # taking a large part of it. The timing goals are in benchmarks/router_bench.py.
    assert max(gaps) < total / 4
