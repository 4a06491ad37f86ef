"""upstreams and targets declarations: defaults, rules and messages (cases from Kong's 08-targets_spec and
09-upstreams_spec), and the declaration features they brought (record defaults, conditional and distinct checks,
normalizers, null shorthands, millisecond timestamps)."""

from __future__ import annotations

from typing import Any

import pytest
from schema_cases import A_UUID, NOW, errors_of, row_of

from servegate.schema import checks
from servegate.schema.defaults import record_with_defaults
from servegate.schema.fields import Entity, Field
from servegate.schema.upstreams import (
    TARGETS,
    UPSTREAMS,
    address_key,
    parse_address,
    same_address,
    split_target,
    upstream_targets,
)
from servegate.schema.validate import validate_row

UP = {"id": A_UUID}


def _leaf(err: Any) -> Any:
    while isinstance(err, dict | list):
        err = next(iter(err.values())) if isinstance(err, dict) else next(e for e in err if e is not None)
    return err


def test_upstream_defaults() -> None:
    row = row_of(UPSTREAMS, {"name": "www.example.com"})
    assert (row["created_at"], row["updated_at"]) == (NOW, NOW)
    assert (row["hash_on"], row["hash_fallback"], row["hash_on_cookie_path"], row["slots"]) == ("none", "none", "/",
                                                                                               10000)
    assert (row["algorithm"], row["use_srv_name"]) == ("round-robin", False)
    hc = row["healthchecks"]
    assert hc["active"] == {
        "type": "http", "timeout": 1, "concurrency": 10, "http_path": "/", "https_sni": None,
        "https_verify_certificate": True, "headers": None,
        "healthy": {"interval": 0, "http_statuses": [200, 302], "successes": 0},
        "unhealthy": {"interval": 0, "http_statuses": [429, 404, 500, 501, 502, 503, 504, 505],
                      "tcp_failures": 0, "timeouts": 0, "http_failures": 0},
    }
    assert hc["passive"]["unhealthy"] == {"http_statuses": [429, 500, 503], "tcp_failures": 0, "timeouts": 0,
                                          "http_failures": 0}
    assert hc["threshold"] == 0
    assert (row["prefix_chars"], row["load_factor"], row["retry_on_overload"]) == (2048, 0.25, True)
    assert row_of(UPSTREAMS, {"name": "www.example.com", "use_srv_name": True})["use_srv_name"] is True


def test_valid_upstream() -> None:
    body = {"id": A_UUID, "name": "my_service", "hash_on": "header", "hash_on_header": "X-Balance",
            "hash_fallback": "cookie", "hash_on_cookie": "a_cookie"}
    assert errors_of(UPSTREAMS, body) == {}


@pytest.mark.parametrize(("name", "message"), [
    ("123.123.123.123", "Invalid name ('123.123.123.123'); no ip addresses allowed"),
    ("\\\\bad\\\\////name////", "Invalid name ('\\\\bad\\\\////name////'); must be a valid hostname"),
    ("name:80", "Invalid name ('name:80'); no port allowed"),
    ("1234", "Invalid name ('1234'); must be a valid hostname"),
    ("fafa fafa", "Invalid name ('fafa fafa'); must be a valid hostname"),
    ("myserver:8000", "Invalid name ('myserver:8000'); no port allowed"),
    ("::1", "Invalid name ('::1'); no ip addresses allowed"),
])
def test_upstream_name(name: str, message: str) -> None:
    assert errors_of(UPSTREAMS, {"name": name}) == {"name": message}


def test_upstream_name_is_required_and_valid_names_pass() -> None:
    assert errors_of(UPSTREAMS, {}) == {"name": "required field missing"}
    assert errors_of(UPSTREAMS, {"name": "valid.host.name"}) == {}


