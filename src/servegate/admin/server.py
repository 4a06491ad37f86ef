"""The Admin API's HTTP/1.1 server: asyncio Protocols on httptools (llhttp), like the proxy's client side.

Why not aiohttp.web: it cost ~13 MB of resident memory per node, for a server the Admin API only used as a
request/response pipe (dispatch is our own PathTable). This one is deliberately small:

- one request in service per connection; pipelined requests wait in order, and reading pauses once
  MAX_QUEUED of them wait;
- the whole body is read before the handler runs, up to `max_body` bytes (413 and close beyond, at once
  when Content-Length announces it);
- `Expect: 100-continue` is answered when the request's turn comes (after earlier pipelined responses);
- on a loopback listener, a Host naming another site gets 421 (DNS rebinding; see `hosts.py`);
- a malformed request gets 400 (414 for an over-long target) and the connection closes; upgrades are not
  supported: the request is served as a plain one, then the connection closes;
- timeouts come from one sweep per second that runs only while connections are open: the request head
  (client_header_timeout), silence in the middle of a body (same value), idle keep-alive
  (keepalive_timeout; the header timeout before a connection's first request).

llhttp already rejects CL+TE, duplicate or bad Content-Length, bad chunk sizes, obsolete line folding and
bare LF.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import httptools
import orjson

import servegate
from servegate.admin.hosts import check_host, is_loopback
from servegate.admin.http import Headers, Request, Response

log = logging.getLogger("servegate.admin")

Handler = Callable[[Request], Awaitable[Response]]

# Plugin configs and entity bodies are small; this bounds a hostile upload.
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_URL = 8192
MAX_HEADER_LINE = 8192
MAX_HEADERS = 100
MAX_QUEUED = 8
# After an error answered before the body was read: how long unread input is drained before closing, so the
# client reads our response instead of a connection reset.
LINGER_S = 2.0
SWEEP_S = 1.0

IDLE, HEAD, BODY = 0, 1, 2
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_JSON = "application/json; charset=utf-8"


class _Reject(Exception):
    """Raised from a parser callback: answer `status` and close (the parser cannot go on)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status)
        self.status = status
        self.message = message


class _Failure:
    """Queued in place of a request that could not be parsed; answered in turn, then the connection closes."""

    __slots__ = ("status", "message")

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message


def error_response(status: int, message: str) -> Response:
    """Kong's JSON error body, for failures the server answers without reaching the Admin handlers."""
    resp = Response(status, orjson.dumps({"message": message}))
    resp.headers["Content-Type"] = _JSON
    resp.headers["Server"] = servegate.SERVER_TOKEN
    return resp


_PHRASES: dict[int, str] = {}


def phrase(status: int) -> str:
    text = _PHRASES.get(status)
    if text is None:
        try:
            text = HTTPStatus(status).phrase
        except ValueError:
            text = "Unknown"
        _PHRASES[status] = text
    return text


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_date_cache: list[Any] = [-1, ""]


