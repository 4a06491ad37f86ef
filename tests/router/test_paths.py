"""normalize / escape / join_v0 / join_v1. Normalization and escape cases from Kong 3.9.3 spec/01-unit/18-tools_uri_spec.lua
(the router always merges slashes, so the merge_slashes expectations apply)."""

from __future__ import annotations

import pytest

from servegate.proxy.paths import escape, join_v0, join_v1, normalize, sanitize_postfix

NORMALIZE = [
    # no normalization necessary
    ("", ""),
    ("/", "/"),
    ("/a", "/a"),
    ("/a/", "/a/"),
    ("/a/b/c", "/a/b/c"),
    ("/a/b/c/", "/a/b/c/"),
    # reserved characters stay encoded
    ("/a%2Fb%2Fc/", "/a%2Fb%2Fc/"),
    ("/%20%21%23%24%25%26%27%28%29%2A%2B%2C%2F%3A%3B%3D%3F%40%5B%5D",
     "/ %21%23%24%25%26%27%28%29%2A%2B%2C%2F%3A%3B%3D%3F%40%5B%5D"),
    # escapes upper-cased / decoded
    ("/a%2fb%2fc/", "/a%2Fb%2Fc/"),
    ("/f%6f%6f", "/foo"),
    ("/%6B%6f%6e%67", "/kong"),
    ("/%2E", "/"),
    # dot segments
    ("/./", "/"),
    ("/.", "/"),
    ("/..", "/"),
    ("/../", "/"),
    ("/./.././../", "/"),
    ("/a/b/c/./../../g", "/a/g"),
    ("mid/content=5/../6", "mid/6"),
    # merged slashes
    ("//", "/"),
    ("/////", "/"),
    ("/a//b//", "/a/b/"),
    # non-ASCII
    ("/endel%C3%B8st", "/endeløst"),
    ("/%C3%A4/a/%2e./a%2E//a/%2e/./a/../a/%2e%2E/%5f%99%af%2f%2F", "/ä/a./a/_\udc99\udcaf%2F%2F"),
    # more edge cases
    ("/a/b/..", "/a/"),
    ("/a/b/.", "/a/b/"),
    ("/a/..", "/"),
    ("/a//../b", "/b"),
    ("/a/...", "/a/..."),
    ("/..a/b", "/..a/b"),
    ("/route%2E%2E/req", "/route../req"),
    ("/%2e%2e/%2E%2e/etc", "/etc"),
    ("/v1/chat/completions", "/v1/chat/completions"),
    ("/%25", "/%25"),
    ("/%252e", "/%252e"),
    ("/a%zz", "/a%zz"),
]


@pytest.mark.parametrize(("raw", "expected"), NORMALIZE)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_normalize_is_idempotent() -> None:
    for raw, _ in NORMALIZE:
        once = normalize(raw)
        if "%25" not in raw:
            assert normalize(once) == once


ALLOWED = "/!#$%&'()*+,/:;=?@[]ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (ALLOWED, ALLOWED),
        ("/a b/c d", "/a%20b/c%20d"),
        ("/a😀", "/a%F0%9F%98%80"),
        ("/endeløst", "/endel%C3%B8st"),
        ("/a\"b<c>{d}|^`\\", "/a%22b%3Cc%3E%7Bd%7D%7C%5E%60%5C"),
        ("/x\udc99\udcaf", "/x%99%AF"),
    ],
)
def test_escape(raw: str, expected: str) -> None:
    assert escape(raw) == expected


def test_normalize_then_escape_round_trips_bytes() -> None:
    assert escape(normalize("/%C3%A4%20%99/%2F")) == "/%C3%A4%20%99/%2F"


@pytest.mark.parametrize(
    ("postfix", "expected"),
    [("", ""), (".", ""), ("..", ""), ("./a", "a"), ("../a", "a"), ("/a", "/a"), (".a", ".a")],
)
def test_sanitize_postfix(postfix: str, expected: str) -> None:
    assert sanitize_postfix(postfix) == expected


@pytest.mark.parametrize(
    ("service_path", "prefix", "req_path", "strip", "expected"),
    [
        (None, "/", "/route/req", False, "/route/req"),
        ("/", "/route", "/route", True, "/"),
        ("/srv", "/rou", "/roureq", False, "/srv/roureq"),
        ("/srv", "/rou", "/roureq", True, "/srv/req"),
        ("/srv/", "/rou", "/rou", True, "/srv"),
        ("/service", "/route", "/route/", True, "/service/"),
        ("/service/", "/route", "/route/", True, "/service/"),
        ("/service/", "/", "/", False, "/service/"),
        ("/service", "/", "/", False, "/service"),
    ],
)
def test_join_v0(service_path: str | None, prefix: str, req_path: str, strip: bool, expected: str) -> None:
    assert join_v0(service_path, prefix, req_path, strip) == expected


@pytest.mark.parametrize(
    ("service_path", "prefix", "req_path", "strip", "expected"),
    [
        (None, "/", "/route/req", False, "/route/req"),
        ("/", "/route", "/route", True, "/"),
        ("/srv", "/rou", "/roureq", False, "/srvroureq"),
        ("/srv", "/rou", "/roureq", True, "/srvreq"),
        ("/srv/", "/rou", "/rou", True, "/srv/"),
        ("/srv/", "/rou", "/rou/x", True, "/srv/x"),
        ("/service", "/route", "/route/", True, "/service/"),
        ("/service", "/", "/", False, "/service"),
        ("/service", "/", "/route", True, "/serviceroute"),
        # what is left after the prefix loses a leading dot segment, as in v0
        ("/srv/", "/rou", "/rou../x", True, "/srv/x"),
    ],
)
def test_join_v1(service_path: str | None, prefix: str, req_path: str, strip: bool, expected: str) -> None:
    assert join_v1(service_path, prefix, req_path, strip) == expected