@pytest.mark.parametrize(("host_header", "message"), [
    ("http://ahostname.test", "invalid hostname: http://ahostname.test"),
    ("ahostname-", "invalid hostname: ahostname-"),
    ("a hostname", "invalid hostname: a hostname"),
    ("a.hostname.test:99999", "invalid port number"),
])
def test_host_header(host_header: str, message: str) -> None:
    assert errors_of(UPSTREAMS, {"name": "host.test", "host_header": host_header}) == {"host_header": message}


@pytest.mark.parametrize("host_header", ["ahostname", "a.hostname.test", "a.hostname.test:8080", "[::1]:80"])
def test_valid_host_header(host_header: str) -> None:
    assert errors_of(UPSTREAMS, {"name": "host.test", "host_header": host_header}) == {}


SECONDS = "value should be between 0 and 65535"
POS_INT = "value should be between 1 and 2147483648"
BYTE = "value should be between 0 and 255"
STATUS = "value should be between 100 and 999"
THRESHOLD = "value should be between 0 and 100"

# Kong's "rejects invalid configurations", in JSON terms
INVALID_HEALTHCHECKS: list[tuple[dict[str, Any], str]] = [
    ({"active": {"timeout": -1}}, SECONDS),
    ({"active": {"timeout": 1e42}}, SECONDS),
    ({"active": {"concurrency": 0.5}}, "expected an integer"),
    ({"active": {"concurrency": 0}}, POS_INT),
    ({"active": {"concurrency": -10}}, POS_INT),
    ({"active": {"http_path": ""}}, "length must be at least 1"),
    ({"active": {"http_path": "ovo"}}, "should start with: /"),
    ({"active": {"https_sni": "127.0.0.1"}}, "must not be an IP"),
    ({"active": {"https_sni": "127.0.0.1:8080"}}, "must not be an IP"),
    ({"active": {"https_sni": "/example"}}, "invalid value: /example"),
    ({"active": {"https_sni": ".example"}}, "invalid value: .example"),
    ({"active": {"https_sni": "example:"}}, "invalid value: example:"),
    ({"active": {"https_sni": "mock;bin"}}, "invalid value: mock;bin"),
    ({"active": {"https_sni": "example.com/org"}}, "invalid value: example.com/org"),
    ({"active": {"https_sni": "example-.org"}}, "invalid value: example-.org"),
    ({"active": {"https_sni": "example.org-"}}, "invalid value: example.org-"),
    ({"active": {"https_sni": "hello..example.com"}}, "invalid value: hello..example.com"),
    ({"active": {"https_sni": "hello-.example.com"}}, "invalid value: hello-.example.com"),
    ({"active": {"https_sni": "example.com:1234"}}, "must not have a port"),
    ({"active": {"https_verify_certificate": "ovo"}}, "expected a boolean"),
    ({"active": {"https_verify_certificate": None}}, "required field missing"),
    ({"active": {"headers": 0}}, "expected a map"),
    ({"active": {"headers": ["x"]}}, "expected a map"),
    ({"active": {"headers": {"x-header": 123}}}, "expected an array"),
    ({"active": {"headers": {"bad header": ["v"]}}},
     "bad header name 'bad header', allowed characters are A-Z, a-z, 0-9, '_', and '-'"),
    ({"active": {"type": "udp"}}, "expected one of: tcp, http, https, grpc, grpcs"),
    ({"active": {"healthy": {"interval": -1}}}, SECONDS),
    ({"active": {"healthy": {"interval": 1e42}}}, SECONDS),
    ({"active": {"healthy": {"http_statuses": 404}}}, "expected an array"),
    ({"active": {"healthy": {"http_statuses": ["ovo"]}}}, "expected an integer"),
    ({"active": {"healthy": {"http_statuses": [-1]}}}, STATUS),
    ({"active": {"healthy": {"http_statuses": [99]}}}, STATUS),
    ({"active": {"healthy": {"http_statuses": [1000]}}}, STATUS),
    ({"active": {"healthy": {"http_statuses": [111.314]}}}, "expected an integer"),
    ({"active": {"healthy": {"successes": 0.5}}}, "expected an integer"),
    ({"active": {"healthy": {"successes": -1}}}, BYTE),
    ({"active": {"healthy": {"successes": 256}}}, BYTE),
    ({"active": {"unhealthy": {"timeouts": 1}}, "threshold": -1}, THRESHOLD),
    ({"active": {"unhealthy": {"timeouts": 1}}, "threshold": 101}, THRESHOLD),
    ({"active": {"unhealthy": {"timeouts": 1}}, "threshold": "50"}, "expected a number"),
    ({"active": {"unhealthy": {"timeouts": 1}}, "threshold": True}, "expected a number"),
    ({"active": {"unhealthy": {"interval": -1}}}, SECONDS),
    ({"active": {"unhealthy": {"http_statuses": [1000]}}}, STATUS),
    ({"active": {"unhealthy": {"tcp_failures": 0.5}}}, "expected an integer"),
    ({"active": {"unhealthy": {"tcp_failures": 256}}}, BYTE),
    ({"active": {"unhealthy": {"timeouts": -1}}}, BYTE),
    ({"active": {"unhealthy": {"http_failures": 256}}}, BYTE),
    ({"passive": {"healthy": {"http_statuses": 404}}}, "expected an array"),
    ({"passive": {"healthy": {"http_statuses": [99]}}}, STATUS),
    ({"passive": {"healthy": {"successes": -1}}}, BYTE),
    ({"passive": {"unhealthy": {"http_statuses": ["ovo"]}}}, "expected an integer"),
    ({"passive": {"unhealthy": {"tcp_failures": -1}}}, BYTE),
    ({"passive": {"unhealthy": {"timeouts": 256}}}, BYTE),
    ({"passive": {"unhealthy": {"http_failures": 0.5}}}, "expected an integer"),
    ({"passive": {"type": "ovo"}}, "expected one of: tcp, http, https, grpc, grpcs"),
    ({"passive": {"unhealthy": {"timeouts": 1}}, "threshold": 101}, THRESHOLD),
    ({"active": "on"}, "expected a record"),
]


