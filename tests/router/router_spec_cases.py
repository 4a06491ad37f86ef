"""Routing cases ported as data from Kong 3.9.3 spec/01-unit/08-router_spec.lua (traditional_compatible).

Each scenario: routes (id suffix + route fields; ``"service": None`` makes a service-less route) and requests
``(method, path, host, headers, expected route id suffix or None)``. Kong's ``select()`` takes an already
normalized path, so these paths go to ``Router.match`` as they are. Header names are given as HTTP sends them
(Kong's tests write ``user_agent``; both spellings are folded together). Where Kong's tests reuse a route id
inside one router, a distinct id is used here; the expected outcome does not depend on it.
"""

from __future__ import annotations

from typing import Any

Req = tuple[str, str, str | None, dict[str, Any] | None, str | None]

SELECT_ROUTES: list[tuple[str, dict[str, Any]]] = [
    ("8101", {"hosts": ["domain-1.org", "domain-2.org"]}),
    ("8102", {"methods": ["TRACE"]}),
    ("8103", {"paths": ["/my-route"]}),
    ("8104", {"paths": ["/route-4"], "hosts": ["domain-1.org", "domain-2.org"]}),
    ("8105", {"hosts": ["domain-1.org", "domain-2.org"], "methods": ["POST", "PUT", "PATCH"]}),
    ("8106", {"methods": ["POST", "PUT", "PATCH"], "paths": ["/route-6"]}),
    ("8107", {"hosts": ["domain-with-uri-1.org", "domain-with-uri-2.org"], "methods": ["POST", "PUT", "PATCH"],
              "paths": ["/my-route-uri"]}),
    ("8108", {"paths": ["/serviceless"], "service": None}),
    ("8109", {"headers": {"location": ["my-location-1", "my-location-2"]}}),
    ("8110", {"headers": {"location": ["my-location-1"], "version": ["v1", "v2"]}}),
    ("8111", {"headers": {"location": ["my-location-1", "my-location-2"]}, "paths": ["/headers-uri"]}),
    ("8112", {"hosts": ["domain-with-headers-1.org", "domain-with-headers-2.org"],
              "headers": {"location": ["my-location-1", "my-location-2"]},
              "methods": ["POST", "PUT", "PATCH"], "paths": ["/headers-host-uri-method"]}),
    ("8113", {"hosts": ["domain-1.org:321", "domain-2.org"]}),
    ("8114", {"hosts": ["domain-3.org:321"]}),
    ("8115", {"headers": {"user_agent": ["~*windows|linux|os\\s+x\\s*[\\d\\._]+|solaris|bsd"]}}),
]

UA_LINUX = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/83.0.4103.116 Safari/537.36")

