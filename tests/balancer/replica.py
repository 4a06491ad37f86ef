"""A fake inference replica (one vLLM-like engine), run as its own process by the balancer tests.

`python replica.py --port N --name r1 [--slow-factor F] [--unhealthy] [--overloaded 503|429]` prints
`PORT <n>` once listening; SIGKILL it and start it again on the same port to simulate a crash and a restart.

Endpoints:
- POST /v1/chat/completions (and /v1/completions): JSON, or SSE with `"stream": true`. The number of token
  chunks is `max_tokens` (default 5) or the header X-Fake-Chunks; the pause before each chunk is
  X-Fake-Pace-Ms (body field `pace_ms` too) times the replica's slow factor; X-Fake-Sleep-Ms delays the head.
  An overloaded replica answers its overload status (503 or 429) at once, before any token.
- GET /health: 200, or 503 when unhealthy.
- GET /__stats: {"name", "open", "peak_open", "requests", "served", "aborted", "by_status", "open_seconds", "t"}.
  `open` counts the completion requests being answered, from the parsed request to the last byte written
  or the connection lost; `open_seconds` is the integral of `open` over time (the time-averaged open count
  between two reads is Δopen_seconds / Δt); `served` the completions answered in full; `aborted` those whose
  connection was lost first. /health and /__* requests are not counted.
- POST /__control with JSON {"overloaded": 0|429|503, "healthy": bool, "slow_factor": float}; POST /__reset
  zeroes the counters (not `open`).
Every response carries `X-Replica: <name>`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import httptools

NAME = "replica"
CONF: dict[str, Any] = {"slow_factor": 1.0, "healthy": True, "overloaded": 0}


class Stats:
    def __init__(self) -> None:
        self.open = 0
        self.peak_open = 0
        self.requests = 0
        self.served = 0
        self.aborted = 0
        self.by_status: dict[str, int] = {}
        self.integral = 0.0
        self.since = time.monotonic()

    def _advance(self) -> None:
        now = time.monotonic()
        self.integral += self.open * (now - self.since)
        self.since = now

    def opened(self) -> None:
        self._advance()
        self.open += 1
        self.peak_open = max(self.peak_open, self.open)
        self.requests += 1

    def closed(self, status: int, complete: bool) -> None:
        self._advance()
        self.open -= 1
        if complete:
            self.served += 1
            key = str(status)
            self.by_status[key] = self.by_status.get(key, 0) + 1
        else:
            self.aborted += 1

    def reset(self) -> None:
        self._advance()
        self.peak_open = self.open
        self.requests = self.served = self.aborted = 0
        self.by_status = {}
        self.integral = 0.0

    def snapshot(self) -> dict[str, Any]:
        self._advance()
        return {"name": NAME, "open": self.open, "peak_open": self.peak_open, "requests": self.requests,
                "served": self.served, "aborted": self.aborted, "by_status": self.by_status,
                "open_seconds": self.integral, "t": time.monotonic()}


STATS = Stats()


def _event(obj: Any) -> bytes:
    data = b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n\n"
    return b"%x\r\n%b\r\n" % (len(data), data)


def _chunk(i: int | None, chat: bool) -> dict[str, Any]:
    if chat:
        delta: dict[str, Any] = {"role": "assistant", "content": ""} if i is None else {"content": f"tok{i} "}
        choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": None}
    else:
        choice = {"index": 0, "text": "" if i is None else f"tok{i} ", "finish_reason": None}
    return {"id": "cmpl-replica", "object": "chat.completion.chunk" if chat else "text_completion",
            "created": 0, "model": "fake-model", "choices": [choice]}


class Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport: Any = None
        self.task: asyncio.Task[None] | None = None
        self.queue: list[dict[str, Any]] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.task is not None:
            self.task.cancel()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport:
                self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        req = {"method": self.parser.get_method().decode(), "path": self.url.decode("latin-1").split("?")[0],
               "headers": self.headers, "body": b"".join(self.body), "keep_alive": self.parser.should_keep_alive()}
        self.queue.append(req)
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self.serve())

    async def serve(self) -> None:
        """Answer this connection's requests in order (a client may pipeline)."""
        try:
            while self.queue and self.transport is not None:
                req = self.queue.pop(0)
                if req["path"] in ("/v1/chat/completions", "/v1/completions"):
                    await self.completion(req)
                else:
                    self.other(req)
        finally:
            self.task = None

    def write(self, data: bytes) -> bool:
        if self.transport is None or self.transport.is_closing():
            return False
        self.transport.write(data)
        return True

    def respond(self, status: int, body: bytes, keep_alive: bool, ctype: str = "application/json") -> bool:
        head = (f"HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                f"X-Replica: {NAME}\r\n{'' if keep_alive else 'Connection: close' + chr(13) + chr(10)}\r\n")
        ok = self.write(head.encode() + body)
        if not keep_alive and self.transport is not None:
            self.transport.close()
        return ok

    def other(self, req: dict[str, Any]) -> None:
        ka = req["keep_alive"]
        path = req["path"]
        if path == "/health":
            if CONF["healthy"]:
                self.respond(200, b'{"status":"ok"}', ka)
            else:
                self.respond(503, b'{"status":"unhealthy"}', ka)
        elif path == "/__stats":
            self.respond(200, json.dumps(STATS.snapshot()).encode(), ka)
        elif path == "/__reset":
            STATS.reset()
            self.respond(200, b"{}", ka)
        elif path == "/__control":
            try:
                change = json.loads(req["body"] or b"{}")
            except ValueError:
                self.respond(400, b'{"error":"bad json"}', ka)
                return
            for k in ("slow_factor", "healthy", "overloaded"):
                if k in change:
                    CONF[k] = change[k]
            self.respond(200, json.dumps(CONF).encode(), ka)
        else:
            self.respond(404, b'{"error":"not found"}', ka)

    async def completion(self, req: dict[str, Any]) -> None:
        STATS.opened()
        status, complete = 0, False
        try:
            status, complete = await self._completion(req)
        finally:
            STATS.closed(status, complete)

    async def _completion(self, req: dict[str, Any]) -> tuple[int, bool]:
        h = req["headers"]
        ka = req["keep_alive"]
        chat = req["path"] == "/v1/chat/completions"
        try:
            body = json.loads(req["body"] or b"{}")
        except ValueError:
            return 400, self.respond(400, b'{"error":"bad json"}', ka)
        overloaded = int(CONF["overloaded"] or 0)
        if overloaded:
            msg = {"object": "error", "message": "engine overloaded", "type": "ServiceUnavailableError",
                   "code": overloaded}
            return overloaded, self.respond(overloaded, json.dumps(msg).encode(), ka)
        sleep_ms = float(h.get("x-fake-sleep-ms", "0"))
        if sleep_ms:
            await asyncio.sleep(sleep_ms / 1000)
        n = int(h.get("x-fake-chunks") or body.get("max_tokens") or 5)
        pace = float(h.get("x-fake-pace-ms") or body.get("pace_ms") or 0) / 1000 * float(CONF["slow_factor"])
        if not body.get("stream"):
            if pace:
                await asyncio.sleep(pace * n)
            text = " ".join(f"tok{i}" for i in range(n))
            choice: dict[str, Any] = ({"index": 0, "finish_reason": "stop",
                                       "message": {"role": "assistant", "content": text}} if chat else
                                      {"index": 0, "finish_reason": "stop", "text": text})
            out = {"id": "cmpl-replica", "object": "chat.completion" if chat else "text_completion",
                   "created": int(time.time()), "model": body.get("model", "fake-model"), "choices": [choice],
                   "usage": {"prompt_tokens": 3, "completion_tokens": n, "total_tokens": 3 + n},
                   "replica": NAME}
            return 200, self.respond(200, json.dumps(out).encode(), ka)
        head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                b"X-Replica: " + NAME.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n")
        if not self.write(head + _event(_chunk(None, chat))):
            return 200, False
        for i in range(n):
            if pace:
                await asyncio.sleep(pace)
            if not self.write(_event(_chunk(i, chat))):
                return 200, False
        last = _chunk(None, chat)
        last["choices"][0]["finish_reason"] = "stop"
        if chat:
            last["choices"][0]["delta"] = {}
        last["usage"] = {"prompt_tokens": 3, "completion_tokens": n, "total_tokens": 3 + n}
        ok = self.write(_event(last) + _event(b"[DONE]") + b"0\r\n\r\n")
        if not ka and self.transport is not None:
            self.transport.close()
        return 200, ok


async def main() -> None:
    global NAME
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--name", default="replica")
    ap.add_argument("--slow-factor", type=float, default=1.0)
    ap.add_argument("--unhealthy", action="store_true", help="GET /health answers 503")
    ap.add_argument("--overloaded", type=int, default=0, choices=(0, 429, 503),
                    help="answer completions with this status before any token")
    args = ap.parse_args()
    NAME = args.name
    CONF.update(slow_factor=args.slow_factor, healthy=not args.unhealthy, overloaded=args.overloaded)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Conn, args.host, args.port, reuse_address=True, backlog=1024)
    print("PORT", server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
