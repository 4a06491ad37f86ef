"""Rebuilds from a previous router that copy only what changed (router_build's update): the result must answer
exactly as a router built from scratch, the previous router must keep its answers, and a small change must
allocate few objects."""

from __future__ import annotations

import gc
import random
from typing import Any

import pytest
from router_rows import SERVICE_ID, bench_module, route_row, service_row
from router_spec_cases import SCENARIOS

from servegate.proxy.router import Match, Router
from servegate.proxy.router_build import Index, _Diff, _diff_steps

OTHER_ID = "5b0f6a28-4c3b-4d0c-9e6f-3f6d2d2a0002"
THIRD_ID = "5b0f6a28-4c3b-4d0c-9e6f-3f6d2d2a0003"

Request = tuple[str, str | None, str, dict[str, Any], int | None, str | None]



def _answer(match: Match | None) -> tuple[Any, ...] | None:
    """What a request gets from a match, with the route and service rows compared by identity."""
    if match is None:
        return None
    return id(match.route), id(match.service), match.prefix, match.upstream_path, match.captures


def _answers(router: Router, reqs: list[Request], cached: bool = True) -> list[tuple[Any, ...] | None]:
    if cached:
        return [_answer(router.match(m, h, p, hd, port, sni)) for m, h, p, hd, port, sni in reqs]
    # Behind the cache: what the index itself says.
    return [_answer(router._find_raw(m, h, port, p, hd, sni)) for m, h, p, hd, port, sni in reqs]


def _ranking(router: Router) -> list[tuple[int, str]]:
    # Without repeats: a route listed twice has its matchers filed twice, reused ones as the same objects.
    return list(dict.fromkeys((id(m.route), m.order) for m in router._ranked()))


def _shared_buckets(new: Router, old: Router) -> int:
    """Buckets the new router took over from the old one as they were: an update, not a full build."""
    old_buckets = old._index.buckets
    return sum(1 for key, bucket in new._index.buckets.items() if old_buckets.get(key) is bucket)


def _check_same(new: Router, routes: list[dict[str, Any]], services: dict[str, Any],
                reqs: list[Request]) -> None:
    reference = Router(routes, services)
    assert len(new) == len(reference)
    assert _ranking(new) == _ranking(reference)
    assert new._index.lengths == reference._index.lengths
    assert new._index.header_names == reference._index.header_names
    assert _answers(new, reqs) == _answers(reference, reqs)


WORDS = ["a", "ab", "v1", "chat", "models", "x", "12"]
HOSTS = ["h1.test", "h2.test", "*.h1.test", "h3.*", "h1.test:8443"]


