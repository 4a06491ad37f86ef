"""The hot path's building blocks, checked byte for byte: request/response heads, the lazy header mapping,
the per-match cache and the plugin header bytes cache."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

from proxy_support import route, service

from servegate.proxy.headers import REQ_SKIP, VIA_TOKEN, HeaderView, downstream_head, upstream_head
from servegate.proxy.phases import _encoded
from servegate.proxy.prep import PrepCache
from servegate.snapshot import build_snapshot

V = VIA_TOKEN


def raw(*pairs: tuple[bytes, bytes]) -> list[tuple[bytes, bytes, bytes]]:
    return [(n.lower(), n, v) for n, v in pairs]


def up(headers: list[tuple[bytes, bytes, bytes]], **kw: Any) -> bytes:
    args: dict[str, Any] = dict(client_ip=b"10.0.0.9", trusted=False, scheme=b"http", fwd_host=b"example.com",
                                fwd_port=b"8000", fwd_path=b"/v1/x", fwd_prefix=None, request_id=b"rid",
                                framing=b"Content-Length: 2\r\n", client_te_trailers=False)
    args.update(kw)
    return upstream_head(b"POST", b"/v1/x?a=1", b"backend:9000", headers, **args)


def test_upstream_head_plain() -> None:
    head = up(raw((b"Host", b"example.com"), (b"Content-Type", b"application/json"), (b"Content-Length", b"2")))
    assert head == (
        b"POST /v1/x?a=1 HTTP/1.1\r\nHost: backend:9000\r\nContent-Type: application/json\r\n"
        b"X-Forwarded-For: 10.0.0.9\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: example.com\r\n"
        b"X-Forwarded-Port: 8000\r\nX-Forwarded-Path: /v1/x\r\nX-Real-IP: 10.0.0.9\r\nVia: 1.1 " + V + b"\r\n"
        b"X-Kong-Request-Id: rid\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n"
    )


def test_upstream_head_hop_by_hop_cleared_and_appended() -> None:
    headers = raw((b"Connection", b"keep-alive, X-Hop"), (b"X-Hop", b"1"), (b"X-Forwarded-For", b"1.1.1.1"),
                  (b"Via", b"1.0 a"), (b"X-Forwarded-Proto", b"https"), (b"X-Secret", b"s"), (b"Accept", b"*/*"),
                  (b"TE", b"trailers"))
    for has_connection in (True, None):  # told by the caller, or found by looking
        head = up(headers, drop=REQ_SKIP | {b"x-secret"}, set_headers=[(b"X-Consumer-ID", b"c1")],
                  client_te_trailers=True, fwd_prefix=b"/v1", has_connection=has_connection)
        lines = head.split(b"\r\n")
        assert b"X-Hop: 1" not in lines and b"X-Secret: s" not in lines and b"Accept: */*" in lines
        assert b"X-Forwarded-For: 1.1.1.1, 10.0.0.9" in lines
        assert b"X-Forwarded-Proto: http" in lines  # untrusted peer: its X-Forwarded-Proto is not believed
        assert b"Via: 1.0 a, 1.1 " + V in lines
        assert b"X-Forwarded-Prefix: /v1" in lines
        assert lines.index(b"TE: trailers") < lines.index(b"X-Consumer-ID: c1") < lines.index(b"Content-Length: 2")


def test_upstream_head_trusted_forwarded() -> None:
    headers = raw((b"X-Forwarded-Proto", b"https"), (b"X-Forwarded-Host", b"outer"), (b"X-Forwarded-Port", b"443"),
                  (b"X-Forwarded-Path", b"/outer"), (b"X-Forwarded-Prefix", b"/p"))
    lines = up(headers, trusted=True).split(b"\r\n")
    for line in (b"X-Forwarded-Proto: https", b"X-Forwarded-Host: outer", b"X-Forwarded-Port: 443",
                 b"X-Forwarded-Path: /outer", b"X-Forwarded-Prefix: /p"):
        assert line in lines


def down(headers: list[tuple[bytes, bytes]], **kw: Any) -> tuple[bytes, bool]:
    args: dict[str, Any] = dict(request_id=b"rid", upstream_ms=3, proxy_ms=1, keep_alive=True,
                                client_te_trailers=False, strip_chunked=False)
    args.update(kw)
    return downstream_head(200, b"OK", headers, **args)


def test_downstream_head_plain() -> None:
    head, close = down([(b"Content-Type", b"text/plain"), (b"Content-Length", b"5")])
    assert not close
    assert head == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nVia: 1.1 " + V + b"\r\n"
        b"Server: " + V + b"\r\nX-Kong-Upstream-Latency: 3\r\nX-Kong-Proxy-Latency: 1\r\n"
        b"X-Kong-Request-Id: rid\r\nConnection: keep-alive\r\n\r\n"
    )


def test_downstream_head_rewrites() -> None:
    head, close = down([(b"Connection", b"close, X-Hop"), (b"X-Hop", b"1"), (b"Server", b"up"), (b"Via", b"1.0 b"),
                        (b"Transfer-Encoding", b"chunked"), (b"Keep-Alive", b"timeout=5")],
                       strip_chunked=True, extra=b"X-RateLimit-Limit-Minute: 5\r\n")
    lines = head.split(b"\r\n")
    assert not close
    assert b"X-Hop: 1" not in lines and b"Transfer-Encoding: chunked" not in lines
    assert b"Keep-Alive: timeout=5" not in lines
    assert b"Server: up" in lines and b"Server: " + V not in lines
    assert b"Via: 1.0 b, 1.1 " + V in lines and b"X-RateLimit-Limit-Minute: 5" in lines


def test_downstream_head_close_delimited() -> None:
    head, close = down([(b"Content-Type", b"text/plain")])
    assert close and head.endswith(b"Connection: close\r\n\r\n")


def test_header_view_mapping() -> None:
    hv = HeaderView(raw((b"Host", b"h"), (b"X-A", b"1"), (b"x-a", b"2"), (b"apikey", b"k\xe9")))
    assert hv.get("apikey") == "k\xe9"
    assert hv.get("missing") is None and hv.get("missing", "d") == "d"
    assert hv.get("x-a") == ["1", "2"]  # repeated: every value, in order
    assert hv.get("h\u20ac") is None  # not latin-1: cannot be a header name
    assert "host" in hv and hv["host"] == "h" and len(hv) == 3
    assert sorted(hv) == ["apikey", "host", "x-a"]
    assert hv.get("apikey") == "k\xe9"  # after the dict is built, same answers


def _snapshot(svc: dict[str, Any], **route_kw: Any) -> Any:
    return build_snapshot({"services": [svc], "routes": [route(svc, **route_kw)]}, 1, with_plugins=False)


def _match(snap: Any, path: str = "/v1/chat") -> Any:
    return snap.router.match("POST", "example.com", path, HeaderView([]), 8000, None)


def test_prep_cache_follows_snapshot() -> None:
    svc = service(9000, retries=2, read_timeout=1500, path="/base")
    snap = _snapshot(svc, paths=["/v1"], strip_path=True)
    cache = PrepCache()
    m = _match(snap)
    prep = cache.get(snap, m)
    assert prep is cache.get(snap, m)
    assert prep.key == ("127.0.0.1", 9000, False) and prep.host == b"127.0.0.1:9000"
    assert prep.target == b"/base/chat" and prep.fwd_prefix == b"/v1"
    assert prep.max_tries == 3 and prep.read_timeout == 1.5 and prep.plan is None and not prep.https_only
    snap2 = _snapshot({**svc, "port": 80, "id": str(uuid.uuid4())}, paths=["/v1"], protocols=["https"])
    prep2 = cache.get(snap2, _match(snap2))
    assert prep2.host == b"127.0.0.1" and prep2.https_only and prep2.fwd_prefix == b"/v1"
    assert list(cache.preps.values()) == [prep2]  # the old snapshot's entries are gone


def test_encoded_upstream_headers() -> None:
    headers = {"x-consumer-id": ("X-Consumer-ID", "c1"), "x-anonymous-consumer": ("X-Anonymous-Consumer", None)}
    set_headers, drop = _encoded(headers)
    assert set_headers == [(b"X-Consumer-ID", b"c1")]
    assert drop == REQ_SKIP | {b"x-consumer-id", b"x-anonymous-consumer"}
    assert _encoded(dict(headers)) == (set_headers, drop)
    other, _ = _encoded({"x-consumer-id": ("X-Consumer-ID", "c2")})
    assert other == [(b"X-Consumer-ID", b"c2")]


class _Transport:
    """Stands in for the asyncio transports: collects what the proxy writes."""

    def __init__(self) -> None:
        self.out: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    abort = pause_reading = resume_reading = close


def test_plugin_requests_leave_no_cyclic_garbage() -> None:
    """Requests through key-auth (proxied and rejected) are freed by reference counting alone: no cyclic
    GC work per request, and the exchange does not outlive its request."""
    import asyncio
    import gc

    from servegate.plugins import load_all
    from servegate.proxy.client import ClientProtocol
    from servegate.proxy.server import ProxyServer
    from servegate.proxy.upstream import UpstreamProtocol
    from servegate.settings import load_settings

    load_all()
    svc = service(9)
    rt = route(svc, paths=["/v1"], strip_path=False)
    consumer = {"id": str(uuid.uuid4()), "username": "u", "custom_id": None}
    cred = {"id": str(uuid.uuid4()), "key": "secret-key", "consumer": {"id": consumer["id"]}, "ttl": None}
    plugin = {"id": str(uuid.uuid4()), "name": "key-auth", "route": {"id": rt["id"]}, "enabled": True,
              "protocols": ["http", "https"], "config": {"key_names": ["apikey"]}}
    snap = build_snapshot({"services": [svc], "routes": [rt], "consumers": [consumer],
                           "keyauth_credentials": [cred], "plugins": [plugin]}, 1)
    settings = load_settings(env={"SERVEGATE_PROXY_ACCESS_LOG": "off"}, conf_path=None)
    server = ProxyServer(settings, SimpleNamespace(current=snap))
    loop = asyncio.new_event_loop()
    server.loop = loop
    try:
        client_t, up_t = _Transport(), _Transport()
        conn = ClientProtocol(server, b"http", 8000)
        conn.connection_made(client_t)
        upstream = UpstreamProtocol(("127.0.0.1", 9, False), server.pool)
        upstream.connection_made(up_t)
        server.pool.put(upstream)
        ok = b"POST /v1/chat HTTP/1.1\r\nHost: h\r\napikey: secret-key\r\nContent-Length: 2\r\n\r\n{}"
        bad = ok.replace(b"secret-key", b"wrong")
        resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        # First use of each key: a lookup-cache miss, read (here from the snapshot's rows) on the loop. The
        # loop below measures the hits, which stay synchronous.
        conn.data_received(ok)
        loop.run_until_complete(asyncio.sleep(0.05))
        upstream.data_received(resp)
        conn.data_received(bad)
        loop.run_until_complete(asyncio.sleep(0.05))
        assert b"X-Consumer-ID: " + consumer["id"].encode() in b"".join(up_t.out)
        assert b"HTTP/1.1 401 Unauthorized" in b"".join(client_t.out)
        up_t.out.clear()
        client_t.out.clear()
        gc.collect()
        gc.disable()
        try:
            for _ in range(50):
                conn.data_received(ok)
                upstream.data_received(resp)
                conn.data_received(bad)
            garbage = gc.collect()
        finally:
            gc.enable()
        sent_up = b"".join(up_t.out)
        assert sent_up.count(b"X-Consumer-ID: " + consumer["id"].encode()) == 50
        answers = b"".join(client_t.out)
        assert answers.count(b"HTTP/1.1 200 OK") == 50 and answers.count(b"HTTP/1.1 401 Unauthorized") == 50
        assert garbage == 0
        assert not conn.queue and conn.parsing is None
    finally:
        loop.close()
