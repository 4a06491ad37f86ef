"""The Admin API application: one aiohttp catch-all route feeding our own Kong-style dispatcher."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

import servegate
from servegate.admin.context import BODY_METHODS, AppState, Ctx, parse_query, read_body
from servegate.admin.endpoints import add_entity_endpoints
from servegate.admin.info import add_info_endpoints
from servegate.admin.responses import (
    Reply,
    dao_error_reply,
    empty_reply,
    message_reply,
    method_not_allowed,
    not_found,
)
from servegate.admin.routing import Match, PathTable
from servegate.admin.schemas import add_schema_endpoints
from servegate.schema.errors import DaoError

log = logging.getLogger("servegate.admin")

STATE_KEY = web.AppKey("servegate_admin_state", AppState)
# Plugin configs and entity bodies are small; this bounds a hostile upload.
MAX_BODY_BYTES = 8 * 1024 * 1024


def _load_plugins() -> None:
    try:
        from servegate.plugins import load_all
    except ImportError:  # plugins package not providing load_all(): only already registered ones show
        return
    try:
        load_all()
    except ImportError as e:  # a bundled plugin module missing: serve the ones that registered
        log.warning("admin: could not load every bundled plugin: %s", e)


def build_table() -> PathTable:
    table = PathTable()
    add_info_endpoints(table)
    add_schema_endpoints(table)
    add_entity_endpoints(table)
    return table


def create_admin_app(
    store: Any,
    settings: Any,
    *,
    on_change: Callable[[], Awaitable[None]],
) -> web.Application:
    """Kong-compatible Admin API over `store`; `on_change` is awaited after every successful write."""
    _load_plugins()
    table = build_table()
    state = AppState(store=store, settings=settings, on_change=on_change, node_id=str(uuid.uuid4()))
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[STATE_KEY] = state
    app.router.add_route("*", "/{tail:.*}", functools.partial(_dispatch, table, state))
    return app


async def _dispatch(table: PathTable, state: AppState, request: web.Request) -> web.StreamResponse:
    started = time.perf_counter()
    counters = state.counters
    counters["total_requests"] = counters.get("total_requests", 0) + 1
    counters["in_flight"] = counters.get("in_flight", 0) + 1
    _count_connection(state, request)
    pattern = "?"
    try:
        match = table.match(request.raw_path)
        if match is None:
            raise not_found()
        pattern = match.endpoint.path
        resp = await _handle(state, request, match)
    except Reply as r:
        resp = r.response
    except DaoError as e:
        if e.http_status >= 500:
            # The message of a database error may quote values; log only its class of failure.
            log.error("admin %s %s: database error (code %s)", request.method, pattern, e.code)
        resp = dao_error_reply(e)
    except web.HTTPException as e:  # e.g. body over client_max_size
        resp = message_reply(e.status, e.reason)
    except asyncio.CancelledError:
        raise
    except Exception:
        # Route pattern only: concrete paths and queries may carry credentials (key-auth keys).
        log.exception("admin %s %s: unexpected error", request.method, pattern)
        resp = message_reply(500, "An unexpected error occurred")
    finally:
        counters["in_flight"] -= 1
    _decorate(request, resp, started)
    return resp


async def _handle(state: AppState, request: web.Request, match: Match) -> web.StreamResponse:
    endpoint = match.endpoint
    method = request.method
    if method == "OPTIONS":
        allowed = ", ".join(endpoint.allowed())
        resp = empty_reply(204)
        resp.headers["Allow"] = allowed
        resp.headers["Access-Control-Allow-Methods"] = allowed
        resp.headers["Access-Control-Allow-Headers"] = "Content-Type"
        return resp
    handler = endpoint.methods.get("GET" if method == "HEAD" else method)
    if handler is None:
        raise method_not_allowed()
    ctx = Ctx(request, state, match.params, match.raw_params, query_pairs=parse_query(request))
    if method in BODY_METHODS:
        await read_body(ctx)
    return await handler(ctx)


def _count_connection(state: AppState, request: web.Request) -> None:
    proto = request.protocol
    try:
        if proto in state.seen:
            return
        state.seen.add(proto)
    except TypeError:  # not weak-referenceable: count nothing rather than leak
        return
    state.counters["connections_seen"] = state.counters.get("connections_seen", 0) + 1


def _decorate(request: web.Request, resp: web.StreamResponse, started: float) -> None:
    headers = resp.headers
    headers["Server"] = servegate.SERVER_TOKEN
    headers["X-Kong-Admin-Latency"] = str(int((time.perf_counter() - started) * 1000))
    origin = request.headers.get("Origin")
    headers["Access-Control-Allow-Origin"] = origin or "*"
    if origin:
        headers["Access-Control-Allow-Credentials"] = "true"
        headers["Vary"] = "Origin"
