"""Relay behaviour through real proxy and backend processes: headers, streaming, SDK, bodies, pooling."""

from __future__ import annotations

import json
import socket
import time

import openai
import requests
from proxy_support import Backend, Proxy, read_response, route, service


def echo(proxy: Proxy, path: str = "/__echo", **kw: object) -> tuple[requests.Response, dict]:
    r = requests.get(proxy.url + path, timeout=10, **kw)  # type: ignore[arg-type]
    return r, r.json()


def hdr(seen: dict, name: str) -> list[str]:
    return [v for k, v in seen["headers"] if k.lower() == name.lower()]


def test_upstream_request_headers(simple: tuple[Backend, Proxy]) -> None:
    backend, proxy = simple
    r, seen = echo(proxy, "/__echo?q=1&x=%20y", headers={
        "X-Forwarded-For": "10.0.0.9", "Via": "1.0 edge", "Connection": "keep-alive, X-Secret-Hop",
        "X-Secret-Hop": "drop me", "Keep-Alive": "timeout=5", "Proxy-Connection": "keep-alive",
        "TE": "gzip", "X-Forwarded-Proto": "https", "X-Custom": "kept"})
    assert r.status_code == 200
    assert seen["url"] == "/__echo?q=1&x=%20y"
    assert hdr(seen, "host") == [f"127.0.0.1:{backend.port}"]
    assert hdr(seen, "x-forwarded-for") == ["10.0.0.9, 127.0.0.1"]
    # untrusted peer: its X-Forwarded-Proto is replaced
    assert hdr(seen, "x-forwarded-proto") == ["http"]
    assert hdr(seen, "x-forwarded-host") == ["127.0.0.1"]
    assert hdr(seen, "x-forwarded-port") == [str(proxy.port)]
    assert hdr(seen, "x-forwarded-path") == ["/__echo"]
    assert hdr(seen, "x-forwarded-prefix") == []
    assert hdr(seen, "x-real-ip") == ["127.0.0.1"]
    assert hdr(seen, "via") == ["1.0 edge, 1.1 servegate/0.1.0"]
    rid = hdr(seen, "x-kong-request-id")
    assert len(rid) == 1 and len(rid[0]) == 32 and int(rid[0], 16) >= 0 and rid[0] == rid[0].lower()
    assert r.headers["X-Kong-Request-Id"] == rid[0]
    for gone in ("x-secret-hop", "keep-alive", "proxy-connection", "te"):
        assert hdr(seen, gone) == [], gone
    assert hdr(seen, "x-custom") == ["kept"]
    assert hdr(seen, "connection") == ["keep-alive"]


def test_downstream_headers(simple: tuple[Backend, Proxy]) -> None:
    _, proxy = simple
    r, _ = echo(proxy)
    assert r.headers["Via"] == "1.0 backendproxy, 1.1 servegate/0.1.0"
    assert r.headers["Server"] == "fake-backend"  # upstream Server kept, none added
    assert int(r.headers["X-Kong-Upstream-Latency"]) >= 0
    assert int(r.headers["X-Kong-Proxy-Latency"]) >= 0
    assert "X-Hop" not in r.headers  # listed in the upstream's Connection header
    r = requests.get(proxy.url + "/v1/models", timeout=5)
    assert r.headers["Server"] == "servegate/0.1.0"


