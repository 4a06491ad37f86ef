"""The proxy's error log: upstream connect failures, timeouts and cut streams, with target, route, service and
request id, and never an API key."""

from __future__ import annotations

import re
import socket
import time

import pytest
import requests
from proxy_support import Backend, Proxy, RawUpstream, route, service
from test_failures import stream_request


def _wait_for(proxy: Proxy, pattern: str, count: int = 1, timeout: float = 3) -> list[str]:
    """Output lines matching `pattern`, once there are `count` of them (or the timeout passed)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [line for line in proxy.output().splitlines() if re.search(pattern, line)]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_connect_refused_logged_per_try(start_proxy) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # bound, never listening: connections are refused
        svc = service(dead, retries=1, name="dead-svc")
        proxy = start_proxy({"services": [svc], "routes": [route(svc, name="dead-route")]})
        r = requests.get(proxy.url + "/x?apikey=sekrit-in-query", timeout=10)
    assert r.status_code == 502
    rid = r.headers["X-Kong-Request-Id"]
    lines = _wait_for(proxy, "servegate.proxy: .*" + rid + "$", 2)
    assert len(lines) == 2, proxy.output()
    retry, final = lines
    assert "[WARNING] servegate.proxy: connect() failed (111: Connection refused) while connecting to upstream" \
        in retry and "try 1 of 2" in retry
    assert "[ERROR] servegate.proxy: connect() failed (111: Connection refused) while connecting to upstream" \
        in final
    assert (f", upstream: 127.0.0.1:{dead}, route: dead-route, service: dead-svc, client: 127.0.0.1, "
            f"request_id: {rid}") in final
    assert "sekrit-in-query" not in proxy.output().replace("apikey=REDACTED", "")


def test_read_timeout_logged(backend: Backend, start_proxy) -> None:
    svc = service(backend.port, read_timeout=300)
    rt = route(svc)
    proxy = start_proxy({"services": [svc], "routes": [rt]})
    r = requests.get(proxy.url + "/v1/models", headers={"X-Fake-Sleep-Ms": "2000"}, timeout=10)
    assert r.status_code == 504
    rid = r.headers["X-Kong-Request-Id"]
    lines = _wait_for(proxy, "ERROR.*" + rid)
    assert len(lines) == 1, proxy.output()
    assert "upstream timed out while reading response header from upstream" in lines[0]
    # unnamed route and service: their ids
    assert f"upstream: 127.0.0.1:{backend.port}, route: {rt['id']}, service: {svc['id']}" in lines[0]


def test_connect_timeout_logged(start_proxy) -> None:
    # A listener whose accept queue is full: further connects are never answered (SYN dropped).
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    fillers = []
    try:
        for _ in range(4):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(lsock.getsockname())
            fillers.append(c)
        svc = service(lsock.getsockname()[1], retries=0, connect_timeout=300)
        proxy = start_proxy({"services": [svc], "routes": [route(svc)]})
        r = requests.get(proxy.url + "/x", timeout=10)
    finally:
        for c in fillers:
            c.close()
        lsock.close()
    assert r.status_code == 504
    lines = _wait_for(proxy, "ERROR.*" + r.headers["X-Kong-Request-Id"])
    assert len(lines) == 1 and "upstream timed out while connecting to upstream" in lines[0], proxy.output()


def _error_lines_of_cut_response(proxy: Proxy, request: bytes) -> list[str]:
    """Send `request` raw, read until the proxy closes; the response must have started (200). Returns the
    error-log lines that name its request id."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.sendall(request)
        buf = b""
        while chunk := s.recv(65536):
            buf += chunk
    assert buf.startswith(b"HTTP/1.1 200")
    rid = re.search(rb"X-Kong-Request-Id: (\w+)", buf).group(1).decode()  # type: ignore[union-attr]
    return _wait_for(proxy, "ERROR.*" + rid)


def test_stream_cut_logged(backend: Backend, start_proxy) -> None:
    svc = service(backend.port, name="llm")
    proxy = start_proxy({"services": [svc], "routes": [route(svc)]})
    lines = _error_lines_of_cut_response(proxy, stream_request(tokens=10, extra="X-Fake-Mode: reset\r\n"))
    assert len(lines) == 1, proxy.output()
    assert "upstream prematurely closed connection while reading upstream (" in lines[0]
    assert "service: llm" in lines[0]


