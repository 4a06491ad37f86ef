"""Context: query parsing/encoding, recorded upstream changes, Exit defaults."""

from __future__ import annotations

import pytest

from servegate.plugins import Context, Exit
from servegate.plugins.base import encode_query, parse_query


def test_parse_query_repeats_bare_names_and_decoding() -> None:
    q = parse_query("a=1&b&a=2&c=&d=x%20y+z&=skip&&e=%2F")
    assert q == {"a": ["1", "2"], "b": True, "c": "", "d": "x y z", "e": "/"}
    assert list(q) == ["a", "b", "c", "d", "e"]


def test_encode_query_round_trip_keeps_order() -> None:
    args = {"z": "1 2", "a": ["x", "y"], "flag": True, "off": False}
    assert encode_query(args) == "z=1%202&a=x&a=y&flag"
    assert parse_query(encode_query(args)) == {"z": "1 2", "a": ["x", "y"], "flag": True}


def test_query_is_parsed_lazily_once() -> None:
    c = Context("GET", "/", "a=1")
    assert c._query is None
    assert c.query() is c.query() and c.query() == {"a": "1"}


def test_upstream_changes_are_recorded_for_the_proxy() -> None:
    c = Context("GET", "/", "a=1", {"x-a": "1", "multi": ["1", "2"]})
    assert c.header("X-A") == "1" and c.header("multi") == "1" and c.header("none") is None
    c.set_upstream_header("X-Consumer-ID", "c1")
    c.clear_upstream_header("X-A")
    c.set_query({"b": "2"})
    c.set_body(b"{}")
    c.add_response_header("X-RateLimit-Limit-Minute", "5")
    assert c.upstream_headers == {"x-consumer-id": ("X-Consumer-ID", "c1"), "x-a": ("X-A", None)}
    assert c.upstream_query == "b=2" and c.upstream_body == b"{}"
    assert c.response_headers == [("X-RateLimit-Limit-Minute", "5")]


async def test_body_reads_once() -> None:
    calls = []

    async def read() -> bytes:
        calls.append(1)
        return b"payload"

    c = Context("POST", "/", read_body=read)
    assert await c.body() == b"payload" and await c.body() == b"payload"
    assert calls == [1]
    assert await Context("GET", "/").body() == b""


@pytest.mark.parametrize(("status", "message"), [
    (401, "Unauthorized"), (429, "Too many requests"), (500, "An unexpected error occurred"),
    (418, "The upstream server responded with 418"),
])
def test_exit_default_messages(status: int, message: str) -> None:
    with pytest.raises(Exit) as info:
        Context("GET", "/").exit(status)
    assert info.value.status == status and info.value.message == message and info.value.headers is None


def test_exit_custom_message_and_headers() -> None:
    with pytest.raises(Exit) as info:
        Context("GET", "/").exit(404, "Fake Not Found", {"X-A": "1"})
    assert (info.value.status, info.value.message, info.value.headers) == (404, "Fake Not Found", {"X-A": "1"})


def test_body_at_hand_or_awaited() -> None:
    """body_ready/body_now/json_body_now: a body the proxy handed over is read without awaiting; one still to
    come must be awaited (body_now refuses), after which both ways agree."""
    import asyncio

    ready = Context("POST", "/v1/chat", body=b'{"model": "m"}')
    assert ready.body_ready() and ready.body_now() == b'{"model": "m"}'
    assert ready.json_body_now() == {"model": "m"}
    assert ready.json_body_now() is ready.json_body_now()  # parsed once

    calls = []

    async def read() -> bytes:
        calls.append(1)
        return b"not json"

    later = Context("POST", "/v1/chat", read_body=read)
    assert not later.body_ready()
    with pytest.raises(RuntimeError):
        later.body_now()
    assert asyncio.run(later.json_body()) is None  # not JSON
    assert later.body_ready() and later.body_now() == b"not json" and calls == [1]
    assert Context("GET", "/").body_ready() is False
