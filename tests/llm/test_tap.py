"""The LLM record in-process: request parsing, the SSE tap over chunks split anywhere (hypothesis), usage and
estimates, JSON bodies, error bodies."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from servegate.llm import LLMRecord, estimate_prompt_tokens, operation_of, parse_request
from servegate.llm.request import with_usage
from servegate.llm.sse import event_data, event_end

USAGE = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12, "prompt_tokens_details": {"cached_tokens": 4}}


def ev(obj: Any, nl: bytes = b"\n") -> bytes:
    return b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + nl + nl


def chunk(content: str | None, **extra: Any) -> dict[str, Any]:
    delta = {"role": "assistant", "content": ""} if content is None else {"content": content}
    return {"id": "c1", "object": "chat.completion.chunk", "model": "served-m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": None}], **extra}


def stream(nl: bytes = b"\n", usage: bool = True, done: bool = True, comments: bool = False) -> tuple[bytes, bytes]:
    """(what the backend sends, what a client that did not ask for usage must get)."""
    events = [ev(chunk(None), nl)] + [ev(chunk(f"t{i}"), nl) for i in range(3)]
    events.append(ev({**chunk(None), "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}, nl))
    if comments:
        events.insert(2, b": keep-alive" + nl + nl)
    usage_ev = ev({"id": "c1", "object": "chat.completion.chunk", "model": "served-m", "choices": [], "usage": USAGE},
                  nl)
    tail = [ev(b"[DONE]", nl)] if done else []
    sent = b"".join(events + ([usage_ev] if usage else []) + tail)
    return sent, b"".join(events + tail)


def run(data: bytes, cuts: list[int], *, injected: bool = True, stream_: bool = True, status: int = 200,
        operation: str = "chat") -> tuple[LLMRecord, bytes]:
    rec = LLMRecord(operation, "m", stream=stream_, injected=injected, request={"messages": [
        {"role": "user", "content": "12345678"}]})
    rec.head(status, "svc", "127.0.0.1:1")
    out = []
    prev = 0
    for c in sorted(set(cuts)) + [len(data)]:
        out.append(rec.feed(data[prev:c], False))
        prev = c
    out.append(rec.feed(b"", True))
    rec.finish(False)
    return rec, b"".join(out)


def test_operation_and_request_fields() -> None:
    assert operation_of("/v1/chat/completions") == "chat"
    assert operation_of("/v1/vllm/v1/completions/") == "text_completion"
    assert operation_of("/v1/embeddings") == "embeddings"
    assert operation_of("/v1/rerank") == "rerank"
    r = parse_request({"model": "m", "stream": True})
    assert (r.model, r.stream, r.usage_requested) == ("m", True, False)
    assert parse_request({"stream": True, "stream_options": {}}).usage_requested is True  # vLLM's default
    assert parse_request({"stream": True, "stream_options": {"include_usage": False}}).usage_requested is False
    assert parse_request({"stream": False, "stream_options": {"include_usage": True}}).usage_requested is False
    assert parse_request({"model": 3, "stream": "yes"}).model is None
    assert with_usage({"a": 1, "stream_options": {"x": 2, "include_usage": False}}) == {
        "a": 1, "stream_options": {"x": 2, "include_usage": True}}


def test_prompt_estimate() -> None:
    assert estimate_prompt_tokens({"messages": [{"role": "user", "content": "abcdefgh"},
                                                {"role": "user", "content": [{"type": "text", "text": "abcd"},
                                                                             {"type": "image_url"}]}]}) == 3
    assert estimate_prompt_tokens({"prompt": ["abcd", "ab"]}) == 2
    assert estimate_prompt_tokens({"prompt": [1, 2, 3]}) == 3  # token ids are exact
    assert estimate_prompt_tokens({"input": [[1, 2], [3]]}) == 3
    assert estimate_prompt_tokens(None) == 0


def test_whole_stream_usage_removed_and_read() -> None:
    sent, expected = stream()
    rec, out = run(sent, [])
    assert out == expected
    assert (rec.prompt_tokens, rec.completion_tokens, rec.total_tokens, rec.cached_tokens) == (9, 3, 12, 4)
    assert rec.events == 3 and rec.done and rec.response_model == "served-m" and not rec.estimated
    assert rec.ttft() is not None and rec.tpot() is not None and rec.duration() is not None


def test_every_byte_boundary() -> None:
    for nl in (b"\n", b"\r\n"):
        sent, expected = stream(nl, comments=True)
        for i in range(len(sent) + 1):
            rec, out = run(sent, [i])
            assert out == expected, (nl, i)
            assert (rec.prompt_tokens, rec.completion_tokens, rec.events) == (9, 3, 3)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2000), max_size=40), st.sampled_from([b"\n", b"\r\n"]),
       st.booleans(), st.booleans(), st.booleans())
def test_any_split(cuts: list[int], nl: bytes, usage: bool, done: bool, injected: bool) -> None:
    sent, expected = stream(nl, usage=usage, done=done, comments=True)
    cuts = [c % (len(sent) + 1) for c in cuts]
    rec, out = run(sent, cuts, injected=injected)
    # Injected: the usage event goes; observing only: the bytes pass as they came.
    assert out == (expected if injected else sent)
    assert rec.events == 3 and rec.done is done
    if usage:
        assert (rec.prompt_tokens, rec.completion_tokens, rec.estimated) == (9, 3, False)
    else:
        assert (rec.prompt_tokens, rec.completion_tokens, rec.estimated) == (2, 3, True)


def test_observe_mode_returns_the_same_chunk_objects() -> None:
    sent, _ = stream()
    rec = LLMRecord("chat", "m", stream=True)
    rec.head(200, None, None)
    pieces = [sent[i : i + 37] for i in range(0, len(sent), 37)]
    assert all(rec.feed(p, False) is p for p in pieces)
    rec.finish(False)
    assert rec.completion_tokens == 3


def test_multiline_data_and_event_fields() -> None:
    payload = json.dumps(chunk("hi"), indent=1).encode()
    lines = b"".join(b"data: " + ln + b"\n" for ln in payload.split(b"\n"))
    data = b"event: message\nid: 7\n" + lines + b"\n" + ev(b"[DONE]")
    rec, out = run(data, [5, 40], injected=False)
    assert out == data and rec.events == 1 and rec.done and rec.response_model == "served-m"
    assert event_data(b": c\ndata: a\ndata:b\n\n") == b"a\nb"
    assert event_end(b"data: x\r\n\r\nrest", 0) == 11 and event_end(b"data: x\n", 0) == -1


def test_stream_ending_inside_an_event() -> None:
    sent, _ = stream(usage=False, done=False)
    cut = sent + b'data: {"choices":[{"delta":{"content":"late"}}]}'  # no blank line: never dispatched by the SDK
    rec, out = run(cut, [len(sent) + 3])
    assert out == cut and rec.events == 4 and rec.estimated


def test_reasoning_tool_calls_and_text_completions() -> None:
    events = ev({"model": "r", "choices": [{"delta": {"reasoning_content": "hmm"}}]})
    events += ev({"model": "r", "choices": [{"delta": {"tool_calls": [{"function": {"arguments": "{\"a\""}}]}}]})
    events += ev({"model": "r", "choices": [{"delta": {"content": "\"content\":\"x\""}}]})
    events += ev({"model": "r", "choices": [{"delta": {"content": None}, "finish_reason": "stop"}], "usage": None})
    rec, _ = run(events, [])
    assert rec.events == 3 and rec.response_model == "r"
    text = ev({"model": "t", "choices": [{"text": "a"}]}) + ev({"model": "t", "choices": [{"text": ""}]})
    rec, _ = run(text, [], operation="text_completion")
    assert rec.events == 1


def test_usage_on_a_choice_chunk_is_kept() -> None:
    last = {**chunk(None), "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": USAGE}
    data = ev(chunk("a")) + ev(last) + ev(b"[DONE]")
    rec, out = run(data, [3])
    assert out == data and rec.completion_tokens == 3


def test_continuous_usage_reads_the_last() -> None:
    data = b"".join(ev({**chunk(f"t{i}"), "usage": {"prompt_tokens": 2, "completion_tokens": i + 1,
                                                     "total_tokens": 3 + i}}) for i in range(4))
    rec = LLMRecord("chat", "m", stream=True, usage_requested=True, continuous=True)
    rec.head(200, None, None)
    rec.feed(data, False)
    rec.finish(False)
    assert (rec.prompt_tokens, rec.completion_tokens, rec.events) == (2, 4, 4)


def test_json_bodies() -> None:
    body = json.dumps({"model": "served", "choices": [{"message": {"content": "abcdefgh"}}],
                       "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}).encode()
    rec, out = run(body, [10, 11, 50], injected=False, stream_=False)
    assert out == body and (rec.prompt_tokens, rec.completion_tokens, rec.response_model) == (5, 2, "served")
    assert rec.ttft() is None and rec.tpot() is None
    no_usage = json.dumps({"model": "s", "choices": [{"message": {"content": "abcdefgh"}}]}).encode()
    rec, _ = run(no_usage, [], injected=False, stream_=False)
    assert (rec.prompt_tokens, rec.completion_tokens, rec.estimated) == (2, 2, True)
    # A streaming request answered with JSON (the backend ignored stream, or an error object): read as JSON.
    rec, out = run(body, [3], injected=True)
    assert out == body and rec.completion_tokens == 2


def test_json_usage_read_by_search_or_by_parsing() -> None:
    """The usage of a JSON answer is read from its last member when it ends the body, else by parsing it all: both
    ways give the same figures, and a usage member elsewhere (or a null one) is not mistaken."""
    usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    first = json.dumps({"usage": usage, "model": "m", "choices": [{"message": {"content": "abcdefgh"}}]}).encode()
    last = json.dumps({"model": "m", "choices": [{"message": {"content": "abcdefgh"}}], "usage": usage},
                      indent=2).encode() + b"\n"
    escaped = json.dumps({"model": "m\\x", "choices": [], "usage": usage}).encode()  # model read by parsing
    for body in (first, last, escaped):
        rec, _ = run(body, [7], injected=False, stream_=False)
        assert (rec.prompt_tokens, rec.completion_tokens, rec.total_tokens, rec.estimated) == (5, 2, 7, False)
    assert run(escaped, [], injected=False, stream_=False)[0].response_model == "m\\x"
    null = json.dumps({"model": "m", "choices": [{"message": {"content": "abcdefgh"}}], "usage": None}).encode()
    rec, _ = run(null, [], injected=False, stream_=False)
    assert (rec.completion_tokens, rec.estimated) == (2, True)


def test_large_json_keeps_head_and_tail() -> None:
    big = {"model": "emb", "data": [{"embedding": [0.125] * 1000, "index": i} for i in range(1500)],
           "usage": {"prompt_tokens": 1500, "total_tokens": 1500, "prompt_tokens_details": {"cached_tokens": 0}}}
    body = json.dumps(big).encode()
    assert len(body) > 8 << 20
    rec, _ = run(body, list(range(0, len(body), 65536)), injected=False, stream_=False, operation="embeddings")
    assert (rec.prompt_tokens, rec.completion_tokens, rec.total_tokens, rec.response_model) == (1500, 0, 1500, "emb")


def test_error_and_plain_bodies() -> None:
    rec, out = run(b"Internal Server Error", [4], status=500)
    assert out == b"Internal Server Error" and rec.prompt_tokens is None and not rec.estimated
    rec, out = run(b"oops, not SSE", [2])  # 200 but plain text: no event ever ends
    assert out == b"oops, not SSE" and rec.events == 0
    err = ev({"error": {"message": "boom", "type": "server_error"}}) + ev(b"[DONE]")
    rec, out = run(err, [7])
    assert out == err and rec.events == 0 and rec.estimated and rec.completion_tokens == 0
    empty = b"data:\n\ndata: \r\n\r\nevent: x\ndata:\n\n" + ev(b"[DONE]")
    rec, out = run(empty, [1, 9])
    assert out == empty and rec.done and rec.events == 0


def test_an_endless_event_stops_the_tap() -> None:
    rec = LLMRecord("chat", "m", stream=True, injected=True)
    rec.head(200, None, None)
    held = rec.feed(b"data: " + b"x" * (1 << 19), False)
    assert held == b""
    out = rec.feed(b"y" * (1 << 20), False)  # past the cap: everything held goes out, the tap stops
    assert len(held + out) == 6 + (1 << 19) + (1 << 20)
    assert rec.feed(b"zz\n\n", False) == b"zz\n\n"


def test_kong_shape() -> None:
    sent, _ = stream()
    rec, _ = run(sent, [])
    ai = rec.as_kong_ai()
    assert set(ai) == {"meta", "usage"}
    assert ai["meta"]["request_model"] == "m" and ai["meta"]["response_model"] == "served-m"
    assert ai["meta"]["provider_name"] == "svc" and isinstance(ai["meta"]["llm_latency"], int)
    assert ai["usage"] == {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12,
                           "time_per_token": ai["meta"]["llm_latency"] / 3, "cost": 0}


def test_observed_stream_ending_inside_an_event() -> None:
    sent, _ = stream(usage=False, done=False)
    rec = LLMRecord("chat", "m", stream=True)
    rec.head(200, None, None)
    rec.feed(sent, False)
    rec.feed(b'data: {"choices":[{"delta":{"content":"late"}}]}', False)
    rec.finish(True)
    assert rec.events == 4 and rec.aborted and rec.estimated and rec.completion_tokens == 4


def test_an_error_event_after_the_200_head_flags_the_request() -> None:
    # llm-protocol.md §1.7: vLLM, SGLang, TGI and llama.cpp report a failure mid-stream as `data: {"error": ...}`
    # (then [DONE]); llama.cpp before Sep 2025 as an `error:` field; Ollama writes a bare {"error": "..."}
    sent, _ = stream(usage=False, done=False)
    for tail in (ev({"error": {"message": "boom", "type": "BadRequestError", "param": None, "code": 400}})
                 + ev(b"[DONE]"),
                 b'error: {"code":500,"message":"boom","type":"server_error"}\n\n' + ev(b"[DONE]"),
                 b'{"error":"boom"}'):
        rec, out = run(sent + tail, [len(sent) + 5])
        assert out == sent + tail  # relayed as it came: the client sees the error itself
        assert rec.error == "stream_error" and rec.events == 3
    for clean in (stream()[0], stream(usage=False)[0] + ev({**chunk("t"), "error": None})):
        rec, _ = run(clean, [7])
        assert rec.error is None  # no error event; `"error": null` is none
    # the word inside generated text is no error
    rec, _ = run(stream(usage=False)[0].replace(b'"t1"', b'"\\"error\\": x"'), [])
    assert rec.error is None and rec.events == 3