class Config:
    """Route and service rows kept as the configuration feed keeps them: an unchanged row stays the same
    object, an edit makes a new one (moved to the end of the list, or kept in place)."""

    def __init__(self, rnd: random.Random, n: int) -> None:
        self.rnd = rnd
        self.services: dict[str, dict[str, Any]] = {
            SERVICE_ID: service_row(), OTHER_ID: service_row(id=OTHER_ID, path="/o"),
        }
        self.routes: dict[str, dict[str, Any]] = {}
        for _ in range(n):
            self.insert()

    def fields(self) -> dict[str, Any]:
        rnd = self.rnd
        kind = rnd.random()
        fields: dict[str, Any] = {}
        if kind < 0.55:
            fields["paths"] = ["/" + "/".join(rnd.sample(WORDS, rnd.randint(1, 2))) for _ in range(rnd.randint(1, 2))]
        elif kind < 0.75:
            fields["paths"] = ["~/" + rnd.choice(WORDS) + rnd.choice(["/\\d+$", "(/(?<n>\\d+))?$", "[a-z]*", "|/x"])]
            fields["regex_priority"] = rnd.randint(-2, 2)
        elif kind < 0.8:
            fields["paths"] = ["/" + rnd.choice(WORDS), "~/" + rnd.choice(WORDS) + "/\\d+"]
        elif kind < 0.82:
            fields["paths"] = ["~/(unclosed"]  # left out: an invalid regex
        if rnd.random() < 0.4 or not fields:
            fields["hosts"] = rnd.sample(HOSTS, rnd.randint(1, 2))
        if rnd.random() < 0.2:
            fields["methods"] = [rnd.choice(["GET", "POST"])]
        if rnd.random() < 0.1:
            fields["headers"] = {rnd.choice(["x-v", "x_tenant"]): [rnd.choice(["1", "2", "~*^t\\d$"])]}
        if rnd.random() < 0.05:
            fields["snis"] = ["h1.test"]
            fields["protocols"] = ["https"]
        if rnd.random() < 0.03:
            fields["protocols"] = ["tcp"]  # left out: not an HTTP route
        if rnd.random() < 0.3:
            fields["strip_path"] = False
        ref = rnd.random()
        if ref < 0.25:
            fields["service"] = {"id": OTHER_ID}
        elif ref < 0.3:
            fields["service"] = {"id": THIRD_ID}  # missing at times
        elif ref < 0.35:
            fields["service"] = None
        return fields

    def insert(self) -> None:
        row = route_row(**self.fields())
        self.routes[row["id"]] = row

    def update(self) -> None:
        rid = self.rnd.choice(list(self.routes))
        old = self.routes[rid]
        row = {**old, **self.fields(), "id": rid} if self.rnd.random() < 0.7 else {**old}  # {**old}: equal, new
        if self.rnd.random() < 0.5:
            del self.routes[rid]  # as the feed does: an edited row moves to the end
        self.routes[rid] = row

    def delete(self) -> None:
        if self.routes:
            del self.routes[self.rnd.choice(list(self.routes))]

    def edit_service(self) -> None:
        rnd = self.rnd
        sid = rnd.choice([SERVICE_ID, OTHER_ID, THIRD_ID])
        kind = rnd.random()
        if kind < 0.2 and sid in self.services:
            del self.services[sid]
        else:
            row = service_row(id=sid, path=rnd.choice([None, "/s", "/t/"]), enabled=rnd.random() < 0.8)
            self.services = {**self.services, sid: row}

    def step(self) -> None:
        kind = self.rnd.random()
        if kind < 0.35:
            self.insert()
        elif kind < 0.7:
            self.update()
        elif kind < 0.9:
            self.delete()
        else:
            self.edit_service()

    def requests(self, n: int) -> list[Request]:
        rnd = self.rnd
        out: list[Request] = []
        for _ in range(n):
            headers: dict[str, Any] = {}
            if rnd.random() < 0.3:
                headers[rnd.choice(["x-v", "x-tenant"])] = rnd.choice(["1", "2", "t7", "T1"])
            https = rnd.random() < 0.2
            out.append((
                rnd.choice(["GET", "POST"]),
                rnd.choice([None, "h1.test", "H2.test", "api.h1.test", "h3.example", "h1.test:8443", "o.test"]),
                "/" + "/".join(rnd.choice(WORDS) for _ in range(rnd.randint(0, 3))),
                headers,
                rnd.choice([None, 8443]) if https else None,
                rnd.choice(["", "h1.test"]) if https else None,
            ))
        return out


@pytest.mark.parametrize("seed", range(6))
def test_random_edits_match_a_router_built_from_scratch(seed: int) -> None:
    rnd = random.Random(seed)
    config = Config(rnd, 150)
    reqs = config.requests(600)
    current = Router(list(config.routes.values()), config.services)
    updates = 0
    for _ in range(40):
        for _ in range(rnd.randint(1, 4)):
            config.step()
        routes = list(config.routes.values())
        before = _answers(current, reqs, cached=False)
        new = Router(routes, config.services, previous=current)
        _check_same(new, routes, config.services, reqs)
        # The previous router answers as before, from its cache and from its index.
        assert _answers(current, reqs, cached=False) == before
        assert _answers(current, reqs) == before
        updates += _shared_buckets(new, current) > 0
        current = new
    assert updates > 30  # most of these were updates, not full builds


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_spec_cases_after_removing_and_restoring_each_route(name: str) -> None:
    spec, spec_reqs = SCENARIOS[name]
    routes = [route_row(id="e8fb37f1-102d-461e-9c51-6608a6bb" + suffix, **fields) for suffix, fields in spec]
    services = {SERVICE_ID: service_row()}
    reqs: list[Request] = [(m, h, p, hd or {}, None, None) for m, p, h, hd, _ in spec_reqs]
    full = Router(routes, services)
    expected = _answers(full, reqs)
    for i in range(len(routes)):
        without = Router(routes[:i] + routes[i + 1 :], services, previous=full)
        _check_same(without, routes[:i] + routes[i + 1 :], services, reqs)
        edited = {**routes[i]}  # a new row object, equal to the old one
        restored = Router(routes[:i] + routes[i + 1 :] + [edited], services, previous=without)
        _check_same(restored, routes[:i] + routes[i + 1 :] + [edited], services, reqs)
        assert [a and a[2:] for a in _answers(restored, reqs)] == [a and a[2:] for a in expected]
    assert _answers(full, reqs) == expected


