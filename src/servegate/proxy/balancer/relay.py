"""What the relay (proxy/exchange.py) asks of a balancer: place a request, place its retry elsewhere, learn
each try's outcome, release the endpoint after the last byte. Only exchanges whose service names an upstream
come here."""

from __future__ import annotations

import uuid
from time import monotonic
from typing import TYPE_CHECKING, Any, Final

from servegate.plugins.base import Exit
from servegate.proxy.balancer import keys
from servegate.proxy.balancer.core import OVERLOADED, TCP, TIMEOUT, Balancer

if TYPE_CHECKING:
    from servegate.proxy.exchange import Exchange

NO_PEER: Final = "failure to get a peer from the ring-balancer"
NAME_FAILED: Final = "name resolution failed"
EWMA_DECAY: Final = 0.3


def _key(ex: Exchange, bal: Balancer) -> str | None:
    if bal.needs_body:
        body = _parsed_body(ex)
        return keys.prompt_prefix(body, bal.prefix_chars) if body is not None else None
    if bal.algorithm.needs_key:
        up = bal.upstream
        if up.get("hash_on") == "cookie" and up.get("hash_on_cookie") and keys.one(ex, up, "cookie", "hash_on") is None:
            # Kong: a client without the cookie gets one (a new UUID), which places this and its next requests.
            value = str(uuid.uuid4())
            line = f"Set-Cookie: {up['hash_on_cookie']}={value}; Path={up.get('hash_on_cookie_path') or '/'}\r\n"
            ex.lb_cookie = line.encode("latin-1")
            return value
        return keys.hash_input(ex, up)
    return None


def _parsed_body(ex: Exchange) -> Any:
    ctx = ex.ctx
    parsed = getattr(ctx, "_json", None) if ctx is not None else None
    if isinstance(parsed, dict):
        return parsed  # a plugin already parsed it
    copy = ex.body_copy
    if copy is None:
        return None
    ex.body_copy = None
    return b"".join(copy)


def first_pick(ex: Exchange, again: Any) -> bool:
    """Place the request's first try: True when `ex.ep` is set; False when it was answered (no peer) or a task
    now waits (for the body, or a name's first resolution) and calls `again()` when done."""
    bal: Balancer = ex.bal
    if bal.needs_body and not ex.req_done and ex.body_copy is not None:
        ex.conn.server.loop.create_task(_after_body(ex, again))
        return False
    ep = bal.pick(_key(ex, bal), None)
    if ep is None:
        balancers = ex.conn.server.balancers
        if bal.id in balancers.ready:
            ex.conn.server.loop.create_task(_after_dns(ex, balancers, again))
            return False
        ex.bal = None
        # Names that resolved to nothing (their first resolution ended before this request came): Kong's answer for
        # them, as a request that waited for that resolution gets (_after_dns).
        ex.fail(503, NAME_FAILED if _unresolved(bal) else NO_PEER, by_kong=True)
        return False
    ex.ep = ep
    ex.key = ep.keys[1 if _tls(ex) else 0]
    return True


def _unresolved(bal: Balancer) -> bool:
    """No endpoint because the targets' names resolved to nothing (not because targets are missing or weightless)."""
    names = bal.names()
    return not bal.endpoints and bool(names) and not any(bal.resolved.get(n) for n in names)


async def _after_body(ex: Exchange, again: Any) -> None:
    from servegate.proxy.phases import read_body

    try:
        await read_body(ex)
    except Exit as e:
        ex.fail(e.status, e.message, by_kong=True)
        return
    except Exception:  # the exchange ended meanwhile (client gone)
        return
    again()


async def _after_dns(ex: Exchange, balancers: Any, again: Any) -> None:
    await balancers.wait_resolved(ex.bal)
    bal = ex.bal
    if bal is None:
        return
    if not bal.endpoints:
        ex.bal = None
        ex.fail(503, NAME_FAILED, by_kong=True)
        return
    again()


def repick(ex: Exchange) -> bool:
    """Place a retry, on another endpoint while one is usable; False when it was answered (no peer)."""
    bal: Balancer = ex.bal
    old = ex.ep
    tried = ex.tried
    if old is not None:
        if tried is None:
            tried = ex.tried = []
        tried.append(old)
        ex.ep = None
        bal.release(old)
    ep = bal.pick(_key(ex, bal) if not bal.needs_body else None, tried)
    if ep is None:
        ex.bal = None
        ex.fail(503, NO_PEER, by_kong=True)
        return False
    ex.ep = ep
    ex.key = ep.keys[1 if _tls(ex) else 0]
    if old is not None and ep is not old and ex.head and not bal.host_header and not (
            ex.prep is not None and ex.prep.preserve_host and ex.host is not None):
        # Kong sets the Host of a retry to its new target too (the head is kept for the retry).
        was = b" HTTP/1.1\r\nHost: " + _host_of(old, _tls(ex)) + b"\r\n"
        ex.head = ex.head.replace(was, b" HTTP/1.1\r\nHost: " + _host_of(ep, _tls(ex)) + b"\r\n", 1)
    return True


def failed(ex: Exchange, timeout: bool) -> None:
    """A try failed without a response: the passive checks count it."""
    ep = ex.ep
    if ep is not None:
        ex.bal.failed(ep, TIMEOUT if timeout else TCP)


def on_head(ex: Exchange, up: Any, status: int) -> bool:
    """The response head of a try arrived. True when the exchange retries elsewhere instead (an overloaded
    engine's 429/503, before anything reached the client)."""
    bal: Balancer = ex.bal
    ep = ex.ep
    if ep is None:
        return False
    if bal.latency:
        took = monotonic() - ex.t_connect
        ep.ewma = took if not ep.ewma else ep.ewma + EWMA_DECAY * (took - ep.ewma)
    bal.status(ep, status)
    if status in OVERLOADED and bal.retry_overload and ex.tries < ex.max_tries and ex.replay is not None:
        tried = [ep] if ex.tried is None else [*ex.tried, ep]
        if not bal.has_other(tried):
            return False
        ex.up = None
        up.exchange = None
        up.transport.abort()
        ex.pending = list(ex.replay)
        ex.connect(True)
        return True
    return False


def release(ex: Exchange) -> None:
    ep = ex.ep
    if ep is not None:
        ex.ep = None
        ex.bal.release(ep)


def host_header(ex: Exchange) -> bytes:
    """Kong's Host for a balanced request: the upstream's host_header, else the first target's host, with its
    port unless it is the scheme's default."""
    bal: Balancer = ex.bal
    if bal.host_header:
        return str(bal.host_header).encode()
    return _host_of(ex.ep, _tls(ex))


def _tls(ex: Exchange) -> bool:
    """Whether this balanced request goes over TLS: a plugin's set_scheme, else the service's protocol."""
    forced = ex.lb_tls
    if forced >= 0:
        return forced == 1
    prep = ex.prep
    return prep is not None and prep.key[2]


def _host_of(ep: Any, tls: bool) -> bytes:
    return ep.host_headers[1 if tls else 0]  # type: ignore[no-any-return]
