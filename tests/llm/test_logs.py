"""What log consumers see of an LLM request: the access log's usage fields (text and JSON), ctx.serialize()
(Kong's shape with `ai.proxy`), a client that leaves mid-stream, the tap before other body_filters, HTTP/1.0
clients, and the backend/target of a request balanced over an upstream."""

from __future__ import annotations

import json
import socket
import time
import uuid
from typing import Any

import httpx
import openai
from llm_support import Gateway, plugin_row

from servegate.schema.upstreams import TARGETS, UPSTREAMS
from servegate.schema.validate import process_input

MESSAGES = [{"role": "user", "content": "say three short words"}]


def client(gw: Gateway, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-secret-key", max_retries=0, default_headers=headers)


def test_access_log_text(backend: Any, start_gateway: Any) -> None:
    gw = start_gateway(backend)
    list(client(gw, **{"X-Fake-Usage": "honour", "X-Fake-Pace-Ms": "5"}).chat.completions.create(
        model="m1", messages=MESSAGES, max_tokens=4, stream=True))
    client(gw, **{"X-Fake-Usage": "never"}).chat.completions.create(model="m\n1 x", messages=MESSAGES, max_tokens=2)
    stream_line, json_line = gw.access_lines(2)
    assert stream_line.endswith(f" model=m1 prompt_tokens=5 completion_tokens=4 cached_tokens=1"
                                f" ttft_ms={stream_line.split('ttft_ms=')[1].split()[0]}"
                                f" tpot_ms={stream_line.split('tpot_ms=')[1].split()[0]} target=127.0.0.1:{backend.port}")
    assert 3 <= float(stream_line.split("tpot_ms=")[1].split()[0]) < 100  # paced 5 ms (libuv timers: ms steps)
    # A client-chosen model name cannot break the line; the estimate is flagged.
    assert " model=m_1_x prompt_tokens=" in json_line and json_line.endswith(" estimated=1")
    assert "sk-secret-key" not in gw.proxy.output()


def test_access_log_json(backend: Any, start_gateway: Any) -> None:
    gw = start_gateway(backend, proxy_access_log_format="json")
    client(gw, **{"X-Fake-Usage": "honour"}).chat.completions.create(model="m1", messages=MESSAGES, max_tokens=3)
    entry = json.loads(gw.access_lines(1)[0])
    assert entry["ai"] == {"model": "m1", "request_model": "m1", "operation": "chat", "prompt_tokens": 5,
                           "completion_tokens": 3, "total_tokens": 8, "cached_tokens": 1, "backend": "llm-svc",
                           "target": f"127.0.0.1:{backend.port}"}


def test_serialize_shape(backend: Any, start_gateway: Any) -> None:
    gw = start_gateway(backend)
    client(gw, **{"X-Fake-Usage": "honour", "apikey": "k-123"}).chat.completions.with_raw_response.create(
        model="m1", messages=MESSAGES, max_tokens=3, extra_query={"apikey": "k-123", "x": "1"})
    s = gw.records(1)[0]["serialized"]
    req = s["request"]
    assert req["method"] == "POST" and req["uri"] == "/v1/chat/completions?apikey=REDACTED&x=1"
    assert req["url"] == f"http://127.0.0.1:{gw.proxy.port}/v1/chat/completions?apikey=REDACTED&x=1"
    assert req["querystring"] == {"apikey": "REDACTED", "x": "1"} and req["size"] > 100
    assert req["headers"]["authorization"] == "REDACTED" and req["headers"]["apikey"] == "REDACTED"
    assert req["headers"]["x-fake-usage"] == "honour" and len(req["id"]) == 32
    assert s["upstream_uri"] == "/v1/chat/completions?apikey=REDACTED&x=1" and s["upstream_status"] == "200"
    assert s["response"]["status"] == 200 and s["response"]["size"] > 0
    assert s["response"]["headers"]["content-type"] == "application/json"
    assert set(s["latencies"]) == {"kong", "proxy", "request", "receive"}
    assert s["tries"] == [{"ip": "127.0.0.1", "port": backend.port, "balancer_latency": 0}]
    assert s["service"]["name"] == "llm-svc" and s["route"]["paths"] == ["/"] and s["consumer"] is None
    assert s["client_ip"] == "127.0.0.1" and abs(s["started_at"] / 1000 - time.time()) < 10
    ai = s["ai"]["proxy"]
    assert ai["meta"]["request_model"] == "m1" and ai["meta"]["response_model"] == "m1"
    assert ai["meta"]["provider_name"] == "llm-svc" and ai["meta"]["plugin_id"] == "p-1"
    assert (ai["usage"]["prompt_tokens"], ai["usage"]["completion_tokens"], ai["usage"]["total_tokens"]) == (5, 3, 8)
    assert ai["usage"]["cost"] == 0


def test_client_leaving_mid_stream(backend: Any, start_gateway: Any) -> None:
    gw = start_gateway(backend)
    body = {"model": "m1", "messages": MESSAGES, "max_tokens": 200, "stream": True}
    with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, timeout=10,
                      headers={"X-Fake-Usage": "honour", "X-Fake-Pace-Ms": "20"}) as r:
        seen = 0
        for line in r.iter_lines():
            seen += line.startswith("data: ")
            if seen == 4:
                break
    rec = gw.records(1)[0]["llm"]
    assert rec["aborted"] is True and rec["status"] == 200 and rec["done"] is False
    # No usage from the backend: what was streamed, counted and flagged.
    assert rec["estimated"] is True and 3 <= rec["completion_tokens"] < 200


