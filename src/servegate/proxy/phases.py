"""Bridge between the relay and the plugin phase plan (servegate.plugins). Only used when plugins apply.

The access phase runs before any upstream connection; a hook that returns an awaitable moves the rest of
the request onto one task, otherwise everything stays inline. What the hooks recorded on the Context
(upstream headers, query, body, extra response headers) is applied when the upstream request is built.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Final

from servegate.llm.record import LLMRecord
from servegate.plugins.base import Context, Exit
from servegate.plugins.runner import Plan, run_body_filters
from servegate.proxy.errorlog import log_exception
from servegate.proxy.headers import REQ_SKIP, HeaderView
from servegate.proxy.paths import escape
from servegate.proxy.resp_headers import ResponseHeaders
from servegate.proxy.states import ACCESS, DONE
from servegate.schema.upstreams import address_key

if TYPE_CHECKING:
    from servegate.proxy.exchange import Exchange
    from servegate.proxy.upstream import UpstreamProtocol

# Kong's request-size-limiting answer, for a body a plugin reads that is over client_body_buffer_size.
TOO_LARGE: Final = "Request size limit exceeded"
CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"


def run_access(ex: Exchange, plan: Plan) -> bool:
    """Run the access phase of `plan` (the route's plugin plan). True when this module took over the exchange
    (it then calls proceed/fail)."""
    match = ex.match
    assert match is not None  # a plan comes with a matched route
    route = match.route
    service = ex.service
    ex.plan = plan
    ex.state = ACCESS
    body = None
    copy = ex.body_copy
    if copy is None:
        ex.body_copy = []
    elif ex.req_done and _total(copy) <= ex.conn.server.body_cap:
        # The whole body is here (an access phase deferred for it, or a pipelined request): plugins get it at
        # hand (Context.body_ready), so they need not await it.
        body = copy[0] if len(copy) == 1 else b"".join(copy)
    raw_query = ex.query[1:].decode("latin-1") if ex.query else ""
    ctx = Context(
        ex.method.decode("latin-1"), ex.norm_path, raw_query, HeaderView(ex.headers),
        ex.client_ip.decode("latin-1"),
        scheme=ex.conn.scheme.decode(), route=route, service=service, request_id=ex.rid,
        read_body=lambda: read_body(ex), body=body, config=ex.conn.server.holder,
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
    if e.body is not None:
        ex.answer(e.status, e.body, e.content_type or "application/json", headers or None)
        return
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
    dest = None
    if ctx.upstream_target is not None or ctx.upstream_scheme is not None or ctx.upstream_path is not None \
            or ctx.upstream_name is not None:
        if ctx.upstream_name is not None and ctx.upstream_target is None:
            server = ex.conn.server
            ex.bal = server.balancers.get(server.holder.current, ctx.upstream_name)
            if ex.bal is None:  # deleted since set_upstream looked
                ex.fail(503, "failure to get a peer from the ring-balancer", by_kong=True)
                return
        dest = _destination(ex, ctx)
    if ctx.upstream_timeouts is not None:
        connect, write, read = ctx.upstream_timeouts
        ex.connect_timeout, ex.write_timeout, ex.read_timeout = connect / 1000.0, write / 1000.0, read / 1000.0
    if ctx.upstream_retries is not None:
        ex.max_tries = 1 + ctx.upstream_retries
    prep = ex.prep
    assert prep is not None  # set with the match, before any phase
    if not prep.body_key:
        ex.body_copy = None
    ex.proceed(set_headers, drop, query, dest)


def _destination(ex: Exchange, ctx: Context) -> tuple[tuple[str, int, bool] | None, bytes, bytes]:
    """(upstream key, Host, target path) after set_target / set_scheme / set_path; the key is None when the
    service is balanced over an upstream and no plugin set a target (the balancer picks one)."""
    prep = ex.prep
    assert prep is not None  # set with the match, before any phase
    host, port, tls = prep.key
    host_b = ex.host if prep.preserve_host and ex.host is not None else prep.host
    if ctx.upstream_scheme is not None:
        tls = ctx.upstream_scheme == "https"
    if ctx.upstream_target is not None:
        # Kong's set_target sets upstream_host to the bare host: it wins over preserve_host, no port.
        host, port = ctx.upstream_target
        host_b = (f"[{host}]" if ":" in host else host).encode()
    target = prep.target
    path = ctx.upstream_path
    if path is not None:
        # A router plugin sends the same few paths again and again: escaped and encoded once.
        got = _paths.get(path)
        if got is None:
            if len(_paths) >= _ENCODED_MAX:
                _paths.clear()
            got = _paths[path] = escape(path).encode("utf-8", "surrogateescape")
        target = got
    if ctx.upstream_target is None and (prep.balancer is not None or ex.bal is not None):
        if ctx.upstream_scheme is not None:
            ex.lb_tls = 1 if tls else 0
        return None, host_b, target
    return (host, port, tls), host_b, target


# Plugins set the same upstream headers for the same consumer on every request: keep their bytes.
_ENCODED_MAX: Final = 1024
_paths: Final[dict[str, bytes]] = {}
_encoded_cache: Final[dict[tuple[Any, ...], tuple[list[tuple[bytes, bytes]], frozenset[bytes]]]] = {}


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
    """The request body for Context.body(), read only when a plugin asks; Exit(413) beyond the cap."""
    cap = ex.conn.server.body_cap
    clen = ex.clen
    if clen is not None and clen.isdigit() and int(clen) > cap:
        raise Exit(413, TOO_LARGE)
    if not ex.req_done:
        copy = ex.body_copy
        if copy is not None and _total(copy) > cap:
            raise Exit(413, TOO_LARGE)
        conn = ex.conn
        if ex.expect and conn.transport is not None:
            # The client holds the body back until it is asked for it (nginx answers 100 when a module reads the
            # body); asked once: proceed() will not say it again.
            ex.expect = False
            conn.transport.write(CONTINUE)
        fut = conn.server.loop.create_future()
        ex.body_waiter = fut
        conn.resume_reading_for(2)
        await fut
    body = b"".join(ex.body_copy or ())
    if len(body) > cap:
        raise Exit(413, TOO_LARGE)
    return body


def _total(parts: list[bytes]) -> int:
    # sum(map(len, parts)), without the two builtin lookups and calls it costs compiled
    n = 0
    for p in parts:
        n += len(p)
    return n


def body_over_cap(ex: Exchange, copy: list[bytes]) -> bool:
    """While a plugin waits for the body: past the cap, stop copying and end the wait with a 413."""
    if _total(copy) <= ex.conn.server.body_cap:
        return False
    waiter = ex.body_waiter
    ex.body_waiter = None
    ex.body_copy = None
    if waiter is not None and not waiter.done():
        waiter.set_exception(Exit(413, TOO_LARGE))
    return True


# --- response head: header_filter, and whether body_filter hooks re-frame the body -------------------------
def response_head(ex: Exchange, up: UpstreamProtocol) -> bytes | None:
    """The downstream head of a request that ran plugins; None while an async header_filter runs (the head
    is then sent by `_finish_head`)."""
    ctx = ex.ctx
    headers = up.headers
    if ctx is None:
        return ex.render_head(up, headers, None, False)
    rec = ctx.llm
    if rec is not None:
        _llm_head(ex, rec)
    collected = ctx.collected
    if collected is None:
        if rec is not None:
            return _head_after_filter(ex, up, None, headers)  # the LLM record reads the body
        # No plugin has a later-phase hook: nothing reads this Context again, and a long stream should not
        # keep it (about 1.5 KB with key-auth + rate-limiting).
        ex.ctx = None
        return ex.render_head(up, headers, _added(ctx), False)
    ctx.response_status = ex.status
    ctx.response_raw = headers  # for serialize(): a reference, decoded only if a log hook asks
    view: ResponseHeaders | None = None
    if any(b.header_filter is not None for b in collected):
        # Only a plugin with a header_filter hook sees the upstream headers: decode them just then.
        view = ResponseHeaders(headers)
        try:
            plan = ex.plan
            assert plan is not None  # a Context is made only for a plan
            pending = plan.header_filter(ctx, view, ex.status)
        except Exception as e:
            log_exception("plugin header_filter phase failed", e)
            pending = None
        if pending is not None:
            ex.head_wait = True
            ex.resp_started = False
            ex.conn.server.loop.create_task(_finish_head(ex, up, view, headers, pending))
            return None
    return _head_after_filter(ex, up, view, headers)


async def _finish_head(ex: Exchange, up: UpstreamProtocol, view: ResponseHeaders,
                       headers: list[tuple[bytes, bytes]], pending: Awaitable[None]) -> None:
    try:
        await pending
    except Exception as e:
        log_exception("plugin header_filter phase failed", e)
    if ex.state == DONE or ex.up is not up:
        return  # the exchange ended meanwhile (client gone, timeout): it dropped the upstream side
    ex.head_wait = False
    ex.resp_started = True
    up.head_ready(ex, _head_after_filter(ex, up, view, headers))


def _head_after_filter(ex: Exchange, up: UpstreamProtocol, view: ResponseHeaders | None,
                       headers: list[tuple[bytes, bytes]]) -> bytes:
    ctx = ex.ctx
    assert ctx is not None  # only for a request that ran plugins
    if view is not None and view.changed:
        headers = view.raw(headers)
    extra = _added(ctx)
    if ex.lb_cookie is not None:
        extra = (extra or b"") + ex.lb_cookie
    reframe = False
    status = ex.status
    plan = ex.plan
    assert plan is not None  # a Context is made only for a plan
    filters = plan.body_filters(ctx)
    rec = ctx.llm
    has_body = not ex.is_head and status >= 200 and status not in (204, 304)
    if rec is not None and has_body and status < 300 and filters is None and not rec.injected:
        ex.llm = rec  # the LLM record only reads the body: relayed as framed, the parser's on_body feeds it
    elif has_body and (filters is not None or rec is not None and rec.injected and status < 300):
        # The hooks may change the body's length (so does the LLM record when it removes the usage chunk the
        # gateway asked for): it goes chunked (HTTP/1.0: close-delimited).
        ex.bfilters = filters if filters is not None else []
        ex.decode_body = True
        reframe = True
        if ex.http_minor:
            extra = (extra or b"") + b"Transfer-Encoding: chunked\r\n"
        else:
            ex.close_after = True
    return ex.render_head(up, headers, extra, reframe)


def _added(ctx: Context) -> bytes | None:
    """The response header lines plugins added with add_response_header (b"Name: value\r\n"...)."""
    added = ctx.response_headers
    if not added:
        return None
    return "".join([f"{n}: {v}\r\n" for n, v in added]).encode("latin-1")


def body_chunk(ex: Exchange, chunk: bytes, eof: bool) -> bytes:
    """`chunk` through the response's body_filter hooks; a failing hook is logged and the chunk passed on."""
    filters = ex.bfilters
    ctx = ex.ctx
    if filters is None or ctx is None:
        return chunk
    rec = ctx.llm
    if rec is not None:
        # The LLM record's tap goes first: plugins' body_filters see what the client would get without them.
        try:
            chunk = rec.feed(chunk, eof)
        except Exception as e:
            log_exception("LLM record failed", e)
    if not filters:
        return chunk
    try:
        return run_body_filters(ctx, filters, chunk, eof)
    except Exception as e:
        log_exception("plugin body_filter phase failed", e)
        return chunk


def llm_observe(ex: Exchange, chunk: bytes) -> None:
    """A de-framed body chunk to the LLM record of a response relayed as framed (nothing to rewrite)."""
    rec = ex.llm
    if rec is None:
        return
    try:
        rec.feed(chunk, False)
    except Exception as e:
        ex.llm = None
        log_exception("LLM record failed", e)


def _llm_head(ex: Exchange, rec: LLMRecord) -> None:
    """The response head to the LLM record: status, which backend (upstream or service) and target served."""
    bal = ex.bal
    ep = ex.ep
    backend = rec.backend  # a router plugin names the backend it chose itself
    if bal is not None and ep is not None:
        if backend is None:
            backend = bal.name
        target = ep.address
    else:
        if backend is None:
            service = ex.service
            backend = service.get("name") or service.get("host") if service is not None else None
        key = ex.key
        target = _targets.get(key)
        if target is None:
            if len(_targets) >= _ENCODED_MAX:
                _targets.clear()
            target = _targets[key] = address_key(key[0], key[1])
    rec.head(ex.status, backend, target, ex.t_start)


# The "ip:port" text of each upstream key a tracked request went to.
_targets: Final[dict[tuple[str, int, bool], str]] = {}


def response_headers(ex: Exchange) -> list[tuple[str, str]] | None:
    ctx = ex.ctx
    return list(ctx.response_headers) if ctx is not None and ctx.response_headers else None


# --- log: after the last byte ---------------------------------------------------------------------------------
def run_log(ex: Exchange, now: float) -> Any:
    """The log phase (`now`: the exchange's end); returns the request's LLM record (None when no plugin tracked
    it) for the access log."""
    ctx = ex.ctx
    if ctx is None:
        return None
    rec = ctx.llm
    if rec is not None:
        rec.status = ex.status
        conn = ex.conn
        # Aborted: the client went away (499, or its connection is gone) or the stream broke mid-way.
        rec.finish(ex.status == 499 or conn.transport is None or conn.abort_after)
    ctx.response_status = ex.status
    # Sizes and latencies, computed only if a log hook reads them.
    ctx._log_figures = (_SIZES, ex, now)
    plan = ex.plan
    assert plan is not None  # a Context is made only for a plan
    try:
        pending = plan.log(ctx)
        if pending is not None:
            ex.conn.server.loop.create_task(_quiet(pending, "log"))
    except Exception as e:
        log_exception("plugin log phase failed", e)
    return rec


def _sizes(ex: Exchange, ctx: Context, now: float) -> None:
    """Kong's request.size, response.size and latencies (ms) for the log hooks, computed only for them."""
    # The request head as received: request line, header lines, blank line.
    size = len(ex.method) + len(ex.url) + 12 + 2 + ex.head_size
    if ex.chunked:
        size += ex.req_body_size
    elif ex.clen is not None and ex.req_done:
        size += int(ex.clen) if ex.clen.isdigit() else 0
    ctx.request_size = size
    ctx.response_size = ex.bytes_sent
    total = int((now - ex.t_start) * 1000)
    # Kong's -1 when no upstream response head came (an exit, a failed connection).
    proxy = int((ex.t_head - ex.t_connect) * 1000) if ex.t_head else -1
    kong = int((ex.t_connect - ex.t_start) * 1000) if ex.t_connect else total
    ctx.latencies = {"request": total, "proxy": proxy, "kong": kong}
    # What serialize() needs from the exchange, as it is (decoded only if a log hook calls serialize()).
    prep = ex.prep
    ctx.log_source = (ex.url, ex.conn.port, ex.key if ex.t_connect else None,
                      prep.target if prep is not None else b"", ex.query)


_SIZES: Final = _sizes  # a C static: a function named as a value is otherwise a dictionary lookup


async def _quiet(pending: Awaitable[None], phase: str) -> None:
    try:
        await pending
    except Exception as e:
        log_exception(f"plugin {phase} phase failed", e)

