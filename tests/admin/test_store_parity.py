"""SQLite and PostgreSQL answer the same request the same way: values either store can't hold are
rejected before the write with Kong-shaped schema violations, and lookups of unstorable keys are 404s.

Each case runs through the real Admin API on both stores (the `admin` fixture is parametrized).
"""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

import pytest
from admin_client import Admin, Resp

INT64_BOUND = "value should be between -9223372036854775808 and 9223372036854775807"
TIMESTAMP = "expected a valid timestamp"
NUL = "must not contain a null byte"
TOO_LONG = "length must be at most 1024"
CONTROL = "must not contain control characters"


async def post_json_text(admin: Admin, path: str, text: str, method: str = "POST") -> Resp:
    """Send JSON text as written: integers beyond 64 bits can't go through orjson.dumps."""
    return await admin.request(method, path, data=text, headers={"Content-Type": "application/json"})


def violation(fields: dict[str, Any], message: str) -> dict[str, Any]:
    return {"code": 2, "name": "schema violation", "message": message, "fields": fields}


async def assert_lists_work(admin: Admin, *collections: str) -> None:
    for c in collections:
        r = await admin.get(f"/{c}")
        assert r.status == 200, (c, r.body)


# --- integers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ('{"host":"h","created_at":1e30}', "created_at", TIMESTAMP),
        ('{"host":"h","created_at":1e308}', "created_at", TIMESTAMP),
        ('{"host":"h","created_at":9223372036854775808}', "created_at", TIMESTAMP),
        ('{"host":"h","created_at":0}', "created_at", TIMESTAMP),
        ('{"host":"h","created_at":-5}', "created_at", TIMESTAMP),
        ('{"host":"h","retries":1e20}', "retries", "value should be between 0 and 32767"),
        ('{"host":"h","port":99999999999999999999}', "port", "value should be between 0 and 65535"),
    ],
)
async def test_out_of_range_service_integers_are_rejected_and_nothing_is_stored(
    admin: Admin, text: str, field: str, message: str
) -> None:
    r = await post_json_text(admin, "/services", text)
    assert (r.status, r.json) == (400, violation({field: message}, f"schema violation ({field}: {message})"))
    listing = await admin.ok("GET", "/services", 200)
    assert listing == {"data": [], "next": None}


@pytest.mark.parametrize("value", ["1e30", "1180591620717411303424", "-1e19"])
async def test_regex_priority_beyond_64_bits_is_rejected(admin: Admin, value: str) -> None:
    r = await post_json_text(admin, "/routes", f'{{"paths":["/x"],"regex_priority":{value}}}')
    assert (r.status, r.json) == (
        400,
        violation({"regex_priority": INT64_BOUND}, f"schema violation (regex_priority: {INT64_BOUND})"),
    )
    r = await admin.request("POST", "/routes", form="paths=/y&regex_priority=0xFFFFFFFFFFFFFFFFFFFFFFFF")
    assert r.status == 400 and r.json["fields"] == {"regex_priority": INT64_BOUND}
    assert (await admin.ok("GET", "/routes", 200))["data"] == []


async def test_64_bit_edges_are_stored_and_listed(admin: Admin) -> None:
    low = await post_json_text(admin, "/routes", '{"paths":["/x"],"regex_priority":-9223372036854775808}')
    assert low.status == 201 and low.json["regex_priority"] == -(2**63)
    svc = await post_json_text(admin, "/services", '{"host":"h","created_at":9223372036854775807}')
    assert svc.status == 201 and svc.json["created_at"] == 2**63 - 1
    # integral floats are integers: stored and returned as such
    r = await post_json_text(admin, "/routes", '{"paths":["/z"],"regex_priority":5.0}')
    assert r.status == 201 and r.json["regex_priority"] == 5 and isinstance(r.json["regex_priority"], int)
    listed = await admin.ok("GET", "/routes", 200)
    assert sorted(row["regex_priority"] for row in listed["data"]) == [-(2**63), 5]
    assert (await admin.ok("GET", f"/services/{svc.json['id']}", 200))["created_at"] == 2**63 - 1


async def test_update_cannot_store_an_out_of_range_integer(admin: Admin) -> None:
    route = await admin.ok("POST", "/routes", 201, json={"name": "r", "paths": ["/x"]})
    r = await post_json_text(admin, "/routes/r", '{"regex_priority":1e30}', method="PATCH")
    assert r.status == 400 and r.json["fields"] == {"regex_priority": INT64_BOUND}
    r = await post_json_text(admin, "/routes/r", '{"paths":["/x"],"created_at":1e30}', method="PUT")
    assert r.status == 400 and r.json["fields"] == {"created_at": TIMESTAMP}
    assert await admin.ok("GET", "/routes/r", 200) == route
    await assert_lists_work(admin, "routes")


