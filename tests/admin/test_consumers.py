"""/consumers and request body decoding: facts from Kong's 03-consumers_routes_spec."""

from __future__ import annotations

import uuid
from urllib.parse import quote

import pytest
from admin_client import Admin

AT_LEAST_ONE = "at least one of these fields must be non-empty: 'custom_id', 'username'"


@pytest.mark.parametrize("kind", ["form", "multipart", "json"])
async def test_create_and_conflicts(admin: Admin, kind: str) -> None:
    c = await admin.ok("POST", "/consumers", 201, **{kind: {"username": "bob", "custom_id": "c-1"}})
    assert (c["username"], c["custom_id"], c["tags"]) == ("bob", "c-1", None)
    err = await admin.ok("POST", "/consumers", 400, **{kind: {}})
    assert err["name"] == "schema violation" and err["fields"]["@entity"] == [AT_LEAST_ONE]
    err = await admin.ok("POST", "/consumers", 409, **{kind: {"username": "bob"}})
    assert err["message"] == "UNIQUE violation detected on '{username=\"bob\"}'"
    err = await admin.ok("POST", "/consumers", 409, **{kind: {"username": "tom", "custom_id": "c-1"}})
    assert err["message"] == "UNIQUE violation detected on '{custom_id=\"c-1\"}'"


