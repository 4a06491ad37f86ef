"""/services and /services/{service}: facts from Kong's 10-services_routes_spec."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from admin_client import Admin


def _body(kind: str, fields: dict[str, Any]) -> dict[str, Any]:
    return {kind: fields}


@pytest.mark.parametrize("kind", ["form", "multipart", "json"])
async def test_create_service_each_content_type(admin: Admin, kind: str) -> None:
    svc = await admin.ok(
        "POST", "/services", 201, **_body(kind, {"protocol": "http", "host": "service.test"})
    )
    assert svc["name"] is None
    assert (svc["protocol"], svc["host"], svc["port"]) == ("http", "service.test", 80)
    assert svc["connect_timeout"] == svc["write_timeout"] == svc["read_timeout"] == 60000
    assert isinstance(svc["created_at"], int) and isinstance(svc["updated_at"], int)
    https = await admin.ok("POST", "/services", 201, **_body(kind, {"url": "https://service.test/"}))
    assert (https["protocol"], https["port"], https["path"]) == ("https", 443, "/")
    for bad in ("", " "):
        await admin.ok("POST", "/services", 400, **_body(kind, {"url": bad}))


async def test_json_is_not_coerced_but_form_is(admin: Admin) -> None:
    err = await admin.ok("POST", "/services", 400, json={"host": "h", "port": "8080"})
    assert err["code"] == 2 and err["fields"] == {"port": "expected an integer"}
    svc = await admin.ok("POST", "/services", 201, form={"host": "h", "port": "8080", "name": ""})
    assert svc["port"] == 8080 and svc["name"] is None


async def test_get_by_id_name_and_utf8_name(admin: Admin) -> None:
    svc = await admin.ok("POST", "/services", 201, json={"name": "円", "host": "h"})
    assert await admin.ok("GET", f"/services/{svc['id']}", 200) == svc
    assert await admin.ok("GET", "/services/%E5%86%86", 200) == svc
    assert await admin.ok("GET", "/services/%E5%86%86/", 200) == svc  # trailing slash tolerated
    assert await admin.ok("GET", "//services//%E5%86%86", 200) == svc  # slashes merged like nginx
    assert await admin.ok("GET", f"/services/{uuid.uuid4()}", 404) == {"message": "Not found"}
    assert await admin.ok("GET", "/services/not-found", 404) == {"message": "Not found"}
    # a GET body is never decoded
    r = await admin.get(
        f"/services/{svc['id']}", data="this fails if decoded", headers={"Content-Type": "application/json"}
    )
    assert r.status == 200


async def test_invalid_endpoint_key_is_400_code_10(admin: Admin) -> None:
    err = await admin.ok("GET", "/services/bad%20name", 400)
    assert err["code"] == 10
    assert err["name"] == "invalid unique name"
    assert "the only accepted ascii characters" in err["message"]


async def test_patch(admin: Admin) -> None:
    svc = await admin.ok("POST", "/services", 201, json={"name": "s1", "host": "h", "path": "/x"})
    patched = await admin.ok("PATCH", f"/services/{svc['id']}", 200, json={"name": None, "protocol": "https"})
    assert (patched["name"], patched["protocol"], patched["id"]) == (None, "https", svc["id"])
    assert patched["path"] == "/x"
    by_name = await admin.ok("POST", "/services", 201, json={"name": "s2", "host": "h"})
    patched = await admin.ok("PATCH", "/services/s2", 200, form={"protocol": "https"})
    assert (patched["protocol"], patched["name"], patched["id"]) == ("https", "s2", by_name["id"])
    url = await admin.ok("PATCH", "/services/s2", 200, json={"url": "http://example.test:443"})
    assert (url["protocol"], url["host"], url["port"], url["path"]) == ("http", "example.test", 443, None)
    url = await admin.ok("PATCH", "/services/s2", 200, form={"url": "https://example2.test:80/"})
    assert (url["protocol"], url["host"], url["port"], url["path"]) == ("https", "example2.test", 80, "/")
    assert await admin.ok("GET", "/services/s2", 200) == url


async def test_patch_missing_is_404_with_dao_body(admin: Admin) -> None:
    missing = str(uuid.uuid4())
    err = await admin.ok("PATCH", f"/services/{missing}", 404, json={"protocol": "https"})
    assert err["code"] == 6
    assert err["message"] == f"could not find the entity with primary key '{{id=\"{missing}\"}}'"
    err = await admin.ok("PATCH", "/services/nope", 404, json={"protocol": "https"})
    assert err["message"] == "could not find the entity with '{name=\"nope\"}'"


async def test_put_upserts_by_id_and_by_name(admin: Admin) -> None:
    sid = str(uuid.uuid4())
    created = await admin.ok("PUT", f"/services/{sid}", 200, json={"host": "a", "read_timeout": 5})
    assert created["id"] == sid and created["read_timeout"] == 5
    # replace: fields not given go back to defaults
    replaced = await admin.ok("PUT", f"/services/{sid}", 200, json={"host": "b"})
    assert (replaced["host"], replaced["read_timeout"]) == ("b", 60000)
    assert replaced["created_at"] == created["created_at"]
    named = await admin.ok("PUT", "/services/by-name", 200, json={"host": "c"})
    assert named["name"] == "by-name"
    again = await admin.ok("PUT", "/services/by-name", 200, form={"host": "d"})
    assert (again["id"], again["host"]) == (named["id"], "d")
    listed = await admin.ok("GET", "/services", 200)
    assert len(listed["data"]) == 2


async def test_delete(admin: Admin) -> None:
    svc = await admin.ok("POST", "/services", 201, json={"name": "gone", "host": "h"})
    r = await admin.delete("/services/gone")
    assert (r.status, r.body) == (204, b"")
    await admin.ok("GET", f"/services/{svc['id']}", 404)
    changes = len(admin.changes)
    assert (await admin.delete(f"/services/{uuid.uuid4()}")).status == 204
    assert (await admin.delete("/services/not-found")).status == 204
    assert len(admin.changes) == changes  # nothing written, nothing announced


async def test_unique_name_conflict(admin: Admin) -> None:
    await admin.ok("POST", "/services", 201, json={"name": "dup", "host": "h"})
    err = await admin.ok("POST", "/services", 409, json={"name": "dup", "host": "h"})
    assert err == {
        "code": 5,
        "name": "unique constraint violation",
        "message": "UNIQUE violation detected on '{name=\"dup\"}'",
        "fields": {"name": "dup"},
    }


async def test_pagination(admin: Admin) -> None:
    ids = []
    for i in range(10):
        ids.append((await admin.ok("POST", "/services", 201, json={"name": f"svc-{i}", "host": "h"}))["id"])
    first = await admin.ok("GET", "/services", 200)
    assert len(first["data"]) == 10 and first["next"] is None and "offset" not in first
    seen: list[str] = []
    page = await admin.ok("GET", "/services?size=3", 200)
    pages = 1
    while True:
        seen += [s["id"] for s in page["data"]]
        if page["next"] is None:
            break
        assert page["next"].startswith("/services?offset=") and page["next"].endswith("&size=3")
        page = await admin.ok("GET", page["next"], 200)
        pages += 1
    assert pages == 4
    assert seen == sorted(ids)


async def test_empty_list_and_query_errors(admin: Admin) -> None:
    r = await admin.get("/services?foo=bar")
    assert (r.status, r.body) == (200, b'{"data":[],"next":null}')
    assert await admin.ok("GET", "/services?size=x", 400) == {
        "code": 9,
        "name": "invalid size",
        "message": "size must be a number",
    }
    for bad in ("0", "1001", "2.5"):
        err = await admin.ok("GET", f"/services?size={bad}", 400)
        assert err["message"] == "size must be an integer between 1 and 1000"
    err = await admin.ok("GET", "/services?offset=x", 400)
    assert err["code"] == 7 and err["name"] == "invalid offset"
    assert err["message"] == "'x' is not a valid offset: bad base64 encoding"
    err = await admin.ok("GET", "/services?offset=aGVsbG8", 400)
    assert err["message"] == "'aGVsbG8' is not a valid offset: bad json encoding"