@pytest.mark.parametrize(("healthchecks", "message"), INVALID_HEALTHCHECKS)
def test_invalid_healthchecks(healthchecks: dict[str, Any], message: str) -> None:
    errs = errors_of(UPSTREAMS, {"name": "x", "healthchecks": healthchecks})
    assert list(errs) == ["healthchecks"] and _leaf(errs) == message, errs


VALID_HEALTHCHECKS: list[dict[str, Any]] = [
    {"active": {"timeout": 0.5}}, {"active": {"timeout": 1}}, {"active": {"concurrency": 2}},
    {"active": {"http_path": "/"}}, {"active": {"http_path": "/test"}}, {"active": {"https_sni": "example.com"}},
    {"active": {"https_sni": "example.test."}}, {"active": {"https_verify_certificate": False}},
    {"active": {"headers": {"x-probe": ["a", "b"]}}},
    {"active": {"healthy": {"interval": 0}}}, {"active": {"healthy": {"http_statuses": [200, 300]}}},
    {"active": {"healthy": {"successes": 2}}}, {"active": {"healthy": {"successes": 255}}},
    {"active": {"unhealthy": {"interval": 0}}}, {"active": {"unhealthy": {"http_statuses": [404]}}},
    {"active": {"unhealthy": {"tcp_failures": 3}}}, {"active": {"unhealthy": {"tcp_failures": 255}}},
    {"active": {"unhealthy": {"timeouts": 9}}}, {"active": {"unhealthy": {"timeouts": 255}}},
    {"active": {"unhealthy": {"http_failures": 2}}}, {"active": {"unhealthy": {"http_failures": 2}}, "threshold": 0},
    {"active": {"unhealthy": {"http_failures": 2}}, "threshold": 50.50},
    {"active": {"unhealthy": {"http_failures": 2}}, "threshold": 100},
    {"passive": {"healthy": {"http_statuses": [200, 201]}}}, {"passive": {"healthy": {"successes": 2}}},
    {"passive": {"healthy": {"successes": 255}}}, {"passive": {"unhealthy": {"http_statuses": [400, 500]}}},
    {"passive": {"unhealthy": {"tcp_failures": 8}}}, {"passive": {"unhealthy": {"tcp_failures": 255}}},
    {"passive": {"unhealthy": {"timeouts": 1}}}, {"passive": {"unhealthy": {"timeouts": 255}}},
    {"passive": {"unhealthy": {"http_failures": 2}}}, {"passive": {"unhealthy": {"http_failures": 255}}},
    {"passive": {"unhealthy": {"http_failures": 2}}, "threshold": 50.50},
]


