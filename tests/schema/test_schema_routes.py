"""routes: protocol groups, matching-attribute checks, paths/hosts/headers/methods/snis rules
(cases from Kong's 06-routes_spec and 09-routes_routes_spec)."""

from __future__ import annotations

import pytest
from schema_cases import A_UUID, error_of, errors_of, row_of

from servegate.schema.entities import ROUTES

S = {"id": "a4fbd24e-6a52-4937-bd78-2536713072d2"}
HTTP = {"protocols": ["http"], "paths": ["/x"]}
ONE_OF = "expected one of: grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp"


def test_defaults() -> None:
    row = row_of(ROUTES, {"protocols": ["http"], "service": S, "paths": ["/foo"]})
    assert {k: v for k, v in row.items() if k not in ("id", "created_at", "updated_at")} == {
        "name": None,
        "protocols": ["http"],
        "https_redirect_status_code": 426,
        "strip_path": True,
        "preserve_host": False,
        "request_buffering": True,
        "response_buffering": True,
        "tags": None,
        "service": S,
        "snis": None,
        "sources": None,
        "destinations": None,
        "methods": None,
        "hosts": None,
        "paths": ["/foo"],
        "headers": None,
        "regex_priority": 0,
        "path_handling": "v0",
    }
    assert row["created_at"] == row["updated_at"]
    assert row_of(ROUTES, {"paths": ["/"]})["protocols"] == ["http", "https"]


def test_empty_post_gets_the_https_message() -> None:
    err = error_of(ROUTES, {})
    assert err.to_json() == {
        "code": 2,
        "name": "schema violation",
        "message": "schema violation (must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' "
        "when 'protocols' is 'https')",
        "fields": {
            "@entity": [
                "must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https'"
            ]
        },
    }


MUST_SET = [
    (["http"], "must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'http'"),
    (["https"], "must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https'"),
    (["grpc"], "must set one of 'hosts', 'headers', 'paths' when 'protocols' is 'grpc'"),
    (["grpcs"], "must set one of 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'grpcs'"),
    (["tcp"], "must set one of 'sources', 'destinations', 'snis' when 'protocols' is 'tcp', 'tls' or 'udp'"),
    (["tls"], "must set one of 'sources', 'destinations', 'snis' when 'protocols' is 'tcp', 'tls' or 'udp'"),
    (["udp"], "must set one of 'sources', 'destinations', 'snis' when 'protocols' is 'tcp', 'tls' or 'udp'"),
]


@pytest.mark.parametrize(("protocols", "message"), MUST_SET)
def test_missing_matching_attributes(protocols, message) -> None:
    assert errors_of(ROUTES, {"protocols": protocols, "service": S}) == {"@entity": [message]}


@pytest.mark.parametrize(
    "body",
    [
        {"methods": ["GET"]},
        {"hosts": ["x.y"]},
        {"paths": ["/foo"]},
        {"headers": {"location": ["location-1"]}},
    ],
)
def test_one_matching_attribute_is_enough(body) -> None:
    assert errors_of(ROUTES, {"protocols": ["http"], "service": S, **body}) == {}


def test_empty_arrays_do_not_count() -> None:
    assert errors_of(ROUTES, {"protocols": ["http"], "methods": [], "hosts": {}, "paths": []}) == {
        "@entity": ["must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'http'"]
    }
    # {} is an empty array on input and output
    assert row_of(ROUTES, {"protocols": ["http"], "hosts": {}, "paths": ["/"]})["hosts"] == []


CONFLICTS = [
    (["http", "tcp"], "('http', 'https'), ('tcp', 'tls', 'udp')"),
    (["http", "tls"], "('http', 'https'), ('tcp', 'tls', 'udp')"),
    (["https", "tcp"], "('http', 'https'), ('tcp', 'tls', 'udp')"),
    (["https", "tls"], "('http', 'https'), ('tcp', 'tls', 'udp')"),
]


@pytest.mark.parametrize(("protocols", "groups"), CONFLICTS)
def test_conflicting_protocols(protocols, groups) -> None:
    errs = errors_of(ROUTES, {"protocols": protocols, "paths": ["/"]})
    assert errs["protocols"] == f"these sets are mutually exclusive: {groups}"


def test_tls_and_tls_passthrough_conflict() -> None:
    assert errors_of(
        ROUTES, {"snis": ["foo.grpc.test"], "protocols": ["tls", "tls_passthrough"], "service": S}
    ) == {"protocols": "these sets are mutually exclusive: ('tcp', 'tls', 'udp'), ('tls_passthrough')"}


