"""services: defaults, url shorthand, field rules (cases from Kong's 05-services_spec and
10-services_routes_spec)."""

from __future__ import annotations

import pytest
from schema_cases import A_UUID, NOW, error_of, errors_of, row_of

from servegate.schema.entities import SERVICES
from servegate.schema.urls import parse_url

BASE = {"host": "example.com"}


def test_defaults() -> None:
    row = row_of(SERVICES, {"host": "www.example.com"})
    assert row == {
        "id": row["id"],
        "created_at": NOW,
        "updated_at": NOW,
        "name": None,
        "retries": 5,
        "protocol": "http",
        "host": "www.example.com",
        "port": 80,
        "path": None,
        "connect_timeout": 60000,
        "write_timeout": 60000,
        "read_timeout": 60000,
        "tags": None,
        "client_certificate": None,
        "tls_verify": None,
        "tls_verify_depth": None,
        "ca_certificates": None,
        "enabled": True,
    }
    assert len(row["id"]) == 36 and row["id"] != row_of(SERVICES, BASE)["id"]


def test_https_protocol_keeps_port_80() -> None:
    assert row_of(SERVICES, {"host": "h", "protocol": "https"})["port"] == 80


def test_given_id_is_kept_and_checked() -> None:
    assert row_of(SERVICES, {**BASE, "id": A_UUID})["id"] == A_UUID
    assert errors_of(SERVICES, {**BASE, "id": "blergh"}) == {"id": "expected a valid UUID"}


# (url, protocol, host, port, path)
URLS = [
    ("http://service.test/", "http", "service.test", 80, "/"),
    ("https://service.test/", "https", "service.test", 443, "/"),
    ("http://example.test:443", "http", "example.test", 443, None),
    ("https://example2.test:80/", "https", "example2.test", 80, "/"),
    ("http://h", "http", "h", 80, None),
    ("grpc://h:15002", "grpc", "h", 15002, None),
    ("http://user:pw@h:8000/p/q?x=1#frag", "http", "h", 8000, "/p/q"),
    ("http://[::1]:8000/v1", "http", "::1", 8000, "/v1"),
    ("http://vllm:8000/v1/", "http", "vllm", 8000, "/v1/"),
]


@pytest.mark.parametrize(("url", "protocol", "host", "port", "path"), URLS)
def test_url_shorthand(url, protocol, host, port, path) -> None:
    row = row_of(SERVICES, {"url": url})
    assert (row["protocol"], row["host"], row["port"], row["path"]) == (protocol, host, port, path)
    assert "url" not in row


def test_url_without_scheme_infers_protocol_from_port() -> None:
    assert parse_url("//h:443/x") == {"authority": "h:443", "path": "/x", "host": "h", "port": "443"}
    row = row_of(SERVICES, {"url": "//h:443/x"})
    assert (row["protocol"], row["port"]) == ("https", 443)


def test_url_overrides_fields_in_body() -> None:
    row = row_of(SERVICES, {"url": "https://a.test/x", "host": "b.test", "port": 1, "protocol": "http"})
    assert (row["protocol"], row["host"], row["port"], row["path"]) == ("https", "a.test", 443, "/x")


def test_url_patch_resets_path() -> None:
    existing = row_of(SERVICES, {"url": "http://a.test/old"})
    row = row_of(SERVICES, {"url": "http://example.test:443"}, op="update", existing=existing, now=NOW + 5)
    assert (row["protocol"], row["host"], row["port"], row["path"]) == ("http", "example.test", 443, None)
    assert row["created_at"] == NOW and row["updated_at"] == NOW + 5
    assert row["id"] == existing["id"]