@pytest.mark.parametrize("healthchecks", VALID_HEALTHCHECKS)
def test_valid_healthchecks(healthchecks: dict[str, Any]) -> None:
    row = row_of(UPSTREAMS, {"name": "x", "healthchecks": healthchecks})
    # what was given is kept, the rest is filled with the defaults
    for part, value in healthchecks.items():
        if isinstance(value, dict):
            for key, sub in value.items():
                got = row["healthchecks"][part][key]
                assert got == sub if not isinstance(sub, dict) else {**got, **sub} == got
        else:
            assert row["healthchecks"][part] == value
    assert row["healthchecks"]["passive"]["type"] == "http"


COND = "failed conditional validation given value of field '%s'"


@pytest.mark.parametrize(("body", "expected"), [
    ({"hash_on": "header"}, {"hash_on_header": "required field missing", "@entity": [COND % "hash_on"]}),
    ({"hash_on": "ip", "hash_fallback": "header"},
     {"hash_fallback_header": "required field missing", "@entity": [COND % "hash_fallback"]}),
    ({"hash_on": "cookie"}, {"hash_on_cookie": "required field missing", "@entity": [COND % "hash_on"]}),
    ({"hash_on": "ip", "hash_fallback": "cookie"},
     {"hash_on_cookie": "required field missing", "@entity": [COND % "hash_fallback"]}),
    ({"hash_on": "cookie", "hash_on_cookie": "c", "hash_fallback": "ip"},
     {"hash_fallback": "expected one of: none", "@entity": [COND % "hash_on"]}),
    ({"hash_on": "ip", "hash_fallback": "ip"},
     {"hash_fallback": "expected one of: none, consumer, header, cookie, path, query_arg, uri_capture",
      "@entity": [COND % "hash_on"]}),
    ({"hash_on": "path", "hash_fallback": "path"},
     {"hash_fallback": "expected one of: none, consumer, header, cookie, query_arg, ip, uri_capture",
      "@entity": [COND % "hash_on"]}),
    ({"hash_on": "query_arg"}, {"hash_on_query_arg": "required field missing", "@entity": [COND % "hash_on"]}),
    ({"hash_on": "ip", "hash_fallback": "query_arg"},
     {"hash_fallback_query_arg": "required field missing", "@entity": [COND % "hash_fallback"]}),
    ({"hash_on": "query_arg", "hash_on_query_arg": "same", "hash_fallback": "query_arg",
      "hash_fallback_query_arg": "same"},
     {"@entity": ["values of these fields must be distinct: 'hash_on_query_arg', 'hash_fallback_query_arg'"]}),
    ({"hash_on": "query_arg", "hash_on_query_arg": ""},
     {"hash_on_query_arg": "length must be at least 1", "@entity": [COND % "hash_on"]}),
    ({"hash_on": "uri_capture", "hash_on_uri_capture": "same", "hash_fallback": "uri_capture",
      "hash_fallback_uri_capture": "same"},
     {"@entity": ["values of these fields must be distinct: 'hash_on_uri_capture', 'hash_fallback_uri_capture'"]}),
    ({"hash_on": "uri_capture", "hash_on_uri_capture": "ok", "hash_fallback": "uri_capture",
      "hash_fallback_uri_capture": ""},
     {"hash_fallback_uri_capture": "length must be at least 1", "@entity": [COND % "hash_fallback"]}),
    ({"hash_on_cookie": "a cookie"},
     {"hash_on_cookie": "contains one or more invalid characters. ASCII control characters (0-31;127), space, tab "
                        'and the characters ()<>@,;:\\"/?={}[] are not allowed.'}),
])
def test_hash_rules(body: dict[str, Any], expected: dict[str, Any]) -> None:
    assert errors_of(UPSTREAMS, {"name": "test", **body}) == expected