def test_invalid_protocols() -> None:
    assert errors_of(ROUTES, {"protocols": ["foo", "http"], "methods": ["GET"]}) == {"protocols": [ONE_OF]}
    assert errors_of(ROUTES, {"protocols": ["http", "foo"], "methods": ["GET"]}) == {
        "protocols": [None, ONE_OF]
    }
    assert errors_of(ROUTES, {"protocols": ["ftp"]}) == {"protocols": "unknown type: ftp"}
    assert errors_of(ROUTES, {"protocols": None})["protocols"] == "required field missing"
    assert "protocols" in errors_of(ROUTES, {"protocols": []})


def test_invalid_protocol_and_foreign_entity() -> None:
    err = error_of(ROUTES, {"methods": ["GET"], "protocols": ["foo", "http"], "service": {"protocol": "foo"}})
    assert err.message == (f"2 schema violations (protocols.1: {ONE_OF}; service.protocol: {ONE_OF})")
    assert err.fields == {"protocols": [ONE_OF], "service": {"protocol": ONE_OF}}


FOREIGN = [
    ({"id": "blergh"}, {"id": "expected a valid UUID"}),
    ({"name": None}, {"id": "missing primary key"}),
    ({"protocol": "http"}, {"id": "missing primary key"}),
    ({}, {"id": "missing primary key"}),
    ("a-string", {"id": "missing primary key"}),
    ({"id": None}, {"id": "required field missing"}),
]


@pytest.mark.parametrize(("service", "error"), FOREIGN)
def test_foreign_key_errors(service, error) -> None:
    assert errors_of(ROUTES, {**HTTP, "service": service}) == {"service": error}


def test_https_redirect_status_code() -> None:
    assert errors_of(ROUTES, {**HTTP, "https_redirect_status_code": 404}) == {
        "https_redirect_status_code": "expected one of: 426, 301, 302, 307, 308"
    }
    assert errors_of(ROUTES, {**HTTP, "https_redirect_status_code": 301}) == {}


def test_regex_priority_type() -> None:
    assert errors_of(ROUTES, {**HTTP, "regex_priority": "foobar"}) == {
        "regex_priority": "expected an integer"
    }


# paths: (value, error)
PATH_ERRORS = [
    (False, "expected a string"),
    ("", "length must be at least 1"),
    ("foo", "should start with: / (fixed path) or ~/ (regex path)"),
    ("/foo//bar", "must not have empty segments"),
    ("/foo/bar//", "must not have empty segments"),
    ("//foo/bar", "must not have empty segments"),
    (
        "~/users/(foo/profile",
        "invalid regex: '/users/(foo/profile' (PCRE returned: pcre2_compile() failed: missing closing "
        'parenthesis in "/users/(foo/profile")',
    ),
    ("/some%2words", "invalid url-encoded value: '%2w'"),
    ("/some%0Xwords", "invalid url-encoded value: '%0X'"),
    ("/some%2Gwords", "invalid url-encoded value: '%2G'"),
    ("/some%20words%", "invalid url-encoded value: '%'"),
    ("/some%20words%a", "invalid url-encoded value: '%a'"),
    ("/some%20words%ax", "invalid url-encoded value: '%ax'"),
    ("/a/../b", "non-normalized path, consider use '/b' instead"),
    ("/a/./b", "non-normalized path, consider use '/a/b' instead"),
    ("/%c3%A4", "non-normalized path, consider use '/ä' instead"),
    ("/%7euser", "non-normalized path, consider use '/~user' instead"),
    ("/a%2fb", "non-normalized path, consider use '/a%2Fb' instead"),
]


@pytest.mark.parametrize(("path", "error"), PATH_ERRORS)
def test_path_errors(path, error) -> None:
    assert errors_of(ROUTES, {"protocols": ["http"], "paths": [path]}) == {"paths": [error]}


def test_path_errors_are_positional() -> None:
    errs = errors_of(ROUTES, {"protocols": ["http"], "paths": ["/ok", "/foo//bar", "/ok2", "bad"]})
    assert errs == {
        "paths": [
            None,
            "must not have empty segments",
            None,
            "should start with: / (fixed path) or ~/ (regex path)",
        ]
    }
    msg = error_of(ROUTES, {"protocols": ["http"], "paths": ["/ok", "/foo//bar"]}).message
    assert msg == "schema violation (paths.2: must not have empty segments)"


VALID_PATHS = ["/", "/abcd~user~2", "/ovo/", "/%25", "/a%2Fb", "~/users/(?<id>\\d+)", "~/v1/(chat|completions)$",
               "/é", "/with space"]  # fmt: skip


