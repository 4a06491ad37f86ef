"""Upstream side of the relay: one protocol object per upstream TCP connection, and the keep-alive pool.

The protocol parses the upstream response with httptools only to find the head and the end of the message;
body bytes are handed to the exchange exactly as read (one client write per upstream read).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Final

import httptools

from servegate.proxy import faults, phases

monotonic: Final = time.monotonic  # bound once: compiled, an imported name is a dict lookup per call

if TYPE_CHECKING:
    from servegate.proxy.exchange import Exchange

# A response head larger than this is treated as an invalid upstream response (nginx proxy_buffer_size-like).
MAX_RESPONSE_HEAD: Final = 64 * 1024


class UpstreamProtocol(asyncio.Protocol):
    __slots__ = (
        "key", "pool", "transport", "exchange", "parser", "headbuf", "head_done", "complete",
        "headers", "reason", "last_read", "write_paused_since", "reused", "closed", "idle_since",
        "got_bytes", "keep_alive",
    )

    def __init__(self, key: tuple[str, int, bool], pool: UpstreamPool) -> None:
        self.key = key
        self.pool = pool
        self.transport: Any = None
        self.exchange: Exchange | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.headbuf = b""
        self.head_done = False
        self.complete = False
        self.headers: list[tuple[bytes, bytes]] = []
        self.reason = b""
        self.last_read = 0.0
        self.write_paused_since = 0.0
        self.reused = False
        self.closed = False
        self.idle_since = 0.0
        self.got_bytes = False
        self.keep_alive = False

    # -- lifecycle -------------------------------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def attach(self, exchange: Exchange) -> None:
        """Start a new request/response cycle on this connection."""
        self.exchange = exchange
        self.headbuf = b""
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.got_bytes = False
        self.headers = []
        self.reason = b""
        self.last_read = monotonic()
        self.write_paused_since = 0.0

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        ex = self.exchange
        if ex is not None:
            self.exchange = None
            faults.upstream_lost(ex, self, exc)
        else:
            self.pool.discard(self)

    # -- parser callbacks ------------------------------------------------------------------------------------
    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        ex = self.exchange
        if ex is None:
            return
        if ex.decode_body:
            # De-framed: for an HTTP/1.0 client, or for the body_filter hooks.
            if ex.bfilters is None:
                if ex.llm is not None:
                    phases.llm_observe(ex, body)
                ex.client_write(body)
            else:
                ex.filter_body(body)
        elif ex.llm is not None:
            # Relayed as framed by data_received; the request's LLM record reads the de-framed body.
            phases.llm_observe(ex, body)

    def on_message_complete(self) -> None:
        # llhttp forgets the keep-alive verdict once the message is over: read it now.
        self.keep_alive = self.parser.should_keep_alive()
        self.complete = True

    # -- data ------------------------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        ex = self.exchange
        if ex is None:
            # Unsolicited bytes on an idle pooled connection: the connection is out of sync.
            self.transport.abort()
            return
        self.last_read = monotonic()
        self.got_bytes = True
        if self.head_done:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:
                faults.upstream_bad(ex, self, mid_stream=True)
                return
            if not ex.decode_body:
                ex.client_write(data)
            if self.complete:
                ex.response_complete(self)
            return
        self._head_data(ex, data)

    def _head_data(self, ex: Exchange, data: bytes) -> None:
        buf = self.headbuf + data if self.headbuf else data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_RESPONSE_HEAD:
                    faults.upstream_bad(ex, self, mid_stream=False)
                else:
                    self.headbuf = buf
                return
            head, rest = buf[: end + 4], buf[end + 4 :]
            try:
                self.parser.feed_data(head)
            except httptools.HttpParserError:
                faults.upstream_bad(ex, self, mid_stream=False)
                return
            status = self.parser.get_status_code()
            if 100 <= status < 200 and status != 101:
                # Interim responses are consumed here; the proxy answers 100-continue to the client itself.
                self.headers = []
                self.reason = b""
                self.complete = False
                buf = rest
                if not buf:
                    self.headbuf = b""
                    return
                continue
            break
        self.headbuf = b""
        self.head_done = True
        out = ex.response_head(self, status)
        if self.exchange is not ex:
            return  # the exchange left this connection (a balancer retry on another target)
        self.headers = []  # rewritten into `head`; not kept for the length of a stream
        if out is None:
            # An async header_filter runs: hold what followed the head (reading paused) until head_ready.
            self.headbuf = rest
            self.transport.pause_reading()
            return
        self._after_head(ex, out, rest)

    def head_ready(self, ex: Exchange, head: bytes) -> None:
        """The held response head is ready (async header_filter done): send it and carry on relaying."""
        rest = self.headbuf
        self.headbuf = b""
        if not ex.conn.write_paused:
            self.transport.resume_reading()
        self._after_head(ex, head, rest)

    def _after_head(self, ex: Exchange, head: bytes, rest: bytes) -> None:
        if ex.decode_body:
            ex.client_write(head)
        if rest:
            try:
                self.parser.feed_data(rest)
            except httptools.HttpParserError:
                if not ex.decode_body:
                    ex.client_write(head)
                faults.upstream_bad(ex, self, mid_stream=True)
                return
        if not ex.decode_body:
            ex.client_write(head + rest if rest else head)
        if ex.is_head and not self.complete:
            # No body follows a HEAD response, whatever its framing says; the parser cannot know that.
            ex.response_complete(self, reusable=False)
        elif self.complete and self.exchange is ex:
            ex.response_complete(self)

    # -- flow control ----------------------------------------------------------------------------------------
    def pause_writing(self) -> None:
        self.write_paused_since = monotonic()
        ex = self.exchange
        if ex is not None:
            ex.conn.pause_reading_for(1)

    def resume_writing(self) -> None:
        self.write_paused_since = 0.0
        ex = self.exchange
        if ex is not None:
            ex.conn.resume_reading_for(1)

    def eof_received(self) -> bool | None:
        return None


class UpstreamPool:
    """Idle keep-alive connections per (host, port, tls); bounded per key, closed after an idle timeout."""

    def __init__(self, max_per_key: int = 512, idle_timeout_s: float = 60.0) -> None:
        self.max_per_key = max_per_key
        self.idle_timeout_s = idle_timeout_s
        self.idle: dict[tuple[str, int, bool], list[UpstreamProtocol]] = {}

    def get(self, key: tuple[str, int, bool]) -> UpstreamProtocol | None:
        conns = self.idle.get(key)
        while conns:
            up = conns.pop()
            if not up.closed and not up.transport.is_closing():
                up.reused = True
                return up
        return None

    def put(self, up: UpstreamProtocol) -> None:
        up.exchange = None
        if up.closed:
            return
        conns = self.idle.setdefault(up.key, [])
        if len(conns) >= self.max_per_key:
            up.transport.close()
            return
        up.idle_since = monotonic()
        conns.append(up)

    def discard(self, up: UpstreamProtocol) -> None:
        conns = self.idle.get(up.key)
        if conns and up in conns:
            conns.remove(up)

    def sweep(self, now: float) -> None:
        limit = now - self.idle_timeout_s
        for conns in self.idle.values():
            while conns and conns[0].idle_since < limit:
                conns.pop(0).transport.close()

    def close_all(self) -> None:
        for conns in self.idle.values():
            for up in conns:
                up.transport.close()
        self.idle.clear()