def test_host_and_prefix_handling(backend: Backend, start_proxy) -> None:
    svc = service(backend.port, path="/__echo")
    svc2 = service(backend.port)
    proxy = start_proxy({"services": [svc, svc2], "routes": [
        route(svc, paths=["/api"], strip_path=True),
        route(svc2, paths=["/__echo/keep"], strip_path=False, preserve_host=True),
    ]})
    r, seen = echo(proxy, "/api/x?y=1")
    assert seen["url"] == "/__echo/x?y=1"
    assert hdr(seen, "x-forwarded-prefix") == ["/api"]
    r, seen = echo(proxy, "/__echo/keep", headers={"Host": "example.test:8080"})
    assert seen["url"] == "/__echo/keep"
    assert hdr(seen, "host") == ["example.test:8080"]
    assert hdr(seen, "x-forwarded-host") == ["example.test"]
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.sendall(b"GET /api? HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b'"url": "/__echo?"' in read_response(s)


def test_errors_negotiated(backend: Backend, start_proxy) -> None:
    proxy = start_proxy({"services": [], "routes": [route(None, paths=["/nosvc"])]})
    r = requests.get(proxy.url + "/nothing", headers={"Accept": "application/json"}, timeout=5)
    assert r.status_code == 404
    rid = r.headers["X-Kong-Request-Id"]
    assert r.text == '{\n  "message":"no Route matched with those values",\n  "request_id":"' + rid + '"\n}'
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    assert r.headers["Server"] == "servegate/0.1.0"
    assert "X-Kong-Response-Latency" in r.headers and "Via" not in r.headers
    r = requests.get(proxy.url + "/nosvc", headers={"Accept": "text/plain"}, timeout=5)
    assert r.status_code == 503
    assert r.text == f"no Service found with those values\nrequest_id: {r.headers['X-Kong-Request-Id']}\n"
    r = requests.get(proxy.url + "/nothing", headers={"Accept": "text/html;q=0.5, application/xml"}, timeout=5)
    assert r.text.startswith("<?xml") and "<message>no Route matched with those values</message>" in r.text
    r = requests.get(proxy.url + "/nothing", headers={"Accept": "text/html"}, timeout=5)
    assert "<p>no Route matched with those values.</p>" in r.text


def test_sse_first_chunk_before_backend_finishes(simple: tuple[Backend, Proxy]) -> None:
    _, proxy = simple
    t0 = time.monotonic()
    r = requests.post(proxy.url + "/v1/chat/completions", json={"model": "m", "stream": True, "max_tokens": 10},
                      headers={"X-Fake-Pace-Ms": "100"}, stream=True, timeout=10)
    assert r.headers["Content-Type"] == "text/event-stream"
    arrivals = []
    for line in r.iter_lines():
        if line.startswith(b"data: "):
            arrivals.append(time.monotonic() - t0)
    assert len(arrivals) == 13  # role + 10 tokens + finish + [DONE]
    assert arrivals[0] < 0.5  # the whole stream takes >= 1 s
    assert arrivals[-1] > 0.9
    # chunks are not coalesced: token events arrive spread over time
    assert arrivals[5] - arrivals[1] > 0.3


def test_openai_sdk_sync_and_stream(simple: tuple[Backend, Proxy]) -> None:
    _, proxy = simple
    client = openai.OpenAI(base_url=proxy.url + "/v1", api_key="sk-test", max_retries=0)
    out = client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}],
                                         max_tokens=4)
    assert out.choices[0].message.content == "tok0 tok1 tok2 tok3"
    assert out.usage is not None and out.usage.completion_tokens == 4
    stream = client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}],
                                            max_tokens=6, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "".join(f"tok{i} " for i in range(6))
    comp = client.completions.create(model="fake-model", prompt="x", max_tokens=2)
    assert comp.choices[0].text == "tok0 tok1"
    emb = client.embeddings.create(model="fake-model", input=["a", "b"])
    assert len(emb.data) == 2
    assert [m.id for m in client.models.list()] == ["fake-model"]


def test_upstream_keepalive_reused(simple: tuple[Backend, Proxy]) -> None:
    backend, proxy = simple
    before = backend.stats()["connections"]
    with requests.Session() as s:
        for _ in range(20):
            assert s.get(proxy.url + "/v1/models", timeout=5).status_code == 200
    # the stats calls themselves add one direct connection each
    assert backend.stats()["connections"] - before <= 2


def test_chunked_request_body_and_expect(simple: tuple[Backend, Proxy]) -> None:
    _, proxy = simple
    body = json.dumps({"model": "m", "max_tokens": 2}).encode()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        s.sendall(b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body))
        data = read_response(s)
    assert data.startswith(b"HTTP/1.1 200")
    assert b"tok0 tok1" in data


