"""Node-level endpoints and cross-cutting HTTP behaviour: facts from Kong's 02-kong_routes_spec."""

from __future__ import annotations

import logging
import re

import pytest
from admin_client import Admin

import servegate

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


async def test_root(admin: Admin) -> None:
    r = await admin.get("/")
    assert r.status == 200
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    assert r.headers["Server"] == servegate.SERVER_TOKEN
    assert int(r.headers["X-Kong-Admin-Latency"]) >= 0
    assert "Via" not in r.headers
    body = r.json
    assert (body["version"], body["edition"], body["tagline"]) == ("3.9.3", "community", "Welcome to kong")
    assert body["servegate_version"] == servegate.__version__
    assert UUID_RE.match(body["node_id"])
    assert b'"enabled_in_cluster":[]' in r.body
    conf = body["configuration"]
    assert conf["pg_password"] == "******" and conf["admin_api_key"] == "******"
    assert b"pg-secret-value" not in r.body and b"admin-secret-value" not in r.body
    assert isinstance(body["pids"]["master"], int) and all(
        isinstance(p, int) for p in body["pids"]["workers"]
    )
    assert "prng_seeds" not in body


async def test_head_mirrors_get(admin: Admin) -> None:
    get = await admin.get("/")
    head = await admin.request("HEAD", "/")
    assert (head.status, head.body) == (200, b"")
    skip = {"Date", "X-Kong-Admin-Latency", "Content-Length"}
    assert {k: v for k, v in get.headers.items() if k not in skip} == {
        k: v for k, v in head.headers.items() if k not in skip
    }
    await admin.ok("POST", "/services", 201, json={"name": "s", "host": "h"})
    head = await admin.request("HEAD", "/services/s")
    assert (head.status, head.body) == (200, b"")
    assert (await admin.request("HEAD", "/services/nope")).status == 404


async def test_options_405_404(admin: Admin) -> None:
    r = await admin.request("OPTIONS", "/")
    assert (r.status, r.body) == (204, b"")
    assert r.headers["Allow"] == r.headers["Access-Control-Allow-Methods"] == "GET, HEAD, OPTIONS"
    assert r.headers["Access-Control-Allow-Headers"] == "Content-Type"
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    # (an unknown method token such as GEEEET is refused with 400 by the server's HTTP parser itself)
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        assert await admin.ok(method, "/", 405, json={}) == {"message": "Method not allowed"}
    r = await admin.request("HEAD", "/non-existing")
    assert (r.status, r.body) == (404, b"")
    for method in ("OPTIONS", "GET", "POST", "PUT", "DELETE", "PATCH"):
        assert await admin.ok(method, "/non-existing", 404) == {"message": "Not found"}
    assert await admin.ok("GET", "/services/x/y/z", 404) == {"message": "Not found"}
    # CORS grants nothing to an origin admin_gui_url does not name (Kong echoes any; see test_cors_host.py)
    r = await admin.get("/", headers={"Origin": "http://ui.test"})
    assert "Access-Control-Allow-Origin" not in r.headers
    assert "Access-Control-Allow-Credentials" not in r.headers


async def test_status(admin: Admin) -> None:
    body = await admin.ok("GET", "/status", 200)
    assert body["database"] == {"reachable": True}
    assert "configuration_hash" not in body
    server = body["server"]
    for key in (
        "connections_accepted",
        "connections_active",
        "connections_handled",
        "connections_reading",
        "connections_writing",
        "connections_waiting",
        "total_requests",
    ):
        assert isinstance(server[key], int), key
    assert server["connections_active"] >= 1 and server["connections_writing"] >= 1
    again = await admin.ok("GET", "/status", 200)
    assert again["server"]["total_requests"] == server["total_requests"] + 1


async def test_status_database_unreachable(admin: Admin) -> None:
    await admin.store.close()
    body = await admin.ok("GET", "/status", 200)
    assert body["database"] == {"reachable": False}
    await admin.store.connect()


