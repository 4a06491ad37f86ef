"""Client side: one protocol object per downstream connection (HTTP/1.1, keep-alive, pipelining in order).

llhttp (through httptools) already rejects CL+TE, duplicate or bad Content-Length, bad chunk sizes, obsolete
line folding and bare LF; this module adds the size limits, HTTP/0.9 refusal and the header/idle timeouts.
"""

from __future__ import annotations

import asyncio
from time import monotonic
from typing import TYPE_CHECKING, Any, Final

import httptools

from servegate.proxy import errors
from servegate.proxy.exchange import DONE, Exchange

if TYPE_CHECKING:
    from servegate.proxy.server import ProxyServer

MAX_URL: Final = 8192
MAX_ONE_HEADER: Final = 8192
MAX_PIPELINED: Final = 16
# Reasons for pausing the client socket (bit flags): upstream write backpressure, pre-connect body buffer
# full, too many pipelined requests queued.
PAUSE_UPSTREAM, PAUSE_PENDING, PAUSE_PIPELINE = 1, 2, 4


class _Reject(Exception):
    def __init__(self, status: int, message: str | None = None) -> None:
        self.status = status
        self.message = message


class ClientProtocol(asyncio.Protocol):
    __slots__ = (
        "server", "transport", "parser", "peer", "peer_b", "trusted", "scheme", "port", "port_b", "queue",
        "parsing", "url", "url_len", "headers", "head_size", "in_head", "head_start", "head_bytes",
        "pause_bits", "write_paused", "closing", "idle_since", "abort_after", "max_headers", "served", "feeding", "sni",
        "to_flush",
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
            up = self.queue[0].up
            if up is not None:
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
                raise
        except httptools.HttpParserError:
            self._reject(400)
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
        elif len(queue) >= MAX_PIPELINED:
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
            self._close(abort=self.abort_after)
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
            self.queue[0].check(now)
            return
        if self.closing:
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