def test_upstream_closing_before_answer_logged(start_proxy) -> None:
    """An upstream that reads the request and closes without answering: retried (GET), then 502."""
    def read_and_close(c: socket.socket) -> None:
        c.recv(65536)
        c.close()

    with RawUpstream(read_and_close) as up:
        svc = service(up.port, retries=1)
        proxy = start_proxy({"services": [svc], "routes": [route(svc)]})
        r = requests.get(proxy.url + "/x", timeout=10)
    assert r.status_code == 502
    lines = _wait_for(proxy, "servegate.proxy: .*" + r.headers["X-Kong-Request-Id"] + "$", 2)
    assert len(lines) == 2, proxy.output()
    assert "[WARNING]" in lines[0] and "[ERROR]" in lines[1]
    assert ("upstream prematurely closed connection while reading response header from upstream, upstream: "
            in lines[1])


def test_upstream_reset_mid_body_logged(start_proxy) -> None:
    """An upstream that resets the connection (RST) in the middle of its response body."""
    import struct

    def answer_part_then_reset(c: socket.socket) -> None:
        c.recv(65536)
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"a" * 10)
        time.sleep(0.2)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = reset
        c.close()

    with RawUpstream(answer_part_then_reset) as up:
        svc = service(up.port)
        proxy = start_proxy({"services": [svc], "routes": [route(svc)]})
        lines = _error_lines_of_cut_response(proxy, b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
    assert len(lines) == 1, proxy.output()
    assert "recv() failed (104: Connection reset by peer) while reading upstream (" in lines[0]


def test_no_error_line_for_a_served_request(simple) -> None:
    _, proxy = simple
    r = requests.post(proxy.url + "/v1/chat/completions", json={"model": "m", "stream": True}, timeout=5)
    assert r.status_code == 200
    time.sleep(0.3)
    assert "servegate.proxy" not in proxy.output()


def test_debug_log_has_no_key(backend: Backend, start_proxy) -> None:
    """log_level debug, a plugin failing (rate-limiting on a dead Redis, not fault tolerant): no key anywhere."""
    from test_plugins_path import plugin

    svc = service(backend.port)
    rt = route(svc)
    # A rate-limiting policy pointing at a Redis port nobody listens on, fault_tolerant off: the plugin fails.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
        conf = {"minute": 5, "policy": "redis", "redis": {"host": "127.0.0.1", "port": dead},
                "fault_tolerant": False}
        proxy = start_proxy({"services": [svc], "routes": [rt],
                             "plugins": [plugin("rate-limiting", conf, route={"id": rt["id"]})]},
                            log_level="debug")
        r = requests.get(proxy.url + "/v1/models?apikey=sekrit-2", headers={"apikey": "hdr-sekrit"}, timeout=10)
    assert r.status_code == 500, r.text
    time.sleep(0.3)
    out = proxy.output()
    assert "rate-limiting: failed to get usage" in out
    assert "sekrit-2" not in out.replace("apikey=REDACTED", "") and "hdr-sekrit" not in out


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_failing_plugin_500_and_logged_without_its_text(backend: Backend, start_proxy, mode: str) -> None:
    from test_plugins_path import plugin

    svc = service(backend.port)
    rt = route(svc)
    proxy = start_proxy({"services": [svc], "routes": [rt],
                         "plugins": [plugin("test-failing", {"mode": mode}, route={"id": rt["id"]})]},
                        imports=("failing_plugin",), log_level="debug")
    r = requests.get(proxy.url + "/v1/models?apikey=sekrit-3", timeout=5)
    assert r.status_code == 500
    r = requests.get(proxy.url + "/v1/models", headers={"apikey": "hdr-sekrit-4"}, timeout=5)
    assert r.status_code == 500
    lines = _wait_for(proxy, "plugin access phase failed", 2)
    assert len(lines) >= 2, proxy.output()
    assert ("ValueError" if mode == "sync" else "KeyError") in lines[0]
    assert "failing_plugin.py:" in lines[0]
    out = proxy.output()
    assert "traceback (text omitted)" in out  # the frames at debug level
    assert "sekrit-3" not in out.replace("apikey=REDACTED", "") and "hdr-sekrit-4" not in out
