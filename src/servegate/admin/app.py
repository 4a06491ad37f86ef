"""The Admin API application: our HTTP server (`server.py`) feeding our own Kong-style dispatcher."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import servegate
from servegate.admin.context import BODY_METHODS, NODE_ID, AppState, Ctx, parse_query, read_body
from servegate.admin.endpoints import add_entity_endpoints
from servegate.admin.http import Request, Response
from servegate.admin.info import add_info_endpoints
from servegate.admin.responses import (
    Reply,
    bad_request,
    dao_error_reply,
    empty_reply,
    message_reply,
    method_not_allowed,
    not_found,
)
from servegate.admin.routing import Match, PathTable, printable
from servegate.admin.schemas import add_schema_endpoints
from servegate.admin.server import MAX_BODY_BYTES, AdminServer
from servegate.schema.errors import DaoError
from servegate.schema.form import FormError

log = logging.getLogger("servegate.admin")

__all__ = ["MAX_BODY_BYTES", "AdminApp", "create_admin_app", "serve"]

# JSON nested deeper than this is refused like unparsable JSON. Kong's cjson refuses beyond 1000 levels;
# ours stops lower so that the recursive steps after parsing (copies, validation) stay far from Python's
# recursion limit. No entity needs more than a handful of levels.
MAX_JSON_DEPTH = 100


def _load_plugins() -> None:
    # Plugins declare entities (key-auth's credentials): a plugin that fails to load must stop start-up, not
    # leave its endpoints out.
    from servegate.plugins import load_all

    load_all()


def build_table() -> PathTable:
    table = PathTable()
    add_info_endpoints(table)
    add_schema_endpoints(table)
    add_entity_endpoints(table)
    return table


class AdminApp:
    """The request handler the server calls: Request in, Kong-shaped Response out (never raises)."""

    def __init__(self, table: PathTable, state: AppState) -> None:
        self.table = table
        self.state = state

    async def __call__(self, request: Request) -> Response:
        return await _dispatch(self.table, self.state, request)


def create_admin_app(
    store: Any,
    settings: Any,
    *,
    on_change: Callable[[], Awaitable[None]],
) -> AdminApp:
    """Kong-compatible Admin API over `store`; `on_change` is awaited after every successful write."""
    _load_plugins()
    state = AppState(store=store, settings=settings, on_change=on_change, node_id=NODE_ID)
    return AdminApp(build_table(), state)


async def serve(
    store: Any,
    settings: Any,
    *,
    on_change: Callable[[], Awaitable[None]],
    listen: Sequence[Any] | None = None,
    app: AdminApp | None = None,
) -> AdminServer:
    """Start the Admin API on `listen` (default: settings.admin_listen); returns the running server.

    Each listen item has `host`, `port` (0 picks a free one; see `AdminServer.addresses`) and `ssl`.
    Stop it with `await server.stop(grace_s)`. `app`: serve this one instead (the status listener's).
    """
    app = app or create_admin_app(store, settings, on_change=on_change)
    server = AdminServer(
        app,
        header_timeout=float(getattr(settings, "client_header_timeout_s", 60)),
        keepalive_timeout=float(getattr(settings, "keepalive_timeout_s", 75)),
        max_head=int(getattr(settings, "client_max_header_bytes", 32768) or 32768),
    )
    ssl_ctx = None
    try:
        for item in settings.admin_listen if listen is None else listen:
            ctx = None
            if item.ssl:
                if ssl_ctx is None:
                    from servegate.proxy.tls import server_ssl_context

                    ssl_ctx = server_ssl_context(settings)
                ctx = ssl_ctx
            await server.listen(item.host, item.port, ssl=ctx)
    except BaseException:
        await server.stop(0)
        raise
    return server


async def _dispatch(table: PathTable, state: AppState, request: Request) -> Response:
    started = time.perf_counter()
    counters = state.counters
    counters["total_requests"] = counters.get("total_requests", 0) + 1
    counters["in_flight"] = counters.get("in_flight", 0) + 1
    pattern = "?"
    try:
        match = table.match(request.path)
        if match is None:
            raise not_found()
        pattern = match.endpoint.path
        resp = await _handle(state, request, match)
    except Reply as r:
        resp = r.response
    except FormError as e:
        resp = message_reply(400, e.message)
    except DaoError as e:
        if e.http_status >= 500:
            # The message of a database error may quote values; log only its class of failure.
            log.error("admin %s %s: database error (code %s)", request.method, pattern, e.code)
        resp = dao_error_reply(_printable_error(e))
    except asyncio.CancelledError:
        raise
    except Exception:
        # Route pattern only: concrete paths and queries may carry credentials (key-auth keys).
        log.exception("admin %s %s: unexpected error", request.method, pattern)
        resp = message_reply(500, "An unexpected error occurred")
    finally:
        counters["in_flight"] -= 1
    _decorate(request, resp, started)
    state.cors.decorate(request, resp)
    return resp


async def _handle(state: AppState, request: Request, match: Match) -> Response:
    endpoint = match.endpoint
    method = request.method
    if method == "OPTIONS":
        allowed = ", ".join(endpoint.allowed())
        resp = empty_reply(204)
        resp.headers["Allow"] = allowed
        state.cors.preflight(request, resp, allowed)
        return resp
    state.cors.check(request)
    handler = endpoint.methods.get("GET" if method == "HEAD" else method)
    if handler is None:
        raise method_not_allowed()
    ctx = Ctx(request, state, match.params, match.raw_params, query_pairs=parse_query(request))
    if method in BODY_METHODS:
        await read_body(ctx)
        body = ctx.json_body if ctx.body_kind == "json" else ctx.form_body
        if body is not None and _nested_deeper(body, MAX_JSON_DEPTH):
            raise bad_request("Cannot parse JSON body")
    return await handler(ctx)


def _nested_deeper(value: object, limit: int) -> bool:
    """Whether arrays/objects nest more than `limit` levels (iterative: the value may be ~1000 deep)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _printable(value: Any) -> Any:
    """`printable` over every string of an error's message, fields and options."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {_printable(k): _printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_printable(v) for v in value]
    return value


def _printable_error(e: DaoError) -> DaoError:
    # DaoError messages quote input (an offset, a key from the URL); JSON cannot carry invalid UTF-8.
    e.message = _printable(e.message)
    e.fields = _printable(e.fields)
    e.options = _printable(e.options)
    return e


def _decorate(request: Request, resp: Response, started: float) -> None:
    headers = resp.headers
    headers["Server"] = servegate.SERVER_TOKEN
    headers["X-Kong-Admin-Latency"] = str(int((time.perf_counter() - started) * 1000))