def test_hash_rules_on_the_stored_fields() -> None:
    # without the shorthand (hash_on "none" would force round-robin): Kong's check on hash_fallback
    row = row_of(UPSTREAMS, {"name": "x"})
    assert validate_row(UPSTREAMS, {**row, "hash_fallback": "header", "hash_fallback_header": "X"}) == {
        "hash_fallback": "expected one of: none", "@entity": [COND % "hash_on"]}


def test_shorthands() -> None:
    def algo(body: dict[str, Any], **kw: Any) -> tuple[str, str]:
        row = row_of(UPSTREAMS, {"name": "x", **body}, **kw)
        return row["algorithm"], row["hash_on"]

    assert algo({"hash_on": "ip"}) == ("consistent-hashing", "ip")
    assert algo({"algorithm": "consistent-hashing", "hash_on": "none"}) == ("round-robin", "none")
    assert algo({"algorithm": "consistent-hashing"}) == ("consistent-hashing", "none")
    assert algo({"algorithm": "least-connections", "hash_on": "ip"}) == ("least-connections", "none")
    assert algo({"algorithm": "prefix-affinity", "hash_on": "none"}) == ("prefix-affinity", "none")
    assert algo({"hash_on": None}) == ("round-robin", "none")
    stored = row_of(UPSTREAMS, {"name": "x", "hash_on": "ip"})
    assert algo({"hash_on": None}, op="update", existing=stored) == ("consistent-hashing", "none")
    assert algo({"algorithm": None}, op="update", existing=stored) == ("consistent-hashing", "ip")


def test_target_rules() -> None:
    for target in ("valid.name", "valid.name:8080", "12.34.56.78", "1.2.3.4:123"):
        assert errors_of(TARGETS, {"target": target, "upstream": UP}) == {}
    bad = "\\\\bad\\\\////name////"
    # inserted through the DAO: Kong's targets DAO refuses it before the schema does...
    assert errors_of(TARGETS, {"target": bad, "upstream": UP}) == {
        "target": "Invalid target; not a valid hostname or ip address"}
    # ...the schema's own rule quotes it (what an update reports)
    row = row_of(TARGETS, {"target": "a.test", "upstream": UP})
    assert errors_of(TARGETS, {"target": bad}, op="update", existing=row) == {
        "target": f"Invalid target ('{bad}'); not a valid hostname or ip address"}
    assert errors_of(TARGETS, {"target": "a.test", "upstream": UP, "weight": 65536}) == {
        "weight": "value should be between 0 and 65535"}
    assert errors_of(TARGETS, {"target": "a.test"}) == {"upstream": "required field missing"}
    assert errors_of(TARGETS, {"target": 5, "upstream": UP}) == {"target": "expected a string"}


def test_target_defaults_and_normalization() -> None:
    row = row_of(TARGETS, {"target": "konghq.test", "upstream": UP}, now=1712345678.1234)
    assert row == {"id": row["id"], "created_at": 1712345678.123, "updated_at": 1712345678.123,
                   "upstream": UP, "target": "konghq.test:8000", "weight": 100, "tags": None}
    updated = row_of(TARGETS, {"target": "::1"}, op="update", existing=row, now=1712345679.5)
    assert updated["target"] == "[0000:0000:0000:0000:0000:0000:0000:0001]:8000"
    assert (updated["created_at"], updated["updated_at"]) == (1712345678.123, 1712345679.5)