def test_invalid_url_messages() -> None:
    err = error_of(SERVICES, {"url": "invalid url"})
    assert err.to_json() == {
        "code": 2,
        "name": "schema violation",
        "message": "2 schema violations (host: required field missing; path: should start with: /)",
        "fields": {"host": "required field missing", "path": "should start with: /"},
    }
    assert errors_of(SERVICES, {"url": ""}) == {"url": "length must be at least 1"}
    assert errors_of(SERVICES, {"url": 5}) == {"url": "expected a string"}
    assert errors_of(SERVICES, {"url": " "}) != {}
    assert errors_of(SERVICES, {"url": "http://h:abc/"}) == {"port": "expected an integer"}


# (body, field, message): each body is BASE plus the given fields
FIELD_ERRORS = [
    ({"protocol": None}, "protocol", "required field missing"),
    (
        {"protocol": "ftp"},
        "protocol",
        "expected one of: grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp",
    ),
    ({"retries": -1}, "retries", "value should be between 0 and 32767"),
    ({"retries": 10000000000}, "retries", "value should be between 0 and 32767"),
    ({"retries": "5"}, "retries", "expected an integer"),
    ({"retries": 2.5}, "retries", "expected an integer"),
    ({"port": 65536}, "port", "value should be between 0 and 65535"),
    ({"connect_timeout": 0}, "connect_timeout", "value should be between 1 and 2147483646"),
    ({"read_timeout": 0}, "read_timeout", "value should be between 1 and 2147483646"),
    ({"write_timeout": 0}, "write_timeout", "value should be between 1 and 2147483646"),
    ({"path": False}, "path", "expected a string"),
    ({"path": ""}, "path", "length must be at least 1"),
    ({"path": "foo"}, "path", "should start with: /"),
    ({"path": "/foo//bar"}, "path", "must not have empty segments"),
    ({"path": "/foo/bar//"}, "path", "must not have empty segments"),
    ({"path": "//foo/bar"}, "path", "must not have empty segments"),
    (
        {"path": "/users/|foo/profile"},
        "path",
        "invalid path: '/users/|foo/profile' (characters outside of the reserved list of RFC 3986 found)",
    ),
    (
        {"path": "/users/(this|foo/profile)"},
        "path",
        "invalid path: '/users/(this|foo/profile)' (characters outside of the reserved list of RFC 3986 found)",
    ),
    ({"path": "/some%2words"}, "path", "invalid url-encoded value: '%2w'"),
    ({"path": "/some%0Xwords"}, "path", "invalid url-encoded value: '%0X'"),
    ({"path": "/some%2Gwords"}, "path", "invalid url-encoded value: '%2G'"),
    ({"path": "/some%20words%"}, "path", "invalid url-encoded value: '%'"),
    ({"path": "/some%20words%a"}, "path", "invalid url-encoded value: '%a'"),
    ({"path": "/some%20words%ax"}, "path", "invalid url-encoded value: '%ax'"),
    ({"host": False}, "host", "expected a string"),
    ({"host": ""}, "host", "length must be at least 1"),
    ({"host": "example.com:80"}, "host", "must not have a port"),
    ({"host": "example.com:1000000"}, "host", "must not have a port"),
    ({"host": "1.2.3.4:80"}, "host", "must not have a port"),
    ({"name": False}, "name", "expected a string"),
    ({"name": ""}, "name", "length must be at least 1"),
    (
        {"tags": ["a,b"]},
        "tags",
        ["invalid tag 'a,b': expected printable ascii (except `,` and `/`) or valid utf-8 sequences"],
    ),
    ({"tags": "t"}, "tags", "expected a set"),
    ({"enabled": "yes"}, "enabled", "expected a boolean"),
    ({"tls_verify_depth": 65, "protocol": "https"}, "tls_verify_depth", "value should be between 0 and 64"),
    ({"ca_certificates": ["nope"], "protocol": "https"}, "ca_certificates", ["expected a valid UUID"]),
    ({"foo": 1}, "foo", "unknown field"),
    ({"routes": []}, "routes", "unknown field"),
]


