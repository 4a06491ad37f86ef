"""/routes, nested /services/{s}/routes and /routes/{r}/service: facts from Kong's 09-routes_routes_spec."""

from __future__ import annotations

import uuid

import pytest
from admin_client import Admin

PROTOCOLS_MSG = "expected one of: grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp"
MUST_SET = "must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https'"


async def _service(admin: Admin, name: str | None = None, **fields: object) -> dict:
    body = {"host": "example.com", "path": "/", **fields}
    if name:
        body["name"] = name
    return await admin.ok("POST", "/services", 201, json=body)


async def test_options_and_405(admin: Admin) -> None:
    r = await admin.request("OPTIONS", "/routes")
    assert (r.status, r.body) == (204, b"")
    assert r.headers["Allow"] == "GET, HEAD, OPTIONS, POST"
    assert r.headers["Access-Control-Allow-Methods"] == "GET, HEAD, OPTIONS, POST"
    assert r.headers["Access-Control-Allow-Headers"] == "Content-Type"
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert "X-Kong-Admin-Latency" in r.headers
    r = await admin.request("OPTIONS", "/routes/test")
    assert r.headers["Allow"] == "DELETE, GET, HEAD, OPTIONS, PATCH, PUT"
    for method in ("DELETE", "PUT", "PATCH"):
        assert await admin.ok(method, "/routes", 405, json={}) == {"message": "Method not allowed"}
    assert await admin.ok("POST", "/routes/x", 405, json={}) == {"message": "Method not allowed"}


@pytest.mark.parametrize("kind", ["form", "json"])
async def test_create_routes(admin: Admin, kind: str) -> None:
    svc = await _service(admin, "svc")
    body = {
        "protocols": ["http"],
        "methods": ["GET", "POST", "PATCH"],
        "hosts": ["foo.api.test", "bar.api.test"],
        "paths": ["/foo", "/bar"],
    }
    if kind == "json":
        body["service"] = {"name": "svc"}
    else:
        body["service.name"] = "svc"
    route = await admin.ok("POST", "/routes", 201, **{kind: body})
    assert route["hosts"] == ["foo.api.test", "bar.api.test"]
    assert route["paths"] == ["/foo", "/bar"]
    assert route["methods"] == ["GET", "POST", "PATCH"]
    assert route["service"] == {"id": svc["id"]}
    assert route["strip_path"] is True and route["preserve_host"] is False
    grpc = await admin.ok(
        "POST",
        "/routes",
        201,
        **{kind: {"protocols": ["grpc", "grpcs"], "hosts": ["g.test"], "paths": ["/g"]}},
    )
    assert grpc["protocols"] == ["grpc", "grpcs"] and grpc["strip_path"] is False
    assert grpc["service"] is None


async def test_create_errors(admin: Admin) -> None:
    r = await admin.post("/routes", data='{"hello": "world"', headers={"Content-Type": "application/json"})
    assert (r.status, r.body) == (400, b'{"message":"Cannot parse JSON body"}')
    err = await admin.ok("POST", "/routes", 400, json={})
    assert err == {
        "code": 2,
        "name": "schema violation",
        "message": f"schema violation ({MUST_SET})",
        "fields": {"@entity": [MUST_SET]},
    }
    err = await admin.ok("POST", "/routes", 400, form={"methods": "GET", "protocols": ["foo", "http"]})
    assert err["message"] == f"schema violation (protocols.1: {PROTOCOLS_MSG})"
    assert err["fields"] == {"protocols": [PROTOCOLS_MSG]}
    err = await admin.ok(
        "POST",
        "/routes",
        400,
        json={"methods": ["GET"], "protocols": ["foo", "http"], "service": {"protocol": "foo"}},
    )
    assert err["message"] == (
        f"2 schema violations (protocols.1: {PROTOCOLS_MSG}; service.protocol: {PROTOCOLS_MSG})"
    )
    unresolved = (
        "the foreign key cannot be resolved with '{name=\"non-existing\"}' for an existing 'services' entity"
    )
    err = await admin.ok(
        "POST", "/routes", 400, json={"methods": ["GET"], "service": {"name": "non-existing"}}
    )
    assert err == {
        "code": 13,
        "name": "foreign keys unresolved",
        "message": f"foreign key unresolved (service.name: {unresolved})",
        "fields": {"service": {"name": unresolved}},
    }
    for kind, body in (
        ("json", {"methods": ["GET"], "service": {"name": None}}),
        ("form", {"methods": "GET", "service.name": ""}),
        ("json", {"methods": ["GET"], "service": {"protocol": "http"}}),
    ):
        err = await admin.ok("POST", "/routes", 400, **{kind: body})
        assert err["message"] == "schema violation (service.id: missing primary key)", (kind, body)
        assert err["fields"] == {"service": {"id": "missing primary key"}}


