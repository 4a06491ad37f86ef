"""The LLM record of one request: what an LLM-aware plugin asked the proxy to watch, and what the response said.

A plugin creates it with `servegate.llm.track(ctx)` in its access phase; the proxy then fills it: `status`,
`backend` and `target` at the response head, every de-framed body chunk through `feed(chunk, eof)`, and
`finish(aborted)` before the log phase. Log hooks read it as `ctx.llm`.

The tap runs on every chunk of a tracked stream, so it does the least it can per chunk: find the end of each
event with `bytes.find` on the chunk as received (no copy unless an event spans chunks), tell a content event by
a key search (`"content":"` followed by a character), and parse JSON only for the first event (the response's
model, when a plain string search does not find it) and for the usage event.
"""

from __future__ import annotations

import time
from typing import Any, Final

from servegate.llm.request import estimate_prompt_tokens
from servegate.llm.sse import event_data, event_end, nonempty_string_at, single_data, string_at, value_at
from servegate.llm.usage import (
    Usage,
    completion_chars,
    last_usage,
    model_in_head,
    model_of,
    parse_body,
    usage_in_tail,
    usage_of,
)

monotonic: Final = time.monotonic  # bound once: compiled, an imported name is a dict lookup per call

# What the body turned out to be (decided on its first bytes).
_NEW: Final = 0
_SSE: Final = 1
_JSON: Final = 2
_OFF: Final = 3  # nothing to read: an error status, plain text, or an event too large to be SSE from an LLM

# An unfinished event longer than this is not an LLM stream's: the tap stops (and lets held bytes go).
PARTIAL_MAX: Final = 1 << 20
# A JSON body is kept whole up to this size; beyond it only its head (model) and tail (usage) are kept.
JSON_MAX: Final = 8 << 20
_KEEP: Final = 64 << 10

# Keys whose non-empty string value makes a streamed event a content event (one generated token, as vLLM,
# SGLang and llama.cpp send them), per operation.
_CHAT_KEYS: Final = (b'"content":', b'"reasoning_content":', b'"reasoning":', b'"arguments":')
_TEXT_KEYS: Final = (b'"text":',)
_USAGE: Final = b'"usage":'
_ERROR: Final = b'"error":'
# `error` of a stream whose backend reported an error in an event after its 200 head (vLLM, SGLang, TGI, llama.cpp
# send `data: {"error": {...}}`): the request failed although its status says otherwise.
STREAM_ERROR: Final = "stream_error"