@pytest.mark.parametrize("path", VALID_PATHS)
def test_valid_paths(path: str) -> None:
    assert errors_of(ROUTES, {"protocols": ["http"], "service": {"id": A_UUID}, "paths": [path]}) == {}


HOST_ERRORS = [
    (False, "expected a string"),
    ("", "length must be at least 1"),
    *[
        (h, f"invalid hostname: {h}")
        for h in [
            "/example",
            ".example",
            "example:",
            "mock;bin",
            "example.com/org",
            "example-.org",
            "example.org-",
            "hello..example.com",
            "hello-.example.com",
        ]  # fmt: skip
    ],
    ("example.com:1000000", "invalid port number"),
    *[
        (h, "invalid wildcard: must be placed at leftmost or rightmost label")
        for h in ["*example.com", "www.example*", "mock*bin.com"]
    ],
    *[
        (h, "invalid wildcard: must have at most one wildcard")
        for h in ["*.example.*", "**.example.com", "*.example*.*"]
    ],
]


@pytest.mark.parametrize(("host", "error"), HOST_ERRORS)
def test_host_errors(host, error) -> None:
    assert errors_of(ROUTES, {"protocols": ["http"], "hosts": [host]}) == {"hosts": [error]}


VALID_HOSTS = ["hello.com", "1991.io", "HELLO.com", "example.123", "example_api.com", "localhost", "example.com:80",
               "example.com:8080", "-with-SUPER-MONKEYS-pc58ag80a8qai00g7n9n", "example.*", "*.example.org",
               "*.example.org:321", "10.0.0.1", "10.0.0.1:8000"]  # fmt: skip


@pytest.mark.parametrize("host", VALID_HOSTS)
def test_valid_hosts(host: str) -> None:
    assert errors_of(ROUTES, {"protocols": ["http"], "service": {"id": A_UUID}, "hosts": [host]}) == {}


def test_hosts_is_an_array_not_a_set() -> None:
    assert row_of(ROUTES, {"hosts": ["a.test", "a.test"]})["hosts"] == ["a.test", "a.test"]
    assert row_of(ROUTES, {"methods": ["GET", "GET", "POST"]})["methods"] == ["GET", "POST"]


HOST_HEADER = "cannot contain 'host' header, which must be specified in the 'hosts' attribute"
HEADER_ERRORS = [
    ({"host": ["example.com"]}, HOST_HEADER),
    ({"Host": ["example.com"]}, HOST_HEADER),
    ({"HoSt": ["example.com"]}, HOST_HEADER),
    ({"location": True}, "expected an array"),
    ({"location": [True]}, ["expected a string"]),
    ({"location": [""]}, ["length must be at least 1"]),
    (
        {"bad header": ["x"]},
        "bad header name 'bad header', allowed characters are A-Z, a-z, 0-9, '_', and '-'",
    ),
    (["location"], "expected a map"),
]


@pytest.mark.parametrize(("headers", "error"), HEADER_ERRORS)
def test_header_errors(headers, error) -> None:
    assert errors_of(ROUTES, {"protocols": ["http"], "paths": ["/"], "headers": headers}) == {
        "headers": error
    }


METHOD_ERRORS = [
    (False, "expected a string"),
    ("", "length must be at least 1"),
    ("HELLO WORLD", "invalid value: HELLO WORLD"),
    (" GET", "invalid value:  GET"),
    ("get", "invalid value: get"),
]


@pytest.mark.parametrize(("method", "error"), METHOD_ERRORS)
def test_method_errors(method, error) -> None:
    assert errors_of(ROUTES, {"protocols": ["http"], "methods": [method]}) == {"methods": [error]}


@pytest.mark.parametrize("method", ["GET", "POST", "CUSTOM"])
def test_valid_methods(method: str) -> None:
    assert errors_of(ROUTES, {"protocols": ["http"], "methods": [method]}) == {}


@pytest.mark.parametrize("name", ["examp:le", "examp;le", "examp/le", "examp le"])
def test_invalid_names(name: str) -> None:
    assert errors_of(ROUTES, {**HTTP, "name": name})["name"].startswith(f"invalid value '{name}'")


@pytest.mark.parametrize("name", ["example", "exa.mp.le", "~3..x4~.M-p~1__3_", "孔", "Конг", "🦍"])
def test_valid_names(name: str) -> None:
    assert errors_of(ROUTES, {**HTTP, "name": name}) == {}


# ---- stream routes