async def test_put(admin: Admin) -> None:
    svc = await _service(admin)
    rid = str(uuid.uuid4())
    route = await admin.ok("PUT", f"/routes/{rid}", 200, json={"paths": ["/updated-paths"], "service": svc})
    assert (route["id"], route["paths"], route["hosts"], route["service"]) == (
        rid,
        ["/updated-paths"],
        None,
        {"id": svc["id"]},
    )
    assert await admin.ok("GET", f"/routes/{rid}", 200) == route
    bare = await admin.ok("PUT", f"/routes/{uuid.uuid4()}", 200, form={"paths": "/p"})
    assert bare["service"] is None
    named = await admin.ok(
        "PUT", "/routes/my-route", 200, form={"paths": "/updated", "service.id": svc["id"]}
    )
    assert named["name"] == "my-route" and named["paths"] == ["/updated"]
    again = await admin.ok("PUT", "/routes/my-route", 200, json={"hosts": ["h.test"]})
    assert (again["id"], again["paths"], again["hosts"], again["service"]) == (
        named["id"],
        None,
        ["h.test"],
        None,
    )
    await admin.ok(
        "PUT", "/routes/my-put-route", 400, json={"routes": {"test": [{"test": "test"}]}, "tags": "test"}
    )


async def test_patch(admin: Admin) -> None:
    svc = await _service(admin)
    route = await admin.ok(
        "POST", "/routes", 201, json={"name": "r1", "paths": ["/my-route"], "service": svc}
    )
    patched = await admin.ok("PATCH", f"/routes/{route['id']}", 200, form={"strip_path": "false"})
    assert patched["strip_path"] is False and patched["paths"] == ["/my-route"]
    patched = await admin.ok(
        "PATCH", "/routes/r1", 200, json={"methods": None, "paths": ["/up"], "hosts": ["my-updated.tld"]}
    )
    assert (patched["paths"], patched["hosts"], patched["methods"]) == (["/up"], ["my-updated.tld"], None)
    r = await admin.patch("/routes/r1", json={"methods": [], "paths": [], "hosts": ["x.tld"]})
    assert r.status == 200 and b'"methods":[]' in r.body and b'"paths":[]' in r.body
    patched = await admin.ok("PATCH", "/routes/r1", 200, json={"service": None, "paths": ["/p"]})
    assert patched["service"] is None
    err = await admin.ok("PATCH", f"/routes/{route['id']}", 400, json={"regex_priority": "foobar"})
    assert err["fields"] == {"regex_priority": "expected an integer"}
    await admin.ok("PATCH", f"/routes/{uuid.uuid4()}", 404, json={"paths": ["/x"]})