def http_date(now: float | None = None) -> str:
    """IMF-fixdate (RFC 9110 §5.6.7), formatted once per second."""
    sec = int(time.time() if now is None else now)
    if _date_cache[0] != sec:
        t = time.gmtime(sec)
        _date_cache[1] = (f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
                          f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")
        _date_cache[0] = sec
    text: str = _date_cache[1]
    return text


def split_target(target: bytes) -> tuple[str, str]:
    """(path, query string) of a request-target, both still percent-encoded."""
    if not target.startswith(b"/"):
        if b"://" in target:  # absolute-form (RFC 9112 §3.2.2): the host part is not ours to route on
            try:
                url = httptools.parse_url(target)
            except httptools.HttpParserInvalidURLError:
                return target.decode("latin-1"), ""  # matches no path: 404
            target = (url.path or b"/") + (b"?" + url.query if url.query else b"")
        # else: asterisk-form (OPTIONS *) or garbage; the path table finds nothing for it
    text = target.decode("latin-1")  # llhttp lets only visible ASCII through in a target
    path, _, query = text.partition("?")
    return path, query


class AdminConnection(asyncio.Protocol):
    """One client connection: parses requests, serves them one at a time, writes responses in order."""

    def __init__(self, server: AdminServer, own_hosts: frozenset[str] | None = None) -> None:
        self.server = server
        # Set on loopback listeners: the Host names answered besides localhost and loopback IPs.
        self.own_hosts = own_hosts
        self.transport: Any = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: list[Request | _Failure] = []
        self.task: asyncio.Task[None] | None = None
        self.phase = IDLE
        self.since = 0.0  # start of the head, or the last body bytes
        self.idle_since = 0.0
        self.head_bytes = 0  # input fed while in the head
        self.header_size = 0  # sum of the parsed header lines
        self.url: list[bytes] = []
        self.url_len = 0
        self.headers: list[tuple[str, str]] = []
        self.current: Request | None = None  # head parsed, body being read
        self.body: list[bytes] = []
        self.body_size = 0
        self.served = False
        self.broken = False  # the parser stopped: further input is discarded
        self.closing = False
        self.peer_eof = False
        self.continue_owed = False
        self.read_paused = False
        self.write_paused = False
        self.drain_waiter: asyncio.Future[None] | None = None
        self.linger_until: float | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.idle_since = self.server.now()
        self.server.connection_opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.closing = True
        self.queue.clear()
        self.server.connection_closed(self)
        self._wake_writer()

    def eof_received(self) -> bool | None:
        self.peer_eof = True
        if (self.task is not None or self.queue) and self.transport.get_extra_info("sslcontext") is None:
            # A client may shut down its sending side after its request: still answer it, then close.
            # (TLS transports cannot stay half-open; there the answer is lost with the connection.)
            return True
        return None  # nothing owed: the transport closes

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_writer()

    def data_received(self, data: bytes) -> None:
        if self.broken:
            return
        if self.phase == HEAD:
            # llhttp buffers a partial header line itself; this bounds that buffer.
            self.head_bytes += len(data)
            if self.head_bytes > self.server.max_head + MAX_URL + 1024:
                self._fail(400, "Request header or cookie too large")
                return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # Served as a plain request; what follows its head belongs to another protocol.
            if self.queue and isinstance(self.queue[-1], Request):
                self.queue[-1].keep_alive = False
                self.broken = True
                self._pause_reading()
            else:
                self._fail(400, "Bad request")
        except httptools.HttpParserCallbackError as e:
            cause = e.__context__
            if isinstance(cause, _Reject):
                self._fail(cause.status, cause.message)
            else:
                # The type only: the exception's text may quote request bytes (headers can carry keys).
                log.error("admin: HTTP parser callback failed: %s", type(cause).__name__)
                self._fail(500, "An unexpected error occurred")
        except httptools.HttpParserError:
            self._fail(400, "Bad request")

    # -- parser callbacks ------------------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.phase = HEAD
        self.since = self.server.now()
        self.head_bytes = 0
        self.header_size = 0
        self.url = []
        self.url_len = 0
        self.headers = []
        self.body = []
        self.body_size = 0

    def on_url(self, url: bytes) -> None:
        self.url.append(url)
        self.url_len += len(url)
        if self.url_len > MAX_URL:
            raise _Reject(414, "URI too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_size += len(name) + len(value) + 4
        if (len(name) + len(value) > MAX_HEADER_LINE or len(self.headers) >= MAX_HEADERS
                or self.header_size > self.server.max_head):
            raise _Reject(400, "Request header or cookie too large")
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        parser = self.parser
        version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            raise _Reject(400, "Bad request")
        if self.own_hosts is not None:
            # Before the body is read: a rebound page's write never reaches a handler.
            refusal = check_host([v for n, v in self.headers if n.lower() == "host"], self.own_hosts)
            if refusal is not None:
                raise _Reject(*refusal)
        headers = Headers(self.headers)
        length = headers.get("content-length")
        if length is not None and int(length) > self.server.max_body:  # llhttp checked it is digits
            raise _Reject(413, phrase(413))
        path, query = split_target(b"".join(self.url))
        self.current = Request(parser.get_method().decode("ascii"), path, query, headers, version=version,
                               keep_alive=parser.should_keep_alive(), conn=self)
        self.phase = BODY
        self.since = self.server.now()
        expect = headers.get("expect")
        if expect is not None and expect.strip().lower() == "100-continue" and version == "1.1":
            if self.task is None and not self.queue:
                self.transport.write(_CONTINUE)
            else:  # earlier responses first
                self.continue_owed = True

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.body_size > self.server.max_body:
            raise _Reject(413, phrase(413))
        self.body.append(body)
        self.since = self.server.now()

    def on_message_complete(self) -> None:
        req = self.current
        self.current = None
        self.phase = IDLE
        self.continue_owed = False
        if req is None:
            return
        body = self.body
        req.body = body[0] if len(body) == 1 else b"".join(body)
        self.body = []
        self.queue.append(req)
        if len(self.queue) >= MAX_QUEUED:
            self._pause_reading()
        self._kick()

    # -- serving ---------------------------------------------------------------------------------------------
    def _kick(self) -> None:
        if self.task is None and self.queue and self.transport is not None:
            self.task = self.server.loop.create_task(self._serve_queue())

    async def _serve_queue(self) -> None:
        try:
            while self.queue and self.transport is not None:
                item = self.queue.pop(0)
                if len(self.queue) < MAX_QUEUED and not self.broken:
                    self._resume_reading()
                if isinstance(item, _Failure):
                    self._write(error_response(item.status, item.message), None, keep_alive=False)
                    self._linger_close()
                    return
                resp = await self._call(item)
                if self.transport is None:
                    return
                keep_alive = item.keep_alive and not self.server.stopping and not self.peer_eof
                self._write(resp, item, keep_alive)
                self.served = True
                if not keep_alive:
                    self._close()
                    return
                if self.write_paused:
                    await self._drained()
        finally:
            self.task = None
        if self.transport is None or self.closing:
            return
        self.idle_since = self.server.now()
        if self.peer_eof or (self.server.stopping and self.phase == IDLE):
            self._close()
        elif self.continue_owed:
            self.continue_owed = False
            self.transport.write(_CONTINUE)

    async def _call(self, req: Request) -> Response:
        try:
            return await self.server.handler(req)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Method only: paths and queries may carry credentials.
            log.exception("admin %s: unexpected error", req.method)
            return error_response(500, "An unexpected error occurred")

    def _write(self, resp: Response, req: Request | None, keep_alive: bool) -> None:
        status = resp.status
        lines = [f"HTTP/1.1 {status} {phrase(status)}"]
        headers = resp.headers
        for name, value in headers.pairs():
            if "\n" in value or "\r" in value:  # never let a value split the response
                log.error("admin: dropped response header %s: it contains a line break", name)
                continue
            lines.append(f"{name}: {value}")
        no_body = status < 200 or status in (204, 304)
        if not no_body and "content-length" not in headers:
            lines.append(f"Content-Length: {len(resp.body)}")
        if "date" not in headers:
            lines.append(f"Date: {http_date()}")
        if not keep_alive:
            lines.append("Connection: close")
        elif req is not None and req.version == "1.0":
            lines.append("Connection: keep-alive")
        lines.append("\r\n")
        head = "\r\n".join(lines).encode("latin-1", "replace")
        if no_body or (req is not None and req.method == "HEAD") or not resp.body:
            self.transport.write(head)
        else:
            self.transport.writelines((head, resp.body))

    async def _drained(self) -> None:
        waiter = self.drain_waiter = self.server.loop.create_future()
        try:
            await waiter
        finally:
            self.drain_waiter = None

    def _wake_writer(self) -> None:
        waiter = self.drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- failures, closing, timeouts -------------------------------------------------------------------------
    def _fail(self, status: int, message: str) -> None:
        """Stop parsing; answer `status` after any earlier queued requests, then close."""
        if self.broken or self.transport is None:
            return
        self.broken = True
        self.current = None
        self.continue_owed = False
        self._pause_reading()
        self.queue.append(_Failure(status, message))
        self._kick()

    def _linger_close(self) -> None:
        t = self.transport
        if t is None:
            return
        self.closing = True
        self.broken = True
        self.queue.clear()
        if t.can_write_eof():
            # The client may still be sending a body we will not read: closing now could reset the connection
            # before it reads our answer. Send FIN, discard input for a while, then close.
            t.write_eof()
            self.linger_until = self.server.now() + LINGER_S
            self._resume_reading()
        else:
            t.close()

    def _close(self) -> None:
        self.closing = True
        self.queue.clear()
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.abort()

    def close_if_idle(self) -> None:
        if self.task is None and not self.queue and self.phase == IDLE:
            self._close()

    def _pause_reading(self) -> None:
        if not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.read_paused and self.transport is not None:
            self.read_paused = False
            self.transport.resume_reading()

    def check(self, now: float) -> None:
        """Called by the server's sweep: enforce the timeout of the phase the connection is in."""
        if self.transport is None:
            return
        if self.linger_until is not None:
            if now >= self.linger_until:
                self.abort()
            return
        if self.closing or self.broken or self.task is not None or self.queue:
            return  # waiting on us, not on the client
        server = self.server
        if self.phase != IDLE:
            if now - self.since > server.header_timeout:
                self._fail(408, "Request timeout")
        elif now - self.idle_since > (server.keepalive_timeout if self.served else server.header_timeout):
            self._close()


class AdminServer:
    """Listeners and connections of the Admin API; `handler` turns each Request into a Response."""

    def __init__(
        self,
        handler: Handler,
        *,
        header_timeout: float = 60.0,
        keepalive_timeout: float = 75.0,
        max_head: int = 32768,
        max_body: int = MAX_BODY_BYTES,
    ) -> None:
        self.handler = handler
        self.header_timeout = header_timeout
        self.keepalive_timeout = keepalive_timeout
        self.max_head = max_head
        self.max_body = max_body
        self.conns: set[AdminConnection] = set()
        self.accepted = 0
        self.stopping = False
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set by listen()
        self._listeners: list[asyncio.Server] = []
        self._sweep_handle: asyncio.TimerHandle | None = None

    def now(self) -> float:
        return self.loop.time()

    async def listen(self, host: str, port: int, *, ssl: Any = None) -> None:
        self.loop = asyncio.get_running_loop()
        own = frozenset({host.strip("[]").lower()}) if is_loopback(host) else None
        listener = await self.loop.create_server(
            lambda: AdminConnection(self, own), host, port, ssl=ssl, reuse_address=True, backlog=128
        )
        self._listeners.append(listener)

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """(host, port) of every bound socket (port 0 in the settings resolves here)."""
        out: list[tuple[str, int]] = []
        for listener in self._listeners:
            for sock in listener.sockets:
                name = sock.getsockname()
                out.append((name[0], name[1]))
        return out

    def reading(self) -> int:
        """Connections in the middle of sending a request (nginx stub_status's `reading`)."""
        return sum(1 for c in self.conns if c.phase != IDLE and c.task is None and not c.queue)

    def connection_opened(self, conn: AdminConnection) -> None:
        self.conns.add(conn)
        self.accepted += 1
        if self._sweep_handle is None:
            self._sweep_handle = self.loop.call_later(SWEEP_S, self._sweep)
        if self.stopping:
            conn.abort()

    def connection_closed(self, conn: AdminConnection) -> None:
        self.conns.discard(conn)

    def _sweep(self) -> None:
        # Runs only while connections are open: an idle node with no admin client has no timer here.
        now = self.now()
        for conn in list(self.conns):
            conn.check(now)
        self._sweep_handle = self.loop.call_later(SWEEP_S, self._sweep) if self.conns else None

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop listening, close idle connections, give requests in service `grace_s`, then abort the rest."""
        self.stopping = True
        for listener in self._listeners:
            listener.close()
        self._listeners = []
        for conn in list(self.conns):
            conn.close_if_idle()
        if self.loop is not None:
            deadline = self.now() + grace_s
            while self.conns and self.now() < deadline:
                await asyncio.sleep(0.05)
        for conn in list(self.conns):
            conn.abort()
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
            self._sweep_handle = None
        await asyncio.sleep(0)  # let connection_lost callbacks run
