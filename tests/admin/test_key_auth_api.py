"""/consumers/{c}/key-auth and /key-auths: facts from Kong's key-auth 01-api_spec."""

from __future__ import annotations

import asyncio
import re
import uuid

from admin_client import Admin


async def _bob(admin: Admin) -> dict:
    return await admin.ok("POST", "/consumers", 201, json={"username": "bob"})


async def test_create_nested(admin: Admin) -> None:
    bob = await _bob(admin)
    cred = await admin.ok("POST", "/consumers/bob/key-auth", 201, form={"key": "1234"})
    assert (cred["key"], cred["consumer"]) == ("1234", {"id": bob["id"]})
    assert "updated_at" not in cred and "ttl" not in cred
    a = await admin.ok("POST", "/consumers/bob/key-auth", 201, json={})
    b = await admin.ok("POST", f"/consumers/{bob['id']}/key-auth", 201, json={})
    assert re.fullmatch(r"[A-Za-z0-9]{32}", a["key"]) and a["key"] != b["key"]
    tagged = await admin.ok(
        "POST", "/consumers/bob/key-auth", 201, json={"key": "kt", "tags": ["tag1", "tag2"]}
    )
    assert tagged["tags"] == ["tag1", "tag2"]
    dup = await admin.ok("POST", "/consumers/bob/key-auth", 409, json={"key": "1234"})
    assert dup["fields"] == {"key": "1234"}
    await admin.ok("POST", "/consumers/nobody/key-auth", 404, json={})
    listed = await admin.ok("GET", "/consumers/bob/key-auth", 200)
    assert len(listed["data"]) == 4


async def test_ttl(admin: Admin) -> None:
    await _bob(admin)
    err = await admin.ok("POST", "/consumers/bob/key-auth", 400, json={"ttl": -1})
    assert err["code"] == 11
    assert err["message"] == "invalid option (ttl: must be an integer between 0 and 100000000)"
    long = await admin.ok("POST", "/consumers/bob/key-auth", 201, form={"key": "long", "ttl": "100"})
    assert 0 < long["ttl"] <= 100
    short = await admin.ok("POST", "/consumers/bob/key-auth", 201, json={"key": "short", "ttl": 1})
    listed = await admin.ok("GET", "/consumers/bob/key-auth", 200)
    assert all(c["ttl"] is not None for c in listed["data"])
    await asyncio.sleep(2.2)
    await admin.ok("GET", f"/consumers/bob/key-auth/{short['id']}", 404)
    await admin.ok("GET", "/key-auths/short", 404)
    assert [c["key"] for c in (await admin.ok("GET", "/key-auths", 200))["data"]] == ["long"]
    # ttl is an option of ttl entities only
    err = await admin.ok("POST", "/consumers", 400, json={"username": "x", "ttl": 5})
    assert err["fields"] == {"ttl": "unknown field"}


async def test_nested_get_patch_delete(admin: Admin) -> None:
    bob = await _bob(admin)
    await admin.ok("POST", "/consumers", 201, json={"username": "alice"})
    cred = await admin.ok("POST", "/consumers/bob/key-auth", 201, json={"key": "k1"})
    assert await admin.ok("GET", f"/consumers/bob/key-auth/{cred['id']}", 200) == cred
    assert await admin.ok("GET", "/consumers/bob/key-auth/k1", 200) == cred
    await admin.ok("GET", f"/consumers/alice/key-auth/{cred['id']}", 404)
    patched = await admin.ok("PATCH", f"/consumers/bob/key-auth/{cred['id']}", 200, json={"key": "k2"})
    assert patched["key"] == "k2" and patched["consumer"] == {"id": bob["id"]}
    patched = await admin.ok("PATCH", "/consumers/bob/key-auth/k2", 200, form={"key": "k3"})
    assert patched["key"] == "k3"
    err = await admin.ok("PATCH", f"/consumers/bob/key-auth/{cred['id']}", 400, json={"key": 123})
    assert err["fields"] == {"key": "expected a string"}
    put = await admin.ok("PUT", "/consumers/bob/key-auth/new-key", 200, json={})
    assert (put["key"], put["consumer"]) == ("new-key", {"id": bob["id"]})
    put = await admin.ok("PUT", f"/consumers/bob/key-auth/{uuid.uuid4()}", 200, json={})
    assert re.fullmatch(r"[A-Za-z0-9]{32}", put["key"])
    await admin.ok("DELETE", "/consumers/bob/key-auth/blah", 404)
    await admin.ok("DELETE", "/consumers/bob/key-auth/00000000-0000-0000-0000-000000000000", 404)
    await admin.ok("DELETE", f"/consumers/bob/key-auth/{cred['id']}", 204)
    # deleting the consumer cascades to its credentials
    await admin.ok("DELETE", "/consumers/bob", 204)
    assert await admin.ok("GET", "/key-auths", 200) == {"data": [], "next": None}


async def test_top_level_key_auths(admin: Admin) -> None:
    bob = await _bob(admin)
    err = await admin.ok("POST", "/key-auths", 400, json={"key": "1234"})
    assert err["message"] == "schema violation (consumer: required field missing)"
    cred = await admin.ok("POST", "/key-auths", 201, json={"key": "1234", "consumer": {"id": bob["id"]}})
    assert cred["key"] == "1234"
    by_name = await admin.ok("POST", "/key-auths", 201, json={"key": "5678", "consumer": {"username": "bob"}})
    assert by_name["consumer"] == {"id": bob["id"]}
    err = await admin.ok("PUT", "/key-auths/abcd", 400, json={})
    assert err["message"] == "schema violation (consumer: required field missing)"
    put = await admin.ok("PUT", "/key-auths/abcd", 200, json={"consumer": {"id": bob["id"]}})
    assert put["key"] == "abcd"
    for path in ("/key-auths", "/key-auths/"):
        assert len((await admin.ok("GET", path, 200))["data"]) == 3
    keys: list[str] = []
    path: str | None = "/key-auths?size=1"
    while path:
        page = await admin.ok("GET", path, 200)
        keys += [c["key"] for c in page["data"]]
        path = page["next"]
    assert sorted(keys) == ["1234", "5678", "abcd"]
    assert await admin.ok("GET", f"/key-auths/{cred['id']}/consumer", 200) == bob
    assert await admin.ok("GET", "/key-auths/1234/consumer", 200) == bob
    await admin.ok("GET", f"/key-auths/{uuid.uuid4()}/consumer", 404)
    await admin.ok("GET", "/key-auths/nope/consumer", 404)
    await admin.ok("DELETE", "/key-auths/1234", 204)
    await admin.ok("GET", "/key-auths/1234", 404)