async def test_route_service_endpoint(admin: Admin) -> None:
    svc = await _service(admin, "s1")
    route = await admin.ok(
        "POST", "/routes", 201, json={"name": "r1", "paths": ["/r"], "service": {"id": svc["id"]}}
    )
    assert await admin.ok("GET", f"/routes/{route['id']}/service", 200) == svc
    assert await admin.ok("GET", "/routes/r1/service", 200) == svc
    await admin.ok("GET", f"/routes/{uuid.uuid4()}/service", 404)
    await admin.ok("GET", "/routes/nope/service", 404)
    edited = await admin.ok(
        "PATCH", "/routes/r1/service", 200, json={"name": "name-s1", "host": "edited.test", "path": None}
    )
    assert (edited["id"], edited["name"], edited["host"], edited["path"]) == (
        svc["id"],
        "name-s1",
        "edited.test",
        None,
    )
    edited = await admin.ok("PATCH", "/routes/r1/service", 200, form={"url": "http://edited2.test:1234/foo"})
    assert (edited["host"], edited["port"], edited["path"]) == ("edited2.test", 1234, "/foo")
    err = await admin.ok("PATCH", "/routes/r1/service", 400, form={"connect_timeout": "foobar"})
    assert err["message"] == "schema violation (connect_timeout: expected an integer)"
    await admin.ok("PATCH", f"/routes/{uuid.uuid4()}/service", 404, json={"host": "x"})
    # PUT replaces the associated service
    put = await admin.ok("PUT", "/routes/r1/service", 200, json={"host": "put.test"})
    assert (put["id"], put["host"], put["name"], put["port"]) == (svc["id"], "put.test", None, 80)
    assert await admin.ok("DELETE", "/routes/r1/service", 405) == {"message": "Method not allowed"}
    await admin.ok("DELETE", f"/routes/{uuid.uuid4()}/service", 404)
    await admin.ok("DELETE", "/routes/in-existent-route/service", 404)


async def test_route_service_put_creates_and_associates(admin: Admin) -> None:
    route = await admin.ok("POST", "/routes", 201, json={"paths": ["/my-route"]})
    await admin.ok("GET", f"/routes/{route['id']}/service", 404)
    await admin.ok("DELETE", f"/routes/{route['id']}/service", 404)
    svc = await admin.ok("PUT", f"/routes/{route['id']}/service", 200, form={"url": "http://konghq.test"})
    assert svc["host"] == "konghq.test"
    assert await admin.ok("GET", f"/services/{svc['id']}", 200) == svc
    assert (await admin.ok("GET", f"/routes/{route['id']}", 200))["service"] == {"id": svc["id"]}


async def test_nested_routes(admin: Admin) -> None:
    svc = await _service(admin, "parent")
    other = await _service(admin, "other")
    route = await admin.ok(
        "POST",
        "/services/parent/routes",
        201,
        json={"name": "child", "paths": ["/c"], "service": {"id": other["id"]}},
    )
    assert route["service"] == {"id": svc["id"]}  # the parent wins over the body
    await admin.ok("POST", f"/services/{uuid.uuid4()}/routes", 404, json={"paths": ["/x"]})
    await admin.ok("GET", "/services/missing/routes", 404)
    assert await admin.ok("GET", f"/services/{svc['id']}/routes", 200) == {"data": [route], "next": None}
    assert await admin.ok("GET", "/services/other/routes", 200) == {"data": [], "next": None}
    assert await admin.ok("GET", "/services/parent/routes/child", 200) == route
    await admin.ok("GET", "/services/other/routes/child", 404)  # not attached to that parent
    patched = await admin.ok("PATCH", "/services/parent/routes/child", 200, json={"hosts": ["h.test"]})
    assert patched["hosts"] == ["h.test"] and patched["service"] == {"id": svc["id"]}
    await admin.ok("PATCH", "/services/other/routes/child", 404, json={"hosts": ["h.test"]})
    put = await admin.ok("PUT", "/services/other/routes/new-child", 200, json={"paths": ["/n"]})
    assert put["name"] == "new-child" and put["service"] == {"id": other["id"]}
    await admin.ok("DELETE", "/services/other/routes/child", 404)
    await admin.ok("DELETE", f"/services/parent/routes/{uuid.uuid4()}", 404)
    await admin.ok("DELETE", "/services/parent/routes/child", 204)
    await admin.ok("GET", "/routes/child", 404)


async def test_nested_paging_next_has_no_size(admin: Admin) -> None:
    await _service(admin, "svc")
    for i in range(3):
        await admin.ok("POST", "/services/svc/routes", 201, json={"paths": [f"/p{i}"]})
    page = await admin.ok("GET", "/services/svc/routes?size=2&tags=x", 200)
    assert len(page["data"]) == 2
    assert page["next"].startswith("/services/svc/routes?offset=") and "size" not in page["next"]
    rest = await admin.ok("GET", page["next"] + "&size=2", 200)
    assert len(rest["data"]) == 1 and rest["next"] is None
