"""Malformed or abusive client input, sent as raw bytes: one test per rule."""

from __future__ import annotations

import socket
import time

import pytest
from proxy_support import Backend, Proxy


def exchange(proxy: Proxy, data: bytes, wait_close: bool = True, timeout: float = 5) -> bytes:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout) as s:
        s.sendall(data)
        buf = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            buf += chunk
            if not wait_close:
                break
    return buf


def status(resp: bytes) -> int:
    return int(resp.split(b" ", 2)[1])


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"POST /v1/models HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"0\r\n\r\n", id="cl-and-te"),
        pytest.param(b"POST /v1/models HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab",
                     id="duplicate-cl"),
        pytest.param(b"POST /v1/models HTTP/1.1\r\nHost: x\r\nContent-Length: 2x\r\n\r\nab", id="bad-cl"),
        pytest.param(b"POST /v1/models HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
                     id="bad-chunk-size"),
        pytest.param(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-A: b\r\n  folded\r\n\r\n", id="obs-fold"),
        pytest.param(b"GET /v1/models HTTP/1.1\r\nHost : x\r\n\r\n", id="space-before-colon"),
        pytest.param(b"GET /v1/models HTTP/1.1\nHost: x\n\n", id="bare-lf"),
        pytest.param(b"GET /v1/models\r\n\r\n", id="http-0.9"),
        pytest.param(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
                     id="duplicate-host"),
        pytest.param(b"GET /v1/models HTTP/1.1\r\n\r\n", id="http11-without-host"),
    ],
)
def test_malformed_request_400_and_close(simple: tuple[Backend, Proxy], raw: bytes) -> None:
    _, proxy = simple
    resp = exchange(proxy, raw)
    assert status(resp) == 400, resp
    assert b"Connection: close" in resp
    assert b"Bad request" in resp


def test_request_line_too_long_414(simple: tuple[Backend, Proxy]) -> None:
    _, proxy = simple
    resp = exchange(proxy, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status(resp) == 414


def test_one_header_too_large(simple: tuple[Backend, Proxy]) -> None:
    _, proxy = simple
    resp = exchange(proxy, b"GET / HTTP/1.1\r\nHost: x\r\nCookie: " + b"c" * 9000 + b"\r\n\r\n")
    assert status(resp) == 400 and b"Request header or cookie too large" in resp


def test_headers_too_large_in_total(simple: tuple[Backend, Proxy]) -> None:
    _, proxy = simple
    many = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 4000) for i in range(10))
    resp = exchange(proxy, b"GET / HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    assert status(resp) == 400 and b"Request header or cookie too large" in resp


def test_endless_header_stream_cut(simple: tuple[Backend, Proxy]) -> None:
    _, proxy = simple
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: ")
        got = b""
        try:
            for _ in range(1024):  # 1 MB of one header value, never finished
                s.sendall(b"v" * 1024)
        except OSError:
            pass
        got = s.recv(65536)
    assert status(got) == 400


def test_client_header_timeout_408(backend: Backend, start_proxy) -> None:
    from proxy_support import route, service

    svc = service(backend.port)
    proxy = start_proxy({"services": [svc], "routes": [route(svc)]}, client_header_timeout="0.3")
    t0 = time.monotonic()
    resp = exchange(proxy, b"GET /v1/models HTTP/1.1\r\nHost: x\r\n")
    assert status(resp) == 408
    assert time.monotonic() - t0 < 1.5
    # a connection that never sends anything is closed after the same timeout
    t0 = time.monotonic()
    assert exchange(proxy, b"") == b""
    assert time.monotonic() - t0 < 1.5


def test_idle_keepalive_timeout_closes(backend: Backend, start_proxy) -> None:
    from proxy_support import route, service

    svc = service(backend.port)
    proxy = start_proxy({"services": [svc], "routes": [route(svc)]}, keepalive_timeout="0.4")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
        t0 = time.monotonic()
        buf = b""
        while chunk := s.recv(65536):
            buf += chunk
        took = time.monotonic() - t0
    assert status(buf) == 200 and buf.count(b"HTTP/1.1") == 1
    assert 0.3 < took < 1.5


def test_trace_and_connect_refused(simple: tuple[Backend, Proxy]) -> None:
    _, proxy = simple
    resp = exchange(proxy, b"TRACE /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status(resp) == 405
    resp = exchange(proxy, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
    assert status(resp) in (400, 405)


def test_connection_close_honoured(simple: tuple[Backend, Proxy]) -> None:
    _, proxy = simple
    resp = exchange(proxy, b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status(resp) == 200 and b"Connection: close" in resp


def test_http10_client_gets_unchunked_stream(simple: tuple[Backend, Proxy]) -> None:
    _, proxy = simple
    body = b'{"model": "m", "stream": true, "max_tokens": 2}'
    resp = exchange(proxy, b"POST /v1/chat/completions HTTP/1.0\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body))
    head, _, payload = resp.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding" not in head and b"Connection: close" in head
    assert payload.startswith(b"data: {") and payload.endswith(b"data: [DONE]\n\n")
