"""/upstreams: facts from Kong's 07-upstreams_routes_spec (fields, defaults, messages, status codes), Kong's
shorthands (hash_on forces the algorithm), nested healthchecks from forms, and the servegate extensions."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from admin_client import Admin

KINDS = ["form", "multipart", "json"]
HEADER_MSG = "bad header name 'not a <> valid <> header name', allowed characters are A-Z, a-z, 0-9, '_', and '-'"
COOKIE_MSG = ("contains one or more invalid characters. ASCII control characters (0-31;127), space, tab and the "
              'characters ()<>@,;:\\"/?={}[] are not allowed.')
COND_HASH_ON = "failed conditional validation given value of field 'hash_on'"

DEFAULT_HEALTHCHECKS = {
    "active": {
        "type": "http", "timeout": 1, "concurrency": 10, "http_path": "/", "https_sni": None,
        "https_verify_certificate": True, "headers": None,
        "healthy": {"interval": 0, "http_statuses": [200, 302], "successes": 0},
        "unhealthy": {"interval": 0, "http_statuses": [429, 404, 500, 501, 502, 503, 504, 505],
                      "tcp_failures": 0, "timeouts": 0, "http_failures": 0},
    },
    "passive": {
        "type": "http",
        "healthy": {"http_statuses": [200, 201, 202, 203, 204, 205, 206, 207, 208, 226,
                                      300, 301, 302, 303, 304, 305, 306, 307, 308], "successes": 0},
        "unhealthy": {"http_statuses": [429, 500, 503], "tcp_failures": 0, "timeouts": 0, "http_failures": 0},
    },
    "threshold": 0,
}


def _body(kind: str, fields: dict[str, Any]) -> dict[str, Any]:
    if kind == "json":
        return {"json": fields}
    return {kind: {k: str(v) for k, v in fields.items()}}


@pytest.mark.parametrize("kind", KINDS)
async def test_create_with_defaults(admin: Admin, kind: str) -> None:
    up = await admin.ok("POST", "/upstreams", 201, **_body(kind, {"name": "my.upstream"}))
    assert up == {
        "id": up["id"],
        "created_at": up["created_at"],
        "name": "my.upstream",
        "updated_at": up["created_at"],
        "algorithm": "round-robin",
        "hash_on": "none",
        "hash_fallback": "none",
        "hash_on_header": None,
        "hash_fallback_header": None,
        "hash_on_cookie": None,
        "hash_on_cookie_path": "/",
        "hash_on_query_arg": None,
        "hash_fallback_query_arg": None,
        "hash_on_uri_capture": None,
        "hash_fallback_uri_capture": None,
        "slots": 10000,
        "healthchecks": DEFAULT_HEALTHCHECKS,
        "tags": None,
        "host_header": None,
        "client_certificate": None,
        "use_srv_name": False,
        # servegate's extensions, at the end
        "prefix_chars": 2048,
        "load_factor": 0.25,
        "retry_on_overload": True,
    }
    assert isinstance(up["created_at"], int) and isinstance(up["id"], str)
    assert list(up)[:4] == ["id", "created_at", "name", "updated_at"]  # Kong's field order


@pytest.mark.parametrize("kind", KINDS)
async def test_create_without_defaults(admin: Admin, kind: str) -> None:
    fields = {"name": "my.upstream", "slots": 10, "hash_on": "consumer", "hash_fallback": "ip",
              "hash_on_header": "HeaderName", "hash_fallback_header": "HeaderFallback"}
    up = await admin.ok("POST", "/upstreams", 201, **_body(kind, fields))
    assert {k: up[k] for k in fields} == fields
    assert up["algorithm"] == "consistent-hashing"  # hash_on set: Kong's shorthand

    fields = {"name": "cookie.upstream", "hash_on": "cookie", "hash_on_cookie": "CookieName1",
              "hash_on_cookie_path": "/foo"}
    up = await admin.ok("POST", "/upstreams", 201, **_body(kind, fields))
    assert {k: up[k] for k in fields} == fields

    fields = {"name": "headers.upstream", "slots": 10, "hash_on": "header", "hash_fallback": "header",
              "hash_on_header": "HeaderName1", "hash_fallback_header": "HeaderName2"}
    up = await admin.ok("POST", "/upstreams", 201, **_body(kind, fields))
    assert {k: up[k] for k in fields} == fields

    up = await admin.ok("POST", "/upstreams", 201, **_body(kind, {"name": "max.upstream", "slots": 65536}))
    assert up["slots"] == 65536
    up = await admin.ok("POST", "/upstreams", 201, **_body(kind, {"name": "hh.upstream", "host_header": "localhost"}))
    assert up["host_header"] == "localhost" and up["hash_on_header"] is None


async def test_malformed_json(admin: Admin) -> None:
    r = await admin.post("/upstreams", data='{"hello": "world"', headers={"Content-Type": "application/json"})
    assert (r.status, r.body) == (400, b'{"message":"Cannot parse JSON body"}')


# (body, expected `fields`) from Kong's "handles invalid input"
INVALID: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"slots": 50}, {"name": "required field missing"}),
    ({"name": "some invalid host name"},
     {"name": "Invalid name ('some invalid host name'); must be a valid hostname"}),
    ({"name": "my.upstream", "slots": 2**16 + 1}, {"slots": "value should be between 10 and 65536"}),
    ({"name": "my.upstream", "hash_on": "something that is invalid"},
     {"hash_on": "expected one of: none, consumer, ip, header, cookie, path, query_arg, uri_capture"}),
    ({"name": "my.upstream", "hash_on": "consumer", "hash_fallback": "something that is invalid"},
     {"@entity": [COND_HASH_ON], "hash_fallback": "expected one of: none, ip, header, cookie, path, query_arg, uri_capture"}),
    ({"name": "my.upstream", "hash_on": "consumer", "hash_fallback": "consumer"},
     {"@entity": [COND_HASH_ON], "hash_fallback": "expected one of: none, ip, header, cookie, path, query_arg, uri_capture"}),
    ({"name": "my.upstream", "hash_on": "header", "hash_fallback": "header", "hash_on_header": "headername",
      "hash_fallback_header": "headername"},
     {"@entity": ["values of these fields must be distinct: 'hash_on_header', 'hash_fallback_header'"]}),
    ({"name": "my.upstream", "hash_on": "cookie", "hash_on_cookie": "cookiename", "hash_fallback": "header",
      "hash_fallback_header": "Cool-Header"},
     {"@entity": [COND_HASH_ON], "hash_fallback": "expected one of: none"}),
    ({"name": "my.upstream", "hash_on": "header", "hash_fallback": "header", "hash_fallback_header": "HeaderName"},
     {"@entity": [COND_HASH_ON], "hash_on_header": "required field missing"}),
    ({"name": "my.upstream", "hash_on": "consumer", "hash_fallback": "header"},
     {"@entity": ["failed conditional validation given value of field 'hash_fallback'"],
      "hash_fallback_header": "required field missing"}),
    ({"name": "my.upstream", "hash_on": "cookie", "hash_on_cookie": "hashme", "hash_on_cookie_path": "not a path"},
     {"hash_on_cookie_path": "should start with: /"}),
    ({"name": "my.upstream", "hash_on": "consumer", "hash_fallback": "cookie", "hash_on_cookie": "my-cookie",
      "hash_on_cookie_path": "not a path"},
     {"hash_on_cookie_path": "should start with: /"}),
]


@pytest.mark.parametrize("kind", KINDS)
async def test_invalid_input(admin: Admin, kind: str) -> None:
    for body, fields in INVALID:
        err = await admin.ok("POST", "/upstreams", 400, **_body(kind, body))
        assert (err["code"], err["name"], err["fields"]) == (2, "schema violation", fields), body
    # messages Kong's spec asserts alone (an @entity message may come with them)
    for body, name, message in [
        ({"hash_on": "header", "hash_fallback": "consumer", "hash_on_header": "not a <> valid <> header name"},
         "hash_on_header", HEADER_MSG),
        ({"hash_on": "consumer", "hash_fallback": "header", "hash_fallback_header": "not a <> valid <> header name"},
         "hash_fallback_header", HEADER_MSG),
        ({"hash_on": "cookie", "hash_on_cookie": "not a <> valid <> cookie name"}, "hash_on_cookie", COOKIE_MSG),
        ({"hash_on": "consumer", "hash_fallback": "cookie", "hash_on_cookie": "not a <> valid <> cookie name"},
         "hash_on_cookie", COOKIE_MSG),
    ]:
        err = await admin.ok("POST", "/upstreams", 400, **_body(kind, {"name": "my.upstream", **body}))
        assert err["fields"][name] == message, body
    assert await admin.ok("GET", "/upstreams", 200) == {"data": [], "next": None}


async def test_schema_violation_message(admin: Admin) -> None:
    err = await admin.ok("POST", "/upstreams", 400, json={"name": "my.upstream", "hash_on": "consumer",
                                                          "hash_fallback": "consumer"})
    assert err == {
        "code": 2,
        "name": "schema violation",
        "message": "2 schema violations (failed conditional validation given value of field 'hash_on'; "
                   "hash_fallback: expected one of: none, ip, header, cookie, path, query_arg, uri_capture)",
        "fields": {"@entity": [COND_HASH_ON],
                   "hash_fallback": "expected one of: none, ip, header, cookie, path, query_arg, uri_capture"},
    }


@pytest.mark.parametrize("kind", KINDS)
async def test_conflict_is_409(admin: Admin, kind: str) -> None:
    await admin.ok("POST", "/upstreams", 201, **_body(kind, {"name": "my.upstream"}))
    err = await admin.ok("POST", "/upstreams", 409, **_body(kind, {"name": "my.upstream"}))
    assert err == {"code": 5, "name": "unique constraint violation",
                   "message": "UNIQUE violation detected on '{name=\"my.upstream\"}'", "fields": {"name": "my.upstream"}}


@pytest.mark.parametrize("kind", KINDS)
async def test_put_creates_then_replaces(admin: Admin, kind: str) -> None:
    up = await admin.ok("PUT", "/upstreams/my-upstream", 200, **_body(kind, {"created_at": 1461276890000}))
    assert (up["name"], up["created_at"], up["slots"]) == ("my-upstream", 1461276890000, 10000)
    created = await admin.ok("POST", "/upstreams", 201, **_body(kind, {"name": "other", "slots": 100}))
    new = await admin.ok("PUT", f"/upstreams/{created['id']}", 200,
                         **_body(kind, {"name": "my-new-upstream", "slots": 123, "created_at": created["created_at"]}))
    assert (new["id"], new["name"], new["slots"]) == (created["id"], "my-new-upstream", 123)
    # a replace: what was not given is back to its default
    patched = await admin.ok("PATCH", f"/upstreams/{created['id']}", 200, json={"hash_on": "ip"})
    assert patched["algorithm"] == "consistent-hashing"
    replaced = await admin.ok("PUT", f"/upstreams/{created['id']}", 200, json={"name": "my-new-upstream"})
    assert (replaced["hash_on"], replaced["algorithm"], replaced["slots"]) == ("none", "round-robin", 10000)


@pytest.mark.parametrize("kind", KINDS)
async def test_put_errors(admin: Admin, kind: str) -> None:
    err = await admin.ok("PUT", "/upstreams/00000000-0000-0000-0000-000000000001", 400, **_body(kind, {}))
    assert err["message"] == "schema violation (name: required field missing)"
    err = await admin.ok("PUT", "/upstreams/1.2.3.4", 400, **_body(kind, {"created_at": 1461276890000}))
    assert err == {"code": 10, "name": "invalid unique name",
                   "message": "Invalid name ('1.2.3.4'); no ip addresses allowed"}


async def test_get_pages_and_filters(admin: Admin) -> None:
    for i in range(10):
        await admin.ok("POST", "/upstreams", 201, json={"name": f"u{i}.test", "tags": ["even" if i % 2 else "odd"]})
    assert len((await admin.ok("GET", "/upstreams", 200))["data"]) == 10
    pages: list[Any] = []
    offset = None
    for i in range(4):
        page = await admin.ok("GET", "/upstreams?size=3" + (f"&offset={offset}" if offset else ""), 200)
        assert len(page["data"]) == (3 if i < 3 else 1)
        assert page not in pages
        offset = page.get("offset")
        pages.append(page)
    assert offset is None and pages[-1]["next"] is None
    assert pages[0]["next"] == f"/upstreams?offset={pages[0]['offset']}&size=3"
    assert (await admin.ok("GET", "/upstreams?foo=bar", 200))["data"]
    r = await admin.get("/upstreams", data="this fails if decoded as json", headers={"Content-Type": "application/json"})
    assert r.status == 200
    err = await admin.ok("GET", "/upstreams?tags=", 400)
    assert err["message"] == "invalid option (tags: cannot be null)"
    tagged = await admin.ok("GET", "/upstreams?tags=even", 200)
    assert len(tagged["data"]) == 5 and all(u["tags"] == ["even"] for u in tagged["data"])
    one = await admin.ok("GET", "/upstreams?tags=odd&size=2", 200)
    assert one["next"].endswith("&tags=odd&size=2")
    tag_rows = (await admin.ok("GET", "/tags/odd", 200))["data"]
    assert len(tag_rows) == 5 and {t["entity_name"] for t in tag_rows} == {"upstreams"}


async def test_get_by_id_or_name(admin: Admin) -> None:
    up = await admin.ok("POST", "/upstreams", 201, json={"name": "my.upstream"})
    assert await admin.ok("GET", f"/upstreams/{up['id']}", 200) == up
    assert await admin.ok("GET", "/upstreams/my.upstream", 200) == up
    assert await admin.ok("GET", "/upstreams/other.upstream", 404) == {"message": "Not found"}
    assert await admin.ok("GET", f"/upstreams/{uuid.uuid4()}", 404) == {"message": "Not found"}
    r = await admin.request("HEAD", "/upstreams/my.upstream")
    assert (r.status, r.body) == (200, b"")


async def test_delete(admin: Admin) -> None:
    a = await admin.ok("POST", "/upstreams", 201, json={"name": "my-upstream", "slots": 100})
    await admin.ok("DELETE", f"/upstreams/{a['id']}", 204)
    await admin.ok("POST", "/upstreams", 201, json={"name": "my-upstream", "slots": 100})
    await admin.ok("DELETE", "/upstreams/my-upstream", 204)
    await admin.ok("DELETE", "/upstreams/my-upstream", 204)  # gone already: still 204
    # after deleting its target (regression #4317), and with a target left
    await admin.ok("POST", "/upstreams", 201, json={"name": "my-upstream"})
    await admin.ok("POST", "/upstreams/my-upstream/targets", 201, json={"target": "127.0.0.1:8000"})
    await admin.ok("DELETE", "/upstreams/my-upstream/targets/127.0.0.1:8000", 204)
    await admin.ok("GET", "/upstreams/my-upstream", 200)
    await admin.ok("POST", "/upstreams/my-upstream/targets", 201, json={"target": "127.0.0.1:8000"})
    await admin.ok("DELETE", "/upstreams/my-upstream", 204)
    assert await admin.store.all("targets") == []


async def test_methods(admin: Admin) -> None:
    assert await admin.ok("DELETE", "/upstreams", 405) == {"message": "Method not allowed"}
    r = await admin.request("OPTIONS", "/upstreams")
    assert (r.status, r.headers["Allow"]) == (204, "GET, HEAD, OPTIONS, POST")
    r = await admin.request("OPTIONS", "/upstreams/u")
    assert (r.status, r.headers["Allow"]) == (204, "DELETE, GET, HEAD, OPTIONS, PATCH, PUT")


# ---------------------------------------------------------------------------------------------
# Kong's shorthands: hash_on picks the algorithm, an algorithm that hashes nothing resets hash_on


async def test_algorithm_and_hash_on_shorthands(admin: Admin) -> None:
    up = await admin.ok("POST", "/upstreams", 201, json={"name": "a", "algorithm": "least-connections",
                                                         "hash_on": "ip"})
    assert (up["algorithm"], up["hash_on"]) == ("least-connections", "none")
    up = await admin.ok("PATCH", "/upstreams/a", 200, json={"hash_on": "header", "hash_on_header": "X-Key"})
    assert (up["algorithm"], up["hash_on"]) == ("consistent-hashing", "header")
    up = await admin.ok("PATCH", "/upstreams/a", 200, json={"hash_on": "none"})
    assert (up["algorithm"], up["hash_on"]) == ("round-robin", "none")
    up = await admin.ok("PATCH", "/upstreams/a", 200, json={"algorithm": "consistent-hashing", "hash_on": "ip"})
    assert (up["algorithm"], up["hash_on"]) == ("consistent-hashing", "ip")
    up = await admin.ok("PATCH", "/upstreams/a", 200, json={"hash_on": None})
    assert (up["algorithm"], up["hash_on"]) == ("consistent-hashing", "none")
    up = await admin.ok("PATCH", "/upstreams/a", 200, json={"algorithm": "latency"})
    assert (up["algorithm"], up["hash_on"]) == ("latency", "none")
    # servegate's own algorithms hash nothing from hash_on either
    for algorithm in ("least-outstanding", "prefix-affinity"):
        up = await admin.ok("PATCH", "/upstreams/a", 200, json={"algorithm": algorithm, "hash_on": "none"})
        assert (up["algorithm"], up["hash_on"]) == (algorithm, "none")
    err = await admin.ok("PATCH", "/upstreams/a", 400, json={"algorithm": "random"})
    assert err["fields"] == {"algorithm": "expected one of: consistent-hashing, least-connections, round-robin, "
                                          "latency, least-outstanding, prefix-affinity"}
    err = await admin.ok("PATCH", "/upstreams/a", 400, json={"hash_on": 5})
    assert err["fields"] == {"hash_on": "expected a string"}
    up = await admin.ok("PATCH", "/upstreams/a", 200, form={"hash_on": ""})  # an empty form value is null
    assert up["hash_on"] == "none"


async def test_servegate_fields(admin: Admin) -> None:
    up = await admin.ok("POST", "/upstreams", 201, json={"name": "llm", "algorithm": "prefix-affinity",
                                                         "prefix_chars": 512, "load_factor": 0.5,
                                                         "retry_on_overload": False})
    assert (up["prefix_chars"], up["load_factor"], up["retry_on_overload"]) == (512, 0.5, False)
    up = await admin.ok("PATCH", "/upstreams/llm", 200, form={"prefix_chars": "4096", "load_factor": "1.5",
                                                              "retry_on_overload": "true"})
    assert (up["prefix_chars"], up["load_factor"], up["retry_on_overload"]) == (4096, 1.5, True)
    err = await admin.ok("PATCH", "/upstreams/llm", 400, json={"prefix_chars": 0, "load_factor": 101,
                                                               "retry_on_overload": None})
    assert err["fields"] == {"prefix_chars": "value should be between 1 and 1000000",
                             "load_factor": "value should be between 0 and 100",
                             "retry_on_overload": "required field missing"}


# ---------------------------------------------------------------------------------------------
# healthchecks: nested defaults, deep PATCH, forms


async def test_healthchecks_from_forms_and_multipart(admin: Admin) -> None:
    form = [("name", "f.test"), ("healthchecks.active.healthy.interval", "5"),
            ("healthchecks.active.unhealthy.http_statuses", "500"),
            ("healthchecks.active.unhealthy.http_statuses", "502"),
            ("healthchecks.passive.unhealthy.tcp_failures", "3"), ("healthchecks.threshold", "50.5"),
            ("healthchecks.active.https_verify_certificate", "false"),
            ("healthchecks.active.headers.x-probe", "yes")]
    up = await admin.ok("POST", "/upstreams", 201, form=form)
    hc = up["healthchecks"]
    assert hc["active"]["healthy"] == {"interval": 5, "http_statuses": [200, 302], "successes": 0}
    assert hc["active"]["unhealthy"]["http_statuses"] == [500, 502]
    assert hc["active"]["https_verify_certificate"] is False
    assert hc["active"]["headers"] == {"x-probe": ["yes"]}
    assert hc["passive"]["unhealthy"]["tcp_failures"] == 3 and hc["threshold"] == 50.5
    assert hc["passive"]["healthy"] == DEFAULT_HEALTHCHECKS["passive"]["healthy"]
    up = await admin.ok("POST", "/upstreams", 201,
                        multipart={"name": "m.test", "healthchecks.active.timeout": "2.5",
                                   "healthchecks.active.concurrency": "3"})
    assert (up["healthchecks"]["active"]["timeout"], up["healthchecks"]["active"]["concurrency"]) == (2.5, 3)
    err = await admin.ok("POST", "/upstreams", 400, form={"name": "e.test", "healthchecks.active.concurrency": "x"})
    assert err["fields"] == {"healthchecks": {"active": {"concurrency": "expected an integer"}}}
    # Kong's message renders what is nested deeper than one level with pl.pretty
    assert err["message"] == 'schema violation (healthchecks.active: {\n  concurrency = "expected an integer"\n})'


async def test_healthchecks_patch_merges(admin: Admin) -> None:
    await admin.ok("POST", "/upstreams", 201, json={"name": "p.test"})
    up = await admin.ok("PATCH", "/upstreams/p.test", 200, json={
        "healthchecks": {"passive": {"healthy": {"successes": 1},
                                     "unhealthy": {"tcp_failures": 1, "http_failures": 1, "timeouts": 1}}}})
    hc = up["healthchecks"]
    assert hc["active"] == DEFAULT_HEALTHCHECKS["active"]
    assert hc["passive"]["healthy"]["successes"] == 1
    assert hc["passive"]["healthy"]["http_statuses"] == DEFAULT_HEALTHCHECKS["passive"]["healthy"]["http_statuses"]
    assert hc["passive"]["unhealthy"] == {"http_statuses": [429, 500, 503], "tcp_failures": 1, "timeouts": 1,
                                          "http_failures": 1}
    up = await admin.ok("PATCH", "/upstreams/p.test", 200, json={"healthchecks": {"active": {"healthy": {"interval": 1}}}})
    assert up["healthchecks"]["active"]["healthy"]["interval"] == 1
    assert up["healthchecks"]["passive"]["unhealthy"]["tcp_failures"] == 1  # kept
    err = await admin.ok("PATCH", "/upstreams/p.test", 400, json={"healthchecks": {"active": {"http_path": "ovo"},
                                                                                   "threshold": 101}})
    assert err["fields"] == {"healthchecks": {"active": {"http_path": "should start with: /"},
                                              "threshold": "value should be between 0 and 100"}}


# ---------------------------------------------------------------------------------------------
# schemas and the endpoint list


async def test_schemas(admin: Admin) -> None:
    schema = await admin.ok("GET", "/schemas/upstreams", 200)
    fields = {name: f for item in schema["fields"] for name, f in item.items()}
    assert list(fields)[:4] == ["id", "created_at", "name", "updated_at"]
    assert fields["name"]["required"] and fields["name"]["unique"]
    assert fields["slots"] == {"type": "integer", "between": [10, 65536], "default": 10000}
    assert fields["healthchecks"]["default"] == DEFAULT_HEALTHCHECKS
    assert schema["endpoint_key"] == "name"
    targets = await admin.ok("GET", "/schemas/targets", 200)
    tfields = {name: f for item in targets["fields"] for name, f in item.items()}
    assert tfields["created_at"] == {"type": "number", "auto": True, "timestamp": True}
    assert tfields["upstream"]["reference"] == "upstreams" and tfields["upstream"]["on_delete"] == "cascade"
    assert tfields["weight"] == {"type": "integer", "between": [0, 65535], "default": 100}
    assert targets["endpoint_key"] == "target"
    ok = await admin.ok("POST", "/schemas/upstreams/validate", 200, json={"name": "v.test"})
    assert ok == {"message": "schema validation successful"}
    err = await admin.ok("POST", "/schemas/upstreams/validate", 400, json={"name": "v.test:80"})
    assert err["fields"] == {"name": "Invalid name ('v.test:80'); no port allowed"}


async def test_endpoints_list(admin: Admin) -> None:
    paths = (await admin.ok("GET", "/endpoints", 200))["data"]
    for p in ("/upstreams", "/upstreams/{upstreams}", "/upstreams/{upstreams}/health",
              "/upstreams/{upstreams}/targets", "/upstreams/{upstreams}/targets/all",
              "/upstreams/{upstreams}/targets/{targets}", "/upstreams/{upstreams}/targets/{targets}/healthy",
              "/upstreams/{upstreams}/targets/{targets}/unhealthy",
              "/upstreams/{upstreams}/targets/{targets}/{address}/healthy",
              "/upstreams/{upstreams}/targets/{targets}/{address}/unhealthy"):
        assert p in paths, p
    assert not [p for p in paths if p.startswith("/targets")]


async def test_client_certificate_is_kept(admin: Admin) -> None:
    cert = str(uuid.uuid4())
    up = await admin.ok("POST", "/upstreams", 201, json={"name": "c.test", "client_certificate": {"id": cert}})
    assert up["client_certificate"] == {"id": cert}
    err = await admin.ok("POST", "/upstreams", 400, json={"name": "d.test", "client_certificate": {"id": "x"}})
    assert err["fields"] == {"client_certificate": {"id": "expected a valid UUID"}}
