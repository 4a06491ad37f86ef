"""A fake OpenAI-compatible backend, run as its own process by the proxy tests.

`python fake_openai.py --port 0 [--events FILE]` prints `PORT <n>` once listening.
Endpoints: /v1/chat/completions (JSON, or SSE with `"stream": true`), /v1/completions, /v1/embeddings,
/v1/models, plus test helpers: /__echo (the request as received), /__upload (counts body bytes),
/__events (JSON list of events: connection closes with their tag), /__stats.
Request headers steering a response: X-Fake-Pace-Ms (ms between SSE chunks), X-Fake-Sleep-Ms (delay before
answering), X-Fake-Mode: reset (abort the connection after a few SSE chunks), X-Fake-Tag (names the connection
in the close event). The number of SSE token chunks is `max_tokens` (default 5).
Usage (tests/llm): without X-Fake-Usage a stream carries usage on its finish chunk (old llama-server); with
X-Fake-Usage: honour, a separate `choices: []` usage chunk only when stream_options asks (vLLM: an empty object
asks); ignore, none in streams; never, none in streams or JSON. X-Fake-No-Done: 1 ends a stream without
`data: [DONE]`; X-Fake-Plain-500: 1 answers 500 in plain text; X-Fake-Crlf: 1 ends SSE lines with CRLF;
X-Fake-Comments: 1 sends `: ping` comments between events; X-Fake-Split: 1 writes each event in two pieces.
Paced tokens go out on a schedule (token i at the stream's start + (i + 1) * pace); a stream with X-Fake-Tag adds
an event {"event": "stream", "tag", "arrived", "tokens": [monotonic time each token was written]} to /__events.
Prompt tokens are the words of the prompt (messages' content, prompt, input) plus 1. /__requests lists the
bodies of the /v1 requests received.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import httptools

EVENTS: list[dict[str, Any]] = []
STATS = {"connections": 0, "requests": 0}
REQUESTS: list[Any] = []


def usage(body: dict[str, Any], n: int) -> dict[str, Any]:
    pt = prompt_tokens(body)
    return {"prompt_tokens": pt, "completion_tokens": n, "total_tokens": pt + n,
            "prompt_tokens_details": {"cached_tokens": 1}}


def prompt_tokens(body: dict[str, Any]) -> int:
    """The fake's token count of a prompt: its words, plus 1 (so that it differs from a characters/4 guess)."""
    words = 0
    for m in body.get("messages") or []:
        if isinstance(m, dict) and isinstance(m.get("content"), str):
            words += len(m["content"].split())
    for key in ("prompt", "input"):
        v = body.get(key)
        for s in v if isinstance(v, list) else [v]:
            if isinstance(s, str):
                words += len(s.split())
    return words + 1
# --models a,b: the models this backend serves (/v1/models lists them; any other model gets vLLM's 404); POST
# /__models with a JSON list replaces them. Empty: the single `fake-model`, any model accepted. /__stats counts
# the requests per model under "models".
MODELS: list[str] = []
MODEL_HITS: dict[str, int] = {}


class Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport: Any = None
        self.tag: str | None = None
        self.body_len = 0
        self.keep_body = True

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        STATS["connections"] += 1

    def connection_lost(self, exc: Exception | None) -> None:
        EVENTS.append({"event": "closed", "tag": self.tag, "t": time.time()})
        self.transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport:
                self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []
        self.body_len = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.keep_body = not self.url.startswith(b"/__upload")
        for k, v in self.headers:
            if k.lower() == "x-fake-tag":
                self.tag = v

    def on_body(self, body: bytes) -> None:
        self.body_len += len(body)
        if self.keep_body:
            self.body.append(body)

    def on_message_complete(self) -> None:
        STATS["requests"] += 1
        req = {
            "method": self.parser.get_method().decode(),
            "url": self.url.decode("latin-1"),
            "headers": self.headers,
            "body": b"".join(self.body),
            "body_len": self.body_len,
            "keep_alive": self.parser.should_keep_alive(),
            "t": time.monotonic(),
        }
        asyncio.get_running_loop().create_task(self.handle(req))

    def write(self, data: bytes) -> bool:
        if self.transport is None or self.transport.is_closing():
            return False
        self.transport.write(data)
        return True

    def respond(self, status: int, body: bytes, ctype: str = "application/json", extra: str = "",
                keep_alive: bool = True) -> None:
        head = (
            f"HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n{extra}"
            f"{'' if keep_alive else 'Connection: close' + chr(13) + chr(10)}\r\n"
        )
        self.write(head.encode() + body)
        if not keep_alive and self.transport:
            self.transport.close()

    async def handle(self, req: dict[str, Any]) -> None:
        h = {k.lower(): v for k, v in req["headers"]}
        sleep_ms = float(h.get("x-fake-sleep-ms", "0"))
        if sleep_ms:
            await asyncio.sleep(sleep_ms / 1000)
        path = req["url"].split("?")[0]
        body: dict[str, Any] = {}
        if req["body"] and path.startswith("/v1/"):
            try:
                body = json.loads(req["body"])
            except ValueError:
                self.respond(400, b'{"error":"bad json"}')
                return
        ka = req["keep_alive"]
        if path.startswith("/v1/") and req["method"] == "POST":
            REQUESTS.append(body)
        if h.get("x-fake-plain-500") and path.startswith("/v1/"):
            self.respond(500, b"Internal Server Error", ctype="text/plain", keep_alive=ka)
            return
        if path == "/__requests":
            self.respond(200, json.dumps(REQUESTS).encode(), keep_alive=ka)
            return
        if isinstance(body.get("model"), str):
            MODEL_HITS[body["model"]] = MODEL_HITS.get(body["model"], 0) + 1
        if path.startswith("/__echo"):
            out = {"method": req["method"], "url": req["url"], "headers": req["headers"],
                   "body": req["body"].decode("latin-1")}
            self.respond(200, json.dumps(out).encode(), extra="Server: fake-backend\r\nVia: 1.0 backendproxy\r\n"
                         "X-Hop: 1\r\nConnection: x-hop\r\n", keep_alive=ka)
        elif path == "/__upload":
            self.respond(200, json.dumps({"bytes": req["body_len"]}).encode(), keep_alive=ka)
        elif path == "/__events":
            self.respond(200, json.dumps(EVENTS).encode(), keep_alive=ka)
        elif path == "/__stats":
            self.respond(200, json.dumps({**STATS, "models": MODEL_HITS}).encode(), keep_alive=ka)
        elif path == "/__models":
            if req["method"] == "POST":
                MODELS[:] = json.loads(req["body"])
            self.respond(200, json.dumps(MODELS).encode(), keep_alive=ka)
        elif path == "/v1/models":
            out = {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "vllm"}
                                              for m in MODELS or ["fake-model"]]}
            self.respond(200, json.dumps(out).encode(), keep_alive=ka)
        elif MODELS and req["method"] == "POST" and body.get("model") not in MODELS:
            err = {"message": f"The model `{body.get('model')}` does not exist.", "type": "NotFoundError",
                   "param": "model", "code": 404}
            self.respond(404, json.dumps({"error": err}).encode(), keep_alive=ka)
        elif path == "/v1/embeddings":
            inputs = body.get("input", "")
            n = len(inputs) if isinstance(inputs, list) else 1
            out = {"object": "list", "model": body.get("model", "fake-model"),
                   "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i in range(n)],
                   "usage": {"prompt_tokens": 3 * n, "total_tokens": 3 * n}}
            if h.get("x-fake-usage") == "never":
                del out["usage"]
            self.respond(200, json.dumps(out).encode(), keep_alive=ka)
        elif path in ("/v1/chat/completions", "/v1/completions"):
            chat = path == "/v1/chat/completions"
            if body.get("stream"):
                await self.stream(body, h, chat, req["t"])
            else:
                n = int(body.get("max_tokens") or 5)
                text = " ".join(f"tok{i}" for i in range(n))
                if chat:
                    choice: dict[str, Any] = {"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": text}}
                else:
                    choice = {"index": 0, "finish_reason": "stop", "text": text, "logprobs": None}
                out = {"id": "cmpl-fake", "object": "chat.completion" if chat else "text_completion",
                       "created": int(time.time()), "model": body.get("model", "fake-model"), "choices": [choice],
                       "usage": {"prompt_tokens": 3, "completion_tokens": n, "total_tokens": 3 + n}}
                if h.get("x-fake-usage") == "never":
                    del out["usage"]
                elif h.get("x-fake-usage"):
                    out["usage"] = usage(body, n)
                self.respond(200, json.dumps(out).encode(), keep_alive=ka)
        else:
            self.respond(404, b'{"error":"not found"}', keep_alive=ka)

    async def stream(self, body: dict[str, Any], h: dict[str, str], chat: bool, arrived: float = 0.0) -> None:
        n = int(body.get("max_tokens") or 5)
        pace = float(h.get("x-fake-pace-ms", "0")) / 1000
        reset = h.get("x-fake-mode") == "reset"
        model = body.get("model", "fake-model")
        self.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n")

        nl = b"\r\n" if h.get("x-fake-crlf") else b"\n"
        ping = b": ping" + nl + nl if h.get("x-fake-comments") else b""
        split = bool(h.get("x-fake-split"))

        def event(obj: Any, ping: bytes = ping) -> bytes:
            data = ping + b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + nl + nl
            if split:  # two chunks of the chunked body: the event spans them
                half = len(data) // 2
                return b"%x\r\n%b\r\n%x\r\n%b\r\n" % (half, data[:half], len(data) - half, data[half:])
            return b"%x\r\n%b\r\n" % (len(data), data)

        def chunk(i: int | None) -> dict[str, Any]:
            if chat:
                delta: dict[str, Any] = {"role": "assistant", "content": ""} if i is None else {"content": f"tok{i} "}
                choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": None}
            else:
                choice = {"index": 0, "text": "" if i is None else f"tok{i} ", "finish_reason": None}
            return {"id": "cmpl-fake", "object": "chat.completion.chunk" if chat else "text_completion",
                    "created": 0, "model": model, "choices": [choice]}

        if not self.write(event(chunk(None))):
            return
        start = time.monotonic()
        sent: list[float] = []
        for i in range(n):
            if pace:
                # On a schedule (token i at start + (i + 1) * pace): a late timer does not delay every later token.
                await asyncio.sleep(max(start + (i + 1) * pace - time.monotonic(), 0))
            if reset and i == 2:
                if self.transport:
                    self.transport.abort()
                return
            if not self.write(event(chunk(i))):
                EVENTS.append({"event": "write_failed", "tag": self.tag, "t": time.time()})
                return
            sent.append(time.monotonic())
        if h.get("x-fake-tag"):
            # When the request arrived and each token went out (CLOCK_MONOTONIC: comparable across processes), for
            # tests that check what the gateway measured against what this backend did.
            EVENTS.append({"event": "stream", "tag": h["x-fake-tag"], "arrived": arrived, "tokens": sent})
        last = chunk(None)
        last["choices"][0]["finish_reason"] = "stop"
        if chat:
            last["choices"][0]["delta"] = {}
        mode = h.get("x-fake-usage")
        if mode is None:
            last["usage"] = {"prompt_tokens": 3, "completion_tokens": n, "total_tokens": 3 + n}
        tail = event(last)
        opts = body.get("stream_options")
        if mode == "honour" and isinstance(opts, dict) and opts.get("include_usage", True):
            # vLLM: a separate chunk with empty choices, an empty stream_options object counting as asked.
            tail += event({"id": "cmpl-fake", "object": "chat.completion.chunk" if chat else "text_completion",
                           "created": 0, "model": model, "choices": [], "usage": usage(body, n)}, b"")
        if not h.get("x-fake-no-done"):
            tail += event(b"[DONE]")
        self.write(tail + b"0\r\n\r\n")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--models", default="")
    args = ap.parse_args()
    MODELS[:] = [m for m in args.models.split(",") if m]
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Conn, args.host, args.port)
    print("PORT", server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
