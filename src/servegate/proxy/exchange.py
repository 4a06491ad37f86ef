"""One proxied request: routing, plugin phases, upstream attempts (with retries), relay, endings, logging.

What it does when the upstream fails (to connect, mid-way, or in time) is in `faults`.

The fast path (pooled upstream connection, no awaiting plugin) runs synchronously inside the client
protocol's data_received; a task exists only while a new upstream connection is being opened.
"""

from __future__ import annotations

import time
from random import randbytes
from typing import TYPE_CHECKING, Any, Final

from servegate.llm.record import LLMRecord
from servegate.plugins.base import Context
from servegate.plugins.runner import Plan
from servegate.proxy import errors, faults, phases
from servegate.proxy.balancer import relay
from servegate.proxy.headers import HeaderView, downstream_head, forwarded_host, upstream_head
from servegate.proxy.paths import normalize
from servegate.proxy.prep import Prep
from servegate.proxy.protocols import https_allowed
from servegate.proxy.router import Match
from servegate.proxy.states import CONNECTING, DONE, NEW, SENT, STREAMING
from servegate.proxy.upstream import UpstreamProtocol

monotonic: Final = time.monotonic  # bound once: compiled, an imported name is a dict lookup per call

if TYPE_CHECKING:
    from servegate.proxy.client import ClientProtocol

REPLAY_LIMIT: Final = 64 * 1024
PENDING_LIMIT: Final = 64 * 1024
_LAST_CHUNK: Final = b"0\r\n\r\n"
# Request headers the exchange looks at while it is created (every other header is skipped with one lookup).
_SPECIAL: Final = frozenset((b"host", b"transfer-encoding", b"content-length", b"expect", b"te", b"connection"))


