"""The harness's parts: fake backend + SSE client end to end, the client's chunked decoding, wrk parsing, checks."""

from __future__ import annotations

import shutil
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

from benchlib.checks import check_system  # noqa: E402
from benchlib.load import Target, build_sseclient, parse_wrk, post, run_sse, wait_proxied_ok  # noqa: E402
from benchlib.procs import Proc, cpu_seconds, rss_kb  # noqa: E402

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is needed to build the SSE client")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proc, int]]:
    port = _free_port()
    log = tmp_path_factory.mktemp("backend") / "backend.log"
    proc = Proc("backend", [sys.executable, str(REPO / "benchmarks" / "backend.py"), "--port", str(port)],
                cpus=None, log_path=log)  # fmt: skip
    assert wait_proxied_ok(Target(port), 10, alive=proc.alive) is not None, proc.log_tail()
    yield proc, port
    proc.stop()


def test_backend_answers_completion_and_stream(backend: tuple[Proc, int]) -> None:
    _, port = backend
    status, body = post(Target(port))
    assert status == 200 and b'"chat.completion"' in body and 300 < len(body) < 500
    status, body = post(Target(port), Target(port).body(stream=True, max_tokens=5, seed=1))
    events = [e for e in body.split(b"\n\n") if e]
    assert status == 200
    assert len(events) == 5 + 3  # role, 5 tokens, finish, [DONE]
    assert events[-1] == b"data: [DONE]"
    tokens = events[1:6]
    assert len(set(tokens)) == 5, "token chunks must be distinct (LiteLLM aborts on repeats)"
    assert all(170 <= len(e) + 2 <= 210 for e in tokens)


@needs_gcc
def test_sseclient_counts_paced_streams_exactly(backend: tuple[Proc, int]) -> None:
    proc, port = backend
    c0 = cpu_seconds(proc.pid)
    res = run_sse(Target(port), 20, 0.5, tokens=10, pace_ms=20, ramp_s=0.1, hardstop_s=10)
    assert res["errors"] == 0 and res["short_streams"] == 0 and res["unfinished"] == 0
    assert res["streams_ok"] >= 20
    assert res["events"] == res["streams_ok"] * 13
    # paced at 20 ms: most gaps sit at the pace, and the stream lasts about 11 paces
    assert 18 <= res["gap_ms"]["p50"] <= 30
    assert 200 <= res["stream_ms"]["p50"] <= 400
    assert res["ttfb_ms"]["p50"] < 20
    assert cpu_seconds(proc.pid) >= c0
    assert rss_kb(proc.pid) > 1000


class _OddChunkServer:
    """Answers every request with SSE whose chunk boundaries split events and blank lines, then closes."""

    EVENTS = [b"data: one\n\n", b"data: two\n\n", b"data: three\n\n", b"data: [DONE]\n\n"]

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stop = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        payload = b"".join(self.EVENTS)
        pieces = [payload[:9], payload[9:10], payload[10:25], payload[25:]]  # cuts inside "\n\n"
        body = b"".join(b"%x;ext=1\r\n" % len(p) + p + b"\r\n" for p in pieces) + b"0\r\nX-Trailer: y\r\n\r\n"
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(head + body)

    def close(self) -> None:
        self.stop = True
        self.sock.close()


@needs_gcc
def test_sseclient_decodes_chunk_framing_across_event_boundaries() -> None:
    srv = _OddChunkServer()
    try:
        res = run_sse(Target(srv.port), 1, 0.3, tokens=1, pace_ms=0, ramp_s=0, hardstop_s=5)
    finally:
        srv.close()
    assert res["errors"] == 0 and res["streams_ok"] >= 1
    # 4 events per response; 1 token + 3 = 4 expected, so no stream is short
    assert res["events"] == 4 * res["streams_ok"]
    assert res["short_streams"] == 0


@needs_gcc
def test_sseclient_reports_connect_errors_not_success() -> None:
    port = _free_port()  # nothing listens there
    res = run_sse(Target(port), 2, 0.2, tokens=1, pace_ms=0, ramp_s=0, hardstop_s=2)
    assert res["streams_ok"] == 0 and res["connect_errors"] > 0 and res["errors"] >= res["connect_errors"]
    assert build_sseclient().exists()


WRK_OUT = """Running 1s test @ http://127.0.0.1:1/v1/chat/completions
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.20ms  300.00us   9.00ms   90.00%
  Latency Distribution
     50%  850.00us
     75%    1.10ms
     90%    1.50ms
     99%    2.74ms
  47512 requests in 1.00s, 30.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:  47500.13
Transfer/sec:     30.00MB
"""


def test_parse_wrk() -> None:
    r = parse_wrk(WRK_OUT)
    assert r["rps"] == pytest.approx(47500.13)
    assert r["p50_ms"] == pytest.approx(0.85) and r["p99_ms"] == pytest.approx(2.74)
    assert r["requests"] == 47512 and r["errors"] == 8
    with pytest.raises(RuntimeError):
        parse_wrk("unable to connect")


def _summary(sg_rps: float, sg_errors: float) -> dict:
    base = {
        "c1": {"added_p50_us": 150.0, "added_p99_us": 400.0},
        "c64": {"rps": 60000.0},
        "paced500": {"cpu_us_per_chunk": 10.0, "added_ttfb_p99": 0.5, "added_gap_p99": 0.1},
        "paced2000": {"events_per_s": 80000.0, "added_ttfb_p99": 90.0, "errors": 0, "short_streams": 0},
        "rss_idle_kb": 20000.0,
        "kb_per_stream": 17.0,
        "startup_s": 0.2,
    }
    sg = {
        **base,
        "c64": {"rps": sg_rps},
        "paced2000": {**base["paced2000"], "errors": sg_errors},
        "rss_idle_kb": 60000.0,
    }
    return {"nginx": base, "aiohttp": {"c64": {"rps": 5000.0}}, "servegate-2w+plugins": sg}


def test_checks_apply_plugin_and_worker_rules() -> None:
    checks = {c.target: c for c in check_system(_summary(30000.0, 0), "servegate-2w+plugins")}
    assert checks["c64 RPS >= 0.4x nginx (bare)"].ok is True  # 30k >= 0.4 * 60k
    assert checks["c64 RPS >= 6x aiohttp"].ok is True
    assert checks["RSS idle <= 40 MB per worker (MB)"].ok is True  # 60 MB over 2 workers
    assert checks["paced2000 zero errors (errors+short+unfinished)"].ok is True
    assert checks["<= 10 KB per open stream (paced2000)"].ok is False
    bad = {c.target: c for c in check_system(_summary(20000.0, 3), "servegate-2w+plugins")}
    assert bad["c64 RPS >= 0.4x nginx (bare)"].ok is False
    assert bad["paced2000 zero errors (errors+short+unfinished)"].ok is False
    missing = check_system({"servegate-1w": {"failed": "x"}}, "servegate-1w")
    assert all(c.ok is None for c in missing)


def test_checks_clamp_a_negative_nginx_baseline() -> None:
    summary = _summary(30000.0, 0)
    summary["nginx"]["paced2000"]["added_ttfb_p99"] = -50.0  # nginx measured faster than direct
    summary["servegate-2w+plugins"]["paced2000"] = {**summary["nginx"]["paced2000"], "added_ttfb_p99": 2.5}
    checks = {c.target: c for c in check_system(summary, "servegate-2w+plugins")}
    ttfb = checks["paced2000 added TTFB p99 <= 3x nginx (ms)"]
    assert ttfb.limit == 3.0 and ttfb.ok is True
