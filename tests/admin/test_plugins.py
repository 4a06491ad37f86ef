"""/plugins and the nested plugin collections: facts from Kong's 04-plugins_routes_spec and the
plugin parts of 10-services / 09-routes / 03-consumers."""

from __future__ import annotations

import uuid

from admin_client import Admin


async def _svc(admin: Admin, name: str) -> dict:
    return await admin.ok("POST", "/services", 201, json={"name": name, "host": "h"})


async def test_enabled_and_schemas(admin: Admin) -> None:
    enabled = (await admin.ok("GET", "/plugins/enabled", 200))["enabled_plugins"]
    assert {"key-auth", "rate-limiting"} <= set(enabled)
    for name in enabled:
        schema = await admin.ok("GET", f"/schemas/plugins/{name}", 200)
        assert isinstance(schema["fields"], list) and isinstance(schema["entity_checks"], list)
    ka = await admin.ok("GET", "/schemas/plugins/key-auth", 200)
    fields = {next(iter(f)): f[next(iter(f))] for f in ka["fields"]}
    assert fields["consumer"]["eq"] is None  # key-auth cannot be scoped to a consumer
    config = {next(iter(f)): f[next(iter(f))] for f in fields["config"]["fields"]}
    assert config["key_names"]["default"] == ["apikey"]
    assert config["key_names"]["type"] == "array"
    assert await admin.ok("GET", "/schemas/plugins/foobar", 404) == {"message": "No plugin named 'foobar'"}
    legacy = await admin.ok("GET", "/plugins/schema/key-auth", 200)
    assert legacy["type"] == "record" and isinstance(legacy["fields"], list)
    assert await admin.ok("GET", "/plugins/schema/foobar", 404) == {"message": "No plugin named 'foobar'"}


async def test_crud_by_id_and_instance_name(admin: Admin) -> None:
    svc = await _svc(admin, "s")
    p = await admin.ok(
        "POST",
        "/plugins",
        201,
        json={"name": "key-auth", "instance_name": "ka-1", "service": {"id": svc["id"]}},
    )
    assert p["config"]["key_names"] == ["apikey"] and p["enabled"] is True
    assert p["protocols"] == ["grpc", "grpcs", "http", "https"]
    assert await admin.ok("GET", f"/plugins/{p['id']}", 200) == p
    assert await admin.ok("GET", "/plugins/ka-1", 200) == p
    await admin.ok("GET", f"/plugins/{uuid.uuid4()}", 404)
    await admin.ok("GET", "/plugins/not-found", 404)
    assert (await admin.ok("GET", "/plugins", 200))["data"] == [p]
    off = await admin.ok("PATCH", "/plugins/ka-1", 200, json={"enabled": False})
    assert off["enabled"] is False and off["config"] == p["config"]
    unscoped = await admin.ok("PATCH", f"/plugins/{p['id']}", 200, json={"service": None, "tags": None})
    assert unscoped["service"] is None
    before = await admin.ok("GET", f"/plugins/{p['id']}", 200)
    err = await admin.ok("PATCH", f"/plugins/{p['id']}", 400, json={"foo": "bar"})
    assert err == {
        "code": 2,
        "name": "schema violation",
        "message": "schema violation (foo: unknown field)",
        "fields": {"foo": "unknown field"},
    }
    err = await admin.ok("PATCH", f"/plugins/{p['id']}", 400, json={"config": "bar"})
    assert err["message"] == "schema violation (config: expected a record)"
    assert await admin.ok("GET", f"/plugins/{p['id']}", 200) == before
    await admin.ok("PATCH", "/plugins/f4aecadc-05c7-11e6-8d41-1f3b3d5fa15c", 404, json={"enabled": False})
    for method in ("PUT", "PATCH", "DELETE"):
        await admin.ok(method, "/plugins", 405, json={})
    await admin.ok("DELETE", "/plugins/ka-1", 204)
    await admin.ok("GET", "/plugins/ka-1", 404)
    await admin.ok("DELETE", "/plugins/f4aecadc-05c7-11e6-8d41-1f3b3d5fa15c", 204)
    await admin.ok("DELETE", "/plugins/not-found", 204)


