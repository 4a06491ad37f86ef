"""Token usage through the running proxy, with the OpenAI SDK as client: usage equal to the backend's (JSON and
streams), the usage chunk the gateway asked for removed (the client gets exactly the backend's other events),
kept when the client asked, estimated when the backend reports none."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from llm_support import Gateway

PROMPT = "say three short words"  # the fake counts words + 1: 5 prompt tokens
MESSAGES = [{"role": "user", "content": PROMPT}]


def client(gw: Gateway, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-test", max_retries=0, default_headers=headers)


def raw_stream(base: str, body: dict[str, Any], **headers: str) -> bytes:
    """The de-framed body of a streaming POST /v1/chat/completions (httpx removes the chunked framing)."""
    with httpx.stream("POST", base + "/v1/chat/completions", json=body, headers=headers, timeout=10) as r:
        assert r.status_code == 200
        return b"".join(r.iter_raw())


def test_non_stream_usage_equals_the_backends(backend: Any, start_gateway: Any) -> None:
    gw = start_gateway(backend)
    r = client(gw, **{"X-Fake-Usage": "honour"}).chat.completions.create(model="m1", messages=MESSAGES, max_tokens=4)
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (5, 4, 9)
    rec = gw.records(1)[0]["llm"]
    assert rec["operation"] == "chat" and rec["request_model"] == "m1" and rec["response_model"] == "m1"
    assert (rec["prompt_tokens"], rec["completion_tokens"], rec["total_tokens"], rec["cached_tokens"]) == (5, 4, 9, 1)
    assert rec["stream"] is False and rec["injected"] is False and rec["estimated"] is False
    assert rec["status"] == 200 and rec["backend"] == "llm-svc" and rec["target"] == f"127.0.0.1:{backend.port}"
    assert rec["ttft"] is None and rec["tpot"] is None and rec["duration"] > 0
    # The request went upstream untouched.
    assert "stream_options" not in backend_requests(backend)[-1]


def backend_requests(backend: Any) -> list[dict[str, Any]]:
    return httpx.get(backend.url + "/__requests", timeout=5).json()


def test_stream_without_usage_asked_gets_exactly_the_backends_events(backend: Any, start_gateway: Any) -> None:
    gw = start_gateway(backend)
    body = {"model": "m1", "messages": MESSAGES, "max_tokens": 6, "stream": True}
    direct = raw_stream(backend.url, body, **{"X-Fake-Usage": "honour"})
    via = raw_stream(gw.url, body, **{"X-Fake-Usage": "honour"})
    assert via == direct and b'"usage"' not in via
    # The gateway asked the backend for usage, the client's other fields kept.
    sent = backend_requests(backend)[-1]
    assert sent["stream_options"] == {"include_usage": True} and sent["max_tokens"] == 6
    rec = gw.records(1)[0]["llm"]
    assert rec["injected"] is True and rec["usage_requested"] is False
    assert (rec["prompt_tokens"], rec["completion_tokens"], rec["total_tokens"], rec["cached_tokens"]) == (5, 6, 11, 1)
    assert rec["events"] == 6 and rec["estimated"] is False and rec["done"] is True
    # And through the SDK: no chunk with empty choices, six content deltas.
    chunks = list(client(gw, **{"X-Fake-Usage": "honour"}).chat.completions.create(
        model="m1", messages=MESSAGES, max_tokens=6, stream=True))
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)
    assert sum(1 for c in chunks if c.choices[0].delta.content) == 6


def test_stream_with_usage_asked_receives_it(backend: Any, start_gateway: Any) -> None:
    gw = start_gateway(backend)
    chunks = list(client(gw, **{"X-Fake-Usage": "honour"}).chat.completions.create(
        model="m1", messages=MESSAGES, max_tokens=3, stream=True, stream_options={"include_usage": True}))
    usage = [c.usage for c in chunks if c.usage is not None]
    assert len(usage) == 1 and not chunks[-1].choices
    assert (usage[0].prompt_tokens, usage[0].completion_tokens, usage[0].total_tokens) == (5, 3, 8)
    rec = gw.records(1)[0]["llm"]
    assert rec["usage_requested"] is True and rec["injected"] is False
    assert (rec["prompt_tokens"], rec["completion_tokens"], rec["total_tokens"]) == (5, 3, 8)


def test_empty_stream_options_counts_as_asked(backend: Any, start_gateway: Any) -> None:
    """vLLM reads `"stream_options": {}` as include_usage=true: the client asked, so it gets the chunk."""
    gw = start_gateway(backend)
    body = {"model": "m1", "messages": MESSAGES, "max_tokens": 2, "stream": True, "stream_options": {}}
    via = raw_stream(gw.url, body, **{"X-Fake-Usage": "honour"})
    assert via == raw_stream(backend.url, body, **{"X-Fake-Usage": "honour"}) and b'"usage"' in via
    assert backend_requests(backend)[-1]["stream_options"] == {}
    rec = gw.records(1)[0]["llm"]
    assert rec["usage_requested"] is True and rec["injected"] is False and rec["completion_tokens"] == 2


def test_client_stream_options_kept_when_injecting(backend: Any, start_gateway: Any) -> None:
    gw = start_gateway(backend)
    body = {"model": "m1", "messages": MESSAGES, "max_tokens": 2, "stream": True,
            "stream_options": {"include_usage": False, "include_obfuscation": False}}
    via = raw_stream(gw.url, body, **{"X-Fake-Usage": "honour"})
    assert b'"usage"' not in via
    assert backend_requests(backend)[-1]["stream_options"] == {"include_usage": True, "include_obfuscation": False}
    assert gw.records(1)[0]["llm"]["completion_tokens"] == 2


@pytest.mark.parametrize("mode", ["crlf", "comments", "split"])
def test_framing_variants_pass_byte_for_byte(backend: Any, start_gateway: Any, mode: str) -> None:
    gw = start_gateway(backend)
    headers = {"X-Fake-Usage": "honour", f"X-Fake-{mode}": "1"}
    body = {"model": "m1", "messages": MESSAGES, "max_tokens": 5, "stream": True}
    via = raw_stream(gw.url, body, **headers)
    assert via == raw_stream(backend.url, body, **headers) and b'"usage"' not in via
    rec = gw.records(1)[0]["llm"]
    assert (rec["prompt_tokens"], rec["completion_tokens"], rec["events"]) == (5, 5, 5)


def test_backend_without_stream_usage_is_estimated(backend: Any, start_gateway: Any) -> None:
    gw = start_gateway(backend)
    chunks = list(client(gw, **{"X-Fake-Usage": "ignore"}).chat.completions.create(
        model="m1", messages=MESSAGES, max_tokens=7, stream=True))
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) == 7
    rec = gw.records(1)[0]["llm"]
    assert rec["estimated"] is True and rec["injected"] is True
    # One token per content event; the prompt guessed as characters / 4.
    assert rec["completion_tokens"] == 7 and rec["events"] == 7
    assert rec["prompt_tokens"] == (len(PROMPT) + 3) // 4 and rec["total_tokens"] == rec["prompt_tokens"] + 7
    assert rec["kong"]["usage"]["completion_tokens"] == 7


def test_json_without_usage_is_estimated(backend: Any, start_gateway: Any) -> None:
    gw = start_gateway(backend)
    r = client(gw, **{"X-Fake-Usage": "never"}).chat.completions.create(model="m1", messages=MESSAGES, max_tokens=4)
    assert r.usage is None
    rec = gw.records(1)[0]["llm"]
    text = r.choices[0].message.content or ""
    assert rec["estimated"] is True and rec["completion_tokens"] == (len(text) + 3) // 4
    assert rec["prompt_tokens"] == (len(PROMPT) + 3) // 4


def test_stream_without_done_and_plain_500(backend: Any, start_gateway: Any) -> None:
    gw = start_gateway(backend)
    body = {"model": "m1", "messages": MESSAGES, "max_tokens": 3, "stream": True}
    headers = {"X-Fake-Usage": "honour", "X-Fake-No-Done": "1"}
    via = raw_stream(gw.url, body, **headers)
    assert via == raw_stream(backend.url, body, **headers) and b"[DONE]" not in via
    rec = gw.records(1)[0]["llm"]
    assert rec["done"] is False and rec["aborted"] is False and rec["completion_tokens"] == 3
    with pytest.raises(openai.InternalServerError):
        client(gw, **{"X-Fake-Plain-500": "1"}).chat.completions.create(model="m1", messages=MESSAGES, stream=True)
    rec = gw.records(2)[1]["llm"]
    assert rec["status"] == 500 and rec["prompt_tokens"] is None and rec["estimated"] is False
    # The proxy still serves.
    r = client(gw, **{"X-Fake-Usage": "honour"}).chat.completions.create(model="m1", messages=MESSAGES, max_tokens=1)
    assert r.usage.completion_tokens == 1


def test_text_completions_and_embeddings(backend: Any, start_gateway: Any) -> None:
    gw = start_gateway(backend)
    c = client(gw, **{"X-Fake-Usage": "honour"})
    parts = list(c.completions.create(model="m2", prompt="one two", max_tokens=4, stream=True))
    assert all(p.choices for p in parts)
    e = c.embeddings.create(model="e1", input=["a b", "c"])
    recs = [r["llm"] for r in gw.records(2)]
    assert recs[0]["operation"] == "text_completion" and recs[0]["injected"] is True
    assert (recs[0]["prompt_tokens"], recs[0]["completion_tokens"], recs[0]["events"]) == (3, 4, 4)
    assert recs[1]["operation"] == "embeddings" and recs[1]["stream"] is False
    assert (recs[1]["prompt_tokens"], recs[1]["completion_tokens"]) == (e.usage.prompt_tokens, 0)
    assert recs[1]["total_tokens"] == e.usage.total_tokens


def test_untracked_request_is_untouched(backend: Any, start_gateway: Any) -> None:
    gw = start_gateway(backend)
    body = {"model": "m1", "messages": MESSAGES, "max_tokens": 2, "stream": True}
    via = raw_stream(gw.url, body, **{"X-Track": "0"})
    assert via == raw_stream(backend.url, body) and b'"usage"' in via  # the fake's default: usage on the finish
    assert "stream_options" not in backend_requests(backend)[-1]
    line = gw.records(1)[0]
    assert line["llm"] is None and "ai" not in line["serialized"]


def test_usage_on_the_finish_chunk_is_read_and_kept(backend: Any, start_gateway: Any) -> None:
    """Old llama-server: usage rides on the finish chunk (choices not empty): read, never removed."""
    gw = start_gateway(backend)
    body = {"model": "m1", "messages": MESSAGES, "max_tokens": 2, "stream": True}
    via = raw_stream(gw.url, body)
    assert via == raw_stream(backend.url, body)
    rec = gw.records(1)[0]["llm"]
    assert (rec["prompt_tokens"], rec["completion_tokens"], rec["estimated"]) == (3, 2, False)
    assert json.loads(via.split(b"data: ")[-2])["usage"]["completion_tokens"] == 2