async def test_plugin_config_integers_and_numbers(admin: Admin) -> None:
    text = '{"name":"rate-limiting","config":{"minute":5,"redis":{"database":1180591620717411303424}}}'
    r = await post_json_text(admin, "/plugins", text)
    assert r.status == 400 and r.json["fields"] == {"config": {"redis": {"database": INT64_BOUND}}}
    # A number beyond 64 bits (form values are typed like Lua's tonumber) is a double, as in Lua.
    r = await admin.request("POST", "/plugins", form="name=rate-limiting&config.minute=0xFFFFFFFFFFFFFFFFFFFFFFFF")
    assert r.status == 201, r.body
    assert r.json["config"]["minute"] == float(0xFFFFFFFFFFFFFFFFFFFFFFFF)
    await assert_lists_work(admin, "plugins")
    # ... and a number that is not finite is not a number
    r = await admin.request("PATCH", f"/plugins/{r.json['id']}", form="config.hour=1e999")
    assert r.status == 400 and r.json["fields"] == {"config": {"hour": "expected a number"}}


# --- NUL bytes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "fields"),
    [
        ("/consumers", {"username": "a\x00b"}, {"username": NUL}),
        ("/consumers", {"custom_id": "x\x00"}, {"custom_id": NUL}),
        ("/routes", {"paths": ["/x\x00"]}, {"paths": [NUL]}),
        ("/plugins", {"name": "rate-limiting", "config": {"minute": 1, "error_message": "a\x00"}},
         {"config": {"error_message": NUL}}),
        # already rejected by Kong's own validators, with their messages, on both stores
        ("/services", {"host": "h", "tags": ["a\x00"]},
         {"tags": ["invalid tag 'a\x00': expected printable ascii (except `,` and `/`) or valid utf-8 sequences"]}),
    ],
)
async def test_nul_bytes_in_strings_are_rejected(admin: Admin, path: str, body: dict[str, Any],
                                                 fields: dict[str, Any]) -> None:
    r = await admin.request("POST", path, json=body)
    assert r.status == 400, r.body
    assert r.json["code"] == 2 and r.json["fields"] == fields
    await assert_lists_work(admin, path.strip("/"))
    assert (await admin.ok("GET", path, 200))["data"] == []


async def test_nul_bytes_in_key_auth_keys_are_rejected(admin: Admin) -> None:
    await admin.ok("POST", "/consumers", 201, json={"username": "bob"})
    r = await admin.request("POST", "/consumers/bob/key-auth", json={"key": "a\x00b"})
    assert (r.status, r.json) == (400, violation({"key": NUL}, f"schema violation (key: {NUL})"))
    r = await admin.request("POST", "/consumers/bob/key-auth", json={"key": "a\x01b"})
    assert r.status == 400 and r.json["fields"] == {"key": CONTROL}
    assert (await admin.ok("GET", "/key-auths", 200))["data"] == []


@pytest.mark.parametrize("path", ["/consumers/x%00", "/key-auths/x%00", "/consumers/x%00/key-auth"])
async def test_lookups_with_a_nul_byte_are_not_found(admin: Admin, path: str) -> None:
    assert await admin.ok("GET", path, 404) == {"message": "Not found"}
    await admin.ok("POST", "/consumers", 201, json={"username": "x"})
    assert await admin.ok("GET", path, 404) == {"message": "Not found"}
    # and a key with a control character that no key can have is not found either
    assert await admin.ok("GET", path.replace("%00", "%01"), 404) == {"message": "Not found"}


async def test_nul_byte_keys_kong_validates_are_invalid_unique(admin: Admin) -> None:
    # service and instance names have Kong validators that reject the key before any lookup
    for path, name in (("/services/a%00b", "name"), ("/plugins/a%00b", "instance_name")):
        r = await admin.get(path)
        assert r.status == 400 and r.json["code"] == 10 and r.json["name"] == f"invalid unique {name}"


async def test_nul_byte_lookups_on_every_read_path(admin: Admin) -> None:
    assert await admin.ok("GET", "/consumers?custom_id=a%00", 200) == {"data": [], "next": None}
    r = await admin.request("POST", "/routes", json={"paths": ["/x"], "service": {"name": "a\x00"}})
    assert r.status == 400 and r.json["code"] == 13
    assert await admin.ok("PATCH", "/consumers/x%00", 404, json={"custom_id": "c"}) == {
        "code": 6, "name": "not found", "message": "could not find the entity with '{username=\"x\x00\"}'",
        "fields": {"username": "x\x00"},
    }
    for path in ("/consumers/x%00", "/key-auths/x%00"):
        assert (await admin.request("DELETE", path)).status == 204
    r = await admin.request("PUT", "/consumers/x%00", json={})
    assert r.status == 400 and r.json["fields"] == {"username": NUL}
    assert (await admin.ok("GET", "/consumers", 200))["data"] == []