def test_tap_runs_before_other_body_filters(backend: Any, start_gateway: Any) -> None:
    upper = plugin_row("test-phases", {"body": "upper", "tail": None, "log_file": None})
    gw = start_gateway(backend, upper, imports=("phase_plugin",))
    body = {"model": "m1", "messages": MESSAGES, "max_tokens": 3, "stream": True}
    with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, timeout=10,
                      headers={"X-Fake-Usage": "honour"}) as r:
        via = b"".join(r.iter_raw())
    with httpx.stream("POST", backend.url + "/v1/chat/completions", json=body, timeout=10,
                      headers={"X-Fake-Usage": "honour"}) as r:
        direct = b"".join(r.iter_raw())
    assert via == direct.upper() and b"USAGE" not in via
    rec = gw.records(1)[0]["llm"]
    assert (rec["prompt_tokens"], rec["completion_tokens"], rec["response_model"]) == (5, 3, "m1")


def http10(port: int, body: dict[str, Any], **headers: str) -> bytes:
    raw = json.dumps(body).encode()
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    req = (f"POST /v1/chat/completions HTTP/1.0\r\nContent-Type: application/json\r\n{extra}"
           f"Content-Length: {len(raw)}\r\n\r\n").encode() + raw
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(req)
        buf = b""
        while chunk := s.recv(65536):
            buf += chunk
    return buf.partition(b"\r\n\r\n")[2]


def test_http10_clients(backend: Any, start_gateway: Any) -> None:
    gw = start_gateway(backend)
    injected = http10(gw.proxy.port, {"model": "m1", "messages": MESSAGES, "max_tokens": 2, "stream": True},
                      **{"X-Fake-Usage": "honour"})
    asked = http10(gw.proxy.port, {"model": "m1", "messages": MESSAGES, "max_tokens": 2, "stream": True,
                                   "stream_options": {"include_usage": True}}, **{"X-Fake-Usage": "honour"})
    assert b'"usage"' not in injected and injected.endswith(b"data: [DONE]\n\n")
    assert b'"choices": [], "usage"' in asked and asked.endswith(b"data: [DONE]\n\n")
    recs = [r["llm"] for r in gw.records(2)]
    assert [(r["injected"], r["completion_tokens"], r["prompt_tokens"]) for r in recs] == [(True, 2, 5), (False, 2, 5)]


def test_balanced_backend_and_target(backend: Any, start_gateway: Any) -> None:
    up = process_input(UPSTREAMS, {"name": "llm-pool"}, op="insert")
    target = process_input(TARGETS, {"target": f"127.0.0.1:{backend.port}", "upstream": {"id": up["id"]}},
                           op="insert")
    gw = start_gateway(backend, rows={"upstreams": [up], "targets": [target]},
                       service_fields={"host": "llm-pool", "id": str(uuid.uuid4())})
    client(gw, **{"X-Fake-Usage": "honour"}).chat.completions.create(model="m1", messages=MESSAGES, max_tokens=1)
    rec = gw.records(1)[0]["llm"]
    assert rec["backend"] == "llm-pool" and rec["target"] == f"127.0.0.1:{backend.port}"
    assert rec["completion_tokens"] == 1


def test_a_backend_named_by_the_plugin_is_kept(backend: Any, start_gateway: Any) -> None:
    gw = start_gateway(backend)
    client(gw, **{"X-Fake-Usage": "honour", "X-LLM-Backend": "gpu-pool"}).chat.completions.create(
        model="m1", messages=MESSAGES, max_tokens=1)
    line = gw.records(1)[0]
    assert line["llm"]["backend"] == "gpu-pool" and line["llm"]["target"] == f"127.0.0.1:{backend.port}"
    assert line["serialized"]["ai"]["proxy"]["meta"]["provider_name"] == "vllm"


def test_an_answer_without_upstream(backend: Any, start_gateway: Any) -> None:
    """A later plugin answers itself (Context.respond): the record has the status and no tokens."""
    pdk = plugin_row("test-pdk", {"log_file": None})
    gw = start_gateway(backend, pdk, imports=("phase_plugin",))
    try:
        client(gw, **{"X-Pdk-Respond": "no such model"}).chat.completions.create(model="m1", messages=MESSAGES)
    except openai.NotFoundError:
        pass
    line = gw.records(1)[0]
    assert line["llm"]["status"] == 404 and line["llm"]["prompt_tokens"] is None and line["llm"]["target"] is None
    s = line["serialized"]
    assert s["upstream_uri"] == "" and s["tries"] is None and s["upstream_status"] == ""
    assert s["response"]["status"] == 404 and s["ai"]["proxy"]["usage"]["total_tokens"] == 0
