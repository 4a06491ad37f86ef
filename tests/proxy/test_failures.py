"""Upstream failures, timeouts, retries, client disconnects and graceful stop (real processes)."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time

import requests
from proxy_support import Backend, Proxy, RawUpstream, route, service


def stream_request(path: str = "/v1/chat/completions", tokens: int = 50, extra: str = "") -> bytes:
    body = json.dumps({"model": "m", "stream": True, "max_tokens": tokens}).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def test_read_timeout_gives_504(backend: Backend, start_proxy) -> None:
    svc = service(backend.port, read_timeout=300)
    proxy = start_proxy({"services": [svc], "routes": [route(svc)]})
    t0 = time.monotonic()
    r = requests.get(proxy.url + "/v1/models", headers={"X-Fake-Sleep-Ms": "3000"}, timeout=10)
    took = time.monotonic() - t0
    assert r.status_code == 504
    assert "The upstream server is timing out" in r.text
    assert 0.25 < took < 1.5


def test_read_timeout_is_a_gap_not_a_total(backend: Backend, start_proxy) -> None:
    svc = service(backend.port, read_timeout=400)
    proxy = start_proxy({"services": [svc], "routes": [route(svc)]})
    # 12 events, 150 ms apart: 1.8 s in all, far longer than read_timeout, never a 400 ms gap
    r = requests.post(proxy.url + "/v1/chat/completions", json={"model": "m", "stream": True, "max_tokens": 12},
                      headers={"X-Fake-Pace-Ms": "150"}, stream=True, timeout=10)
    events = [line for line in r.iter_lines() if line.startswith(b"data: ")]
    assert events[-1] == b"data: [DONE]" and len(events) == 15


def test_mid_stream_read_timeout_closes_client(backend: Backend, start_proxy) -> None:
    svc = service(backend.port, read_timeout=300)
    proxy = start_proxy({"services": [svc], "routes": [route(svc)]})
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.sendall(stream_request(tokens=3, extra="X-Fake-Pace-Ms: 1000\r\n"))
        t0 = time.monotonic()
        buf = b""
        while chunk := s.recv(65536):
            buf += chunk
        took = time.monotonic() - t0
    assert buf.startswith(b"HTTP/1.1 200")
    assert b"[DONE]" not in buf
    assert 0.25 < took < 1.5


def test_refused_port_502_after_retries(start_proxy) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # bound, never listening: connections are refused
        svc = service(dead, retries=2)
        proxy = start_proxy({"services": [svc], "routes": [route(svc)]})
        r = requests.get(proxy.url + "/x", headers={"Accept": "application/json"}, timeout=10)
    assert r.status_code == 502
    assert json.loads(r.text)["message"] == "An invalid response was received from the upstream server"


def test_upstream_closing_early_retried_then_502(start_proxy) -> None:
    """A server that accepts and closes at once: GET is tried 1 + retries times, then 502."""
    with RawUpstream(lambda c: c.close()) as up:
        accepted = up.accepted
        svc = service(up.port, retries=3)
        proxy = start_proxy({"services": [svc], "routes": [route(svc)]})
        r = requests.get(proxy.url + "/x", timeout=10)
        assert r.status_code == 502
        assert len(accepted) == 4
        accepted.clear()
        r = requests.post(proxy.url + "/x", data=b"{}", timeout=10)  # not idempotent: one try only
        assert r.status_code == 502
        assert len(accepted) == 1


def test_connect_timeout_504(start_proxy) -> None:
    # A listener whose accept queue is full never completes new handshakes: the connect times out.
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    fillers = []
    try:
        for _ in range(8):
            c = socket.socket()
            c.setblocking(False)
            try:
                c.connect(lsock.getsockname())
            except BlockingIOError:
                pass
            fillers.append(c)
        svc = service(lsock.getsockname()[1], connect_timeout=200, retries=1)
        proxy = start_proxy({"services": [svc], "routes": [route(svc)]})
        t0 = time.monotonic()
        r = requests.get(proxy.url + "/x", timeout=10)
        took = time.monotonic() - t0
        assert r.status_code == 504
        assert 0.35 < took < 2.0  # two tries of ~200 ms
    finally:
        for c in fillers:
            c.close()
        lsock.close()


def test_backend_reset_mid_stream_ends_client_stream(simple: tuple[Backend, Proxy]) -> None:
    _, proxy = simple
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.sendall(stream_request(tokens=10, extra="X-Fake-Mode: reset\r\nX-Fake-Pace-Ms: 20\r\n"))
        buf = b""
        t0 = time.monotonic()
        while chunk := s.recv(65536):
            buf += chunk
    assert time.monotonic() - t0 < 2
    assert buf.startswith(b"HTTP/1.1 200") and b"tok1" in buf and b"[DONE]" not in buf


def test_client_disconnect_mid_stream_closes_upstream_fast(simple: tuple[Backend, Proxy]) -> None:
    backend, proxy = simple
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    s.sendall(stream_request(tokens=100, extra="X-Fake-Pace-Ms: 50\r\nX-Fake-Tag: gone-1\r\n"))
    got = b""
    while b"tok0" not in got:
        got += s.recv(65536)
    t_close = time.time()
    s.close()
    deadline = time.monotonic() + 3
    closed = []
    while time.monotonic() < deadline and not closed:
        time.sleep(0.05)
        closed = [e for e in backend.events() if e["tag"] == "gone-1" and e["event"] == "closed"]
    assert closed, backend.events()
    assert closed[0]["t"] - t_close < 0.1
    # the aborted upstream connection was not pooled: the next request works on a fresh one
    assert requests.get(proxy.url + "/v1/models", timeout=5).status_code == 200


def test_graceful_stop_finishes_stream(simple: tuple[Backend, Proxy]) -> None:
    _, proxy = simple
    idle = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    s.sendall(stream_request(tokens=10, extra="X-Fake-Pace-Ms: 60\r\n"))
    first = s.recv(65536)
    assert first.startswith(b"HTTP/1.1 200")
    proxy.p.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    # no longer accepting
    try:
        c = socket.create_connection(("127.0.0.1", proxy.port), timeout=1)
        c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.recv(100) == b""
    except OSError:
        pass
    assert idle.recv(100) == b""  # idle keep-alive connections are closed at once
    buf = first
    while chunk := s.recv(65536):
        buf += chunk
    assert b"data: [DONE]" in buf and buf.endswith(b"0\r\n\r\n")
    assert proxy.p.wait(5) == 0
    assert "STOPPED" in proxy.output()
    s.close()
    idle.close()


def test_reused_connection_lost_before_response_is_replayed(start_proxy) -> None:
    """A pooled connection the upstream drops when it gets the next request: replayed on a fresh one."""
    def one_shot(c: socket.socket) -> None:
        # answer the first request on a connection, drop the connection on the second
        buf = b""
        answered = 0
        while True:
            data = c.recv(65536)
            if not data:
                break
            buf += data
            while b"\r\n\r\n" in buf:
                _, _, buf = buf.partition(b"\r\n\r\n")
                if answered:
                    c.close()
                    return
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                answered += 1
        c.close()

    with RawUpstream(one_shot, threaded=True) as up:
        svc = service(up.port, retries=0)
        proxy = start_proxy({"services": [svc], "routes": [route(svc)]})
        with requests.Session() as sess:
            for _ in range(3):
                r = sess.post(proxy.url + "/x", data=b"{}", timeout=5)
                assert r.status_code == 200 and r.text == "ok"
        assert len(up.accepted) == 3


def test_write_timeout_504_when_upstream_stops_reading(start_proxy) -> None:
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    held = []

    def serve() -> None:  # accepts, never reads
        while True:
            try:
                c, _ = lsock.accept()
            except OSError:
                return
            held.append(c)

    threading.Thread(target=serve, daemon=True).start()
    try:
        svc = service(lsock.getsockname()[1], write_timeout=300, retries=0)
        proxy = start_proxy({"services": [svc], "routes": [route(svc)]})
        size = 64 * 1024 * 1024
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=3) as s:
            t0 = time.monotonic()
            try:
                s.sendall(b"PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
                piece = b"z" * (1024 * 1024)
                for _ in range(64):
                    s.sendall(piece)
            except OSError:
                pass  # the proxy stopped reading, then answered and closed
            s.settimeout(5)
            resp = b""
            try:
                while chunk := s.recv(65536):
                    resp += chunk
            except OSError:
                pass
            took = time.monotonic() - t0
        assert resp.startswith(b"HTTP/1.1 504"), resp[:200]
        assert took < 4
    finally:
        for c in held:
            c.close()
        lsock.close()


def test_early_upstream_answer_during_big_upload(start_proxy) -> None:
    """The upstream answers and closes while the client is still uploading: the client gets the answer."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)

    def serve() -> None:
        c, _ = lsock.accept()
        c.recv(65536)
        time.sleep(0.2)  # let the proxy fill the upstream socket and pause the client
        c.sendall(b"HTTP/1.1 413 Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope")
        c.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        svc = service(lsock.getsockname()[1], retries=0)
        proxy = start_proxy({"services": [svc], "routes": [route(svc)]})
        size = 32 * 1024 * 1024
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
            resp = b""
            try:
                s.sendall(b"PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
                piece = b"z" * (1024 * 1024)
                for _ in range(32):
                    s.sendall(piece)
                    s.setblocking(False)
                    try:
                        resp += s.recv(65536)
                    except BlockingIOError:
                        pass
                    s.setblocking(True)
                    s.settimeout(5)
            except OSError:
                pass
            try:
                while b"nope" not in resp and (chunk := s.recv(65536)):
                    resp += chunk
            except OSError:
                pass
        assert resp.startswith(b"HTTP/1.1 413") and resp.endswith(b"nope")
    finally:
        lsock.close()


def test_unresolvable_service_host_503(start_proxy) -> None:
    svc = service(80, host="no-such-host.invalid")
    proxy = start_proxy({"services": [svc], "routes": [route(svc)]})
    r = requests.get(proxy.url + "/x", headers={"Accept": "application/json"}, timeout=20)
    assert r.status_code == 503
    assert r.json()["message"] == "name resolution failed"
