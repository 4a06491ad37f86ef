"""Bridge between the relay and the plugin phase plan (servegate.plugins). Only used when plugins apply.

The access phase runs before any upstream connection; a hook that returns an awaitable moves the rest of
the request onto one task, otherwise everything stays inline. What the hooks recorded on the Context
(upstream headers, query, body, extra response headers) is applied when the upstream request is built.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from servegate.plugins.base import Context, Exit
from servegate.proxy.errorlog import log_exception
from servegate.proxy.headers import REQ_SKIP, HeaderView
from servegate.proxy.states import ACCESS

if TYPE_CHECKING:
    from servegate.proxy.exchange import Exchange
    from servegate.proxy.upstream import UpstreamProtocol

# Largest request body a plugin may ask to read (key_in_body); beyond it the request gets a 413.
MAX_PLUGIN_BODY = 16 * 1024 * 1024


def run_access(ex: Exchange, plan: Any) -> bool:
    """Run the access phase of `plan` (the route's plugin plan). True when this module took over the exchange
    (it then calls proceed/fail)."""
    route = ex.match.route
    service = ex.service
    ex.plan = plan
    ex.state = ACCESS
    ex.body_copy = []
    raw_query = ex.query[1:].decode("latin-1") if ex.query else ""
    ctx = Context(
        ex.method.decode("latin-1"), ex.norm_path, raw_query, HeaderView(ex.headers),
        ex.client_ip.decode("latin-1"),
        scheme=ex.conn.scheme.decode(), route=route, service=service, request_id=ex.rid,
        read_body=lambda: read_body(ex),
    )
    ex.ctx = ctx
    try:
        pending = plan.access(ctx)
    except Exit as e:
        _exit(ex, ctx, e)
        return True
    except Exception as err:  # not `e`: compiled, one name keeps one type (Exit above)
        # Answered like a failing async hook; left to propagate, it would abort the connection unanswered.
        log_exception("plugin access phase failed", err)
        ex.body_copy = None
        ex.fail(500)
        return True
    if pending is None:
        _continue(ex, ctx)
    else:
        ex.conn.server.loop.create_task(_finish_access(ex, ctx, pending))
    return True


async def _finish_access(ex: Exchange, ctx: Context, pending: Awaitable[None]) -> None:
    try:
        await pending
    except Exit as e:
        _exit(ex, ctx, e)
        return
    except Exception as err:
        log_exception("plugin access phase failed", err)
        ex.fail(500)
        return
    _continue(ex, ctx)


def _exit(ex: Exchange, ctx: Context, e: Exit) -> None:
    headers = list(e.headers.items()) if e.headers else []
    if ctx.response_headers:
        headers = list(ctx.response_headers) + headers
    ctx.response_status = e.status
    ex.body_copy = None
    ex.fail(e.status, e.message, headers or None, by_kong=True)


def _continue(ex: Exchange, ctx: Context) -> None:
    set_headers = None
    drop = None
    changes = ctx.upstream_headers
    if changes:
        preset = ctx.upstream_preset
        if preset is not None and changes == preset.items:
            # Only a preset changed them (the dict compare is by identity of its values: cheap).
            enc = preset.encoded
            if enc is None:
                enc = preset.encoded = _encode(changes)
            set_headers, drop = enc
        else:
            set_headers, drop = _encoded(changes)
    query = None
    if ctx.upstream_query is not None:
        query = b"?" + ctx.upstream_query.encode("latin-1") if ctx.upstream_query else b""
    if ctx.upstream_body is not None and ex.req_done:
        body = ctx.upstream_body
        ex.pending = [body]
        ex.replay = [body]
        ex.replay_size = len(body)
        ex.chunked = False
        ex.has_body = True
        ex.body_override = str(len(body)).encode()
    ex.body_copy = None
    ex.proceed(set_headers, drop, query)


# Plugins set the same upstream headers for the same consumer on every request: keep their bytes.
_ENCODED_MAX = 1024
_encoded_cache: dict[tuple[Any, ...], tuple[list[tuple[bytes, bytes]], frozenset[bytes]]] = {}


def _encoded(upstream_headers: dict[str, tuple[str, str | None]]
             ) -> tuple[list[tuple[bytes, bytes]], frozenset[bytes]]:
    key = tuple(upstream_headers.items())
    hit = _encoded_cache.get(key)
    if hit is None:
        if len(_encoded_cache) >= _ENCODED_MAX:
            _encoded_cache.clear()
        hit = _encoded_cache[key] = _encode(upstream_headers)
    return hit


def _encode(upstream_headers: dict[str, tuple[str, str | None]]
            ) -> tuple[list[tuple[bytes, bytes]], frozenset[bytes]]:
    """(headers to set, every request header name not to forward) for Context.upstream_headers, as bytes:
    a changed header is dropped from the client's and, unless cleared, added with its new value."""
    drop = REQ_SKIP | frozenset(k.encode("latin-1") for k in upstream_headers)
    set_headers = [(n.encode("latin-1"), v.encode("latin-1"))
                   for n, v in upstream_headers.values() if v is not None]
    return set_headers, drop


async def read_body(ex: Exchange) -> bytes:
    if not ex.req_done:
        fut = ex.conn.server.loop.create_future()
        ex.body_waiter = fut
        ex.conn.resume_reading_for(2)
        await fut
    return b"".join(ex.body_copy or ())


def run_header_filter(ex: Exchange, up: UpstreamProtocol) -> bytes | None:
    """Run the header_filter phase; the response header lines the plugins added (b"Name: value\r\n"...)."""
    ctx = ex.ctx
    if ctx is None:
        return None
    if ctx.collected is not None:
        # Only a plugin with a header_filter hook sees the upstream headers: decode them just then.
        headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in up.headers]
        try:
            pending = ex.plan.header_filter(ctx, headers, ex.status)
            if pending is not None:
                ex.conn.server.loop.create_task(_quiet(pending, "header_filter"))
        except Exception as e:
            log_exception("plugin header_filter phase failed", e)
    added = ctx.response_headers
    if ctx.collected is None:
        # No plugin has a header_filter or log hook: nothing reads this Context again, and a long stream
        # should not keep it (about 1.5 KB with key-auth + rate-limiting).
        ex.ctx = None
    if not added:
        return None
    return "".join([f"{n}: {v}\r\n" for n, v in added]).encode("latin-1")


def response_headers(ex: Exchange) -> list[tuple[str, str]] | None:
    ctx = ex.ctx
    return list(ctx.response_headers) if ctx is not None and ctx.response_headers else None


def run_log(ex: Exchange) -> None:
    ctx = ex.ctx
    if ctx is None:
        return
    ctx.response_status = ex.status
    try:
        pending = ex.plan.log(ctx)
        if pending is not None:
            ex.conn.server.loop.create_task(_quiet(pending, "log"))
    except Exception as e:
        log_exception("plugin log phase failed", e)


async def _quiet(pending: Awaitable[None], phase: str) -> None:
    try:
        await pending
    except Exception as e:
        log_exception(f"plugin {phase} phase failed", e)