SELECT_REQUESTS: list[Req] = [
    ("GET", "/", "domain-1.org", None, "8101"),
    ("GET", "/", "domain-1.org:80", None, "8101"),          # ignores default port
    ("GET", "/", "domain-1.org:321", None, "8113"),         # matches specific port
    ("GET", "/", "domain-3.org:321", None, "8114"),         # port-only route
    ("GET", "/", "domain-3.org:123", None, None),           # fails only because of the port
    ("GET", "/my-route", "domain.org", None, "8103"),
    ("GET", "/my-route-uri", "", None, "8103"),             # empty Host (HTTP/1.0)
    ("TRACE", "/", "domain.org", None, "8102"),
    ("GET", "/route-4", "domain-1.org", None, "8104"),
    ("POST", "/", "domain-1.org", None, "8105"),
    ("PUT", "/route-6", "domain.org", None, "8106"),
    ("PUT", "/my-route-uri", "domain-with-uri-2.org", None, "8107"),
    ("GET", "/", None, {"location": "my-location-1"}, "8109"),
    ("GET", "/", None, {"location": "my-location-2"}, "8109"),
    ("GET", "/", None, {"location": ["my-location-3", "my-location-2"]}, "8109"),
    ("GET", "/", None, {"location": "my-location-3"}, None),
    ("GET", "/", None, {"location": ["my-location-3", "foo"]}, None),
    ("GET", "/", None, {"user-agent": UA_LINUX}, "8115"),
    ("GET", "/", None, {"location": "my-location-1", "version": "v1"}, "8110"),
    ("GET", "/", None, {"location": "my-location-1", "version": "v2"}, "8110"),
    ("GET", "/", None, {"location": ["my-location-3", "my-location-1"], "version": "v2"}, "8110"),
    ("GET", "/", None, {"location": ["my-location-3", "my-location-2"], "version": "v2"}, "8109"),
    ("GET", "/headers-uri", None, {"location": "my-location-2"}, "8111"),
    ("PUT", "/headers-host-uri-method", "domain-with-headers-1.org", {"location": "my-location-2"}, "8112"),
    ("GET", "/serviceless", None, None, "8108"),
    ("GET", "/my-route/some/path", "domain.org", None, "8103"),
    # misses
    ("GET", "/", "domain-3.org", None, None),
    ("GET", "/route-4", "domain-3.org", None, None),
    ("GET", "/some-uri", "domain-with-uri-2.org", None, None),
    ("PUT", "/some-uri-foo", "domain-with-uri-2.org", None, None),
    ("GET", "/some-other-prefix/my-route", "domain.org", None, None),
    ("GET", "/", None, {"location": "invalid-location"}, None),
    ("GET", "/headers-uri", None, {"location": "invalid-location"}, None),
    ("PUT", "/headers-uri-method", None, {"location": "invalid-location"}, None),
    ("PUT", "/headers-host-uri-method", None, {"location": "invalid-location",
                                               "host": "domain-with-headers-1.org"}, None),
]

WILDCARD_BASE: list[tuple[str, dict[str, Any]]] = [
    ("8101", {"hosts": ["*.route.com"]}),
    ("8102", {"hosts": ["route.*"]}),
]

USE_CASE_VAL = list[tuple[str, dict[str, Any]]]

