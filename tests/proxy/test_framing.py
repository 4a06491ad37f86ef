"""Framing: an error answered before the request body is read reaches a client still uploading (lingering
close, not a reset), and a request Transfer-Encoding other than `chunked` is refused (501, like nginx)."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator

import pytest
import requests
from proxy_support import Backend, Proxy, RawUpstream, route, service
from test_plugins_path import plugin

MIB = 1024 * 1024


def upload_then_read(port: int, path: str, size: int, extra: str = "", pause_after: int = 0,
                     pause_s: float = 0.0) -> bytes:
    """Send a whole POST body of `size` bytes, and only then read the answer (like a simple client)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                  f"Content-Length: {size}\r\n{extra}\r\n".encode())
        block = b"x" * (256 * 1024)
        sent = 0
        while sent < size:
            n = min(len(block), size - sent)
            s.sendall(block[:n])
            sent += n
            if pause_after and sent == pause_after:
                time.sleep(pause_s)
        buf = b""
        while chunk := s.recv(65536):
            buf += chunk
        return buf


@pytest.fixture
def dead_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        yield s.getsockname()[1]


@pytest.fixture
def deaf_upstream() -> Iterator[int]:
    """An upstream that accepts connections and never reads from them."""
    def hold(c: socket.socket) -> None:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)

    with RawUpstream(hold) as up:
        yield up.port
    for c in up.accepted:
        c.close()


def _proxy(start_proxy, backend: Backend, upstream_port: int | None = None, **svc_kw: object) -> Proxy:
    svc = service(upstream_port or backend.port, **svc_kw)
    auth_rt = route(svc, paths=["/auth"])
    body_rt = route(svc, paths=["/bodykey"])
    consumer = {"id": str(uuid.uuid4()), "username": "u", "custom_id": None, "tags": None, "created_at": 0,
                "updated_at": 0}
    conf = {"key_names": ["apikey"], "hide_credentials": False, "anonymous": None, "key_in_header": True,
            "key_in_query": True, "key_in_body": False, "run_on_preflight": True, "realm": None}
    return start_proxy({"services": [svc], "routes": [route(svc, paths=["/v1"], strip_path=False), auth_rt,
                                                      body_rt],
                        "consumers": [consumer], "keyauth_credentials": [],
                        "plugins": [plugin("key-auth", conf, route={"id": auth_rt["id"]}),
                                    plugin("key-auth", {**conf, "key_in_body": True}, route={"id": body_rt["id"]})]})


@pytest.mark.parametrize(("path", "status"), [("/nope", b"404"), ("/auth/x", b"401")])
def test_early_answer_reaches_uploading_client(backend: Backend, start_proxy, path: str, status: bytes) -> None:
    proxy = _proxy(start_proxy, backend)
    resp = upload_then_read(proxy.port, path, 8 * MIB)
    assert resp.startswith(b"HTTP/1.1 " + status), resp[:200]
    assert b"Connection: close" in resp
    # the connection stays usable for the proxy's other clients
    assert requests.get(proxy.url + "/v1/models", timeout=5).status_code == 200


def test_502_reaches_uploading_client(backend: Backend, start_proxy, dead_port: int) -> None:
    proxy = _proxy(start_proxy, backend, dead_port, retries=1)
    resp = upload_then_read(proxy.port, "/v1/upload", 8 * MIB)
    assert resp.startswith(b"HTTP/1.1 502"), resp[:200]


def test_504_reaches_uploading_client(backend: Backend, start_proxy, deaf_upstream: int) -> None:
    proxy = _proxy(start_proxy, backend, deaf_upstream, write_timeout=300)
    resp = upload_then_read(proxy.port, "/v1/upload", 48 * MIB)
    assert resp.startswith(b"HTTP/1.1 504"), resp[:200]


def test_413_reaches_uploading_client(backend: Backend, start_proxy) -> None:
    proxy = _proxy(start_proxy, backend)
    resp = upload_then_read(proxy.port, "/bodykey/x", 17 * MIB)
    assert resp.startswith(b"HTTP/1.1 413"), resp[:200]


def test_lingering_close_is_bounded_in_time(backend: Backend, start_proxy) -> None:
    """After the early answer the proxy reads and drops the body; a client that stops sending without closing
    is closed after the lingering timeout (5 s without data)."""
    proxy = _proxy(start_proxy, backend)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(b"POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n" + b"x" * (2 * MIB))
        buf = b""
        while chunk := s.recv(65536):  # the answer, then end of stream (the proxy shut its side down)
            buf += chunk
        assert buf.startswith(b"HTTP/1.1 404")
        s.sendall(b"x" * 1000)  # still read and dropped
        time.sleep(1)
        s.sendall(b"x" * 1000)
        time.sleep(6.5)
        with pytest.raises(OSError):  # closed by now: the peer answers with a reset
            for _ in range(20):
                s.sendall(b"x" * 65536)
                time.sleep(0.05)


def test_lingering_close_is_bounded_in_bytes(backend: Backend, start_proxy) -> None:
    proxy = _proxy(start_proxy, backend)
    with pytest.raises(OSError):
        upload_then_read(proxy.port, "/nope", 200 * MIB)


@pytest.mark.parametrize("te", ["gzip, chunked", "identity, chunked", "gzip", "chunked, gzip"])
def test_transfer_coding_other_than_chunked_is_501(simple, te: str) -> None:
    backend, proxy = simple
    before = backend.stats()["requests"]
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.sendall(f"POST /__echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {te}\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                  .encode())
        buf = b""
        while chunk := s.recv(65536):
            buf += chunk
    assert buf.startswith(b"HTTP/1.1 501 Not Implemented\r\n"), buf
    assert b"Connection: close" in buf
    assert backend.stats()["requests"] == before + 1  # only the stats call itself: nothing was forwarded


def test_duplicate_transfer_encoding_is_400(simple) -> None:
    _, proxy = simple
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.sendall(b"POST /__echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        buf = s.recv(65536)
    assert buf.startswith(b"HTTP/1.1 400"), buf


@pytest.mark.parametrize("te", ["chunked", "Chunked", " chunked"])
def test_chunked_is_forwarded(simple, te: str) -> None:
    _, proxy = simple
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.sendall(f"POST /__echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {te}\r\nConnection: close\r\n\r\n"
                  "5\r\nhello\r\n0\r\n\r\n".encode())
        buf = b""
        while chunk := s.recv(65536):
            buf += chunk
    assert buf.startswith(b"HTTP/1.1 200") and b'"body": "hello"' in buf