async def test_put_plugin(admin: Admin) -> None:
    svc = await _svc(admin, "s")
    pid = str(uuid.uuid4())
    p = await admin.ok("PUT", f"/plugins/{pid}", 200, json={"name": "key-auth", "service": {"id": svc["id"]}})
    assert p["id"] == pid
    named = await admin.ok(
        "PUT",
        "/plugins/my-instance",
        200,
        json={"name": "rate-limiting", "config": {"minute": 5}, "service": {"id": svc["id"]}},
    )
    assert named["instance_name"] == "my-instance"
    again = await admin.ok(
        "PUT",
        "/plugins/my-instance",
        200,
        json={"name": "rate-limiting", "config": {"hour": 7}, "service": {"id": svc["id"]}},
    )
    assert again["id"] == named["id"]
    assert (again["config"]["hour"], again["config"]["minute"]) == (7, None)  # replaced, not merged


async def test_form_config_is_coerced_on_post_and_patch(admin: Admin) -> None:
    await admin.ok("POST", "/consumers", 201, json={"username": "bob"})
    p = await admin.ok(
        "POST",
        "/consumers/bob/plugins",
        201,
        form={"name": "rate-limiting", "config.minute": "60", "config.hour": ""},
    )
    assert p["config"]["minute"] == 60 and p["config"]["hour"] is None
    assert p["consumer"] is not None
    # PATCH without `name`: the stored plugin name picks the config schema for coercion
    patched = await admin.ok("PATCH", f"/plugins/{p['id']}", 200, form={"config.hour": "100"})
    assert (patched["config"]["minute"], patched["config"]["hour"]) == (60, 100)  # deep merge
    patched = await admin.ok(
        "PATCH", f"/consumers/bob/plugins/{p['id']}", 200, form={"config.policy": "local", "enabled": "false"}
    )
    assert patched["enabled"] is False and patched["config"]["minute"] == 60
    err = await admin.ok("PATCH", f"/plugins/{p['id']}", 400, json={"config": {"minute": "60"}})
    assert err["fields"] == {"config": {"minute": "expected a number"}}


async def test_nested_plugins_and_conflicts(admin: Admin) -> None:
    svc = await _svc(admin, "s")
    route = await admin.ok("POST", "/routes", 201, json={"name": "r", "paths": ["/r"]})
    await admin.ok("POST", "/consumers", 201, json={"username": "bob"})
    on_svc = await admin.ok("POST", "/services/s/plugins", 201, form={"name": "key-auth"})
    assert on_svc["service"] == {"id": svc["id"]}
    dup = await admin.ok("POST", f"/services/{svc['id']}/plugins", 409, json={"name": "key-auth"})
    assert dup["code"] == 5
    assert dup["fields"] == {
        "consumer": None,
        "name": "key-auth",
        "route": None,
        "service": {"id": svc["id"]},
    }
    same_id = await admin.ok("POST", "/routes/r/plugins", 400, json={"name": "key-auth", "id": on_svc["id"]})
    assert same_id["code"] == 3  # primary key violation
    on_route = await admin.ok("POST", "/routes/r/plugins", 201, json={"name": "key-auth"})
    assert on_route["route"] == {"id": route["id"]}
    err = await admin.ok("POST", "/consumers/bob/plugins", 400, json={"name": "key-auth"})
    assert err["fields"] == {"consumer": "value must be null"}
    err = await admin.ok("POST", "/plugins", 400, json={"name": "nope"})
    assert (
        err["fields"]["name"] == "plugin 'nope' not enabled; add it to the 'plugins' configuration property"
    )
    assert (await admin.ok("GET", "/services/s/plugins", 200))["data"] == [on_svc]
    assert (await admin.ok("GET", "/routes/r/plugins", 200))["data"] == [on_route]
    assert await admin.ok("GET", "/services/s/plugins/" + on_svc["id"], 200) == on_svc
    await admin.ok("GET", "/routes/r/plugins/" + on_svc["id"], 404)  # belongs to the service, not the route
    await admin.ok("POST", f"/services/{uuid.uuid4()}/plugins", 404, json={"name": "key-auth"})
    await admin.ok("DELETE", "/services/s/plugins/" + on_svc["id"], 204)
    # deleting the route cascades to its plugins
    await admin.ok("DELETE", "/routes/r", 204)
    await admin.ok("GET", f"/plugins/{on_route['id']}", 404)
    assert (await admin.ok("GET", "/", 200))["plugins"]["enabled_in_cluster"] == []


async def test_root_lists_plugins_in_use(admin: Admin) -> None:
    await admin.ok("POST", "/plugins", 201, json={"name": "key-auth"})
    root = await admin.ok("GET", "/", 200)
    assert root["plugins"]["enabled_in_cluster"] == ["key-auth"]
    assert root["plugins"]["available_on_server"]["key-auth"] == {"version": "3.9.3", "priority": 1250}
