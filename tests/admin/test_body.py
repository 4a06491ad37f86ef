"""Request body decoding (kong-compat §3): form key syntax, multipart JSON parts, JSON strictness."""

from __future__ import annotations

from admin_client import Admin


async def test_form_key_syntax(admin: Admin) -> None:
    route = await admin.ok(
        "POST",
        "/routes",
        201,
        form="paths[1]=/a&paths[2]=/b&methods=GET&methods=POST&headers[x-version]=v1&headers[x-version]=v2"
        "&hosts=a.test&name=r-1",
    )
    assert route["paths"] == ["/a", "/b"]
    assert route["methods"] == ["GET", "POST"]
    assert route["hosts"] == ["a.test"]
    assert route["headers"] == {"x-version": ["v1", "v2"]}
    assert route["name"] == "r-1"
    # %5B / %5D are brackets too; `+` is a space in form values
    route = await admin.ok("POST", "/routes", 201, form="paths%5B%5D=/c&tags[]=a+b")
    assert route["paths"] == ["/c"] and route["tags"] == ["a b"]


async def test_multipart_json_part(admin: Admin) -> None:
    route = await admin.ok(
        "POST",
        "/routes",
        201,
        multipart={"paths": ["/m"], "strip_path": "false", "headers": {"x-a": ["1"]}},
    )
    assert route["paths"] == ["/m"] and route["strip_path"] is False
    assert route["headers"] == {"x-a": ["1"]}


async def test_json_must_be_an_object(admin: Admin) -> None:
    for raw in ("[1, 2]", '"x"', "", "{"):
        r = await admin.post("/consumers", data=raw, headers={"Content-Type": "application/json"})
        assert (r.status, r.json) == (400, {"message": "Cannot parse JSON body"}), raw


async def test_get_and_delete_ignore_bodies(admin: Admin) -> None:
    await admin.ok("POST", "/consumers", 201, json={"username": "bob"})
    bad = {"data": "this fails if decoded as json", "headers": {"Content-Type": "application/json"}}
    assert (await admin.get("/consumers", **bad)).status == 200
    assert (await admin.get("/consumers/bob", **bad)).status == 200
    assert (await admin.delete("/consumers/bob", **bad)).status == 204
    assert (await admin.get("/consumers/bob")).status == 404


async def test_writes_announce_changes(admin: Admin) -> None:
    await admin.ok("POST", "/consumers", 201, json={"username": "bob"})
    await admin.ok("PATCH", "/consumers/bob", 200, json={"custom_id": "x"})
    await admin.ok("PUT", "/consumers/bob", 200, json={})
    await admin.ok("POST", "/consumers", 409, json={"username": "bob"})  # failed: no announcement
    await admin.ok("GET", "/consumers/bob", 200)
    await admin.ok("DELETE", "/consumers/bob", 204)
    assert len(admin.changes) == 4
    # the store's config version was already bumped when on_change ran
    assert admin.changes == sorted(set(admin.changes))


async def test_failing_on_change_does_not_fail_the_committed_write(admin: Admin) -> None:
    admin.hooks["fail"] = True
    await admin.ok("POST", "/consumers", 201, json={"username": "bob"})
    assert len(admin.changes) == 1
    await admin.ok("GET", "/consumers/bob", 200)


async def test_invalid_utf8_in_keys_and_filters(admin: Admin) -> None:
    await admin.ok("POST", "/consumers", 201, json={"username": "bob"})
    assert await admin.ok("GET", "/consumers/%FF", 404) == {"message": "Not found"}
    assert await admin.ok("GET", "/consumers?custom_id=%FF", 200) == {"data": [], "next": None}
    await admin.ok("DELETE", "/consumers/%FF%FE", 204)