@pytest.mark.parametrize(("body", "field", "message"), FIELD_ERRORS)
def test_field_errors(body, field, message) -> None:
    assert errors_of(SERVICES, {**BASE, **body}) == {field: message}


INVALID_HOSTS = [
    "/example", ".example", "example:", "mock;bin", "example.com/org", "example-.org", "example.org-",
    "hello..example.com", "hello-.example.com", "*example.com", "www.example*", "mock*bin.com",
    "1.2.3", "256.1.1.1",
]  # fmt: skip


@pytest.mark.parametrize("host", INVALID_HOSTS)
def test_invalid_hosts(host: str) -> None:
    assert errors_of(SERVICES, {"host": host}) == {"host": f"invalid value: {host}"}


VALID_HOSTS = [
    "hello.com", "hello.fr", "test.hello.com", "1991.io", "hello.COM", "HELLO.com", "123helloWORLD.com",
    "example.123", "example-api.com", "hello.abcd", "example_api.com", "localhost", "example.test.",
    "3B-ww4c5e180e575a65lsy2b", "-with-SUPER-MONKEYS-pc58ag80a8qai00g7n9n",
    "Hello-Another-Way--fc4qua05auwb3674vfr0b", "2-u9tlzr9756bt3uc0v", "MajiKoi5-783gue6qz075azm5e",
    "de-jg4avhby1noc0d", "d9juau41awczczp", "10.0.0.1", "::1", "[::1]", "fe80::1",
]  # fmt: skip


@pytest.mark.parametrize("host", VALID_HOSTS)
def test_valid_hosts(host: str) -> None:
    assert errors_of(SERVICES, {"host": host}) == {}


VALID_PATHS = ["/", "/abcd~user~2", "/abcd%aa%10%ff%AA%FF", "/ovo/", "/hello/path$with$!&'()*+,;=stuff"]


@pytest.mark.parametrize("path", VALID_PATHS)
def test_valid_paths(path: str) -> None:
    assert errors_of(SERVICES, {**BASE, "path": path}) == {}


INVALID_NAMES = ["examp:le", "examp;le", "examp/le", "examp le"]
VALID_NAMES = ["example", "EXAMPLE", "exa.mp.le", "3x4mp13", "3x4-mp-13", "3x4_mp_13", "~3x4~mp~13",
               "~3..x4~.M-p~1__3_", "孔", "Конг", "🦍"]  # fmt: skip


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_invalid_names(name: str) -> None:
    assert errors_of(SERVICES, {**BASE, "name": name}) == {
        "name": f"invalid value '{name}': the only accepted ascii characters are alphanumerics or ., -, _, and ~"
    }


@pytest.mark.parametrize("name", VALID_NAMES)
def test_valid_names(name: str) -> None:
    assert errors_of(SERVICES, {**BASE, "name": name}) == {}


@pytest.mark.parametrize("protocol", ["tcp", "tls", "udp", "grpc", "grpcs"])
def test_stream_and_grpc_protocols_refuse_a_path(protocol: str) -> None:
    assert errors_of(SERVICES, {"host": "x.y", "protocol": protocol}) == {}
    assert errors_of(SERVICES, {"host": "x.y", "protocol": protocol, "path": "/"}) == {
        "path": "value must be null",
        "@entity": ["failed conditional validation given value of field 'protocol'"],
    }


def test_tls_fields_need_https() -> None:
    assert errors_of(SERVICES, {**BASE, "protocol": "https", "tls_verify": True}) == {}
    assert errors_of(SERVICES, {**BASE, "protocol": "http", "tls_verify": True}) == {
        "tls_verify": "value must be null",
        "@entity": ["failed conditional validation given value of field 'protocol'"],
    }


def test_tags_are_deduplicated() -> None:
    assert row_of(SERVICES, {**BASE, "tags": ["a", "b", "a"]})["tags"] == ["a", "b"]
    assert row_of(SERVICES, {**BASE, "tags": ["with space", "é"]})["tags"] == ["with space", "é"]
