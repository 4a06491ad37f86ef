"""Response phases through the running proxy: header_filter (mutable headers, sync and async), body_filter
(de-framed chunks, re-framed output, end of stream) and log (sizes, latencies), non-stream and SSE."""

from __future__ import annotations

import json
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import openai
import pytest
import requests
from proxy_support import Backend, route, service

IMPORTS = ("phase_plugin",)


def plugin(name: str, config: dict[str, Any], **scope: Any) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "name": name, "instance_name": None, "config": config, "enabled": True,
            "protocols": ["grpc", "grpcs", "http", "https"], "tags": None, "route": None, "service": None,
            "consumer": None, "created_at": 0, "updated_at": 0, **scope}


def headers_conf(**kw: Any) -> dict[str, Any]:
    return {"mode": "sync", "delete": None, "log_file": None, **kw}


def phases_conf(**kw: Any) -> dict[str, Any]:
    return {"body": "upper", "tail": None, "log_file": None, **kw}


def start(backend: Backend, start_proxy: Any, *plugins: dict[str, Any], **settings: Any) -> Any:
    svc = service(backend.port)
    return start_proxy({"services": [svc], "routes": [route(svc)], "plugins": list(plugins)}, IMPORTS, **settings)


def raw(port: int, request: bytes, timeout: float = 5) -> tuple[str, bytes]:
    """Send one request (the proxy closes after it) and read to the end: (head text, raw body bytes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        buf = b""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    return head.decode("latin-1"), body


def dechunk(body: bytes) -> bytes:
    """Strict chunked decoding: every chunk well-formed, ending with the last chunk and nothing after."""
    out = b""
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            assert body == b"\r\n", body
            return out
        assert body[size : size + 2] == b"\r\n"
        out += body[:size]
        body = body[size + 2 :]


def header_lines(head: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in head.split("\r\n")[1:]:
        k, _, v = line.partition(":")
        out.setdefault(k.strip().lower(), []).append(v.strip())
    return out


def chat(stream: bool) -> bytes:
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream}).encode()
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body))


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_header_filter_sets_and_deletes_headers(backend: Backend, start_proxy: Any, mode: str) -> None:
    proxy = start(backend, start_proxy, plugin("test-headers", headers_conf(mode=mode, delete="server")))
    r = requests.get(proxy.url + "/__echo", timeout=5)
    assert r.status_code == 200
    assert r.headers["X-Phase"] == "set-200"
    assert r.headers["X-Multi"] == "a, b"
    # the backend's `Server: fake-backend` was deleted: the proxy's own token takes its place
    assert r.headers["Server"].startswith("servegate/")
    # no body_filter: the body is relayed as framed, Content-Length untouched (the hook's "1" ignored)
    assert r.headers["Content-Length"] == str(len(r.content)) and "Transfer-Encoding" not in r.headers
    assert r.json()["url"] == "/__echo"
    # streaming: the head waits for the hook, the stream is relayed untouched
    head, body = raw(proxy.port, chat(True))
    lines = header_lines(head)
    assert lines["x-phase"] == ["set-200"] and lines["transfer-encoding"] == ["chunked"]
    assert dechunk(body).endswith(b"data: [DONE]\n\n")


def test_header_filter_async_then_client_gone(backend: Backend, start_proxy: Any) -> None:
    """A client that leaves while an async header_filter runs: nothing breaks, the next request is served."""
    proxy = start(backend, start_proxy, plugin("test-headers", headers_conf(mode="async")))
    s = socket.create_connection(("127.0.0.1", proxy.port))
    s.sendall(b"GET /__echo HTTP/1.1\r\nHost: x\r\n\r\n")
    s.close()
    time.sleep(0.1)
    assert requests.get(proxy.url + "/__echo", timeout=5).headers["X-Phase"] == "set-200"


def test_body_filter_non_stream_is_rechunked(backend: Backend, start_proxy: Any) -> None:
    proxy = start(backend, start_proxy, plugin("test-phases", phases_conf(tail="<END>")))
    head, body = raw(proxy.port, chat(False))
    lines = header_lines(head)
    assert head.startswith("HTTP/1.1 200")
    assert "content-length" not in lines and lines["transfer-encoding"] == ["chunked"]
    assert lines["x-body-filter"] == ["upper"]
    text = dechunk(body)
    assert text.endswith(b"<END>")
    data = json.loads(text[: -len(b"<END>")])
    assert data["CHOICES"][0]["MESSAGE"]["CONTENT"] == "TOK0 TOK1 TOK2 TOK3 TOK4"
    # keep-alive holds across a re-framed response
    with requests.Session() as sess:
        for _ in range(3):
            r = sess.get(proxy.url + "/__echo", timeout=5)
            assert r.status_code == 200 and r.text.endswith("<END>") and '"URL": "/__ECHO"' in r.text


def test_body_filter_sse_stream(backend: Backend, start_proxy: Any) -> None:
    proxy = start(backend, start_proxy, plugin("test-phases", phases_conf(tail="data: tail\n\n")))
    head, body = raw(proxy.port, chat(True).replace(b"Content-Type", b"X-Fake-Pace-Ms: 10\r\nContent-Type"))
    assert header_lines(head)["transfer-encoding"] == ["chunked"]
    text = dechunk(body).decode()
    events = [e for e in text.split("\n\n") if e]
    assert events[-1] == "data: tail" and events[-2] == "DATA: [DONE]"
    assert '"CONTENT": "TOK3 "' in text


def test_body_filter_drop_and_emit_at_eof(backend: Backend, start_proxy: Any) -> None:
    proxy = start(backend, start_proxy, plugin("test-phases", phases_conf(body="drop", tail="replaced")))
    r = requests.get(proxy.url + "/__echo", timeout=5)
    assert r.status_code == 200 and r.content == b"replaced"
    head, body = raw(proxy.port, chat(True))
    assert dechunk(body) == b"replaced"


def test_body_filter_http10_client_close_delimited(backend: Backend, start_proxy: Any) -> None:
    proxy = start(backend, start_proxy, plugin("test-phases", phases_conf(tail="!")))
    for req in (b"GET /__echo HTTP/1.0\r\n\r\n", chat(True).replace(b"HTTP/1.1", b"HTTP/1.0")):
        head, body = raw(proxy.port, req)
        lines = header_lines(head)
        assert "content-length" not in lines and "transfer-encoding" not in lines
        assert lines["connection"] == ["close"]
        assert body.endswith(b"!") and body[:-1].upper() == body[:-1]


def test_body_filter_not_run_without_a_body(backend: Backend, start_proxy: Any, tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    proxy = start(backend, start_proxy, plugin("test-phases", phases_conf(tail="x", log_file=str(log))))
    r = requests.head(proxy.url + "/__echo", timeout=5)
    assert r.status_code == 200 and r.content == b""
    assert requests.get(proxy.url + "/__echo", timeout=5).text.endswith("x")  # the connection state is sound
    time.sleep(0.2)
    first = json.loads(log.read_text().splitlines()[0])
    assert first["shared"] is None  # body_filter never called for HEAD


def test_log_sizes_and_latencies(backend: Backend, start_proxy: Any, tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    proxy = start(backend, start_proxy, plugin("test-headers", headers_conf(log_file=str(log))),
                  plugin("test-phases", phases_conf(body="pass", log_file=str(log))))
    req = chat(True)
    head, body = raw(proxy.port, req)
    sent = len(head) + 4 + len(body)
    req2 = (b"POST /__upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    head2, body2 = raw(proxy.port, req2)
    time.sleep(0.3)
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(entries) == 4  # two plugins, two requests, one log call each
    stream = [e for e in entries if e.get("shared") and e["shared"]["eof"] == 1]
    assert entries[0]["response_size"] == sent and entries[0]["status"] == 200
    assert entries[0]["request_size"] == len(req)
    assert set(entries[0]["latencies"]) == {"request", "proxy", "kong"}
    assert all(v >= 0 for v in entries[0]["latencies"].values())
    assert entries[0]["latencies"]["request"] >= entries[0]["latencies"]["proxy"]
    assert stream and stream[0]["shared"]["chunks"] >= 3
    # a chunked request body counts its de-framed bytes: the head plus "hello world"
    assert entries[2]["request_size"] == len(req2.split(b"\r\n\r\n")[0]) + 4 + 11
    assert entries[2]["response_size"] == len(head2) + 4 + len(body2)


def test_openai_sdk_through_body_filter(backend: Backend, start_proxy: Any) -> None:
    proxy = start(backend, start_proxy, plugin("test-phases", phases_conf(body="pass")))
    client = openai.OpenAI(base_url=proxy.url + "/v1", api_key="sk-test", max_retries=0)
    out = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], stream=True) if c.choices)
    assert out == "tok0 tok1 tok2 tok3 tok4 "
    done = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert done.choices[0].message.content == "tok0 tok1 tok2 tok3 tok4"