@pytest.mark.parametrize("protocol", ["tcp", "tls", "udp"])
def test_stream_routes(protocol: str) -> None:
    base = {"protocols": [protocol], "sources": [{"ip": "127.0.0.1"}], "service": S}
    assert errors_of(ROUTES, base) == {}
    row = row_of(ROUTES, base)
    assert row["sources"] == [{"ip": "127.0.0.1", "port": None}]
    assert row["strip_path"] is True
    suffix = "'tcp', 'tls', 'tls_passthrough' or 'udp'"
    assert errors_of(ROUTES, {**base, "paths": ["/"]}) == {
        "paths": f"cannot set 'paths' when 'protocols' is {suffix}"
    }
    assert errors_of(ROUTES, {**base, "methods": ["GET"]}) == {
        "methods": f"cannot set 'methods' when 'protocols' is {suffix}"
    }


@pytest.mark.parametrize("attr", ["sources", "destinations"])
def test_sources_and_destinations(attr: str) -> None:
    base = {"protocols": ["tcp"], "service": S}
    assert row_of(ROUTES, {**base, attr: [{"port": 8000}]})[attr] == [{"ip": None, "port": 8000}]
    assert errors_of(
        ROUTES, {**base, attr: [{"ip": "127.0.0.1"}, {"ip": "127.75.78.72", "port": 65536}]}
    ) == {attr: [None, {"port": "value should be between 0 and 65535"}]}
    for ip in ["127.", ":::1", "-1", "localhost", "foo", "f", "example.org", "1/0", "2130706433/2", "0.0.0.0/a",
               "::/a", "0.0.0.0/-1", "::/-1", "0.0.0.0/33", "::/129"]:  # fmt: skip
        errs = errors_of(ROUTES, {**base, attr: [{"ip": ip}, {"ip": "127.75.78.72", "port": 8000}]})
        assert errs == {attr: [{"ip": f"invalid ip or cidr range: '{ip}'"}]}, ip
    for ip in ["0.0.0.0/0", "::/0", "0.0.0.0/1", "::/1", "0.0.0.0/32", "::/128"]:
        assert errors_of(ROUTES, {**base, attr: [{"ip": ip}]}) == {}, ip
    assert errors_of(ROUTES, {**base, attr: [{}]}) == {
        attr: [{"@entity": ["at least one of these fields must be non-empty: 'ip', 'port'"]}]
    }


def test_http_routes_refuse_sources() -> None:
    assert errors_of(ROUTES, {**HTTP, "sources": [{"ip": "127.0.0.1"}]}) == {
        "sources": "cannot set 'sources' when 'protocols' is 'http' or 'https'"
    }


def test_snis() -> None:
    for protocol in ("tls", "https", "grpcs"):
        for sni in ("example.org", "www.example.org", "*.example.org"):
            assert errors_of(ROUTES, {"protocols": [protocol], "snis": [sni], "service": S}) == {}
    assert errors_of(ROUTES, {"protocols": ["tcp", "tls"], "snis": ["127.0.0.1"]}) == {
        "snis": ["must not be an IP"]
    }
    assert errors_of(ROUTES, {"protocols": ["tcp", "tls"], "snis": ["example.org:80"]}) == {
        "snis": ["must not have a port"]
    }
    assert errors_of(ROUTES, {"protocols": ["tcp", "udp"], "snis": ["example.org"], "service": S}) == {
        "@entity": [
            "'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls' or 'tls_passthrough'"
        ],
        "snis": "length must be 0",
    }


def test_tls_passthrough_needs_snis() -> None:
    body = {"sources": [{"ip": "127.0.0.1"}], "protocols": ["tls_passthrough"], "service": S}
    assert errors_of(ROUTES, body) == {"@entity": ["must set snis when 'protocols' is 'tls_passthrough'"]}


# ---- grpc routes


@pytest.mark.parametrize("protocol", ["grpc", "grpcs"])
def test_grpc_routes(protocol: str) -> None:
    assert row_of(ROUTES, {"protocols": [protocol], "paths": ["/foo"]})["strip_path"] is False
    assert errors_of(
        ROUTES, {"methods": "GET", "paths": ["/foo"], "protocols": [protocol], "service": S}
    ) == {"methods": "cannot set 'methods' when 'protocols' is 'grpc' or 'grpcs'"}
    assert errors_of(ROUTES, {"hosts": ["foo.grpc.test"], "protocols": [protocol], "strip_path": True}) == {
        "strip_path": "cannot set 'strip_path' when 'protocols' is 'grpc' or 'grpcs'"
    }
