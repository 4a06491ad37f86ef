"""The issue's must-show Admin API sequence, against SQLite and PostgreSQL."""

from __future__ import annotations

from urllib.parse import quote

from admin_client import Admin


async def test_must_show_sequence(admin: Admin) -> None:
    svc = await admin.ok("POST", "/services", 201, form={"name": "llm", "url": "http://h:8080/v1"})
    assert (svc["protocol"], svc["host"], svc["port"], svc["path"]) == ("http", "h", 8080, "/v1")
    assert (svc["connect_timeout"], svc["read_timeout"], svc["write_timeout"]) == (60000, 60000, 60000)
    assert svc["retries"] == 5
    assert "url" not in svc

    route = await admin.ok(
        "POST", "/services/llm/routes", 201, form={"name": "r", "paths[]": "/v1/llm", "strip_path": "true"}
    )
    assert route["paths"] == ["/v1/llm"]
    assert route["strip_path"] is True
    assert route["service"] == {"id": svc["id"]}

    dup = await admin.ok(
        "POST", "/services/llm/routes", 409, form={"name": "r", "paths[]": "/v1/llm", "strip_path": "true"}
    )
    assert dup["code"] == 5
    assert dup["name"] == "unique constraint violation"
    assert dup["fields"] == {"name": "r"}

    patched = await admin.ok("PATCH", "/services/llm", 200, form={"read_timeout": "300000"})
    assert patched["read_timeout"] == 300000
    assert patched["host"] == "h" and patched["path"] == "/v1"

    consumer = await admin.ok("POST", "/consumers", 201, form={"username": "a"})
    cred = await admin.ok("POST", "/consumers/a/key-auth", 201, form={"key": "k"})
    assert cred["key"] == "k"
    assert cred["consumer"] == {"id": consumer["id"]}

    # page through every list one row at a time, following `next`
    for coll, expected in (("services", 1), ("routes", 1), ("consumers", 1), ("key-auths", 1)):
        seen = []
        path: str | None = f"/{coll}?size=1"
        while path:
            page = await admin.ok("GET", path, 200)
            seen += [row["id"] for row in page["data"]]
            path = page["next"]
        assert len(seen) == expected
    await admin.ok("POST", "/services", 201, json={"name": "llm2", "url": "http://h2"})
    first = await admin.ok("GET", "/services?size=1", 200)
    assert first["next"] == f"/services?offset={quote(first['offset'], safe='')}&size=1"
    second = await admin.ok("GET", first["next"], 200)
    assert second["next"] is None and "offset" not in second
    assert {first["data"][0]["name"], second["data"][0]["name"]} == {"llm", "llm2"}

    refused = await admin.ok("DELETE", "/services/llm", 400)
    assert refused["code"] == 4
    assert refused["message"] == "an existing 'routes' entity references this 'services' entity"
    assert refused["fields"] == {"@referenced_by": "routes"}

    await admin.ok("DELETE", "/routes/r", 204)
    await admin.ok("DELETE", "/services/llm", 204)
    await admin.ok("GET", "/services/llm", 404)
    await admin.ok("GET", "/routes/r", 404)
    assert admin.changes == sorted(admin.changes) and len(admin.changes) == 8
