"""The Admin API's own HTTP/1.1 server (servegate.admin.server), spoken to over raw loopback sockets.

A stub handler echoes what the server parsed, so each test checks framing and connection handling, not the
Admin endpoints (those have their own tests through the same server).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from servegate.admin import server as server_mod
from servegate.admin.http import Request, Response
from servegate.admin.server import AdminServer

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Echo:
    """Handler: answers JSON describing the request; `gate` (when set) holds requests until released."""

    def __init__(self) -> None:
        self.gate: asyncio.Event | None = None
        self.seen: list[str] = []

    async def __call__(self, req: Request) -> Response:
        self.seen.append(req.path)
        if req.path == "/boom":
            raise RuntimeError("handler bug")
        if self.gate is not None:
            await self.gate.wait()
        if req.path == "/h":
            return Response(200, b"the same body for GET and HEAD")
        body = orjson.dumps({
            "method": req.method,
            "path": req.path,
            "query": req.query_string,
            "body": req.body.decode("latin-1"),
            "content_type": req.headers.get("content-type"),
            "version": req.version,
        })
        return Response(200, body, {"Content-Type": "application/json"})


@pytest.fixture
async def echo() -> AsyncIterator[tuple[AdminServer, Echo, int]]:
    handler = Echo()
    server = AdminServer(handler, header_timeout=5, keepalive_timeout=5, max_body=1024)
    await server.listen("127.0.0.1", 0)
    try:
        yield server, handler, server.addresses[0][1]
    finally:
        await server.stop(0)


async def connect(port: int) -> Conn:
    return await asyncio.open_connection("127.0.0.1", port)


async def read_response(reader: asyncio.StreamReader, *, head: bool = False) -> tuple[int, dict[str, str], bytes]:
    """One response: status, headers (lower-case names), body (by Content-Length; none for HEAD/1xx/204)."""
    raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = raw.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 "), lines[0]
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = b""
    if not head and status >= 200 and status not in (204, 304):
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 5)
    return status, headers, body


async def at_eof(reader: asyncio.StreamReader) -> bool:
    """True when the server closed the connection (nothing more arrives)."""
    return await asyncio.wait_for(reader.read(1), 5) == b""


async def test_keep_alive_serves_two_requests_on_one_connection(echo: Any) -> None:
    server, _, port = echo
    reader, writer = await connect(port)
    for path in ("/a", "/b?x=1"):
        writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        status, headers, body = await read_response(reader)
        assert status == 200 and "connection" not in headers
        assert "date" in headers and headers["content-length"] == str(len(body))
    assert orjson.loads(body)["path"] == "/b" and orjson.loads(body)["query"] == "x=1"
    assert server.accepted == 1 and len(server.conns) == 1
    writer.close()


async def test_pipelined_requests_are_answered_in_order(echo: Any) -> None:
    _, handler, port = echo
    handler.gate = asyncio.Event()
    reader, writer = await connect(port)
    # three requests in one write; the first is held so the others must wait their turn
    writer.write(b"GET /1 HTTP/1.1\r\nHost: localhost\r\n\r\n"
                 b"POST /2 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabc"
                 b"GET /3 HTTP/1.1\r\nHost: localhost\r\n\r\n")
    await asyncio.sleep(0.1)
    assert handler.seen == ["/1"]  # one request in service at a time
    handler.gate.set()
    paths = [orjson.loads((await read_response(reader))[2])["path"] for _ in range(3)]
    assert paths == ["/1", "/2", "/3"]
    writer.close()


async def test_chunked_request_body(echo: Any) -> None:
    _, _, port = echo
    reader, writer = await connect(port)
    writer.write(b"POST /c HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
                 b"5\r\nhello\r\n")
    await asyncio.sleep(0.05)
    writer.write(b"7\r\n, world\r\n0\r\n\r\n")
    status, _, body = await read_response(reader)
    assert status == 200
    assert orjson.loads(body)["body"] == "hello, world"
    assert orjson.loads(body)["content_type"] == "text/plain"
    writer.close()


async def test_expect_100_continue(echo: Any) -> None:
    _, _, port = echo
    reader, writer = await connect(port)
    writer.write(b"PUT /e HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"data")
    status, _, body = await read_response(reader)
    assert status == 200 and orjson.loads(body)["body"] == "data"
    writer.close()


async def test_expect_100_continue_waits_for_earlier_responses(echo: Any) -> None:
    _, handler, port = echo
    handler.gate = asyncio.Event()
    reader, writer = await connect(port)
    writer.write(b"GET /first HTTP/1.1\r\nHost: localhost\r\n\r\n"
                 b"PUT /e HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    await asyncio.sleep(0.1)
    handler.gate.set()
    # the first response, and only then the interim answer to the second request
    assert orjson.loads((await read_response(reader))[2])["path"] == "/first"
    assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"ok")
    assert orjson.loads((await read_response(reader))[2])["body"] == "ok"
    writer.close()


async def test_head_has_headers_but_no_body(echo: Any) -> None:
    _, _, port = echo
    reader, writer = await connect(port)
    writer.write(b"GET /h HTTP/1.1\r\nHost: localhost\r\n\r\n")
    _, get_headers, get_body = await read_response(reader)
    writer.write(b"HEAD /h HTTP/1.1\r\nHost: localhost\r\n\r\nGET /after HTTP/1.1\r\nHost: localhost\r\n\r\n")
    status, headers, _ = await read_response(reader, head=True)
    assert status == 200
    assert headers["content-length"] == get_headers["content-length"] == str(len(get_body))
    # no body bytes came between the HEAD response and the next one
    status, _, body = await read_response(reader)
    assert status == 200 and orjson.loads(body)["path"] == "/after"
    writer.close()


async def test_oversize_body_by_content_length_is_413_at_once(echo: Any) -> None:
    _, handler, port = echo
    reader, writer = await connect(port)
    writer.write(b"POST /big HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1025\r\n\r\n")
    status, headers, body = await read_response(reader)
    assert status == 413 and headers["connection"] == "close"
    assert orjson.loads(body) == {"message": "Request Entity Too Large"}
    assert handler.seen == []
    writer.close()


async def test_oversize_chunked_body_is_413_and_the_answer_survives_unread_input(echo: Any) -> None:
    _, handler, port = echo
    reader, writer = await connect(port)
    chunk = b"400\r\n" + b"x" * 0x400 + b"\r\n"
    writer.write(b"POST /big HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 3)
    status, _, body = await read_response(reader)
    assert status == 413 and orjson.loads(body) == {"message": "Request Entity Too Large"}
    assert await at_eof(reader)
    assert handler.seen == []
    writer.close()


async def test_a_body_at_the_limit_is_accepted(echo: Any) -> None:
    _, _, port = echo
    reader, writer = await connect(port)
    writer.write(b"POST /max HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1024\r\n\r\n" + b"y" * 1024)
    status, _, body = await read_response(reader)
    assert status == 200 and len(orjson.loads(body)["body"]) == 1024
    writer.close()


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE\r\n\r\n",
        b"GEEEET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"GET / HTTP/1.1\nHost: localhost\n\n",
    ],
)
async def test_malformed_request_is_400_and_closes(echo: Any, raw: bytes) -> None:
    _, handler, port = echo
    reader, writer = await connect(port)
    writer.write(raw)
    status, headers, body = await read_response(reader)
    assert (status, orjson.loads(body)) == (400, {"message": "Bad request"})
    assert headers["connection"] == "close"
    assert await at_eof(reader)
    assert handler.seen == []
    writer.close()


async def test_malformed_request_after_a_good_one_answers_both_in_order(echo: Any) -> None:
    _, _, port = echo
    reader, writer = await connect(port)
    writer.write(b"GET /ok HTTP/1.1\r\nHost: localhost\r\n\r\nNOT HTTP AT ALL\r\n\r\n")
    status, headers, _ = await read_response(reader)
    assert status == 200 and "connection" not in headers
    assert (await read_response(reader))[0] == 400
    assert await at_eof(reader)
    writer.close()


async def test_limits_on_target_and_headers(echo: Any) -> None:
    _, _, port = echo
    reader, writer = await connect(port)
    writer.write(b"GET /" + b"a" * (server_mod.MAX_URL + 1) + b" HTTP/1.1\r\nHost: localhost\r\n\r\n")
    status, _, body = await read_response(reader)
    assert (status, orjson.loads(body)) == (414, {"message": "URI too long"})
    writer.close()
    reader, writer = await connect(port)
    writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"b" * (server_mod.MAX_HEADER_LINE + 1) + b"\r\n\r\n")
    status, _, body = await read_response(reader)
    assert (status, orjson.loads(body)) == (400, {"message": "Request header or cookie too large"})
    writer.close()


async def test_http_1_0_closes_unless_keep_alive_is_asked(echo: Any) -> None:
    _, _, port = echo
    reader, writer = await connect(port)
    writer.write(b"GET /old HTTP/1.0\r\n\r\n")
    status, headers, body = await read_response(reader)
    assert status == 200 and headers["connection"] == "close"
    assert orjson.loads(body)["version"] == "1.0"
    assert await at_eof(reader)
    writer.close()
    reader, writer = await connect(port)
    writer.write(b"GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert (await read_response(reader))[1]["connection"] == "keep-alive"
    writer.write(b"GET /again HTTP/1.0\r\n\r\n")
    assert (await read_response(reader))[0] == 200
    assert await at_eof(reader)
    writer.close()


async def test_connection_close_is_honoured(echo: Any) -> None:
    _, _, port = echo
    reader, writer = await connect(port)
    writer.write(b"GET /bye HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\nGET /never HTTP/1.1\r\nHost: localhost\r\n\r\n")
    status, headers, _ = await read_response(reader)
    assert status == 200 and headers["connection"] == "close"
    assert await at_eof(reader)
    writer.close()


async def test_a_client_that_half_closes_after_its_request_still_gets_the_answer(echo: Any) -> None:
    _, handler, port = echo
    handler.gate = asyncio.Event()
    reader, writer = await connect(port)
    writer.write(b"GET /half HTTP/1.1\r\nHost: localhost\r\n\r\n")
    await asyncio.sleep(0.05)
    writer.write_eof()
    await asyncio.sleep(0.05)
    handler.gate.set()
    status, headers, _ = await read_response(reader)
    assert status == 200 and headers["connection"] == "close"
    assert await at_eof(reader)
    writer.close()


async def test_request_target_forms(echo: Any) -> None:
    _, _, port = echo
    reader, writer = await connect(port)
    writer.write(b"GET /caf%C3%A9/%2F?q=%FF&r HTTP/1.1\r\nHost: localhost\r\n\r\n")
    body = orjson.loads((await read_response(reader))[2])
    assert (body["path"], body["query"]) == ("/caf%C3%A9/%2F", "q=%FF&r")  # as sent: decoding is the router's
    writer.write(b"GET http://other.test/abs?z=1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
    body = orjson.loads((await read_response(reader))[2])
    assert (body["path"], body["query"]) == ("/abs", "z=1")
    writer.close()
    # raw (not percent-encoded) non-ASCII bytes: llhttp refuses the target
    reader, writer = await connect(port)
    writer.write(b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert (await read_response(reader))[0] == 400
    writer.close()


async def test_handler_error_is_500_and_the_connection_goes_on(echo: Any) -> None:
    _, _, port = echo
    reader, writer = await connect(port)
    writer.write(b"GET /boom HTTP/1.1\r\nHost: localhost\r\n\r\n")
    status, _, body = await read_response(reader)
    assert (status, orjson.loads(body)) == (500, {"message": "An unexpected error occurred"})
    writer.write(b"GET /next HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert (await read_response(reader))[0] == 200
    writer.close()


async def test_idle_keep_alive_and_header_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_mod, "SWEEP_S", 0.05)
    server = AdminServer(Echo(), header_timeout=0.3, keepalive_timeout=0.3)
    await server.listen("127.0.0.1", 0)
    port = server.addresses[0][1]
    try:
        reader, writer = await connect(port)
        writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert (await read_response(reader))[0] == 200
        assert await at_eof(reader)  # idle past keepalive_timeout
        writer.close()
        reader, writer = await connect(port)
        writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n")  # the head never ends
        status, headers, _ = await read_response(reader)
        assert status == 408 and headers["connection"] == "close"
        assert await at_eof(reader)
        writer.close()
        await asyncio.sleep(0.1)
        assert not server.conns
    finally:
        await server.stop(0)


async def test_stop_finishes_the_request_in_service_and_refuses_new_connections(echo: Any) -> None:
    server, handler, port = echo
    handler.gate = asyncio.Event()
    busy_reader, busy_writer = await connect(port)
    idle_reader, idle_writer = await connect(port)
    busy_writer.write(b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n")
    await asyncio.sleep(0.1)
    stopping = asyncio.create_task(server.stop(5))
    await asyncio.sleep(0.1)
    assert await at_eof(idle_reader)  # an idle keep-alive connection is closed at once
    with pytest.raises(OSError):
        await connect(port)
    handler.gate.set()
    status, headers, _ = await read_response(busy_reader)
    assert status == 200 and headers["connection"] == "close"
    await asyncio.wait_for(stopping, 5)
    assert not server.conns
    busy_writer.close()
    idle_writer.close()


async def test_tls_listener(tmp_path: Any) -> None:
    from servegate.proxy.tls import server_ssl_context
    from servegate.settings import load_settings

    settings = load_settings(env={"SERVEGATE_PREFIX": str(tmp_path)})
    server = AdminServer(Echo())
    await server.listen("127.0.0.1", 0, ssl=server_ssl_context(settings))
    try:
        client = ssl.create_default_context()
        client.check_hostname = False
        client.verify_mode = ssl.CERT_NONE
        reader, writer = await asyncio.open_connection("127.0.0.1", server.addresses[0][1], ssl=client)
        for _ in range(2):
            writer.write(b"GET /tls HTTP/1.1\r\nHost: localhost\r\n\r\n")
            status, _, body = await read_response(reader)
            assert status == 200 and orjson.loads(body)["path"] == "/tls"
        writer.close()
    finally:
        await server.stop(0)


def test_http_date_format() -> None:
    assert server_mod.http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"