async def test_content_type_gate(admin: Admin) -> None:
    r = await admin.post("/consumers", data='{"hello": "world"}', headers={"Content-Type": "invalid"})
    assert (r.status, r.body) == (415, b"")
    r = await admin.post("/consumers", data="invalid")
    assert (r.status, r.body) == (415, b"")
    r = await admin.post("/consumers", headers={"Content-Type": "application/json"})
    assert (r.status, r.json) == (400, {"message": "Cannot parse JSON body"})
    for headers in (
        {"Content-Type": "multipart/form-data"},
        {"Content-Type": "application/x-www-form-urlencoded"},
        {},
    ):
        r = await admin.post("/consumers", headers=headers)
        assert r.status == 400, headers
        assert r.json["fields"]["@entity"] == [AT_LEAST_ONE]
    c = await admin.ok("POST", "/consumers", 201, json={"username": "x"})
    r = await admin.patch(
        f"/consumers/{c['id']}", data='{"hello": "world"}', headers={"Content-Type": "invalid"}
    )
    assert r.status == 415
    r = await admin.patch(f"/consumers/{c['id']}", data="invalid")
    assert r.status == 415
    r = await admin.patch(f"/consumers/{c['id']}", headers={"Content-Type": "application/json"})
    assert (r.status, r.json) == (400, {"message": "Cannot parse JSON body"})
    r = await admin.put(
        f"/consumers/{c['id']}", data='{"hello": "world"', headers={"Content-Type": "application/json"}
    )
    assert (r.status, r.body) == (400, b'{"message":"Cannot parse JSON body"}')
    # a charset parameter is fine
    r = await admin.post(
        "/consumers", data='{"username": "y"}', headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert r.status == 201


async def test_list_and_custom_id_filter(admin: Admin) -> None:
    made = []
    for i in range(10):
        made.append(
            await admin.ok("POST", "/consumers", 201, json={"username": f"u{i}", "custom_id": f"c{i}"})
        )
    assert len((await admin.ok("GET", "/consumers", 200))["data"]) == 10
    offset, pages = None, []
    for i in range(4):
        path = "/consumers?size=3" + (f"&offset={quote(offset, safe='')}" if offset else "")
        page = await admin.ok("GET", path, 200)
        assert len(page["data"]) == (3 if i < 3 else 1)
        pages.append(page)
        offset = page.get("offset")
    assert offset is None
    for bad in ("/consumers?custom_id=", "/consumers?custom_id"):
        assert await admin.ok("GET", bad, 400) == {"message": "custom_id must be an unempty string"}
    assert await admin.ok("GET", "/consumers?custom_id=c3", 200) == {"data": [made[3]], "next": None}
    uuid_like = str(uuid.uuid4())
    c = await admin.ok("POST", "/consumers", 201, json={"custom_id": uuid_like})
    assert (await admin.ok("GET", f"/consumers?custom_id={uuid_like}", 200))["data"] == [c]
    r = await admin.get("/consumers?custom_id=does-not-exist")
    assert r.body == b'{"data":[],"next":null}'
    err = await admin.ok("GET", "/consumers?tags", 400)
    assert err["message"] == "invalid option (tags: cannot be null)"
    for method in ("DELETE", "PATCH"):
        await admin.ok(method, "/consumers", 405)


async def test_get_by_username(admin: Admin) -> None:
    odd = await admin.ok("POST", "/consumers", 201, json={"username": "a b/c?d"})
    assert await admin.ok("GET", f"/consumers/{quote(odd['username'], safe='')}", 200) == odd
    utf = await admin.ok("POST", "/consumers", 201, json={"username": "円"})
    assert await admin.ok("GET", "/consumers/%E5%86%86", 200) == utf
    await admin.ok("GET", "/consumers/_inexistent_", 404)


async def test_patch_and_put(admin: Admin) -> None:
    c = await admin.ok("POST", "/consumers", 201, json={"username": "bob", "custom_id": "b"})
    same = await admin.ok("PATCH", "/consumers/bob", 200, form={"username": "bob", "custom_id": "b"})
    assert same["id"] == c["id"]
    renamed = await admin.ok("PATCH", f"/consumers/{c['id']}", 200, json={"username": "alice"})
    assert (renamed["username"], renamed["custom_id"]) == ("alice", "b")
    await admin.ok("PATCH", "/consumers/_inexistent_", 404, json={"username": "z"})
    cid = str(uuid.uuid4())
    put = await admin.ok("PUT", f"/consumers/{cid}", 200, form={"custom_id": "new"})
    assert (put["id"], put["custom_id"], put["username"]) == (cid, "new", None)
    created = await admin.ok("PUT", f"/consumers/{quote('new user', safe='')}", 200, json={})
    assert (created["username"], created["custom_id"]) == ("new user", None)
    replaced = await admin.ok("PUT", "/consumers/alice", 200, json={"custom_id": "x"})
    assert (replaced["id"], replaced["custom_id"]) == (c["id"], "x")
    replaced = await admin.ok("PUT", "/consumers/alice", 200, json={})
    assert (replaced["id"], replaced["custom_id"]) == (c["id"], None)
    err = await admin.ok("PUT", f"/consumers/{uuid.uuid4()}", 400, json={})
    assert err == {
        "code": 2,
        "name": "schema violation",
        "fields": {"@entity": [AT_LEAST_ONE]},
        "message": f"schema violation ({AT_LEAST_ONE})",
    }


async def test_delete(admin: Admin) -> None:
    c = await admin.ok("POST", "/consumers", 201, json={"username": "bob"})
    await admin.ok("DELETE", f"/consumers/{c['id']}", 204)
    await admin.ok("POST", "/consumers", 201, json={"username": "bob"})
    await admin.ok("DELETE", "/consumers/bob", 204)
    assert await admin.ok("GET", "/consumers", 200) == {"data": [], "next": None}


async def test_too_many_arguments(admin: Admin) -> None:
    body = "name=ip-restriction&" + "&".join(f"config.allow={i}" for i in range(1001))
    assert await admin.ok("POST", "/plugins", 400, form=body) == {"message": "Too many arguments"}
    query = "&".join(f"a={i}" for i in range(1001))
    assert await admin.ok("GET", f"/plugins?{query}", 400) == {"message": "Too many arguments"}
    # 1000 is still fine
    query = "&".join(f"a={i}" for i in range(1000))
    await admin.ok("GET", f"/plugins?{query}", 200)