SCENARIOS: dict[str, tuple[USE_CASE_VAL, list[Req]]] = {
    "select": (SELECT_ROUTES, SELECT_REQUESTS),
    "root / acts as catch-all and does not supersede": (
        [("810f", {"paths": ["/"]}), *SELECT_ROUTES],
        [
            ("GET", "/", "domain.org", None, "810f"),
            ("GET", "/my-route", "domain.org", None, "8103"),
            ("GET", "/my-route/hello/world", "domain.org", None, "8103"),
            ("GET", "/foobar/baz", "domain.org", None, "810f"),
        ],
    ),
    "same category, conflicting values": (
        [*SELECT_ROUTES, *[(f"813{i}", {"hosts": ["domain.org"], "paths": ["/my-uri"]}) for i in range(1, 6)],
         ("8121", {"hosts": ["domain.org"], "paths": ["/my-target-uri"]})],
        [("GET", "/my-target-uri", "domain.org", None, "8121")],
    ),
    "longer [uri] is not superseded": (
        [("8101", {"paths": ["/my-route/hello"]}), ("8102", {"paths": ["/my-route"]})],
        [
            ("GET", "/my-route/hello", "domain.org", None, "8101"),
            ("GET", "/my-route/hello/world", "domain.org", None, "8101"),
            ("GET", "/my-route", "domain.org", None, "8102"),
            ("GET", "/my-route/world", "domain.org", None, "8102"),
        ],
    ),
    "longer [uri] with [methods]": (
        [("8101", {"methods": ["POST", "PUT", "GET"], "paths": ["/my-route"]}),
         ("8102", {"methods": ["POST", "PUT", "GET"], "paths": ["/my-route/hello"]})],
        [
            ("GET", "/my-route/hello", "domain.org", None, "8102"),
            ("GET", "/my-route/hello/world", "domain.org", None, "8102"),
            ("GET", "/my-route", "domain.org", None, "8101"),
            ("GET", "/my-route/world", "domain.org", None, "8101"),
        ],
    ),
    "longer [uri] with [hosts]": (
        [("8101", {"hosts": ["domain.org"], "paths": ["/my-route"]}),
         ("8102", {"hosts": ["domain.org"], "paths": ["/my-route/hello"]})],
        [
            ("GET", "/my-route/hello", "domain.org", None, "8102"),
            ("GET", "/my-route/hello/world", "domain.org", None, "8102"),
            ("GET", "/my-route", "domain.org", None, "8101"),
            ("GET", "/my-route/world", "domain.org", None, "8101"),
        ],
    ),
    "better [uri] for another [host] does not interfere": (
        [("8101", {"hosts": ["example.com"], "paths": ["/my-route"]}),
         ("8102", {"hosts": ["example.com"], "paths": ["/my-route/hello"]}),
         ("8103", {"hosts": ["example.net"], "paths": ["/my-route/hello/world"]})],
        [
            ("GET", "/my-route/hello/world", "example.com", None, "8102"),
            ("GET", "/my-route/hello/world/and/goodnight", "example.com", None, "8102"),
        ],
    ),
    "[uri prefix] is anchored": (
        [("8101", {"paths": ["/something/my-route"]}),
         ("8102", {"hosts": ["example.com"], "paths": ["/my-route"]})],
        [("GET", "/something/my-route", "example.com", None, "8101")],
    ),
    "[uri regex]": (
        [("8101", {"paths": ["~/users/\\d+/profile"]})],
        [("GET", "/users/123/profile", "domain.org", None, "8101")],
    ),
    "several [uri regex]": (
        [("8101", {"paths": ["~/route/persons/\\d{3}"]}),
         ("8102", {"paths": ["~/route/persons/\\d{3}/following"]}),
         ("8103", {"paths": ["~/route/persons/\\d{3}/[a-z]+"]})],
        [("GET", "/route/persons/456", "domain.org", None, "8101")],
    ),
    "[uri regex] beats a [prefix uri] match": (
        [("8101", {"paths": ["/route/persons"]}), ("8102", {"paths": ["~/route/persons/\\d+/profile"]})],
        [("GET", "/route/persons/123/profile", "domain.org", None, "8102")],
    ),
    "[uri regex] beats an exact [uri] match": (
        [("8101", {"paths": ["/route/fixture"]}), ("8102", {"paths": ["~/route/(fixture)"]})],
        [("GET", "/route/fixture", "domain.org", None, "8102")],
    ),
    "[uri regex + host] beats [prefix uri + host]": (
        [("8101", {"hosts": ["route.com"], "paths": ["/pat"]}),
         ("8102", {"hosts": ["route.com"], "paths": ["/path"], "methods": ["POST"]}),
         ("8103", {"hosts": ["route.com"], "paths": ["~/(path)"]})],
        [("GET", "/path", "route.com", None, "8103")],
    ),
    "[uri regex] is anchored": (
        [("8101", {"paths": ["~/prefix/[0-9]+"]})],
        [
            ("GET", "/prefix/123", "domain.org", None, "8101"),
            ("GET", "/extra/prefix/123", "domain.org", None, None),
        ],
    ),
    "[wildcard host]": (
        WILDCARD_BASE,
        [
            ("GET", "/", "foo.route.com", None, "8101"),
            ("GET", "/", "route.org", None, "8102"),
            ("GET", "/", "route.org:123", None, "8102"),
            ("GET", "/", "foo.route.com:123", None, "8101"),
        ],
    ),
    "[wildcard host] port-specific routes": (
        [*WILDCARD_BASE, ("8103", {"hosts": ["*.route.net:123"]}), ("8104", {"hosts": ["route.*:123"]})],
        [
            ("GET", "/", "foo.route.net:123", None, "8103"),
            ("GET", "/", "foo.route.net:456", None, None),
            ("GET", "/", "route.org:123", None, "8104"),
        ],
    ),
    "[wildcard host] port-specific for http default port": (
        [*WILDCARD_BASE, ("8103", {"hosts": ["route.*:80"]})],
        [
            ("GET", "/", "route.org:123", None, "8102"),
            ("GET", "/", "route.org:80", None, "8103"),
        ],
    ),
    "[wildcard host] port-specific for https default port": (
        [*WILDCARD_BASE, ("8103", {"hosts": ["route.*:443"]})],
        [
            ("GET", "/", "route.org:123", None, "8102"),
            ("GET", "/", "route.org:443", None, "8103"),
        ],
    ),
    "[wildcard host] does not take precedence over a plain host": (
        [("8103", {"hosts": ["plain.route.com"]}), *WILDCARD_BASE, ("8104", {"hosts": ["route.com"]})],
        [
            ("GET", "/", "route.com", None, "8104"),
            ("GET", "/", "route.org", None, "8102"),
            ("GET", "/", "plain.route.com", None, "8103"),
            ("GET", "/", "foo.route.com", None, "8101"),
        ],
    ),
    "[wildcard host + path] vs similar [plain host]": (
        [("8101", {"hosts": ["*.route.com"], "paths": ["/path1"]}),
         ("8102", {"hosts": ["plain.route.com"], "paths": ["/path2"]})],
        [
            ("GET", "/path1", "plain.route.com", None, "8101"),
            ("GET", "/path2", "plain.route.com", None, "8102"),
        ],
    ),
    "[wildcard host port] vs [wildcard host]": (
        [("8101", {"hosts": ["route.*"]}), ("8102", {"hosts": ["route.*:80", "route.com.*"]})],
        [("GET", "/", "route.org:80", None, "8102")],
    ),
    "[wildcard host + port] matched over [wildcard host]": (
        [("8101", {"hosts": ["route.*"]}), ("8102", {"hosts": ["route.*:123"]}), ("8103", {"hosts": ["route.*:80"]})],
        [("GET", "/", "route.org:123", None, "8102")],
    ),
    "[wildcard/plain + uri + method]": (
        [*WILDCARD_BASE, ("8103", {"hosts": ["*.domain.com", "example.com"], "paths": ["/path"],
                                   "methods": ["GET", "TRACE"]})],
        [
            ("POST", "/path", "foo.domain.com", None, None),
            ("GET", "/path", "foo.domain.com", None, "8103"),
            ("TRACE", "/path", "example.com", None, "8103"),
        ],
    ),
    "[wildcard host] + [uri regex]": (
        [("8101", {"hosts": ["*.example.com"], "paths": ["~/users/\\d+/profile"]}),
         ("8102", {"hosts": ["*.example.com"], "paths": ["/users"]})],
        [
            ("GET", "/users/123/profile", "test.example.com", None, "8101"),
            ("GET", "/users", "test.example.com", None, "8102"),
        ],
    ),
    "more [headers] first": (
        [("8101", {"headers": {"version": ["v1", "v2"], "user_agent": ["foo", "bar"]}}),
         ("8102", {"headers": {"version": ["v1", "v2"], "user_agent": ["foo", "bar"], "location": ["east", "west"]}})],
        [("GET", "/", None, {"version": "v1", "user-agent": "foo", "location": ["north", "west"]}, "8102")],
    ),
    "[headers] names are case-insensitive": (
        [("8101", {"headers": {"USER_AGENT": ["foo", "bar"]}}), ("8102", {"headers": {"user_agent": ["baz"]}})],
        [
            ("GET", "/", None, {"user-agent": "foo"}, "8101"),
            ("GET", "/", None, {"user-agent": "baz"}, "8102"),
        ],
    ),
    "[headers] values are case-insensitive": (
        [("8101", {"headers": {"user_agent": ["foo", "bar"]}}), ("8102", {"headers": {"user_agent": ["BAZ"]}})],
        [
            ("GET", "/", None, {"user-agent": "FOO"}, "8101"),
            ("GET", "/", None, {"user-agent": "baz"}, "8102"),
        ],
    ),
    "normalization stopgap: route paths are not normalized": (
        [("8100", {"paths": ["/plain/a.b.c"]}),
         ("8101", {"paths": ["/plain/a.b%58c"]}),
         ("8102", {"paths": ["~/reg%65x/\\d+"]}),
         ("8103", {"paths": ["~/regex-meta/%5Cd\\+%2E"]}),
         ("8104", {"paths": ["~/regex-reserved%2Fabc"]})],
        [
            ("GET", "/plain/a.b.c", "example.com", None, "8100"),
            ("GET", "/plain/a.bXc", "example.com", None, None),
            ("GET", "/plain/a.b%58c", "example.com", None, "8101"),
            ("GET", "/plain/aab.c", "example.com", None, None),
            ("GET", "/regex/123", "example.com", None, None),
            ("GET", "/reg%65x/123", "example.com", None, "8102"),
            ("GET", "/regex/\\d+", "example.com", None, None),
            ("GET", "/regex-meta/123a", "example.com", None, None),
            ("GET", "/regex-meta/\\d+.", "example.com", None, None),
            ("GET", "/regex-meta/%5Cd+%2E", "example.com", None, "8103"),
            ("GET", "/regex-reserved/abc", "example.com", None, None),
            ("GET", "/regex-reserved%2Fabc", "example.com", None, "8104"),
        ],
    ),
    "[host] and [uri] rank above [method]": (
        [("8101", {"hosts": ["domain-1.org", "domain-1.org", "domain-2.org"]}),
         ("8102", {"methods": ["TRACE"], "service": None}),
         ("8103", {"paths": ["/my-route"], "service": None}),
         ("8104", {"paths": ["/route-4"], "hosts": ["domain-1.org", "domain-2.org"], "service": None}),
         ("8105", {"hosts": ["domain-1.org", "domain-2.org"], "methods": ["POST", "PUT", "PATCH"], "service": None}),
         ("8106", {"methods": ["POST", "PUT", "PATCH"], "paths": ["/route-6"], "service": None}),
         ("8107", {"hosts": ["domain-with-uri-1.org", "domain-with-uri-2.org"], "methods": ["POST", "PUT", "PATCH"],
                   "paths": ["/my-route-uri"], "service": None})],
        [
            ("TRACE", "/", "domain-2.org", None, "8101"),
            ("TRACE", "/my-route", "domain.org", None, "8103"),
        ],
    ),
    "half [uri] and [host] match does not supersede": (
        [("8101", {"hosts": ["host1.com"], "paths": ["/v1/path"]}),
         ("8102", {"hosts": ["host2.com"], "paths": ["/"]})],
        [
            ("GET", "/v1/path", "host1.com", None, "8101"),
            ("GET", "/v1/path", "host2.com", None, "8102"),
        ],
    ),
    "half [wildcard host] and [method] match does not supersede": (
        [("8101", {"hosts": ["host.*"], "methods": ["GET"]}), ("8102", {"hosts": ["host.*"], "methods": ["POST"]})],
        [
            ("GET", "/", "host.com", None, "8101"),
            ("POST", "/", "host.com", None, "8102"),
        ],
    ),
    "half [uri regex] and [method] match does not supersede": (
        [("8101", {"methods": ["GET"], "paths": ["~/users/\\d+/profile"]}),
         ("8102", {"methods": ["POST"], "paths": ["~/users/\\d*/profile"]})],
        [
            ("GET", "/users/123/profile", "domain.org", None, "8101"),
            ("POST", "/users/123/profile", "domain.org", None, "8102"),
        ],
    ),
    "[method] does not supersede [uri prefix]": (
        [("8101", {"methods": ["GET"]}), ("8102", {"paths": ["/example"]})],
        [
            ("GET", "/example", "domain.org", None, "8102"),
            ("GET", "/example/status/200", "domain.org", None, "8102"),
        ],
    ),
    "[method] does not supersede [wildcard host]": (
        [("8101", {"methods": ["GET"]}), ("8102", {"hosts": ["domain.*"], "service": None})],
        [
            ("GET", "/", "nothing.com", None, "8101"),
            ("GET", "/", "domain.com", None, "8102"),
        ],
    ),
    "split paths: a longer prefix of another route is not superseded": (
        [("8101", {"paths": ["/a", "/bbbbbbb"]}), ("8102", {"paths": ["/a/bb"]})],
        [("GET", "/a/bb/foobar", "domain.org", None, "8102")],
    ),
    "more [headers] rank above longer [paths]": (
        [("8101", {"headers": {"version": ["v1"]}, "paths": ["/my-route/hello"]}),
         ("8102", {"headers": {"version": ["v1"], "location": ["us-east"]}, "paths": ["/my-route"]})],
        [
            ("GET", "/my-route/hello", "domain.org", {"version": "v1", "location": "us-east"}, "8102"),
            ("GET", "/my-route/hello/world", "domain.org", {"version": "v1", "location": "us-east"}, "8102"),
        ],
    ),
}
