"""Malformed Admin API input gets a clear 4xx in Kong's error shape, fast, on both stores (issue 9)."""

from __future__ import annotations

import time

import pytest
from admin_client import Admin

INDEX = {"message": "Invalid argument: array index must be an integer between 1 and 1000"}
DEPTH = {"message": "Invalid argument: keys nested more than 32 levels deep"}
JSON = {"message": "Cannot parse JSON body"}
ID_NULL = {
    "code": 2,
    "name": "schema violation",
    "message": "schema violation (id: required field missing)",
    "fields": {"id": "required field missing"},
}


async def _timed(admin: Admin, method: str, path: str, **kw: object) -> tuple[int, object, float]:
    started = time.perf_counter()
    r = await admin.request(method, path, **kw)  # type: ignore[arg-type]
    return r.status, r.json, time.perf_counter() - started


@pytest.mark.timeout(60)
async def test_huge_form_index_is_refused_at_once(admin: Admin) -> None:
    # 13 bytes that made the decoder build (and deep-copy) a 100-million-element list
    body = "a[99999999]=x"
    assert len(body) == 13
    status, data, took = await _timed(admin, "POST", "/services", form=body)
    assert (status, data) == (400, INDEX)
    assert took < 1.0
    # the node still answers at once
    assert (await admin.get("/status")).status == 200


@pytest.mark.parametrize(
    "body",
    [
        "tags[0]=x&url=http://a.test",
        "a[-1]=x",
        "tags[-1]=x&url=http://a.test",
        "a[1.5]=x",
        "a[1e300]=x",
        "a[1001]=x",
        "config.key_names[0]=k&name=key-auth",
    ],
)
async def test_form_index_out_of_range(admin: Admin, body: str) -> None:
    r = await admin.post("/services", form=body)
    assert (r.status, r.json) == (400, INDEX)


async def test_form_index_limits_still_decode(admin: Admin) -> None:
    svc = await admin.ok("POST", "/services", 201, form="url=http://a.test&tags[1]=a&tags[2]=b")
    assert svc["tags"] == ["a", "b"]
    # 0x2 is a number for Lua's tonumber: an index, as in Kong
    svc = await admin.ok("POST", "/services", 201, form="url=http://a.test&tags[1]=a&tags[0x2]=b")
    assert svc["tags"] == ["a", "b"]
    r = await admin.post("/services", form="url=http://a.test&tags[1000]=x")
    assert r.status == 400 and r.json["code"] == 2  # holes: a schema violation, not a decoding error


@pytest.mark.parametrize(
    "body",
    [
        "a" + "[a]" * 500 + "=x",
        "a" + ".a" * 500 + "=x",
        "tags" + "[1]" * 500 + "=x",
        "a" + "[]" * 33 + "=x",
    ],
)
async def test_form_keys_nested_too_deep(admin: Admin, body: str) -> None:
    status, data, took = await _timed(admin, "POST", "/services", form=body)
    assert (status, data) == (400, DEPTH)
    assert took < 1.0


async def test_form_key_depth_limit_still_decodes(admin: Admin) -> None:
    r = await admin.post("/services", form="url=http://a.test&a" + "[a]" * 31 + "=x")
    assert r.status == 400 and r.json["fields"] == {"a": "unknown field"}


async def test_multipart_keys_nested_too_deep(admin: Admin) -> None:
    r = await admin.post("/services", multipart={"a" + "[a]" * 500: "x"})
    assert (r.status, r.json) == (400, DEPTH)


@pytest.mark.parametrize(
    "key",
    [
        "a[" * 1_000_000,
        "a" + "%5B" * 1_000_000,
        "a" + ".[" * 1_000_000,
        "a" + "[]" * 1_000_000,
        "a[b" + "[c" * 1_000_000,
        "a." + "b" * 2_000_000,
    ],
)
async def test_form_key_parsing_is_linear(admin: Admin, key: str) -> None:
    # one long key (2-3 MB): the decoder must neither rescan the rest of it per bracket nor walk it
    # character by character in Python
    body = key + "=x"
    status, _, took = await _timed(admin, "POST", "/services", form=body)
    assert status == 400
    assert took < 1.0


@pytest.mark.parametrize("depth", [100, 495, 600, 1023])
@pytest.mark.parametrize("field", ["a", "tags", "config"])
async def test_json_nested_too_deep(admin: Admin, depth: int, field: str) -> None:
    raw = f'{{"{field}":' + "[" * depth + "]" * depth + "}"
    r = await admin.post("/services", data=raw, headers={"Content-Type": "application/json"})
    assert (r.status, r.json) == (400, JSON)


async def test_json_depth_limit_still_validates(admin: Admin) -> None:
    r = await admin.post("/services", json={"url": "http://a.test", "tags": [[[[[["x"]]]]]]})
    assert r.status == 400 and r.json["code"] == 2


async def test_multipart_json_part_nested_too_deep(admin: Admin) -> None:
    deep: object = []
    for _ in range(600):
        deep = [deep]
    r = await admin.post("/services", multipart={"tags": deep, "url": "http://a.test"})
    assert (r.status, r.json) == (400, JSON)