def test_bench_mix_write_storm() -> None:
    bench = bench_module()
    rnd = random.Random(11)
    routes = bench.make_routes(3000)
    services = {bench.SERVICE["id"]: bench.SERVICE}
    reqs: list[Request] = [(*bench.request_for(r), None, None) for r in rnd.sample(routes, 800)]
    reqs.append(("GET", "nohost.test", "/not/routed", {}, None, None))
    by_id = {r["id"]: r for r in routes}
    current = Router(list(by_id.values()), services)
    extra = bench.make_routes(200, seed=99)
    for step in range(30):
        # The scale benchmark's storm: create a route, edit it, delete one.
        new_row = extra[step]
        by_id[new_row["id"]] = new_row
        edited = {**by_id[rnd.choice(list(by_id))], "strip_path": False}
        del by_id[edited["id"]]
        by_id[edited["id"]] = edited
        del by_id[rnd.choice(list(by_id))]
        routes = list(by_id.values())
        new = Router(routes, services, previous=current)
        assert _shared_buckets(new, current) > len(new._index.buckets) // 2
        _check_same(new, routes, services, reqs)
        current = new


def _index_of(rows: list[dict[str, Any]]) -> Index:
    return Router(rows, {})._index


def test_diff_finds_fresh_and_gone_rows_whatever_the_edits() -> None:
    rnd = random.Random(5)
    for _ in range(300):
        old = [{"id": f"r{i}"} for i in range(rnd.randint(0, 60))]
        rows = {r["id"]: r for r in old}
        new = list(old)
        for _ in range(rnd.randint(0, 6)):
            kind = rnd.random()
            if kind < 0.25 and new:
                del new[rnd.randrange(len(new))]
            elif kind < 0.45:
                new.insert(rnd.randint(0, len(new)), {"id": f"n{rnd.getrandbits(32)}"})
            elif kind < 0.65 and new:
                k = rnd.randrange(len(new))
                new[k] = {**new[k]}  # a new version, equal to the old one
            elif kind < 0.85 and new:
                new.insert(rnd.randint(0, len(new) - 1), new.pop(rnd.randrange(len(new))))
            elif kind < 0.92 and new:
                new.insert(rnd.randint(0, len(new)), rnd.choice(new))  # listed twice
            elif kind < 0.96:
                new.append({"id": None})
            else:
                rnd.shuffle(new)
        diff = _Diff()
        for _ in _diff_steps(diff, new, _index_of(old), budget=10**6):
            pass
        assert diff.ok
        fresh = {id(r) for r in new if rows.get(r["id"]) is not r}
        gone = {id(r) for r in old} - {id(r) for r in new}
        assert {id(r) for r in diff.fresh} == fresh
        assert [id(r) for r in diff.gone] == [id(r) for r in old if id(r) in gone]


def test_rows_moved_in_the_list_are_kept() -> None:
    rnd = random.Random(21)
    config = Config(rnd, 100)
    reqs = config.requests(300)
    routes = list(config.routes.values())
    r0 = Router(routes, config.services)
    moved = [*routes[:3], *routes[4:60], routes[80], *routes[60:80], *routes[81:], routes[3]]
    r1 = Router(moved, config.services, previous=r0)
    assert _shared_buckets(r1, r0) == len(r1._index.buckets)  # nothing changed but the order
    assert {id(m) for m in r1._ranked()} == {id(m) for m in r0._ranked()}
    _check_same(r1, moved, config.services, reqs)


