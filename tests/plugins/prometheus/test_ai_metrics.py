"""The prometheus plugin's LLM families (ai_metrics) through real nodes, the OpenAI SDK as the client and the fake
OpenAI backend (tests/proxy/fake_openai.py) behind: TTFT and TPOT against a paced stream, tokens equal to the
backend's usage, estimated usage flagged, client aborts, streams in flight, two workers."""

from __future__ import annotations

import socket
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prom_support import ALL_ON, add_plugin, add_route, scrape, wait_scrape

from helpers import Servegate, fake_backend

PACE_MS = 40
TOKENS = 6
PROMPT = [{"role": "user", "content": "say six words"}]


@pytest.fixture(scope="module")
def backend() -> Iterator[str]:
    with fake_backend() as url:
        yield url


@pytest.fixture
def gateway(tmp_path: Path, backend: str) -> Iterator[Any]:
    started: list[Servegate] = []

    def start(workers: int = 1, config: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> Servegate:
        sg = Servegate(workers=workers, prefix=str(tmp_path / f"node{len(started)}"),
                       extra_env={"SERVEGATE_PROXY_ACCESS_LOG": "off", **(env or {})})
        started.append(sg)
        sg.start()
        add_route(sg, backend)
        add_plugin(sg, dict(ALL_ON) if config is None else config)
        time.sleep(0.6 if workers > 1 else 0)  # the workers poll the configuration
        return sg

    yield start
    for sg in started:
        sg.stop()


def _client(sg: Servegate, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=sg.proxy_url + "/v1", api_key="sk-none", max_retries=0,
                         default_headers=headers)


def _stream(client: openai.OpenAI, tokens: int = TOKENS, model_name: str = "m", **kw: Any) -> str:
    out = client.chat.completions.create(model=model_name, messages=PROMPT, stream=True,  # type: ignore[call-overload]
                                         max_tokens=tokens, **kw)
    return "".join(c.choices[0].delta.content or "" for c in out if c.choices)


def _mean(got: Any, name: str, **labels: str) -> float:
    count = got.value(name + "_count", **labels)
    assert count > 0, name
    return float(got.value(name + "_sum", **labels) / count)


def test_ttft_and_tpot_agree_with_a_paced_stream(gateway: Any, backend: str) -> None:
    sg = gateway()
    client = _client(sg, **{"X-Fake-Pace-Ms": str(PACE_MS)})
    _stream(client, extra_headers={"X-Fake-Tag": "warm-up"}, model_name="warm")  # connections, first calls
    tag = f"paced-{uuid.uuid4().hex}"
    n = 8
    for _ in range(n):
        assert _stream(client, extra_headers={"X-Fake-Tag": tag}) == " ".join(f"tok{i}" for i in range(TOKENS)) + " "
    got = scrape(sg.admin_url)
    labels = {"gen_ai_operation_name": "chat", "gen_ai_request_model": "m", "gen_ai_provider_name": "llm",
              "server_address": "127.0.0.1"}
    assert got.value("gen_ai_server_time_to_first_token_seconds_count", **labels) == n
    assert got.value("gen_ai_server_time_per_output_token_seconds_count", **labels) == n
    # What the backend did: the fake sends the role chunk at once, then token i at (i + 1) * PACE_MS after it, and
    # reports when each request arrived and each token went out (its timers may fire late on a busy machine).
    streams = [e for e in httpx.get(backend + "/__events").json() if e["event"] == "stream" and e["tag"] == tag]
    assert len(streams) == n
    pace = PACE_MS / 1000
    backend_ttft = statistics.mean(e["tokens"][0] - e["arrived"] for e in streams)
    backend_tpot = statistics.mean((e["tokens"][-1] - e["tokens"][0]) / (TOKENS - 1) for e in streams)
    assert pace <= backend_ttft < pace + 0.02 and abs(backend_tpot - pace) < 0.002
    # What the gateway measured, from its histograms' sums and counts: the same within 2 ms (TTFT also holds the
    # gateway's own time from the request's arrival to the backend, and back).
    ttft = _mean(got, "gen_ai_server_time_to_first_token_seconds", **labels)
    tpot = _mean(got, "gen_ai_server_time_per_output_token_seconds", **labels)
    assert backend_ttft <= ttft < backend_ttft + 0.002, (ttft, backend_ttft)
    assert abs(tpot - backend_tpot) < 0.002, (tpot, backend_tpot)
    # the buckets hold them where they belong: 0.04 < TTFT <= 0.06 (unless the machine is very busy), TPOT <= 0.05
    assert got.value("gen_ai_server_time_to_first_token_seconds_bucket", le="0.04", **labels) == 0
    assert got.value("gen_ai_server_time_per_output_token_seconds_bucket", le="0.025", **labels) == 0
    assert got.value("gen_ai_server_time_per_output_token_seconds_bucket", le="0.05", **labels) == n
    duration = _mean(got, "gen_ai_server_request_duration_seconds", error_type="", **labels)
    assert TOKENS * pace <= duration < TOKENS * pace + 0.02, duration
    assert abs(_mean(got, "kong_ai_llm_provider_latency_ms", ai_model="m") - duration * 1000) < 1


def test_tokens_equal_the_backends_usage(gateway: Any) -> None:
    sg = gateway()
    honour = _client(sg, **{"X-Fake-Usage": "honour"})
    plain = _client(sg)
    for tokens in (3, 7):
        assert _stream(honour, tokens)  # a client that did not ask for usage: the gateway asks
        assert _stream(honour, tokens, stream_options={"include_usage": True})
        done = plain.chat.completions.create(model="m", messages=PROMPT, max_tokens=tokens)
        assert done.usage is not None and done.usage.completion_tokens == tokens
    # The fake counts the prompt's words plus one in honour mode, 3 in its JSON answers.
    prompt_words = len(PROMPT[0]["content"].split()) + 1
    prompt = 2 * (2 * prompt_words + 3)
    completion = 3 * (3 + 7)
    got = scrape(sg.admin_url)
    kong = {"ai_provider": "llm", "ai_model": "m", "cache_status": "", "vector_db": "", "embeddings_provider": "",
            "embeddings_model": "", "workspace": "default"}
    assert got.value("kong_ai_llm_requests_total", **kong) == 6
    assert got.value("kong_ai_llm_tokens_total", token_type="prompt_tokens", **kong) == prompt
    assert got.value("kong_ai_llm_tokens_total", token_type="completion_tokens", **kong) == completion
    assert got.value("kong_ai_llm_tokens_total", token_type="total_tokens", **kong) == prompt + completion
    usage = {"gen_ai_request_model": "m", "estimated": "false"}
    assert got.value("gen_ai_client_token_usage_sum", gen_ai_token_type="input", **usage) == prompt
    assert got.value("gen_ai_client_token_usage_sum", gen_ai_token_type="output", **usage) == completion
    assert got.value("gen_ai_client_token_usage_count", gen_ai_token_type="output", **usage) == 6
    assert got.value("gen_ai_client_token_usage_bucket", gen_ai_token_type="output", le="4", **usage) == 3
    assert not got.samples("gen_ai_client_token_usage_count", estimated="true")


def test_estimated_usage_is_flagged(gateway: Any) -> None:
    sg = gateway()
    never = _client(sg, **{"X-Fake-Usage": "never"})
    assert _stream(never, 4)
    got = scrape(sg.admin_url)
    # no usage from the backend: one output token per content event, flagged
    assert got.value("gen_ai_client_token_usage_sum", gen_ai_token_type="output", estimated="true") == 4
    assert got.value("gen_ai_client_token_usage_count", gen_ai_token_type="input", estimated="true") == 1
    assert not got.samples("gen_ai_client_token_usage_count", estimated="false")


def _abort_after_first_token(port: int) -> None:
    body = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": true, "max_tokens": 50}'
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            f"X-Fake-Pace-Ms: 50\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head + body)
        seen = b""
        while b"tok0" not in seen:
            data = s.recv(65536)
            assert data
            seen += data


def test_client_aborts_and_streams_in_flight_over_two_workers(gateway: Any) -> None:
    sg = gateway(workers=2)
    client = _client(sg, **{"X-Fake-Pace-Ms": "150"})
    threads = [threading.Thread(target=_stream, args=(client, 12)) for _ in range(3)]
    for t in threads:
        t.start()
    got = wait_scrape(sg.admin_url, lambda s: s.value("servegate_llm_streams_in_flight") == 3)
    (in_flight,) = {s.labels["gen_ai_request_model"] for s in got.samples("servegate_llm_streams_in_flight")}
    assert in_flight == "m"
    for t in threads:
        t.join()
    _abort_after_first_token(sg.proxy_port)
    got = wait_scrape(sg.admin_url, lambda s: s.value("servegate_llm_client_aborts_total") == 1
                      and s.value("servegate_llm_streams_in_flight") == 0)
    assert got.value("servegate_llm_client_aborts_total", gen_ai_request_model="m", server_address="127.0.0.1") == 1
    assert got.value("gen_ai_server_request_duration_seconds_count", error_type="client_abort") == 1
    assert got.value("gen_ai_server_request_duration_seconds_count", error_type="") == 3
    assert got.value("kong_ai_llm_requests_total") == 4
    assert got.value("kong_http_requests_total") == 4


def test_two_workers_count_every_llm_request(gateway: Any) -> None:
    sg = gateway(workers=2, config={"ai_metrics": True, "status_code_metrics": True})
    n = 60
    for _ in range(n // 3):
        client = _client(sg)  # a client (a connection) per 3 requests: both workers get some
        for stream in (True, False, True):
            if stream:
                assert _stream(client, 2)
            else:
                assert client.chat.completions.create(model="m", messages=PROMPT, max_tokens=2).choices
        client.close()
    got = wait_scrape(sg.admin_url, lambda s: s.value("kong_ai_llm_requests_total") == n)
    assert got.value("kong_http_requests_total", code="200") == n
    assert got.value("gen_ai_client_token_usage_sum", gen_ai_token_type="output") == 2 * n
    assert got.value("gen_ai_server_time_to_first_token_seconds_count") == 2 * n // 3
    # per_consumer is off: the consumer label stays empty
    assert {s.labels["consumer"] for s in got.samples("gen_ai_client_token_usage_count")} == {""}


def test_only_requests_naming_a_model_are_llm_requests(gateway: Any) -> None:
    sg = gateway()
    assert httpx.get(sg.proxy_url + "/v1/models").status_code == 200
    assert httpx.post(sg.proxy_url + "/v1/__echo", json={"name": "not a model request"}).status_code == 404
    assert httpx.post(sg.proxy_url + "/v1/__echo", content=b"model=m").status_code == 400  # the fake: not JSON
    assert _client(sg).embeddings.create(model="m", input="one two").data
    got = wait_scrape(sg.admin_url, lambda s: s.value("kong_http_requests_total") == 4)
    assert got.value("kong_ai_llm_requests_total") == 1
    assert got.value("gen_ai_client_token_usage_count", gen_ai_operation_name="embeddings",
                     gen_ai_token_type="input") == 1
    assert not got.samples("gen_ai_client_token_usage_count", gen_ai_token_type="output")  # embeddings: none


def test_a_body_over_the_buffer_is_relayed_untracked(gateway: Any) -> None:
    # ai_metrics reads a request's body to track it; one over client_body_buffer_size is relayed as it came, never
    # refused: turning metrics on must not change what clients get
    sg = gateway(config={"ai_metrics": True, "status_code_metrics": True},
                 env={"SERVEGATE_CLIENT_BODY_BUFFER_SIZE": "1k"})
    client = _client(sg)
    big = client.chat.completions.create(model="big", messages=[{"role": "user", "content": "x" * 4096}],
                                         max_tokens=3)
    assert big.choices[0].message.content
    assert client.chat.completions.create(model="small", messages=PROMPT, max_tokens=3).choices
    got = wait_scrape(sg.admin_url, lambda s: s.value("kong_http_requests_total", code="200") == 2)
    assert got.value("kong_ai_llm_requests_total", ai_model="small") == 1
    assert got.value("kong_ai_llm_requests_total", ai_model="big") == 0
