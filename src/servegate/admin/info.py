"""Node-level endpoints: /, /status, /plugins/enabled, /endpoints, /tags, /tags/{tags}."""

from __future__ import annotations

import logging
import os
import platform
import socket
from typing import Any

import servegate
from servegate.admin.context import Ctx
from servegate.admin.http import Response
from servegate.admin.lookup import admin_entities
from servegate.admin.paging import list_body, next_link, parse_size
from servegate.admin.responses import json_reply, message_reply
from servegate.admin.routing import PathTable, has_invalid_utf8
from servegate.schema.plugins import enabled_plugins, get_plugin
from servegate.store.outage import StoreUnavailable
from servegate.store.paging import decode_offset, encode_offset

log = logging.getLogger("servegate.admin")


def _available_plugins() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name in enabled_plugins():
        plugin = get_plugin(name)
        if plugin is not None:
            out[name] = {"version": plugin.version, "priority": plugin.priority}
    return out


def _configuration(settings: Any) -> dict[str, Any]:
    redacted = getattr(settings, "redacted", None)
    if callable(redacted):
        return dict(redacted())
    return {}


async def root(ctx: Ctx) -> Response:
    names: list[str] = []
    for row in await ctx.store.all("plugins"):
        if row.get("name") not in names:
            names.append(row["name"])
    body = {
        "tagline": "Welcome to kong",
        "version": servegate.KONG_VERSION,
        "servegate_version": servegate.__version__,
        "edition": "community",
        "hostname": socket.gethostname(),
        "node_id": ctx.state.node_id,
        "timers": {"running": 0, "pending": 0},
        "plugins": {"available_on_server": _available_plugins(), "enabled_in_cluster": names},
        "lua_version": f"Python {platform.python_version()}",
        "configuration": _configuration(ctx.state.settings),
        "pids": {"master": os.getpid(), "workers": [os.getpid()]},
    }
    return json_reply(200, body)


async def status(ctx: Ctx) -> Response:
    from servegate.snapshot import stats as cache_stats

    try:
        await ctx.store.config_version()
        reachable = True
    except StoreUnavailable as e:  # Kong answers 200 with reachable=false: the node itself still serves
        log.error("status: %s", e.message)
        reachable = False
    except Exception as e:  # any other driver error means "not reachable" too; its text may quote values
        log.error("status: database not reachable: %s", type(e).__name__)
        reachable = False
    body = {"database": {"reachable": reachable}, "server": server_counters(ctx),
            # servegate's own: the workers' lookup caches (API keys, consumers), summed over the node
            "servegate": {"caches": cache_stats.read()}}
    return json_reply(200, body)


def server_counters(ctx: Ctx) -> dict[str, int]:
    """Admin listener counters in nginx stub_status names (what this process can observe)."""
    counters = ctx.state.counters
    server = getattr(ctx.request.conn, "server", None)  # the AdminServer the request came through
    active = len(server.conns) if server is not None else 0
    accepted = server.accepted if server is not None else 0
    reading = server.reading() if server is not None else 0
    in_flight = counters.get("in_flight", 0)
    return {
        "connections_accepted": accepted,
        "connections_handled": accepted,
        "connections_active": active,
        "connections_reading": reading,
        "connections_writing": in_flight,
        "connections_waiting": max(active - reading - in_flight, 0),
        "total_requests": counters.get("total_requests", 0),
    }


async def plugins_enabled(ctx: Ctx) -> Response:
    return json_reply(200, {"enabled_plugins": list(enabled_plugins())})


def endpoints_handler(table: PathTable) -> Any:
    async def handler(ctx: Ctx) -> Response:
        # Segment-wise order, as Kong sorts: "/" compares lower than any character.
        paths = sorted(table.paths(), key=lambda p: p.replace("/", "\x00"))
        return json_reply(200, {"data": paths})

    return handler


async def _tag_rows(ctx: Ctx, tag: str | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for entity in admin_entities():
        if "tags" not in entity.field_map():
            continue
        for row in await ctx.store.all(entity):
            for t in row.get("tags") or ():
                if tag is None or t == tag:
                    rows.append({"entity_name": entity.name, "entity_id": row["id"], "tag": t})
    rows.sort(key=lambda r: (r["tag"], r["entity_name"], r["entity_id"]))
    return rows


async def _tags_page(ctx: Ctx, tag: str | None, base: str) -> Response:
    size = parse_size(ctx.query_first("size"))
    rows = await _tag_rows(ctx, tag)
    offset = ctx.query_first("offset")
    if offset:
        after = tuple(decode_offset(offset, 3))
        rows = [r for r in rows if (r["tag"], r["entity_name"], r["entity_id"]) > after]
    page, more = rows[:size], len(rows) > size
    next_offset = None
    if more:
        last = page[-1]
        next_offset = encode_offset([last["tag"], last["entity_name"], last["entity_id"]])
    return json_reply(200, list_body(page, next_offset, next_link(base, next_offset)))


async def tags(ctx: Ctx) -> Response:
    return await _tags_page(ctx, None, "/tags")


async def tag(ctx: Ctx) -> Response:
    value = ctx.params["tags"]
    if has_invalid_utf8(value):
        pos = next(i for i, ch in enumerate(value) if "\udc80" <= ch <= "\udcff")
        position = len(value[:pos].encode("utf-8", "surrogateescape")) + 1
        return message_reply(400, f"invalid utf-8 character sequence detected at position {position}")
    return await _tags_page(ctx, value, f"/tags/{ctx.raw_params['tags']}")


def add_info_endpoints(table: PathTable) -> None:
    table.add("/", "GET", root)
    table.add("/status", "GET", status)
    table.add("/plugins/enabled", "GET", plugins_enabled)
    table.add("/endpoints", "GET", endpoints_handler(table))
    table.add("/tags", "GET", tags)
    table.add("/tags/{tags}", "GET", tag)
