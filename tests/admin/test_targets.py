"""/upstreams/{u}/targets: facts from Kong's 08-targets_routes_spec (defaults, normalization, messages, 405s,
409 on duplicates, the listing and its integer offsets, /targets/all, by id or host:port), and /targets -> 404."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

import pytest
from admin_client import Admin

KINDS = ["form", "multipart", "json"]
INVALID_TARGET = "Invalid target; not a valid hostname or ip address"


def _body(kind: str, fields: dict[str, Any]) -> dict[str, Any]:
    if kind == "json":
        return {"json": fields}
    return {kind: {k: str(v) for k, v in fields.items()}}


async def _upstream(admin: Admin, name: str = "my.upstream") -> dict[str, Any]:
    up: dict[str, Any] = await admin.ok("POST", "/upstreams", 201, json={"name": name, "slots": 10})
    return up


async def _targets(admin: Admin, up: str, *specs: tuple[str, int]) -> list[dict[str, Any]]:
    return [await admin.ok("POST", f"/upstreams/{up}/targets", 201, json={"target": t, "weight": w})
            for t, w in specs]


async def test_top_level_targets_are_not_served(admin: Admin) -> None:
    up = await _upstream(admin)
    t = (await _targets(admin, "my.upstream", ("a.test:80", 1)))[0]
    for method, path in [("GET", "/targets"), ("POST", "/targets"), ("GET", f"/targets/{t['id']}"),
                         ("PATCH", f"/targets/{t['id']}"), ("DELETE", f"/targets/{t['id']}"),
                         ("GET", f"/targets/{t['id']}/upstream"), ("OPTIONS", "/targets"),
                         ("HEAD", "/targets")]:
        r = await admin.request(method, path, json={} if method in ("POST", "PATCH") else None)
        assert r.status == 404, (method, path)
        if method != "HEAD":
            assert r.json == {"message": "Not found"}
    assert (await admin.ok("GET", f"/upstreams/{up['id']}/targets/{t['id']}", 200))["weight"] == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_create_with_and_without_defaults(admin: Admin, kind: str) -> None:
    up = await _upstream(admin)
    t = await admin.ok("POST", "/upstreams/my.upstream/targets/", 201, **_body(kind, {"target": "konghq.test"}))
    assert t == {"id": t["id"], "created_at": t["created_at"], "updated_at": t["created_at"],
                 "upstream": {"id": up["id"]}, "target": "konghq.test:8000", "weight": 100, "tags": None}
    # seconds with a millisecond fraction (Kong's auto_timestamp_ms)
    assert isinstance(t["created_at"], float) and round(t["created_at"], 3) == t["created_at"]
    t = await admin.ok("POST", f"/upstreams/{up['id']}/targets/", 201,
                       **_body(kind, {"target": "konghq.test:123", "weight": 99}))
    assert (t["target"], t["weight"]) == ("konghq.test:123", 99)
    zero = await admin.ok("POST", "/upstreams/my.upstream/targets/", 201,
                          **_body(kind, {"target": "zero.weight.test:8080", "weight": 0}))
    assert zero["weight"] == 0
    # #7699: a weight-0 target is found like any other
    assert await admin.ok("GET", "/upstreams/my.upstream/targets/zero.weight.test:8080", 200) == zero


@pytest.mark.parametrize(("given", "stored"), [
    ("127.0.0.1", "127.0.0.1:8000"),
    ("001.002.003.004:123", "1.2.3.4:123"),
    ("::1", "[0000:0000:0000:0000:0000:0000:0000:0001]:8000"),
    ("[::1]:80", "[0000:0000:0000:0000:0000:0000:0000:0001]:80"),
    ("[0000:0000:0000:0000:0000:0000:0000:0001]:8192", "[0000:0000:0000:0000:0000:0000:0000:0001]:8192"),
    ("[FE80::1]", "[fe80:0000:0000:0000:0000:0000:0000:0001]:8000"),
    ("Some-Host.test", "Some-Host.test:8000"),
    ("localhost:0", "localhost:0"),
])
async def test_target_normalization(admin: Admin, given: str, stored: str) -> None:
    await _upstream(admin)
    t = await admin.ok("POST", "/upstreams/my.upstream/targets", 201, json={"target": given})
    assert t["target"] == stored
    assert await admin.ok("GET", f"/upstreams/my.upstream/targets/{quote(stored)}", 200) == t


async def test_malformed_json(admin: Admin) -> None:
    await _upstream(admin)
    r = await admin.post("/upstreams/my.upstream/targets/", data='{"hello": "world"',
                         headers={"Content-Type": "application/json"})
    assert (r.status, r.json) == (400, {"message": "Cannot parse JSON body"})


@pytest.mark.parametrize("kind", KINDS)
async def test_invalid_input(admin: Admin, kind: str) -> None:
    await _upstream(admin)
    path = "/upstreams/my.upstream/targets/"
    err = await admin.ok("POST", path, 400, **_body(kind, {"weight": 0}))
    assert (err["name"], err["fields"]) == ("schema violation", {"target": "required field missing"})
    err = await admin.ok("POST", path, 400, **_body(kind, {"target": "some invalid host name"}))
    assert (err["name"], err["fields"]) == ("schema violation", {"target": INVALID_TARGET})
    assert err["message"] == f"schema violation (target: {INVALID_TARGET})"
    err = await admin.ok("POST", path, 400, **_body(kind, {"target": "konghq.test", "weight": 65536}))
    assert (err["name"], err["fields"]) == ("schema violation", {"weight": "value should be between 0 and 65535"})
    for method in ("PUT", "PATCH", "DELETE"):
        r = await admin.request(method, path, **_body(kind, {"target": "konghq.test"}))
        assert (r.status, r.json) == (405, {"message": "Method not allowed"})


@pytest.mark.parametrize("kind", KINDS)
async def test_duplicate_is_409(admin: Admin, kind: str) -> None:
    up = await _upstream(admin)
    path = "/upstreams/my.upstream/targets/"
    t = await admin.ok("POST", path, 201, **_body(kind, {"target": "single-target.test:8080", "weight": 1}))
    assert (t["target"], t["weight"]) == ("single-target.test:8080", 1)
    err = await admin.ok("POST", path, 409, **_body(kind, {"target": "single-target.test:8080", "weight": 100}))
    assert err == {
        "code": 5,
        "name": "unique constraint violation",
        "message": f"UNIQUE violation detected on '{{target=\"single-target.test:8080\",upstream={{id=\"{up['id']}\"}}}}'",
        "fields": {"target": "single-target.test:8080", "upstream": {"id": up["id"]}},
    }
    # the same target after normalization is the same target
    await admin.ok("POST", path, 201, **_body(kind, {"target": "dup.test"}))
    await admin.ok("POST", path, 409, **_body(kind, {"target": "dup.test:8000"}))
    # another upstream may have it
    await _upstream(admin, "other.upstream")
    await admin.ok("POST", "/upstreams/other.upstream/targets", 201, **_body(kind, {"target": "dup.test"}))


async def test_list_newest_first_with_weight_zero(admin: Admin) -> None:
    await _upstream(admin)
    made = await _targets(admin, "my.upstream", ("api-1:80", 10), ("api-2:80", 0), ("api-3:80", 50),
                          ("api-4:80", 10))
    for suffix in ("", "/"):
        page = await admin.ok("GET", f"/upstreams/my.upstream/targets{suffix}", 200)
        assert page == {"data": made[::-1], "next": None}
    empty = await _upstream(admin, "empty.upstream")
    r = await admin.get(f"/upstreams/{empty['name']}/targets")
    assert r.status == 200 and b'"data":[]' in r.body
    assert await admin.ok("GET", "/upstreams/nope/targets", 404) == {"message": "Not found"}
    assert await admin.ok("POST", "/upstreams/nope/targets", 404, json={"target": "a"}) == {"message": "Not found"}


async def test_list_pages_by_integer_offset(admin: Admin) -> None:
    up = await _upstream(admin)
    made = await _targets(admin, "my.upstream", *[(f"api-{i}:80", 10) for i in range(5)])
    first = await admin.ok("GET", "/upstreams/my.upstream/targets?size=2", 200)
    assert first == {"data": made[::-1][:2], "offset": "2", "next": "/upstreams/my.upstream/targets?offset=2"}
    second = await admin.ok("GET", f"{first['next']}&size=2", 200)
    assert second["data"] == made[::-1][2:4] and second["offset"] == "4"
    third = await admin.ok("GET", "/upstreams/my.upstream/targets?size=2&offset=4", 200)
    assert third == {"data": made[:1], "next": None}
    by_id = await admin.ok("GET", f"/upstreams/{up['id']}/targets?size=4", 200)
    assert by_id["next"] == f"/upstreams/{up['id']}/targets?offset=4"
    assert (await admin.ok("GET", "/upstreams/my.upstream/targets?offset=9", 200)) == {"data": [], "next": None}
    err = await admin.ok("GET", "/upstreams/my.upstream/targets?size=0", 400)
    assert err == {"code": 9, "name": "invalid size", "message": "size must be an integer between 1 and 1000"}
    err = await admin.ok("GET", "/upstreams/my.upstream/targets?offset=abc", 400)
    assert err["code"] == 7


async def test_all_rows(admin: Admin) -> None:
    up = await _upstream(admin)
    await _targets(admin, "my.upstream", *[(f"api-{i}:80", 100) for i in range(1, 11)])
    assert len((await admin.ok("GET", "/upstreams/my.upstream/targets/all", 200))["data"]) == 10
    page = await admin.ok("GET", "/upstreams/my.upstream/targets/all?size=3", 200)
    assert isinstance(page["offset"], str)
    assert page["next"] == f"/upstreams/my.upstream/targets/all?offset={quote(page['offset'], safe='')}"
    pages: list[Any] = []
    offset = None
    for i in range(4):
        q = "size=3" + (f"&offset={quote(offset, safe='')}" if offset else "")
        got = await admin.ok("GET", f"/upstreams/my.upstream/targets/all?{q}", 200)
        assert len(got["data"]) == (3 if i < 3 else 1)
        assert got not in pages
        offset = got.get("offset")
        pages.append(got)
    assert sorted(t["id"] for p in pages for t in p["data"]) == sorted(
        t["id"] for t in (await admin.ok("GET", f"/upstreams/{up['id']}/targets", 200))["data"])
    assert (await admin.ok("GET", "/upstreams/my.upstream/targets/all?foo=bar", 200))["data"]
    r = await admin.get("/upstreams/my.upstream/targets/all", data="this fails if decoded as json",
                        headers={"Content-Type": "application/json"})
    assert r.status == 200
    await _upstream(admin, "empty.upstream")
    r = await admin.get("/upstreams/empty.upstream/targets/all")
    assert r.json == {"data": [], "next": None} and b'"data":[]' in r.body


async def test_get_patch_put_delete_one(admin: Admin) -> None:
    up = await _upstream(admin)
    api1, api2 = await _targets(admin, "my.upstream", ("api-1:80", 10), ("api-2:80", 10))
    assert await admin.ok("GET", "/upstreams/my.upstream/targets/api-2:80", 200) == api2
    assert await admin.ok("GET", f"/upstreams/{up['id']}/targets/{api2['id']}", 200) == api2
    for missing in ("api-9:80", str(uuid.uuid4()), "api-2"):  # as stored: "api-2" is not "api-2:8000"
        assert await admin.ok("GET", f"/upstreams/my.upstream/targets/{missing}", 404) == {"message": "Not found"}
    # PATCH by target
    patched = await admin.ok("PATCH", "/upstreams/my.upstream/targets/api-2:80", 200, json={"weight": 659})
    assert (patched["id"], patched["target"], patched["weight"]) == (api2["id"], "api-2:80", 659)
    assert patched["updated_at"] > api2["updated_at"] and patched["created_at"] == api2["created_at"]
    assert (await admin.ok("GET", "/upstreams/my.upstream/targets/api-2:80", 200))["weight"] == 659
    # PUT is an update too: by id, changing the port...
    put = await admin.ok("PUT", f"/upstreams/my.upstream/targets/{api2['id']}", 200, json={"target": "api-2:801"})
    assert (put["id"], put["target"], put["weight"]) == (api2["id"], "api-2:801", 659)
    assert await admin.ok("GET", f"/upstreams/my.upstream/targets/{api2['id']}", 200) == put
    # ... and by target, normalizing the new value
    put = await admin.ok("PUT", "/upstreams/my.upstream/targets/api-2:801", 200, json={"target": "api-2"})
    assert put["target"] == "api-2:8000"
    await admin.ok("GET", "/upstreams/my.upstream/targets/api-2:801", 404)
    assert await admin.ok("GET", "/upstreams/my.upstream/targets/api-2:8000", 200) == put
    # an update's invalid target is reported by the schema's own rule (Kong's message quotes it)
    err = await admin.ok("PATCH", "/upstreams/my.upstream/targets/api-1:80", 400, json={"target": "not valid"})
    assert err["fields"] == {"target": "Invalid target ('not valid'); not a valid hostname or ip address"}
    err = await admin.ok("PATCH", "/upstreams/my.upstream/targets/api-1:80", 409, json={"target": "api-2"})
    assert err["code"] == 5
    form = await admin.ok("PATCH", "/upstreams/my.upstream/targets/api-1:80", 200, form={"weight": "7", "tags": "x"})
    assert (form["weight"], form["tags"]) == (7, ["x"])
    # DELETE by target and by id
    all_rows = (await admin.ok("GET", "/upstreams/my.upstream/targets/all", 200))["data"]
    assert len(all_rows) == 2
    await admin.ok("DELETE", "/upstreams/my.upstream/targets/api-2:8000", 204)
    assert [t["target"] for t in (await admin.ok("GET", "/upstreams/my.upstream/targets", 200))["data"]] == ["api-1:80"]
    await admin.ok("DELETE", "/upstreams/my.upstream/targets/api-2:8000", 404)
    await admin.ok("DELETE", f"/upstreams/my.upstream/targets/{api1['id']}", 204)
    assert (await admin.ok("GET", "/upstreams/my.upstream/targets/all", 200))["data"] == []


async def test_a_target_belongs_to_its_upstream(admin: Admin) -> None:
    await _upstream(admin, "a.upstream")
    await _upstream(admin, "b.upstream")
    (ta,) = await _targets(admin, "a.upstream", ("shared.test:80", 1))
    (tb,) = await _targets(admin, "b.upstream", ("shared.test:80", 2))
    assert (await admin.ok("GET", "/upstreams/b.upstream/targets/shared.test:80", 200))["id"] == tb["id"]
    await admin.ok("GET", f"/upstreams/b.upstream/targets/{ta['id']}", 404)
    await admin.ok("PATCH", f"/upstreams/b.upstream/targets/{ta['id']}", 404, json={"weight": 5})
    await admin.ok("DELETE", f"/upstreams/b.upstream/targets/{ta['id']}", 404)
    await admin.ok("GET", "/upstreams/c.upstream/targets/shared.test:80", 404)
    # the upstream's name is checked like Kong checks it
    err = await admin.ok("GET", "/upstreams/1.2.3.4/targets", 400)
    assert err["code"] == 10 and err["message"] == "Invalid name ('1.2.3.4'); no ip addresses allowed"
    # the body cannot move a new target elsewhere: the path's upstream wins
    b = await admin.ok("GET", "/upstreams/b.upstream", 200)
    t = await admin.ok("POST", "/upstreams/a.upstream/targets", 201,
                       json={"target": "moved.test", "upstream": {"id": b["id"]}})
    assert t["upstream"] != {"id": b["id"]}
    await admin.ok("DELETE", "/upstreams/a.upstream", 204)
    await admin.ok("GET", f"/upstreams/b.upstream/targets/{ta['id']}", 404)
    assert [r["id"] for r in await admin.store.all("targets")] == [tb["id"]]


async def test_methods_and_head(admin: Admin) -> None:
    await _upstream(admin)
    await _targets(admin, "my.upstream", ("a.test:80", 1))
    for path, allow in [
        ("/upstreams/my.upstream/targets", "GET, HEAD, OPTIONS, POST"),
        ("/upstreams/my.upstream/targets/all", "GET, HEAD, OPTIONS"),
        ("/upstreams/my.upstream/targets/a.test:80", "DELETE, GET, HEAD, OPTIONS, PATCH, PUT"),
        ("/upstreams/my.upstream/targets/a.test:80/healthy", "OPTIONS, PUT"),
        ("/upstreams/my.upstream/targets/a.test:80/1.2.3.4:80/unhealthy", "OPTIONS, PUT"),
        ("/upstreams/my.upstream/health", "GET, HEAD, OPTIONS"),
    ]:
        r = await admin.request("OPTIONS", path)
        assert (r.status, r.headers["Allow"], r.headers["Access-Control-Allow-Methods"]) == (204, allow, allow)
    r = await admin.request("HEAD", "/upstreams/my.upstream/targets")
    assert (r.status, r.body) == (200, b"")
    assert await admin.ok("POST", "/upstreams/my.upstream/targets/all", 405) == {"message": "Method not allowed"}
    assert await admin.ok("GET", "/upstreams/my.upstream/targets/a.test:80/healthy", 405) == {
        "message": "Method not allowed"}


async def test_tags(admin: Admin) -> None:
    await _upstream(admin)
    t = await admin.ok("POST", "/upstreams/my.upstream/targets", 201, json={"target": "a.test", "tags": ["t1"]})
    assert t["tags"] == ["t1"]
    rows = (await admin.ok("GET", "/tags/t1", 200))["data"]
    assert rows == [{"entity_name": "targets", "entity_id": t["id"], "tag": "t1"}]
    # nested collections ignore ?tags= (Kong's #6779)
    assert len((await admin.ok("GET", "/upstreams/my.upstream/targets/all?tags=nope", 200))["data"]) == 1
    err = await admin.ok("POST", "/upstreams/my.upstream/targets", 400, json={"target": "b.test", "tags": ["a,b"]})
    assert err["fields"] == {"tags": ["invalid tag 'a,b': expected printable ascii (except `,` and `/`) or valid "
                                      "utf-8 sequences"]}
