"""Client side: one protocol object per downstream connection (HTTP/1.1, keep-alive, pipelining in order).

llhttp (through httptools) already rejects CL+TE, duplicate or bad Content-Length, bad chunk sizes, obsolete
line folding and bare LF; this module adds the size limits, HTTP/0.9 refusal and the header/idle timeouts.

Lingering close (nginx's `lingering_close on`): a connection closed after an answer sent before the request
was read to its end (an early 401/404/413/502/504 during an upload) is not closed at once, which would make
the kernel answer the bytes still arriving with a reset and the client lose the answer. The proxy shuts its
sending side down (the client reads the answer, then end of stream) and keeps reading and dropping what the
client sends, until the client closes, LINGER_TIMEOUT_S passes without data, LINGER_TIME_S passes in all or
LINGER_MAX_BYTES have been dropped; then it closes.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Final

import httptools

from servegate.proxy import errors, faults
from servegate.proxy.errorlog import log_exception
from servegate.proxy.exchange import DONE, Exchange

monotonic: Final = time.monotonic  # bound once: compiled, an imported name is a dict lookup per call

if TYPE_CHECKING:
    from servegate.proxy.server import ProxyServer

MAX_URL: Final = 8192
MAX_ONE_HEADER: Final = 8192
MAX_PIPELINED: Final = 16
# Reasons for pausing the client socket (bit flags): upstream write backpressure, pre-connect body buffer
# full, too many pipelined requests queued.
PAUSE_UPSTREAM, PAUSE_PENDING, PAUSE_PIPELINE = 1, 2, 4
# Lingering close bounds: nginx's lingering_time (30 s) and lingering_timeout (5 s), plus a byte bound of ours
# (nginx has none) so that a client cannot keep a worker reading for the whole lingering time.
LINGER_TIME_S: Final = 30.0
LINGER_TIMEOUT_S: Final = 5.0
LINGER_MAX_BYTES: Final = 64 * 1024 * 1024


class _Reject(Exception):
    def __init__(self, status: int, message: str | None = None) -> None:
        self.status = status
        self.message = message


class ClientProtocol(asyncio.Protocol):
    __slots__ = (
        "server", "transport", "parser", "peer", "peer_b", "trusted", "scheme", "port", "port_b", "queue",
        "parsing", "url", "url_len", "headers", "head_size", "in_head", "head_start", "head_bytes",
        "pause_bits", "write_paused", "closing", "idle_since", "abort_after", "max_headers", "served", "feeding", "sni",
        "to_flush", "linger_until", "linger_left",
    )

    def __init__(self, server: ProxyServer, scheme: bytes, port: int) -> None:
        self.server = server
        self.scheme = scheme
        self.port = port
        self.port_b = str(port).encode()
        self.transport: Any = None
        self.parser = httptools.HttpRequestParser(self)
        self.peer = "-"
        self.peer_b = b"-"
        self.trusted = False
        # Pipelined requests in order (at most MAX_PIPELINED): a list, as a deque costs ~700 bytes per connection.
        self.queue: list[Exchange] = []
        self.parsing: Exchange | None = None
        self.url: list[bytes] = []
        self.url_len = 0
        self.headers: list[tuple[bytes, bytes, bytes]] = []
        self.head_size = 0
        self.in_head = False
        self.head_start = 0.0
        self.head_bytes = 0
        self.pause_bits = 0
        self.write_paused = False
        self.closing = False
        self.idle_since = monotonic()
        self.abort_after = False
        self.max_headers = server.max_header_bytes
        self.served = False
        self.feeding = False
        self.to_flush: Exchange | None = None
        self.sni: str | None = None  # None: plain HTTP connection
        # Lingering close: when it ends (0.0: not lingering) and how many more bytes may be dropped.
        self.linger_until = 0.0
        self.linger_left = 0

    # -- asyncio.Protocol ------------------------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = peer[0]
            self.peer_b = self.peer.encode()
            self.trusted = self.peer in self.server.trusted_ips
        if self.scheme == b"https":
            from servegate.proxy.tls import client_sni

            self.sni = client_sni(transport)
        self.server.conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.transport = None
        self.server.conns.discard(self)
        while self.queue:
            self.queue.pop(0).client_gone()

    def eof_received(self) -> bool | None:
        # Like nginx (proxy_ignore_client_abort off): a client that closes its side has gone; returning None
        # closes the transport, and connection_lost aborts the upstream request at once.
        return None

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.queue:
            up = self.queue[0].up
            if up is not None:
                up.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.queue:
            ex = self.queue[0]
            up = ex.up
            # While an async header_filter holds the head, the upstream stays paused (head_ready resumes it).
            if up is not None and not ex.head_wait:
                up.transport.resume_reading()

    def pause_reading_for(self, bit: int) -> None:
        if not self.pause_bits and self.transport is not None:
            self.transport.pause_reading()
        self.pause_bits |= bit

    def resume_reading_for(self, bit: int) -> None:
        if self.pause_bits & bit:
            self.pause_bits &= ~bit
            if not self.pause_bits and self.transport is not None and not self.closing:
                self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            if self.linger_until:
                self._drop(len(data))
            return
        if self.in_head:
            self.head_bytes += len(data)
            if self.head_bytes > self.max_headers + MAX_URL + 1024:
                self._reject(400, errors.HEADER_TOO_LARGE)
                return
        self.feeding = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # Upgrades (websocket, h2c) are not proxied: the request was served as a plain one; what follows
            # the head belongs to another protocol, so the connection ends with this response.
            if self.queue:
                self.queue[-1].keep_alive = False
            else:
                self._close()
        except httptools.HttpParserCallbackError as e:
            cause = e.__context__
            if isinstance(cause, _Reject):
                self._reject(cause.status, cause.message)
            else:
                # Answered rather than re-raised: the loop would drop the connection unanswered.
                log_exception("request handling failed", cause or e)
                self._reject(500)
        except httptools.HttpParserError as err:
            # A Transfer-Encoding llhttp refuses (`gzip`, `chunked, gzip`): nginx's 501, like the lists the
            # exchange refuses, but 400 for a repeated header (nginx: "client sent duplicate header line");
            # any other malformed request: 400.
            why = str(err).lower()
            status = 400
            if "invalid `transfer-encoding`" in why:  # llhttp's words for both cases
                # llhttp stops inside a bad header value (before reporting the header) or at the end of the head
                seen = sum(1 for n, _, _ in self.headers if n == b"transfer-encoding") + ("value" in why)
                status = 400 if seen > 1 else 501
            self._reject(status)
        finally:
            self.feeding = False
            ex = self.to_flush
            if ex is not None:
                self.to_flush = None
                ex.uncork()

    # -- parser callbacks ------------------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.in_head = True
        self.head_start = monotonic()
        self.head_bytes = 0
        self.url = []
        self.url_len = 0
        self.headers = []
        self.head_size = 0

    def on_url(self, url: bytes) -> None:
        self.url.append(url)
        self.url_len += len(url)
        if self.url_len > MAX_URL:
            raise _Reject(414)

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value) + 4
        self.head_size += size
        if size > MAX_ONE_HEADER or self.head_size > self.max_headers:
            raise _Reject(400, errors.HEADER_TOO_LARGE)
        self.headers.append((name.lower(), name, value))

    def on_headers_complete(self) -> None:
        self.in_head = False
        parser = self.parser
        self.served = True
        version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            raise _Reject(400)
        url = self.url[0] if len(self.url) == 1 else b"".join(self.url)
        ex = Exchange(self, parser.get_method(), url, self.headers, 1 if version == "1.1" else 0,
                      parser.should_keep_alive() and not self.server.stopping)
        self.parsing = ex
        queue = self.queue
        queue.append(ex)
        if len(queue) == 1:
            ex.start()
        else:
            # Pipelined: its body may be read whole before it starts; a plugin may want it then (start() drops it
            # when no plugin does).
            ex.body_copy = []
            if len(queue) >= MAX_PIPELINED:
                self.pause_reading_for(PAUSE_PIPELINE)

    def on_body(self, body: bytes) -> None:
        ex = self.parsing
        if ex is not None:
            ex.request_body(body)

    def on_message_complete(self) -> None:
        ex = self.parsing
        self.parsing = None
        if ex is None:
            return
        ex.request_complete()
        if ex.state == DONE and self.queue and self.queue[0] is ex:
            self._advance()

    # -- exchange bookkeeping --------------------------------------------------------------------------------
    def exchange_done(self, ex: Exchange) -> None:
        if self.transport is None:
            return
        if ex.close_after or not ex.keep_alive:
            self.queue.clear()
            if ex.req_done or self.abort_after:
                self._close(abort=self.abort_after)
            else:
                self._linger()  # answered before the whole request was read
            return
        if ex.req_done and self.queue and self.queue[0] is ex:
            self._advance()

    def _advance(self) -> None:
        queue = self.queue
        del queue[0]
        if self.pause_bits & PAUSE_PIPELINE and len(queue) < MAX_PIPELINED:
            self.resume_reading_for(PAUSE_PIPELINE)
        if queue:
            queue[0].start()
        else:
            self.idle_since = monotonic()
            if self.server.stopping and not self.in_head:
                self._close()

    def _reject(self, status: int, message: str | None = None) -> None:
        """A malformed request: answer it and close the connection."""
        if self.closing or self.transport is None:
            return
        queue = self.queue
        broken = self.parsing
        self.parsing = None
        if queue:
            head = queue[0]
            while len(queue) > 1:
                queue.pop()  # never started: nothing was sent for them
            if head is broken:
                if head.resp_started or head.state == DONE:
                    self.closing = True
                    head.client_gone()
                    self._close(abort=True)
                else:
                    head.fail(status, message)  # the body cannot be read further: answers and closes
                return
            # The broken request is behind one still being answered: finish that one, then close.
            head.keep_alive = False
            self.closing = True
            self.transport.pause_reading()
            return
        self.closing = True
        body = errors.render(errors.PLAIN, message or errors.message_for(status), "")
        self.transport.write(errors.response_bytes(status, body, errors.PLAIN, "", 0, keep_alive=False))
        if status == 408:
            self._close()  # the client sends nothing: nothing to wait for
        else:
            self._linger()  # the rest of a bad request may still be arriving

    def _linger(self) -> None:
        """Close after an early answer without resetting the connection (see the module docstring)."""
        self.closing = True
        t = self.transport
        if t is None or t.is_closing():
            return
        now = monotonic()
        self.linger_until = now + LINGER_TIME_S
        self.linger_left = LINGER_MAX_BYTES
        self.idle_since = now
        if t.can_write_eof():
            t.write_eof()  # after the buffered answer; TLS cannot half-close: the answer is just sent
        self.pause_bits = 0
        t.resume_reading()

    def _drop(self, n: int) -> None:
        """Bytes read while lingering: dropped."""
        self.linger_left -= n
        self.idle_since = monotonic()
        if self.linger_left < 0:
            self.linger_until = 0.0
            self._close()

    def _close(self, abort: bool = False) -> None:
        self.closing = True
        t = self.transport
        if t is not None:
            if abort:
                t.abort()
            else:
                t.close()

    def check(self, now: float) -> None:
        """Periodic timeouts: header timeout (408), idle keep-alive, and the active exchange's upstream timers."""
        if self.queue:
            faults.check(self.queue[0], now)
            return
        if self.closing:
            if self.linger_until and (now > self.linger_until or now - self.idle_since > LINGER_TIMEOUT_S):
                self.linger_until = 0.0
                self._close()
            return
        server = self.server
        if self.in_head:
            if now - self.head_start > server.header_timeout:
                self._reject(408)
        elif now - self.idle_since > (server.keepalive_timeout if self.served and not server.stopping
                                      else server.header_timeout):
            self._close()

    def close_if_idle(self) -> None:
        if not self.queue and not self.in_head:
            self._close()