# --- long unique values (PostgreSQL's btree index row limit is about 2.7 KB) -----------------


def _random_name(n: int) -> str:
    return secrets.token_urlsafe(n)[:n]  # alphanumerics, '-' and '_': a valid name, incompressible


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/services", {"host": "h", "name": _random_name(5000)}, "name"),
        ("/routes", {"paths": ["/x"], "name": _random_name(5000)}, "name"),
        ("/consumers", {"username": _random_name(5000)}, "username"),
        ("/consumers", {"custom_id": _random_name(3000)}, "custom_id"),
        ("/consumers", {"username": "é" * 513}, "username"),  # 1026 bytes: the bound counts bytes
        ("/plugins", {"name": "rate-limiting", "instance_name": _random_name(5000), "config": {"minute": 1}},
         "instance_name"),
    ],
)
async def test_long_unique_values_are_rejected(admin: Admin, path: str, body: dict[str, Any], field: str) -> None:
    r = await admin.request("POST", path, json=body)
    assert (r.status, r.json) == (400, violation({field: TOO_LONG}, f"schema violation ({field}: {TOO_LONG})"))
    assert (await admin.ok("GET", path, 200))["data"] == []


async def test_long_key_auth_keys(admin: Admin) -> None:
    await admin.ok("POST", "/consumers", 201, json={"username": "bob"})
    r = await admin.request("POST", "/consumers/bob/key-auth", json={"key": _random_name(5000)})
    assert (r.status, r.json) == (400, violation({"key": TOO_LONG}, f"schema violation (key: {TOO_LONG})"))
    # at the bound, keys of characters that JSON escapes still fit both unique indexes
    for key in (_random_name(1024), '"' * 1024, "\\" * 1023 + "k", "é" * 512):
        await admin.ok("POST", "/consumers/bob/key-auth", 201, json={"key": key})
    keys = await admin.ok("GET", "/key-auths", 200)
    assert len(keys["data"]) == 4


async def test_long_lookup_keys_are_not_found(admin: Admin) -> None:
    long = _random_name(5000)
    for path in (f"/consumers/{long}", f"/key-auths/{long}", f"/consumers/{long}/key-auth"):
        assert await admin.ok("GET", path, 404) == {"message": "Not found"}
    r = await admin.request("PUT", f"/consumers/{long}", json={})
    assert r.status == 400 and r.json["fields"] == {"username": TOO_LONG}


# --- page offsets ---------------------------------------------------------------------------


@pytest.mark.parametrize("pk", [[5], ["a\x00"], [None], [[1]]])
async def test_offsets_with_values_no_id_can_have_are_invalid(admin: Admin, pk: list[Any]) -> None:
    await admin.ok("POST", "/consumers", 201, json={"username": "bob"})
    offset = base64.b64encode(json.dumps(pk).encode()).decode().rstrip("=")
    r = await admin.get(f"/consumers?offset={offset}")
    assert (r.status, r.json) == (
        400,
        {"code": 7, "name": "invalid offset", "message": f"'{offset}' is not a valid offset: bad json encoding"},
    )


# --- bytes that are not UTF-8 ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [("/consumers/ab%FF", {}, "username"), ("/services/ab%FF", {"host": "h"}, "name")],
)
async def test_put_with_a_key_that_is_not_utf8_is_an_invalid_unique_key(
    admin: Admin, path: str, body: dict[str, Any], field: str
) -> None:
    # As Kong's upsert by endpoint key: the key is checked as a unique value before the entity (code 10).
    message = "invalid utf-8 character sequence detected at position 3"
    r = await admin.request("PUT", path, json=body)
    assert (r.status, r.json) == (400, {"code": 10, "name": f"invalid unique {field}", "message": message})
    assert await admin.ok("GET", path, 404) == {"message": "Not found"}


async def test_schemas_show_the_bounds(admin: Admin) -> None:
    services = await admin.ok("GET", "/schemas/services", 200)
    fields = {name: f for item in services["fields"] for name, f in item.items()}
    assert fields["created_at"] == {"type": "integer", "auto": True, "timestamp": True}
    assert fields["name"]["len_max"] == 1024