def test_target_helpers() -> None:
    assert split_target("[0000:0000:0000:0000:0000:0000:0000:0001]:80") == (
        "[0000:0000:0000:0000:0000:0000:0000:0001]", 80)
    assert split_target("a.test:8000") == ("a.test", 8000)
    # as the balancer's workers name them: the IP as written
    assert address_key("[0000:0000:0000:0000:0000:0000:0000:0001]", 80) == (
        "[0000:0000:0000:0000:0000:0000:0000:0001]:80")
    assert address_key("::1", 80) == "[::1]:80" and address_key("10.0.0.1", 8000) == "10.0.0.1:8000"
    assert parse_address("[::1]:80") == ("::1", 80) and parse_address("10.0.0.1:8000") == ("10.0.0.1", 8000)
    assert parse_address("dns") is None and parse_address("name:80") is None
    assert same_address(("::1", 80), ("0000:0000:0000:0000:0000:0000:0000:0001", 80))
    assert not same_address(("::1", 80), ("::1", 81)) and not same_address(("10.0.0.1", 1), ("10.0.0.2", 1))
    rows = [
        {"id": "b", "created_at": 2.0, "upstream": UP, "target": "b:1"},
        {"id": "a", "created_at": 2.0, "upstream": UP, "target": "a:1"},
        {"id": "c", "created_at": 1.0, "upstream": UP, "target": "c:1"},
        {"id": "d", "created_at": 3.0, "upstream": {"id": "other"}, "target": "d:1"},
    ]
    assert [r["id"] for r in upstream_targets(rows, A_UUID)] == ["b", "a", "c"]


def test_format_host() -> None:
    assert checks.format_host("001.002.003.004:123", 8000) == ("1.2.3.4:123", None)
    assert checks.format_host("::1") == ("[0000:0000:0000:0000:0000:0000:0000:0001]", None)
    assert checks.format_host("[::1]:80", 1) == ("[0000:0000:0000:0000:0000:0000:0000:0001]:80", None)
    assert checks.format_host("Name.Test", 8000) == ("Name.Test:8000", None)
    assert checks.format_host("bad name", 8000) == (None, "invalid hostname: bad name")
    assert checks.format_host("h:70000", 8000) == (None, "invalid port number")


# ---------------------------------------------------------------------------------------------
# the general declaration features, on a throw-away entity


def test_record_with_defaults() -> None:
    rec = record_with_defaults(("a", Field("integer", default=1)), ("b", Field("string")),
                               ("c", record_with_defaults(("d", Field("boolean", default=True)))))
    assert rec.default == {"a": 1, "b": None, "c": {"d": True}}
    e = Entity(name="things", fields=(("id", Field("string", uuid=True, auto=True)), ("r", rec)))
    assert row_of(e, {})["r"] == {"a": 1, "b": None, "c": {"d": True}}
    assert row_of(e, {"r": {"c": {}}})["r"] == {"a": 1, "b": None, "c": {"d": True}}
    assert row_of(e, {"r": None})["r"] is None  # not required: an explicit null stays


def test_conditional_and_distinct() -> None:
    then = Field("string", one_of=("x", "y", "z"))
    cond = checks.conditional("k", "on", "v", then, one_of=("x",))
    assert cond({"k": "off", "v": "y"}) is None
    assert cond({"k": "on", "v": None}) is None
    assert cond({"k": "on", "v": "x"}) is None
    assert cond({"k": "on", "v": "y"}) == {"v": "expected one of: x", "@entity": [COND % "k"]}
    req = checks.conditional("k", "on", "v", Field("string"), required=True)
    assert req({"k": "on"}) == {"v": "required field missing", "@entity": [COND % "k"]}
    assert req({"k": "on", "v": 5}) == {"v": "expected a string", "@entity": [COND % "k"]}
    dist = checks.distinct("a", "b")
    assert dist({"a": "1", "b": "2"}) is None and dist({"a": "", "b": ""}) is None
    assert dist({"a": "1", "b": "1"}) == ["values of these fields must be distinct: 'a', 'b'"]