async def test_endpoints(admin: Admin) -> None:
    data = (await admin.ok("GET", "/endpoints", 200))["data"]
    for path in (
        "/",
        "/services",
        "/services/{services}",
        "/services/{services}/routes",
        "/services/{services}/routes/{routes}",
        "/routes/{routes}/service",
        "/consumers/{consumers}/key-auth",
        "/consumers/{consumers}/key-auth/{keyauth_credentials}",
        "/key-auths/{keyauth_credentials}/consumer",
        "/plugins/enabled",
        "/consumers/{consumers}/plugins",
        "/routes/{routes}/plugins/{plugins}",
        "/schemas/{db_entity_name}/validate",
        "/status",
        "/tags/{tags}",
    ):
        assert path in data, path
    assert data == sorted(data, key=lambda p: p.replace("/", "\x00"))
    assert data.index("/consumers") < data.index("/consumers/{consumers}") < data.index("/endpoints")


async def test_entity_schemas(admin: Admin) -> None:
    for name in ("services", "routes", "consumers", "plugins", "keyauth_credentials"):
        schema = await admin.ok("GET", f"/schemas/{name}", 200)
        assert isinstance(schema["fields"], list) and isinstance(schema["entity_checks"], list)
    assert await admin.ok("GET", "/schemas/not-present", 404) == {"message": "No entity named 'not-present'"}
    routes = await admin.ok("GET", "/schemas/routes", 200)
    fields = {next(iter(f)): f[next(iter(f))] for f in routes["fields"]}
    assert fields["service"]["type"] == "foreign" and "schema" not in fields["service"]
    assert fields["strip_path"]["default"] is True
    services = await admin.ok("GET", "/schemas/services", 200)
    sfields = {next(iter(f)): f[next(iter(f))] for f in services["fields"]}
    assert sfields["id"]["uuid"] is True and sfields["retries"]["default"] == 5


async def test_schema_validate(admin: Admin) -> None:
    ok = await admin.ok("POST", "/schemas/services/validate", 200, json={"host": "example.com"})
    assert ok == {"message": "schema validation successful"}
    err = await admin.ok("POST", "/schemas/services/validate", 400, json={"port": "x"})
    assert err["name"] == "schema violation" and "port" in err["fields"]
    ok = await admin.ok(
        "POST",
        "/schemas/plugins/validate",
        200,
        json={"name": "key-auth", "config": {"key_names": ["foo", "bar"], "hide_credentials": True}},
    )
    assert ok["message"] == "schema validation successful"
    err = await admin.ok(
        "POST", "/schemas/plugins/validate", 400, json={"name": "key-auth", "config": {"keys": "foo"}}
    )
    assert err["name"] == "schema violation"
    await admin.ok("POST", "/schemas/nope/validate", 404, json={})
    # validation writes nothing
    assert await admin.ok("GET", "/services", 200) == {"data": [], "next": None}
    assert admin.changes == []


async def test_unexpected_error_is_500_and_logged_without_secrets(
    admin: Admin, caplog: pytest.LogCaptureFixture
) -> None:
    await admin.ok("POST", "/consumers", 201, json={"username": "bob"})
    await admin.ok("POST", "/consumers/bob/key-auth", 201, json={"key": "super-secret-key"})
    await admin.store.close()  # every store call now fails with a driver error
    caplog.set_level(logging.ERROR, logger="servegate.admin")
    r = await admin.get("/key-auths/super-secret-key")
    assert (r.status, r.json) == (500, {"message": "An unexpected error occurred"})
    assert r.headers["Server"] == servegate.SERVER_TOKEN
    assert "super-secret-key" not in caplog.text
    assert "/key-auths/{keyauth_credentials}" in caplog.text
    await admin.store.connect()
    assert (await admin.get("/key-auths/super-secret-key")).status == 200
