"""What an exchange does when its upstream fails after the connect: the connection lost, an invalid
response, or a timeout found by the periodic sweep. The success path lives in `exchange`; everything here
runs on a failure, or once per sweep for each open exchange.
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING, Final

from servegate.proxy import errorlog
from servegate.proxy.balancer import relay
from servegate.proxy.states import CONNECTING, DONE, SENT, STREAMING

if TYPE_CHECKING:
    from servegate.proxy.exchange import Exchange
    from servegate.proxy.upstream import UpstreamProtocol

# Like nginx, a request already sent is tried again after an upstream error only when it is idempotent.
IDEMPOTENT: Final = frozenset((b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"))
_ERROR: Final = logging.ERROR
_WARN: Final = logging.WARNING
# The error log's words for what was going on (nginx's)
_READING_HEAD: Final = "while reading response header from upstream"
_READING: Final = "while reading upstream"
_CLOSED: Final = "upstream prematurely closed connection"
_CONNECTING: Final = "while connecting to upstream"


def _lost(exc: BaseException | None) -> str:
    """What the error log says of an upstream connection lost: reset (an OS error) or closed."""
    return "recv() failed" if isinstance(exc, OSError) else _CLOSED


def connect_failed(ex: Exchange, exc: BaseException) -> None:
    """Opening the upstream connection failed: a name that does not resolve is Kong's 503; anything else a try."""
    if isinstance(exc, socket.gaierror):
        errorlog.upstream(ex, _ERROR, "name resolution failed", _CONNECTING)
        ex.fail(503, "name resolution failed", by_kong=True)
    else:
        attempt_failed(ex, "connect() failed", timeout=isinstance(exc, TimeoutError), exc=exc)


def attempt_failed(ex: Exchange, what: str, *, timeout: bool, exc: BaseException | None = None) -> None:
    """A connect try failed: retry while tries are left, else 502/504."""
    if ex.ep is not None:
        relay.failed(ex, timeout)
    if ex.tries < ex.max_tries:
        errorlog.upstream(ex, _WARN, what, _CONNECTING, exc, f" (try {ex.tries} of {ex.max_tries}, retrying)")
        ex.connect(fresh=True)
    else:
        errorlog.upstream(ex, _ERROR, what, _CONNECTING, exc)
        ex.fail(504 if timeout else 502)


def upstream_lost(ex: Exchange, up: UpstreamProtocol, exc: BaseException | None = None) -> None:
    """The upstream connection closed (`exc`: reset or other error) while `ex` was using it."""
    if ex.state == DONE:
        return
    ex.up = None
    if not up.head_done or ex.head_wait:
        if ex.head_wait:
            errorlog.upstream(ex, _ERROR, _lost(exc), _READING_HEAD, exc)
            ex.fail(502)
            return
        if ex.ep is not None and not up.reused:
            relay.failed(ex, False)
        if not up.got_bytes and ex.replay is not None:
            if up.reused:
                # A pooled connection the upstream had already closed: replay for free on a fresh one.
                ex.tries -= 1
            elif ex.method not in IDEMPOTENT or ex.tries >= ex.max_tries:
                errorlog.upstream(ex, _ERROR, _lost(exc), _READING_HEAD, exc)
                ex.fail(502)
                return
            else:
                errorlog.upstream(ex, _WARN, _lost(exc), _READING_HEAD, exc,
                                  f" (try {ex.tries} of {ex.max_tries}, retrying)")
            ex.pending = list(ex.replay)
            ex.connect(fresh=True)
            return
        errorlog.upstream(ex, _ERROR, _lost(exc), _READING_HEAD, exc)
        ex.fail(502)
        return
    if ex.close_delimited:
        ex.close_after = True
        if ex.bfilters is not None:
            ex.filter_eof()
        ex.finish()
        return
    errorlog.upstream(ex, _ERROR, _lost(exc), _READING, exc, f" ({ex.bytes_sent} bytes sent to the client)")
    ex.broken_stream()


def upstream_bad(ex: Exchange, up: UpstreamProtocol, *, mid_stream: bool) -> None:
    """The upstream sent bytes that are not HTTP (or not the framing it announced)."""
    ex.up = None
    up.exchange = None
    up.transport.abort()
    if mid_stream or ex.resp_started:
        errorlog.upstream(ex, _ERROR, "upstream sent an invalid response", _READING)
        ex.broken_stream()
    else:
        errorlog.upstream(ex, _ERROR, "upstream sent an invalid header", _READING_HEAD)
        if ex.ep is not None:
            relay.failed(ex, False)
        ex.fail(502)


def check(ex: Exchange, now: float) -> None:
    """The periodic sweep's look at one exchange: connect, write and read timeouts."""
    st = ex.state
    if st == CONNECTING:
        if now - ex.connect_started > ex.connect_timeout:
            fut = ex.connect_fut
            ex.connect_fut = None
            if fut is not None:
                fut.cancel()
            attempt_failed(ex, "upstream timed out", timeout=True)
        return
    if st == SENT or st == STREAMING:
        up = ex.up
        if up is None:
            return
        if up.write_paused_since and now - up.write_paused_since > ex.write_timeout:
            timed_out(ex, up, "while sending request to upstream")
        elif ex.conn.write_paused:
            up.last_read = now  # the client is slow, not the upstream
        elif now - up.last_read > ex.read_timeout:
            timed_out(ex, up, _READING if ex.resp_started else _READING_HEAD)


def timed_out(ex: Exchange, up: UpstreamProtocol, during: str) -> None:
    ex.up = None
    up.exchange = None
    up.transport.abort()
    errorlog.upstream(ex, _ERROR, "upstream timed out", during)
    if ex.ep is not None:
        relay.failed(ex, True)
    if ex.resp_started:
        ex.broken_stream()
    else:
        ex.fail(504)
