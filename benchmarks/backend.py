"""Fake OpenAI-compatible backend for the benchmarks.

asyncio.Protocol + httptools + uvloop, every response byte precomputed, so the backend costs a few µs per
request and per chunk and never limits the proxies under test.

- non-stream POST: a ~400 B ``chat.completion``.
- ``"stream": true``: chunked SSE with a role chunk, N distinct token chunks (~190 B each), a finish chunk,
  the usage chunk when ``stream_options.include_usage`` asks for it, and ``data: [DONE]``. N is the request's ``max_tokens`` and the pause between chunks, in ms, its ``seed``.
  Pace 0 writes one chunk per loop turn; paced streams share one 1 ms timer wheel, so thousands of open
  streams cost one timer, not one per stream.
- any other request (GET, bad JSON) gets the non-stream answer, which doubles as a readiness probe.

Token chunks are distinct because LiteLLM aborts a stream after 100 identical chunks.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections import defaultdict

import httptools
import orjson
import uvloop

DISTINCT_TOKENS = 1000

_COMPLETION = orjson.dumps(
    {
        "id": "chatcmpl-bench000000000000000",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "fake",
        "system_fingerprint": "fp_bench",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello from the benchmark backend, a short answer.",
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21},
    }
)
NONSTREAM = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(_COMPLETION)).encode()
    + b"\r\n\r\n"
    + _COMPLETION
)
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)


def _sse_chunk(delta: dict[str, str], finish: str | None) -> bytes:
    obj = {
        "id": "chatcmpl-bench000000000000000",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "fake",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def _frame(payload: bytes) -> bytes:
    """One HTTP/1.1 chunk."""
    return b"%x\r\n" % len(payload) + payload + b"\r\n"


ROLE = _frame(_sse_chunk({"role": "assistant", "content": ""}, None))
TOKENS = [_frame(_sse_chunk({"content": f"tok{i:03d} "}, None)) for i in range(DISTINCT_TOKENS)]
# finish chunk, [DONE] and the terminating zero chunk go out in one write
TAIL = _frame(_sse_chunk({}, "stop")) + _frame(b"data: [DONE]\n\n") + b"0\r\n\r\n"


def _usage_tail(n: int) -> bytes:
    """TAIL with the usage chunk `stream_options.include_usage` asks for (empty choices), as vLLM sends it."""
    usage = {"id": "chatcmpl-bench000000000000000", "object": "chat.completion.chunk", "created": 1700000000,
             "model": "fake", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": n,
                                                       "total_tokens": 9 + n}}
    return (_frame(_sse_chunk({}, "stop")) + _frame(b"data: " + orjson.dumps(usage) + b"\n\n")
            + _frame(b"data: [DONE]\n\n") + b"0\r\n\r\n")

TICK_S = 0.001


class Wheel:
    """1 ms timer wheel: streams due in the same tick are served by one callback."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.slots: dict[int, list[Stream]] = defaultdict(list)
        self.handle: asyncio.TimerHandle | None = None

    def now_tick(self) -> int:
        return int(self.loop.time() / TICK_S)

    def add(self, stream: Stream, tick: int) -> None:
        """Run stream.step() at `tick` (a tick already past runs on the next one)."""
        self.slots[tick].append(stream)
        if self.handle is None:
            self.handle = self.loop.call_later(TICK_S, self.run)

    def run(self) -> None:
        self.handle = None
        now = self.now_tick()
        due = [t for t in self.slots if t <= now]
        due.sort()
        for t in due:
            for stream in self.slots.pop(t):
                stream.step()
        # steps above may already have re-armed the timer through add(); never arm two
        if self.slots and self.handle is None:
            self.handle = self.loop.call_later(TICK_S, self.run)


class Stream:
    """One streamed response. Paced chunks are due at start + k * pace: a late tick does not push the
    following chunks back, as a model server keeps generating while its HTTP loop lags."""

    __slots__ = ("proto", "left", "pace", "idx", "due", "tail")

    def __init__(self, proto: Backend, n: int, pace: int, tail: bytes = TAIL) -> None:
        self.proto = proto
        self.tail = tail
        self.left = n
        self.pace = pace
        self.idx = 0
        self.due = proto.wheel.now_tick()

    def start(self) -> None:
        self.proto.transport.write(STREAM_HEAD + ROLE)
        self.schedule()

    def schedule(self) -> None:
        if self.pace > 0:
            self.due += self.pace
            self.proto.wheel.add(self, self.due)
        else:
            self.proto.loop.call_soon(self.step)

    def step(self) -> None:
        proto = self.proto
        if proto.closed:
            return
        if proto.paused:
            proto.waiting = self
            return
        if self.left > 0:
            proto.transport.write(TOKENS[self.idx % DISTINCT_TOKENS])
            self.idx += 1
            self.left -= 1
            if self.left > 0:
                self.schedule()
                return
            if self.pace > 0:
                self.left = -1
                self.schedule()
                return
        proto.transport.write(self.tail)
        proto.stream_done()


class Backend(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop, wheel: Wheel) -> None:
        self.loop = loop
        self.wheel = wheel
        self.parser = httptools.HttpRequestParser(self)
        self.body: list[bytes] = []
        self.queue: list[tuple[bytes, bool]] = []
        self.streaming = False
        self.paused = False
        self.closed = False
        self.waiting: Stream | None = None
        self.keep_alive = True
        self.transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.waiting is not None:
            stream, self.waiting = self.waiting, None
            stream.step()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            self.transport.close()

    def on_message_begin(self) -> None:
        self.body = []

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.queue.append((b"".join(self.body), self.parser.should_keep_alive()))
        if not self.streaming:
            self.serve_next()

    def serve_next(self) -> None:
        while self.queue and not self.streaming and not self.closed:
            body, keep_alive = self.queue.pop(0)
            req = _parse(body)
            if req is not None and req.get("stream") is True:
                n = int(req.get("max_tokens") or 16)
                pace = int(req.get("seed") or 0)
                self.streaming = True
                self.keep_alive = keep_alive
                opts = req.get("stream_options")
                tail = _usage_tail(n) if isinstance(opts, dict) and opts.get("include_usage") else TAIL
                Stream(self, n, pace, tail).start()
                return
            self.transport.write(NONSTREAM)
            if not keep_alive:
                self.transport.close()
                return

    def stream_done(self) -> None:
        self.streaming = False
        if not self.keep_alive:
            self.transport.close()
            return
        self.serve_next()


def _parse(body: bytes) -> dict | None:
    if not body:
        return None
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


async def serve(host: str, port: int) -> None:
    """Listen on each address of the comma-separated `host` (the balancer variants' three targets are three
    loopback addresses of this one process)."""
    loop = asyncio.get_running_loop()
    wheel = Wheel(loop)
    servers = [
        await loop.create_server(lambda: Backend(loop, wheel), h.strip(), port, backlog=4096, reuse_address=True)
        for h in host.split(",")
    ]
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"backend listening on {host}:{port}", flush=True)
    await stop.wait()
    for server in servers:
        server.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1", help="address(es) to listen on, comma-separated")
    ap.add_argument("--port", type=int, default=9000)
    args = ap.parse_args()
    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