def test_pipelined_requests_answered_in_order(simple: tuple[Backend, Proxy]) -> None:
    _, proxy = simple
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.sendall(b"GET /__echo?n=1 HTTP/1.1\r\nHost: x\r\nX-Fake-Sleep-Ms: 200\r\n\r\n"
                  b"GET /__echo?n=2 HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /__echo?n=3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    assert buf.count(b"HTTP/1.1 200") == 3
    assert buf.index(b"n=1") < buf.index(b"n=2") < buf.index(b"n=3")


def test_head_request(simple: tuple[Backend, Proxy]) -> None:
    _, proxy = simple
    with requests.Session() as s:
        r = s.head(proxy.url + "/v1/models", timeout=5)
        assert r.status_code == 200 and r.content == b""
        assert s.get(proxy.url + "/v1/models", timeout=5).json()["data"][0]["id"] == "fake-model"


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_large_body_streamed_without_buffering(simple: tuple[Backend, Proxy]) -> None:
    _, proxy = simple
    size = 50 * 1024 * 1024
    piece = b"x" * (256 * 1024)
    peak = [rss_kb(proxy.p.pid)]
    start = peak[0]

    def gen():
        sent = 0
        while sent < size:
            yield piece
            sent += len(piece)
            if sent % (8 * 1024 * 1024) == 0:
                peak.append(rss_kb(proxy.p.pid))

    with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as s:
        s.sendall(b"POST /__upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
        for chunk in gen():
            s.sendall(chunk)
        data = read_response(s, 30)
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b'{"bytes": %d}' % size)
    r = requests.post(proxy.url + "/__upload", data=gen(), timeout=60)  # chunked
    assert r.status_code == 200 and r.json() == {"bytes": size}
    peak.append(rss_kb(proxy.p.pid))
    assert max(peak) - start < 20 * 1024, (start, peak)


def test_trusted_peer_forwarded_headers(backend: Backend, start_proxy) -> None:
    svc = service(backend.port)
    proxy = start_proxy({"services": [svc], "routes": [route(svc)]}, trusted_ips="127.0.0.1/32")
    r, seen = echo(proxy, headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "api.example",
                                   "X-Forwarded-Port": "443", "X-Real-IP": "203.0.113.7"})
    assert hdr(seen, "x-forwarded-proto") == ["https"]
    assert hdr(seen, "x-forwarded-host") == ["api.example"]
    assert hdr(seen, "x-forwarded-port") == ["443"]
    assert hdr(seen, "x-real-ip") == ["203.0.113.7"]
    assert hdr(seen, "x-forwarded-for") == ["203.0.113.7"]


def test_error_body_type_defaults(start_proxy) -> None:
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))
        svc = service(dead.getsockname()[1], retries=0)
        proxy = start_proxy({"services": [svc], "routes": [route(svc, paths=["/up"])]})

        def raw(req: bytes) -> bytes:
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
                s.sendall(req)
                return read_response(s)

        # Kong's own errors (router): JSON when the client states no Accept
        resp = raw(b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"Content-Type: application/json; charset=utf-8" in resp and b'"message":"no Route' in resp
        # nginx-style errors (502): Accept, else request Content-Type, else error_default_type (text/plain)
        resp = raw(b"GET /up HTTP/1.1\r\nHost: x\r\n\r\n")
        assert resp.startswith(b"HTTP/1.1 502") and b"Content-Type: text/plain; charset=utf-8" in resp
        resp = raw(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
        assert resp.startswith(b"HTTP/1.1 502") and b"Content-Type: application/json; charset=utf-8" in resp


def test_error_before_body_keeps_connection(backend: Backend, start_proxy) -> None:
    """A 404 answered before the request body was read: the body is dropped, the connection stays usable."""
    svc = service(backend.port)
    proxy = start_proxy({"services": [svc], "routes": [route(svc, paths=["/v1"], strip_path=False)]})
    body = b"x" * 5000
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.sendall(b"POST /nothing HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
        first = read_response(s)
        assert first.startswith(b"HTTP/1.1 404") and b"Connection: keep-alive" in first
        s.sendall(body[:100])
        time.sleep(0.05)
        s.sendall(body[100:] + b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
        second = read_response(s)
        assert second.startswith(b"HTTP/1.1 200") and b"fake-model" in second
    # with Expect: 100-continue the client may never send the body: close instead
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.sendall(b"POST /nothing HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        resp = read_response(s)
        assert resp.startswith(b"HTTP/1.1 404") and b"Connection: close" in resp
        assert s.recv(100) == b""


def test_pooled_upstream_with_big_body_in_first_read(simple: tuple[Backend, Proxy]) -> None:
    """Head and a large body arriving in one read on a pooled upstream connection (one coalesced write)."""
    _, proxy = simple
    assert requests.get(proxy.url + "/v1/models", timeout=5).status_code == 200  # warm the pool
    body = b"y" * (3 * 1024 * 1024)
    for _ in range(2):
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
            s.sendall(b"POST /__upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            resp = read_response(s, 10)
        assert resp.startswith(b"HTTP/1.1 200") and resp.endswith(b'{"bytes": %d}' % len(body))
