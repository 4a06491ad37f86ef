"""How model-router gets the request body, over raw sockets against a real node: the access phase of a plan whose
plugin reads the body starts once a small body is in (and then runs without a task), so every way a body can
arrive must still route by its own `model`: with the head, in a later read, byte by byte, pipelined behind
another request, or too large to wait for (the access phase then awaits it)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_model_router import hits, route

from helpers import Servegate, fake_backend


@pytest.fixture
def routed(tmp_path: Path) -> Iterator[tuple[Servegate, str, str]]:
    with Servegate(prefix=str(tmp_path)) as sg, fake_backend("ma") as a, fake_backend("mb") as b:
        route(sg, {"a": a, "b": b}, {"backends": ["a", "b"], "models": {"ma": ["a"], "mb": ["b"]},
                                     "discovery": {"enabled": False}})
        yield sg, a, b


def request(model: str, pad: int = 0) -> tuple[bytes, bytes]:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "x" * pad or "hi"}]}).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head, body


def read_responses(sock: socket.socket, n: int) -> list[tuple[int, dict]]:
    """n HTTP/1.1 responses with Content-Length bodies, in order."""
    buf = b""
    out = []
    sock.settimeout(10)
    while len(out) < n:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = buf[:end].decode("latin-1")
            length = int(next(ln.split(":", 1)[1] for ln in head.split("\r\n")
                              if ln.lower().startswith("content-length:")))
            if len(buf) >= end + 4 + length:
                out.append((int(head.split(" ", 2)[1]), json.loads(buf[end + 4:end + 4 + length])))
                buf = buf[end + 4 + length:]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {len(out)} responses"
        buf += chunk
    return out


def connect(sg: Servegate) -> socket.socket:
    return socket.create_connection(("127.0.0.1", sg.proxy_port), timeout=10)


def test_body_with_the_head_and_in_a_later_read(routed: tuple[Servegate, str, str]) -> None:
    sg, a, b = routed
    with connect(sg) as s:
        head, body = request("ma")
        s.sendall(head + body)
        assert read_responses(s, 1)[0][1]["model"] == "ma"
        head, body = request("mb")
        s.sendall(head)
        time.sleep(0.3)  # the head alone: nothing may be routed (or sent upstream) before the body is in
        s.sendall(body)
        assert read_responses(s, 1)[0][1]["model"] == "mb"
    assert hits(a) == {"ma": 1} and hits(b) == {"mb": 1}


def test_body_byte_by_byte(routed: tuple[Servegate, str, str]) -> None:
    sg, a, b = routed
    with connect(sg) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head, body = request("mb")
        s.sendall(head)
        for i in range(len(body)):
            s.sendall(body[i:i + 1])
            time.sleep(0.002)
        [(status, answer)] = read_responses(s, 1)
    assert status == 200 and answer["model"] == "mb"
    assert hits(b) == {"mb": 1} and "mb" not in hits(a)


def test_pipelined_requests_are_each_routed_by_their_own_body(routed: tuple[Servegate, str, str]) -> None:
    """Three requests in one write: the second and third are parsed (bodies included) while the first is still
    being answered, and start later; each must see its own body."""
    sg, a, b = routed
    with connect(sg) as s:
        s.sendall(b"".join(h + body for h, body in (request("ma"), request("mb"), request("ma"))))
        answers = read_responses(s, 3)
    assert [(status, r["model"]) for status, r in answers] == [(200, "ma"), (200, "mb"), (200, "ma")]
    assert hits(a) == {"ma": 2} and hits(b) == {"mb": 1}


def test_a_body_too_large_to_wait_for_is_awaited_by_the_access_phase(routed: tuple[Servegate, str, str]) -> None:
    """Over 64 KiB the access phase starts at the head (the body is then read through a task): still routed."""
    sg, a, b = routed
    with connect(sg) as s:
        head, body = request("mb", pad=200_000)
        s.sendall(head)
        time.sleep(0.1)
        s.sendall(body)
        [(status, answer)] = read_responses(s, 1)
    assert status == 200 and answer["model"] == "mb"
    assert hits(b) == {"mb": 1}


def test_expect_100_continue_is_answered_before_the_body_is_read(routed: tuple[Servegate, str, str]) -> None:
    """A client that sends `Expect: 100-continue` (curl does for large bodies) waits for the interim answer
    before it sends the body: a plugin that reads the body must let the proxy say 100 Continue first."""
    sg, a, b = routed
    with connect(sg) as s:
        head, body = request("mb")
        s.sendall(head.replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n"))
        s.settimeout(5)
        interim = s.recv(4096)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), interim
        rest = interim[len(b"HTTP/1.1 100 Continue\r\n\r\n"):]
        s.sendall(body)
        answer = rest
        while b"\r\n\r\n" not in answer:
            answer += s.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert hits(b) == {"mb": 1}