def test_service_changes_recompile_their_routes_only() -> None:
    svc = service_row()
    other = service_row(id=OTHER_ID, path="/o")
    on_svc = [route_row(paths=[f"/s{i}"]) for i in range(50)]
    on_other = [route_row(paths=[f"/o{i}"], service={"id": OTHER_ID}) for i in range(3)]
    routes = on_svc + on_other
    r0 = Router(routes, {SERVICE_ID: svc, OTHER_ID: other})
    reqs: list[Request] = [("GET", None, f"/{p}{i}/x", {}, None, None) for p in "so" for i in range(50)]

    other2 = {**other, "path": "/moved"}
    r1 = Router(routes, {SERVICE_ID: svc, OTHER_ID: other2}, previous=r0)
    _check_same(r1, routes, {SERVICE_ID: svc, OTHER_ID: other2}, reqs)
    old_ids = {id(m) for m in r0._ranked()}
    assert all(id(m) in old_ids for m in r1._ranked() if m.service is svc)
    assert all(id(m) not in old_ids for m in r1._ranked() if m.route in on_other)
    assert r1.match("GET", None, "/o1/x").upstream_path == "/moved/x"  # type: ignore[union-attr]
    assert r0.match("GET", None, "/o1/x").upstream_path == "/o/x"  # type: ignore[union-attr]

    for services in (
        {SERVICE_ID: svc},  # other's routes go
        {SERVICE_ID: svc, OTHER_ID: {**other, "enabled": False}},
        {SERVICE_ID: svc, OTHER_ID: other},  # and come back
    ):
        r2 = Router(routes, services, previous=r1)
        _check_same(r2, routes, services, reqs)
        r1 = r2
    # The services mapping edited in place: the next build still sees the change.
    services = {SERVICE_ID: svc, OTHER_ID: other}
    r3 = Router(routes, services, previous=r1)
    services[OTHER_ID] = {**other, "path": "/again"}
    r4 = Router(routes, services, previous=r3)
    assert r4.match("GET", None, "/o1/x").upstream_path == "/again/x"  # type: ignore[union-attr]
    assert r3.match("GET", None, "/o1/x").upstream_path == "/o/x"  # type: ignore[union-attr]


def test_large_changes_and_odd_lists_fall_back_to_a_full_build() -> None:
    rnd = random.Random(8)
    config = Config(rnd, 120)
    reqs = config.requests(400)
    routes = list(config.routes.values())
    r0 = Router(routes, config.services)
    cases = {
        "reversed": routes[::-1],
        "most edited": [{**r} if i % 2 else r for i, r in enumerate(routes)],
        "half gone": routes[::2],
        "listed twice": routes + routes[:3],
        "one id twice": routes + [{**routes[5], "paths": ["/twin"]}],
        "empty": [],
    }
    for new_routes in cases.values():
        new = Router(new_routes, config.services, previous=r0)
        _check_same(new, new_routes, config.services, reqs)
        # and from that one, a small change again
        again = Router(new_routes[1:], config.services, previous=new)
        _check_same(again, new_routes[1:], config.services, reqs)
    # A route without a string id cannot be keyed: correct anyway.
    odd = [*routes[:10], {**route_row(paths=["/no-id"]), "id": None}]
    r1 = Router(odd, config.services, previous=r0)
    _check_same(r1, odd, config.services, reqs)
    r2 = Router(odd[1:], config.services, previous=r1)
    _check_same(r2, odd[1:], config.services, reqs)


async def test_async_update_equals_the_constructor() -> None:
    rnd = random.Random(4)
    config = Config(rnd, 200)
    reqs = config.requests(300)
    current = Router(list(config.routes.values()), config.services)
    for _ in range(10):
        config.step()
        routes = list(config.routes.values())
        built = await Router.build(routes, config.services, previous=current, slice_s=0)
        assert _shared_buckets(built, current) > 0 or not routes
        _check_same(built, routes, config.services, reqs)
        current = built


def test_one_route_rebuild_at_10k_allocates_few_objects() -> None:
    bench = bench_module()
    routes = bench.make_routes(10_000)
    services = {bench.SERVICE["id"]: bench.SERVICE}
    router = Router(routes, services)
    changed = list(routes)
    changed[5000] = {**routes[5000], "strip_path": not routes[5000]["strip_path"]}
    deleted = routes[:100] + routes[101:]
    for new_routes in (changed, deleted, [*routes, bench.make_routes(1, seed=3)[0]]):
        gc.collect()
        gc.disable()
        try:
            allocated = gc.get_count()[0]
            live = len(gc.get_objects())
            new = Router(new_routes, services, previous=router)
            allocated = gc.get_count()[0] - allocated  # net objects for the collector to track
            live = len(gc.get_objects()) - live - 1  # the list just made
        finally:
            gc.enable()
        assert _shared_buckets(new, router) >= len(new._index.buckets) - 2
        # A full build makes some 20,000; an update a few dozen.
        assert allocated < 2000 and live < 2000, (allocated, live)