@pytest.mark.parametrize(
    "path", ["/services", "/services/s1/routes", "/tags", "/tags/t", "/consumers", "/plugins"]
)
async def test_offset_with_invalid_utf8(admin: Admin, path: str) -> None:
    await admin.ok("POST", "/services", 201, json={"name": "s1", "url": "http://a.test", "tags": ["t"]})
    r = await admin.get(path + "?offset=%ff")
    assert r.status == 400
    assert r.json == {
        "code": 7,
        "name": "invalid offset",
        "message": "'\ufffd' is not a valid offset: bad base64 encoding",
    }


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/services", {"id": None, "url": "http://a.test"}),
        ("PUT", "/services/s2", {"id": None, "url": "http://a.test"}),
        ("POST", "/consumers", {"id": None, "username": "u"}),
        ("PUT", "/consumers/u", {"id": None}),
        ("POST", "/services/s1/routes", {"id": None, "paths": ["/x"]}),
        ("PATCH", "/services/s1", {"id": None}),
        ("PATCH", "/services/s1/routes/r1", {"id": None}),
    ],
)
async def test_id_null(admin: Admin, method: str, path: str, body: dict[str, object]) -> None:
    svc = await admin.ok("POST", "/services", 201, json={"name": "s1", "url": "http://a.test"})
    await admin.ok("POST", "/services/s1/routes", 201, json={"name": "r1", "paths": ["/r"]})
    r = await admin.request(method, path, json=body)
    assert (r.status, r.json) == (400, ID_NULL)
    assert (await admin.get("/services/s1")).json == svc
    assert (await admin.get("/services/s1/routes")).json["data"][0]["name"] == "r1"
    assert (await admin.get("/consumers")).json == {"data": [], "next": None}


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/schemas/plugins/%ff", "No plugin named '\ufffd'"),
        ("/plugins/schema/%ff", "No plugin named '\ufffd'"),
        ("/schemas/%ff", "No entity named '\ufffd'"),
    ],
)
async def test_schema_names_with_invalid_utf8(admin: Admin, path: str, message: str) -> None:
    r = await admin.get(path)
    assert (r.status, r.json) == (404, {"message": message})
    r = await admin.post("/schemas/%ff/validate", json={})
    assert (r.status, r.json) == (404, {"message": "No entity named '\ufffd'"})


async def test_keys_with_nul(admin: Admin) -> None:
    # NUL can name no stored row; PostgreSQL refused to even bind it (a 500)
    await admin.ok("POST", "/consumers", 201, json={"username": "u"})
    for path in ("/consumers/%00", "/consumers/a%00b/key-auth/x"):
        assert (await admin.get(path)).status == 404, path
    r = await admin.post("/routes", json={"paths": ["/x"], "service": {"name": "a\x00"}})
    assert r.status == 400 and r.json["code"] == 13
    r = await admin.get("/services/a%00")  # the name validator speaks first, as in Kong
    assert r.status == 400 and r.json["code"] == 10


async def test_custom_id_filter_with_nul(admin: Admin) -> None:
    r = await admin.get("/consumers?custom_id=%00")
    assert (r.status, r.json) == (200, {"data": [], "next": None})


@pytest.mark.parametrize("value", [[1], [None], [["x"]], [1, "services", "x"], [True, "a", "b"]])
@pytest.mark.parametrize("path", ["/services", "/key-auths", "/services/s1/routes", "/tags", "/tags/t"])
async def test_offset_of_the_wrong_type(admin: Admin, path: str, value: list[object]) -> None:
    import base64

    import orjson

    await admin.ok("POST", "/services", 201, json={"name": "s1", "url": "http://a.test", "tags": ["t"]})
    offset = base64.b64encode(orjson.dumps(value)).decode().rstrip("=")
    r = await admin.get(f"{path}?offset={offset}")
    assert r.status == 400, r.json
    assert r.json == {
        "code": 7,
        "name": "invalid offset",
        "message": f"'{offset}' is not a valid offset: bad json encoding",
    }


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/consumers/a%ff", "username"),
        ("/services/a%ff", "name"),
        ("/consumers/u/key-auth/a%ff", "key"),
        ("/services/s1/routes/a%ff", "name"),
    ],
)
async def test_put_key_with_invalid_utf8(admin: Admin, path: str, field: str) -> None:
    await admin.ok("POST", "/consumers", 201, json={"username": "u"})
    await admin.ok("POST", "/services", 201, json={"name": "s1", "url": "http://a.test"})
    body = {"url": "http://a.test"} if field == "name" and path.startswith("/services/a") else {}
    if "routes" in path:
        body = {"paths": ["/x"]}
    r = await admin.put(path, json=body)
    assert (r.status, r.json) == (
        400,
        {
            "code": 10,
            "name": f"invalid unique {field}",
            "message": "invalid utf-8 character sequence detected at position 2",
        },
    )