class Exchange:
    __slots__ = (
        "conn", "method", "url", "headers", "keep_alive", "http_minor", "chunked", "has_body", "expect",
        "state", "req_done", "t_start", "t_connect", "t_head", "request_id", "rid", "path", "query",
        "match", "service", "up", "pending", "pending_size", "replay", "tries", "max_tries", "key",
        "connect_fut", "connect_started", "connect_timeout", "read_timeout", "write_timeout", "head",
        "status", "bytes_sent", "decode_body", "close_after", "is_head", "plan", "ctx", "host",
        "te_trailers", "close_delimited", "resp_started", "replay_size", "norm_path", "body_copy",
        "body_waiter", "body_override", "corked", "client_ip", "bad_status", "prep", "has_connection",
        "raw_path", "clen", "bfilters", "head_wait", "req_body_size", "bal", "ep", "tried",
        "lb_cookie", "llm", "lb_tls", "deferred", "head_size",
    )

    def __init__(self, conn: ClientProtocol, method: bytes, url: bytes, headers: list[tuple[bytes, bytes, bytes]],
                 http_minor: int, keep_alive: bool) -> None:
        self.conn = conn
        self.method = method
        self.url = url
        self.headers = headers
        self.http_minor = http_minor
        self.keep_alive = keep_alive
        self.t_start = monotonic()
        # 128 random bits as 32 hex digits, without a getrandom syscall per request (ids are not secrets).
        self.rid = randbytes(16).hex()
        self.request_id = self.rid.encode()
        self.state = NEW
        self.req_done = False
        self.chunked = False
        self.has_body = False
        self.expect = False
        self.te_trailers = False
        self.host: bytes | None = None
        # Non-zero: the head is unacceptable and the request is answered with this status, unrouted.
        self.bad_status = 0
        self.client_ip = conn.peer_b
        # The header lines' bytes as received (the parser counted them): the log phase's request size.
        self.head_size = conn.head_size
        self.has_connection = False
        self.clen: bytes | None = None
        for lname, _, value in headers:
            if lname not in _SPECIAL:
                continue
            if lname == b"host":
                if self.host is not None:
                    self.bad_status = 400  # nginx: "client sent duplicate host header"
                self.host = value
            elif lname == b"transfer-encoding":
                if self.chunked:
                    self.bad_status = 400  # nginx: "client sent duplicate header line"
                elif value != b"chunked" and value.strip().lower() != b"chunked":
                    # llhttp takes any list ending in chunked (`gzip, chunked`); forwarding it as plain chunked
                    # would drop a coding. nginx accepts `chunked` alone: "client sent unknown
                    # Transfer-Encoding", 501.
                    self.bad_status = 501
                self.chunked = True
                self.has_body = True
            elif lname == b"content-length":
                value = value.strip()
                if self.clen is None:
                    self.clen = value
                self.has_body = value != b"0"
            elif lname == b"expect":
                self.expect = value.strip().lower() == b"100-continue"
            elif lname == b"te":
                self.te_trailers = value.lower().find(b"trailers") >= 0
            else:
                self.has_connection = True
        if conn.trusted:
            real_ip = conn.server.real_ip_header
            for lname, _, value in headers:
                if lname == real_ip:
                    # realip: a trusted peer tells who the client is (last hop of a list)
                    self.client_ip = value.rsplit(b",", 1)[-1].strip() or self.client_ip
        self.up: UpstreamProtocol | None = None
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.replay: list[bytes] | None = []
        self.replay_size = 0
        self.tries = 0
        self.max_tries = 1
        self.connect_fut: Any = None
        self.connect_started = 0.0
        self.t_connect = 0.0
        self.t_head = 0.0
        self.status = 0
        self.bytes_sent = 0
        self.decode_body = False
        self.close_after = False
        self.is_head = method == b"HEAD"
        self.plan: Plan | None = None
        self.ctx: Context | None = None
        self.match: Match | None = None
        self.prep: Prep | None = None
        self.service: dict[str, Any] | None = None
        self.close_delimited = False
        self.resp_started = False
        self.path = ""
        self.raw_path = b""
        self.norm_path = ""
        self.query = b""
        # Only while a plugin access phase runs: a decoded copy of the body, and who waits for its end.
        self.body_copy: list[bytes] | None = None
        self.body_waiter: Any = None
        self.body_override: bytes | None = None
        # While the client's read is still being parsed, upstream writes are collected and sent as one.
        self.corked = False
        # The body_filter hooks run on this response (None: the body is relayed as framed, untouched).
        self.bfilters: list[Any] | None = None
        # An async header_filter is running: the response head is held until it is done.
        self.head_wait = False
        # Bytes of a chunked request body (a Content-Length body's size is its header): the log phase's size.
        self.req_body_size = 0
        # Balanced over an upstream's targets: the balancer, the endpoint of the current try, those tried.
        self.bal: Any = None
        self.ep: Any = None
        self.tried: list[Any] | None = None
        # consistent-hashing on a cookie the client did not send: the Set-Cookie line that gives it one.
        self.lb_cookie: bytes | None = None
        # A plugin's set_scheme on a balanced request: 1 https, 0 http; -1 the service's protocol.
        self.lb_tls = -1
        # An LLM record reading a body relayed as framed (phases.llm_observe); None for every other response.
        self.llm: LLMRecord | None = None
        # Routed, and waiting for the rest of a small body before the access phase / the balancer's pick runs.
        self.deferred = False

    # -- start: route, plugins ------------------------------------------------------------------------------
    def start(self) -> None:
        conn = self.conn
        server = conn.server
        url = self.url
        qpos = url.find(b"?")
        if qpos >= 0:
            raw_path, self.query = url[:qpos], url[qpos:]
        else:
            raw_path = url
        if not raw_path.startswith(b"/"):
            # absolute-form (proxy style) request target
            if raw_path.lower().startswith((b"http://", b"https://")):
                rest = raw_path.split(b"://", 1)[1]
                slash = rest.find(b"/")
                raw_path = rest[slash:] if slash >= 0 else b"/"
            else:
                self.fail(400)
                return
        bad = self.bad_status
        if bad or (self.host is None and self.http_minor == 1):
            self.keep_alive = False
            self.fail(bad or 400)
            return
        if self.method in (b"TRACE", b"CONNECT"):
            self.fail(405)
            return
        self.raw_path = raw_path
        self.path = raw_path.decode("utf-8", "surrogateescape")
        snapshot = server.holder.current
        if snapshot is None:
            self.fail(503, errors.NO_SERVICE, by_kong=True)
            return
        host = self.host.decode("latin-1") if self.host is not None else None
        self.norm_path = normalize(self.path)
        match = snapshot.router.match(self.method.decode("latin-1"), host, self.norm_path,
                                      HeaderView(self.headers), conn.port, conn.sni)
        if match is None:
            self.fail(404, errors.NO_ROUTE, by_kong=True)
            return
        service = match.service
        if service is None:
            if not https_allowed(self, match.route):
                return
            self.fail(503, errors.NO_SERVICE, by_kong=True)
            return
        prep = self.prep = server.preps.get(snapshot, match)
        if prep.https_only and not https_allowed(self, match.route):
            return
        self.match = match
        self.service = service
        self.max_tries = prep.max_tries
        self.connect_timeout = prep.connect_timeout
        self.read_timeout = prep.read_timeout
        self.write_timeout = prep.write_timeout
        plan = prep.plan
        if prep.body_key or plan is not None and plan.reads_body:
            # A plugin reads the body, or prefix-affinity hashes the prompt: keep a copy of the body. A small one
            # is awaited before the access phase (or the pick) starts, which then finds it at hand and runs in
            # this read's callbacks: no task, no future, no extra loop turn.
            if self.body_copy is None:
                self.body_copy = []
            if not self.req_done and not self.chunked and not self.expect and self._small_body(server.body_cap):
                self.deferred = True
                return
        elif plan is None:
            self.body_copy = None  # kept for a pipelined request: no plugin can want it
        if plan is not None and phases.run_access(self, plan):
            return  # finished (exit) or continuing asynchronously
        self.proceed()

    def _small_body(self, cap: int) -> bool:
        clen = self.clen
        return clen is None or clen.isdigit() and int(clen) <= min(cap, PENDING_LIMIT)

    def proceed(self, set_headers: list[tuple[bytes, bytes]] | None = None,
                drop: frozenset[bytes] | None = None, query: bytes | None = None,
                dest: tuple[tuple[str, int, bool] | None, bytes, bytes] | None = None) -> None:
        """Build the upstream request head and open (or reuse) an upstream connection.

        `dest`: (upstream key, Host, target path) a plugin chose instead of the route and service's; the key is
        None when only the path or scheme changed and the service is balanced over an upstream."""
        if self.state == DONE:
            return
        conn = self.conn
        prep = self.prep
        assert prep is not None  # set with the match
        if dest is not None and dest[0] is not None:
            self.key, host, target = dest[0], dest[1], dest[2]
        else:
            bal = self.bal if self.bal is not None else prep.balancer  # a plugin's set_upstream, else the service's
            if bal is None:
                self.key = prep.key
                host = self.host if prep.preserve_host and self.host is not None else prep.host
            else:
                if self.ep is None:
                    self.bal = bal
                    if not relay.first_pick(self, lambda: self.proceed(set_headers, drop, query, dest)):
                        return
                host = self.host if prep.preserve_host and self.host is not None else relay.host_header(self)
            target = prep.target if dest is None else dest[2]
        target = target + (self.query if query is None else query)
        if self.chunked:
            framing = b"Transfer-Encoding: chunked\r\n"
        elif self.has_body:
            framing = b"Content-Length: " + (self.body_override or self.clen or b"") + b"\r\n"
        elif self.method in (b"POST", b"PUT", b"PATCH"):
            framing = b"Content-Length: 0\r\n"
        else:
            framing = b""
        self.head = upstream_head(
            self.method, target, host, self.headers,
            client_ip=self.client_ip, trusted=conn.trusted, scheme=conn.scheme, fwd_host=forwarded_host(self.host),
            fwd_port=conn.port_b, fwd_path=self.raw_path,
            fwd_prefix=prep.fwd_prefix,
            request_id=self.request_id, framing=framing, client_te_trailers=self.te_trailers,
            set_headers=set_headers, drop=drop, has_connection=self.has_connection,
        )
        if self.expect and not self.req_done and conn.transport is not None:
            conn.transport.write(phases.CONTINUE)
        self.t_connect = monotonic()
        self.connect()

    def header(self, lname: bytes) -> bytes:
        for n, _, v in self.headers:
            if n == lname:
                return v.strip()
        return b""

    # -- upstream connection -------------------------------------------------------------------------------
    def connect(self, fresh: bool = False) -> None:
        server = self.conn.server
        self.tries += 1
        if self.bal is not None and self.tries > 1 and not relay.repick(self):
            return
        up = None if fresh else server.pool.get(self.key)
        if up is not None:
            self.attach(up)
            return
        self.state = CONNECTING
        self.connect_started = monotonic()
        host, port, tls = self.key
        loop = server.loop
        pool = server.pool
        coro = loop.create_connection(
            lambda: UpstreamProtocol(self.key, pool), host, port,
            ssl=server.upstream_tls() if tls else None, server_hostname=host if tls else None,
        )
        fut = self.connect_fut = loop.create_task(coro)
        fut.add_done_callback(self._connected)

    def _connected(self, fut: Any) -> None:
        if fut.cancelled():
            return
        exc = fut.exception()
        if fut is not self.connect_fut or self.state != CONNECTING:
            if exc is None:
                fut.result()[0].close()
            return
        self.connect_fut = None
        if exc is not None:
            faults.connect_failed(self, exc)
            return
        self.attach(fut.result()[1])

    def attach(self, up: UpstreamProtocol) -> None:
        self.up = up
        up.attach(self)
        self.state = SENT
        if up.closed:
            # Lost between the connect completing and this callback running.
            up.exchange = None
            faults.upstream_lost(self, up)
            return
        conn = self.conn
        if self.pending_size > PENDING_LIMIT:
            conn.resume_reading_for(2)
        self.pending_size = 0
        if conn.feeding:
            # Called from inside the client's parser: the body of this same read follows; send both at once.
            self.pending.insert(0, self.head)
            self.corked = True
            conn.to_flush = self
        elif self.pending:
            data = self.head + b"".join(self.pending)
            self.pending = []
            up.transport.write(data)
        else:
            up.transport.write(self.head)
        if conn.write_paused:
            up.transport.pause_reading()

    def uncork(self) -> None:
        self.corked = False
        up = self.up
        if up is not None and self.pending and self.state != DONE:
            data = b"".join(self.pending)
            self.pending = []
            up.transport.write(data)

    # -- request body --------------------------------------------------------------------------------------
    def request_body(self, data: bytes) -> None:
        if self.state == DONE:
            return
        copy = self.body_copy
        if copy is not None:
            copy.append(data)
            if self.body_waiter is not None and phases.body_over_cap(self, copy):
                return
        if self.chunked:
            self.req_body_size += len(data)
            data = b"%x\r\n%b\r\n" % (len(data), data)
        replay = self.replay
        if replay is not None:
            replay.append(data)
            self.replay_size += len(data)
            if self.replay_size > REPLAY_LIMIT:
                self.replay = None
        up = self.up
        if up is not None:
            if self.corked:
                self.pending.append(data)  # flushed at the end of this client read
            else:
                up.last_read = monotonic()
                up.transport.write(data)
        else:
            self.pending.append(data)
            old = self.pending_size
            self.pending_size = old + len(data)
            if old <= PENDING_LIMIT < self.pending_size and self.body_waiter is None:
                self.conn.pause_reading_for(2)

    def request_complete(self) -> None:
        self.req_done = True
        if self.state == DONE:
            return
        waiter = self.body_waiter
        if waiter is not None:
            self.body_waiter = None
            if not waiter.done():
                waiter.set_result(None)
        if self.chunked:
            self.request_body_raw(_LAST_CHUNK)
        up = self.up
        if up is not None:
            up.last_read = monotonic()
        elif self.deferred:
            self.deferred = False
            plan = self.prep.plan if self.prep is not None else None
            if plan is None or not phases.run_access(self, plan):
                self.proceed()

    def request_body_raw(self, data: bytes) -> None:
        if self.replay is not None:
            self.replay.append(data)
        if self.up is not None and not self.corked:
            self.up.transport.write(data)
        else:
            self.pending.append(data)

    # -- response ------------------------------------------------------------------------------------------
    def response_head(self, up: UpstreamProtocol, status: int) -> bytes | None:
        """The downstream response head for the upstream's (final) response head; None while an async
        header_filter runs (the upstream protocol then holds the rest until `head_ready`)."""
        if self.ep is not None and relay.on_head(self, up, status):
            return None  # retried on another target: `up` was dropped
        self.state = STREAMING
        self.resp_started = True
        # No retry once the response has started: the replay copy and the request head are not needed any
        # more, and a long stream should not keep them.
        self.replay = None
        self.head = b""
        self.status = status
        self.t_head = monotonic()
        # HTTP/1.0 clients cannot take chunked framing: relay the decoded body and close at the end.
        self.decode_body = self.http_minor == 0 and any(n.lower() == b"transfer-encoding" for n, _ in up.headers)
        if self.decode_body or self.http_minor == 0 and not self.keep_alive:
            self.close_after = True
        if self.plan is not None:
            return phases.response_head(self, up)
        return self.render_head(up, up.headers, self.lb_cookie, False)

    def render_head(self, up: UpstreamProtocol, headers: list[tuple[bytes, bytes]], extra: bytes | None,
                    reframe: bool) -> bytes:
        now = self.t_head
        head, self.close_delimited = downstream_head(
            self.status, up.reason, headers, request_id=self.request_id,
            upstream_ms=int((now - self.t_connect) * 1000), proxy_ms=int((self.t_connect - self.t_start) * 1000),
            keep_alive=self.keep_alive and not self.close_after, client_te_trailers=self.te_trailers,
            strip_chunked=self.decode_body, extra=extra, reframe=reframe,
        )
        if self.close_delimited:
            self.close_after = True
        return head

    def client_write(self, data: bytes) -> None:
        self.bytes_sent += len(data)
        t = self.conn.transport
        if t is not None:
            t.write(data)

    def filter_body(self, data: bytes) -> None:
        """One de-framed response body chunk through the body_filter hooks, re-framed for the client."""
        out = phases.body_chunk(self, data, False)
        if out:
            self.client_write(b"%x\r\n%b\r\n" % (len(out), out) if self.http_minor else out)

    def filter_eof(self) -> None:
        """End of the response body: the hooks' last chunk, then the chunked terminator."""
        out = phases.body_chunk(self, b"", True)
        self.bfilters = None
        if self.http_minor:
            self.client_write(b"%x\r\n%b\r\n0\r\n\r\n" % (len(out), out) if out else _LAST_CHUNK)
        elif out:
            self.client_write(out)

    def response_complete(self, up: UpstreamProtocol, reusable: bool = True) -> None:
        if self.bfilters is not None:
            self.filter_eof()
        self.up = None
        up.exchange = None
        if reusable and self.req_done and up.keep_alive and not self.is_head:
            self.conn.server.pool.put(up)
        else:
            up.transport.close()
        self.finish()

    def broken_stream(self) -> None:
        """The response started but cannot be completed: the client connection must be closed."""
        self.close_after = True
        self.conn.abort_after = True
        self.finish()

    # -- endings -------------------------------------------------------------------------------------------
    def fail(self, status: int, message: str | None = None, headers: list[tuple[str, str]] | None = None,
             *, by_kong: bool = False) -> None:
        """Answer with a gateway-generated response. `by_kong`: Kong's own kong.response.error (router, plugins):
        body type from Accept, else JSON. Otherwise nginx error pages: Accept, else the request Content-Type, else
        `error_default_type`."""
        if self.state == DONE:
            return
        settings = self.conn.server.settings
        if by_kong:
            ctype = errors.negotiate(self._str_header(b"accept"))
        else:
            ctype = errors.negotiate(self._str_header(b"accept"), self._str_header(b"content-type"),
                                     getattr(settings, "error_default_type", None))
        if headers is None:
            headers = phases.response_headers(self)
        self.answer(status, errors.render(ctype, message or errors.message_for(status), self.rid), ctype, headers)

    def answer(self, status: int, body: bytes, ctype: str | None, headers: list[tuple[str, str]] | None = None
               ) -> None:
        """Answer with `body` instead of proxying (an error page, or what a plugin's Context.respond made)."""
        if self.state == DONE:
            return
        self._drop_upstream()
        self.status = status
        if not self.req_done and not errors.body_discardable(self.expect, self.chunked,
                                                             self.header(b"content-length")):
            # The rest of the body will not be read: the connection cannot carry another request.
            self.close_after = True
        data = errors.response_bytes(
            status, body, ctype, self.rid, int((monotonic() - self.t_start) * 1000),
            keep_alive=self.keep_alive and not self.close_after, extra=headers, head_only=self.is_head,
        )
        self.bytes_sent += len(data)
        t = self.conn.transport
        if t is not None:
            t.write(data)
        self.finish()

    def _drop_upstream(self) -> None:
        """Abort the upstream side (connected or connecting); an aborted connection never returns to the pool."""
        up = self.up
        if up is not None:
            self.up = None
            up.exchange = None
            up.transport.abort()
        if self.connect_fut is not None:
            self.connect_fut.cancel()
            self.connect_fut = None

    def _str_header(self, lname: bytes) -> str | None:
        for n, _, v in self.headers:
            if n == lname:
                return v.decode("latin-1")
        return None

    def client_gone(self) -> None:
        """The client connection closed: drop the upstream side at once, never pool it."""
        if self.state == DONE:
            return
        self._drop_upstream()
        if not self.status:
            self.status = 499
        self.close_after = True
        self.finish()

    def finish(self) -> None:
        if self.state == DONE:
            return
        self.state = DONE
        if self.ep is not None:
            relay.release(self)
        self.pending = []
        self.replay = None
        # Whatever this exchange paused (upstream backpressure, body buffer) no longer applies: a body still
        # to be drained must be read.
        if self.conn.pause_bits & 3:
            self.conn.resume_reading_for(3)
        self.pending_size = 0
        if self.body_waiter is not None:
            self.body_waiter.cancel()
            self.body_waiter = None
        conn = self.conn
        server = conn.server
        now = monotonic()
        llm = None
        if self.plan is not None:
            llm = phases.run_log(self, now)
            # The Context's body reader refers back to this exchange: break the cycle so that refcounting
            # frees both (no cyclic GC work per plugin request).
            self.ctx = None
            self.llm = None
        log = server.access_log
        if log.enabled:
            log.write(self.client_ip.decode("latin-1"), self.method.decode("latin-1"), self.url.decode("latin-1"),
                      self.status,
                      self.bytes_sent, int((now - self.t_start) * 1000),
                      int((self.t_head - self.t_connect) * 1000) if self.t_head else None, self.rid,
                      server.holder.current, llm)
        conn.exchange_done(self)