class LLMRecord:
    """Token usage and timings of one OpenAI-protocol request (see the module docstring for who fills what).

    Times are `time.monotonic()` seconds. `t_first`/`t_last`: the first and last content event of a stream (of
    a JSON body: its first and last chunk). Token counts are None until known; `estimated` says the backend
    reported none and they were counted (completion: one per content event, or characters / 4 of a JSON
    response's text) and guessed (prompt: characters / 4 of the prompt).
    """

    __slots__ = (
        "operation", "request_model", "response_model", "stream", "usage_requested", "injected", "continuous",
        "prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "estimated",
        "t_start", "t_first", "t_last", "t_end", "events", "backend", "target", "provider", "plugin_id",
        "status", "aborted", "done", "finished", "error",
        "_mode", "_buf", "_keys", "_want_model", "_request", "_parts", "_size", "_head",
    )

    def __init__(self, operation: str, request_model: str | None = None, *, stream: bool = False,
                 usage_requested: bool = False, injected: bool = False, continuous: bool = False,
                 request: Any = None, t_start: float | None = None, plugin_id: str | None = None) -> None:
        self.operation = operation
        self.request_model = request_model
        self.response_model: str | None = None
        self.stream = stream
        self.usage_requested = usage_requested
        self.injected = injected
        self.continuous = continuous
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.total_tokens: int | None = None
        self.cached_tokens: int | None = None
        self.estimated = False
        self.t_start = monotonic() if t_start is None else t_start
        self.t_first: float | None = None
        self.t_last: float | None = None
        self.t_end: float | None = None
        self.events = 0
        self.backend: str | None = None
        self.target: str | None = None
        # Kong's meta.provider_name; a plugin may set it (else the backend's name).
        self.provider: str | None = None
        self.plugin_id = plugin_id
        self.status = 0
        self.aborted = False
        # The stream ended with `data: [DONE]`.
        self.done = False
        self.finished = False
        # STREAM_ERROR when an event of the stream was an error object; else None.
        self.error: str | None = None
        self._mode = _NEW
        self._buf = b""
        self._keys = _TEXT_KEYS if operation == "text_completion" else _CHAT_KEYS
        self._want_model = True
        # The parsed request body, kept only to estimate the prompt when the backend reports no usage.
        self._request = request
        self._parts: list[bytes] | None = None
        self._size = 0
        self._head: bytes | None = None

    # -- fed by the proxy ------------------------------------------------------------------------------------
    def head(self, status: int, backend: str | None, target: str | None, t_start: float | None = None) -> None:
        """The response head arrived from `backend` (service or upstream name) at `target` ("ip:port"). A backend
        name the tracking plugin set itself (a router knows which of its backends it chose) is kept."""
        self.status = status
        if self.backend is None:
            self.backend = backend
        self.target = target
        if t_start is not None:
            self.t_start = t_start
        if not 200 <= status < 300:
            self._mode = _OFF  # an error body carries no usage

    def feed(self, chunk: bytes, eof: bool) -> bytes:
        """One de-framed body chunk (then, for a rewritten stream, `b""` with eof=True). Returns what the client
        gets instead: `chunk` itself, unless the gateway injected include_usage and the usage event must go (the
        stream is then handed on in whole events, a partial one held back until its end arrives)."""
        mode = self._mode
        if mode == _SSE:
            return self._sse(chunk, eof)
        if mode == _NEW:
            if not chunk:
                return chunk
            mode = self._sniff(chunk)
            if mode == _SSE:
                return self._sse(chunk, eof)
        if mode == _JSON:
            self._json(chunk)
        return chunk

    def finish(self, aborted: bool) -> None:
        """The exchange ended (`aborted`: the client went away or the stream broke). Settles usage: from the
        JSON body, else estimated when the backend answered 2xx and reported none."""
        if self.finished:
            return
        self.finished = True
        self.aborted = aborted
        self.t_end = monotonic()
        if self._mode == _JSON:
            self._json_end()
        elif self._mode == _SSE and self._buf and not self.injected:
            # An unterminated last event (a stream that ended without its blank line): read it all the same.
            buf = self._buf
            if self._event(buf, 0, len(buf)) == 1:
                self._content(1)
        self._buf = b""
        if self.prompt_tokens is None and 200 <= self.status < 300:
            self._estimate()
        self._request = None

    # -- derived figures -------------------------------------------------------------------------------------
    def ttft(self) -> float | None:
        """Seconds from the request's start to the first content event of a stream (None for a JSON answer:
        its first token cannot be seen before the whole response)."""
        if not self.stream or self.t_first is None or self._mode != _SSE:
            return None
        return self.t_first - self.t_start

    def tpot(self) -> float | None:
        """Seconds per output token after the first, over a stream: (t_last - t_first) / (tokens - 1)."""
        n = self.completion_tokens if self.completion_tokens is not None else self.events
        if self.ttft() is None or n < 2 or self.t_last is None or self.t_first is None:
            return None
        return (self.t_last - self.t_first) / (n - 1)

    def duration(self) -> float | None:
        """Seconds from the request's start to its end (None until finished)."""
        return None if self.t_end is None else self.t_end - self.t_start

    def as_kong_ai(self) -> dict[str, Any]:
        """Kong's `ai.proxy` section of the log serializer: {"meta": {...}, "usage": {...}}."""
        d = self.duration()
        latency = int(d * 1000) if d is not None else 0
        completion = self.completion_tokens or 0
        meta: dict[str, Any] = {
            "request_model": self.request_model or "UNSPECIFIED",
            "response_model": self.response_model or self.request_model or "UNSPECIFIED",
            "provider_name": self.provider or self.backend or "UNSPECIFIED",
            "llm_latency": latency,
        }
        if self.plugin_id is not None:
            meta["plugin_id"] = self.plugin_id
        usage = {
            "prompt_tokens": self.prompt_tokens or 0,
            "completion_tokens": completion,
            "total_tokens": self.total_tokens or 0,
            "time_per_token": latency / completion if completion else 0,
            "cost": 0,
        }
        return {"meta": meta, "usage": usage}

    def __repr__(self) -> str:
        return (f"LLMRecord({self.operation} {self.request_model!r} stream={self.stream} status={self.status} "
                f"tokens={self.prompt_tokens}/{self.completion_tokens} estimated={self.estimated})")

    # -- internals -------------------------------------------------------------------------------------------
    def _sniff(self, chunk: bytes) -> int:
        c = chunk.lstrip()[:1]
        if not c:
            return _NEW
        mode = _JSON if c in (b"{", b"[") else _SSE if self.stream else _OFF
        self._mode = mode
        return mode

    def _sse(self, chunk: bytes, eof: bool) -> bytes:
        held = self._buf
        data = held + chunk if held else chunk
        n = len(data)
        s = 0
        cuts: list[tuple[int, int]] | None = None
        content = 0
        while s < n:
            e = event_end(data, s)
            if e < 0:
                if not eof:
                    break
                e = n  # the stream ends inside an event: read it as one
            r = self._event(data, s, e)
            if r == 1:
                content += 1
            elif r == 2:
                if cuts is None:
                    cuts = []
                cuts.append((s, e))
            s = e
        if content:
            self._content(content)
        if not self.injected:
            # Observing only: the client gets the chunk as it came; keep a copy of an unfinished event.
            self._buf = data[s:] if s < n else b""
            if len(self._buf) > PARTIAL_MAX:
                self._give_up()
            return chunk
        if s < n:
            self._buf = data[s:]
            if len(self._buf) > PARTIAL_MAX:
                self._give_up()
                s = n
        else:
            self._buf = b""
        if cuts is None:
            return data if s == n else data[:s]
        out: list[bytes] = []
        pos = 0
        for cs, ce in cuts:
            out.append(data[pos:cs])
            pos = ce
        out.append(data[pos:s])
        return b"".join(out)

    def _give_up(self) -> None:
        self._mode = _OFF
        self._buf = b""

    def _content(self, n: int) -> None:
        t = monotonic()
        if self.t_first is None:
            self.t_first = t
        self.t_last = t
        self.events += n

    def _event(self, data: bytes, s: int, e: int) -> int:
        """Read one event: 1 for a content event, 2 for the usage event the client must not get, else 0."""
        p, q = single_data(data, s, e)
        if p < 0:
            if data[s] == 58:  # ':' a comment (keep-alive)
                return 0
            payload = event_data(data[s:e])
            if payload is None:
                # No data line: llama.cpp's old `error: {...}` field, or Ollama's bare {"error": "..."} after its 200.
                if data.startswith(b"error:", s) or value_at(data, _ERROR, s, e) >= 0:
                    self.error = STREAM_ERROR
                return 0
            data = payload
            p, q = 0, len(payload)
        if p >= q:
            return 0  # an empty data line
        if data[p] == 91 and data.startswith(b"[DONE]", p):  # '['
            self.done = True
            return 0
        if self._want_model:
            self._want_model = False
            model = string_at(data, b'"model":', p, q)
            self.response_model = model if model is not None else model_of(parse_body(data[p:q]))
        for key in self._keys:
            if nonempty_string_at(data, key, p, q):
                if self.continuous:
                    self._usage_event(data, p, q)
                return 1
        v = value_at(data, _USAGE, p, q)
        if v < 0 or data[v] == 110:  # "usage": null on an ordinary chunk
            # Not content, no usage: an error object? (The key's pattern cannot match inside a JSON string.)
            err = value_at(data, _ERROR, p, q)
            if err >= 0 and data[err] != 110:  # "error": null is no error
                self.error = STREAM_ERROR
            return 0
        return self._usage_event(data, p, q)

    def _usage_event(self, data: bytes, p: int, q: int) -> int:
        obj = parse_body(data[p:q])
        u = usage_of(obj)
        if u is None:
            return 0
        self._set_usage(u)
        # Only the usage-only chunk (`choices: []`) goes; usage riding on a choice (old llama-server) stays.
        return 2 if self.injected and isinstance(obj, dict) and not obj.get("choices") else 0

    def _set_usage(self, u: Usage) -> None:
        self.prompt_tokens = u.prompt
        self.completion_tokens = u.completion
        self.total_tokens = u.total
        self.cached_tokens = u.cached
        self.estimated = False

    def _json(self, chunk: bytes) -> None:
        t = monotonic()
        if self.t_first is None:
            self.t_first = t
        self.t_last = t
        parts = self._parts
        if parts is None:
            parts = self._parts = []
        parts.append(chunk)
        self._size += len(chunk)
        if self._size > JSON_MAX:
            # Too large to parse whole (a big embeddings answer): keep the head for the model, the tail for usage.
            whole = b"".join(parts)
            if self._head is None:
                self._head = whole[:_KEEP]
            self._parts = [whole[-_KEEP:]]
            self._size = _KEEP

    def _json_end(self) -> None:
        parts = self._parts
        self._parts = None
        if not parts:
            return
        body = b"".join(parts)
        if self._head is not None:
            self.response_model = model_in_head(self._head)
            u = usage_in_tail(body)
            if u is not None:
                self._set_usage(u)
            return
        # Usually read by searching: the usage object is the body's last member (only it is parsed) and the model
        # one of its first; the whole body is parsed when either search fails (no usage reported, say).
        u = last_usage(body)
        if u is not None:
            model = model_in_head(body)
            if model is not None:
                self.response_model = model
                self._set_usage(u)
                return
        obj = parse_body(body)
        self.response_model = model_of(obj)
        u = usage_of(obj)
        if u is not None:
            self._set_usage(u)
        elif isinstance(obj, dict) and self.operation != "embeddings":
            self.completion_tokens = (completion_chars(obj) + 3) // 4

    def _estimate(self) -> None:
        self.prompt_tokens = estimate_prompt_tokens(self._request)
        if self.completion_tokens is None:
            self.completion_tokens = self.events
        self.total_tokens = self.prompt_tokens + self.completion_tokens
        self.estimated = True
