"""The upstreams' own Admin endpoints (Kong's kong/api/routes/upstreams.lua and targets.lua, our code), over the
ones generated from the declarations (`/upstreams`, `/upstreams/{u}`, POST `/upstreams/{u}/targets`):

  /upstreams/{u}/targets                    GET: one row per target, newest first (weight 0 included), pages
                                            by a plain integer offset; POST (generated): 201, 409 on a duplicate
  /upstreams/{u}/targets/all                GET: the rows as stored, paged like any collection
  /upstreams/{u}/targets/{t}                GET, PATCH, PUT (an update, as Kong's), DELETE; {t} is the target's
                                            id or its `host:port` as stored
  /upstreams/{u}/targets/{t}[/{address}]/healthy|unhealthy     PUT: 204
  /upstreams/{u}/health                     GET: each target with its health; ?balancer_health=1: the balancer's

Health comes from the node's health table (servegate.proxy.balancer.health), which the workers fill with the
addresses each target resolved to. A target no worker has registered yet (this process serves the Admin API
without a proxy, or the upstream got no traffic) is resolved here: an IP literal is its own address, a name
goes through the balancer's resolver (servegate.proxy.balancer.dns), and a failure is `DNS_ERROR`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from servegate.admin import crud
from servegate.admin.context import Ctx
from servegate.admin.http import Response
from servegate.admin.lookup import Row, bindable, find, fk_id, is_uuid
from servegate.admin.paging import list_body, next_link, page_args, parse_size
from servegate.admin.responses import empty_reply, json_reply, message_reply, not_found
from servegate.admin.routing import Handler, PathTable
from servegate.proxy.balancer import dns, health
from servegate.schema import checks, errors
from servegate.schema.output import to_output
from servegate.schema.upstreams import (
    DEFAULT_TARGET_PORT,
    TARGETS,
    UPSTREAMS,
    address_key,
    parse_address,
    same_address,
    split_target,
)

log = logging.getLogger("servegate.admin")

# How long a health request waits for one target's name to resolve before calling it a DNS error.
DNS_TIMEOUT_S = 2.0
_PAGE = 1000


# ---------------------------------------------------------------------------------------------
# lookups


async def _upstream(ctx: Ctx) -> Row:
    row = await find(ctx.store, UPSTREAMS, ctx.params["upstreams"])
    if row is None:
        raise not_found()
    return row


async def upstream_target_rows(store: Any, upstream_id: str) -> list[Row]:
    """Every target row of an upstream, the latest per target string first (Kong's page_for_upstream order:
    created_at, then id, descending)."""
    rows: list[Row] = []
    offset: str | None = None
    while True:
        page, offset = await store.page(TARGETS.name, size=_PAGE, offset=offset, filters={"upstream": upstream_id})
        rows.extend(page)
        if offset is None:
            break
    rows.sort(key=lambda r: (r.get("created_at") or 0, r.get("id") or ""), reverse=True)
    seen: set[str] = set()
    latest = []
    for row in rows:
        if row["target"] not in seen:
            seen.add(row["target"])
            latest.append(row)
    return latest


async def _target(ctx: Ctx, upstream: Row) -> Row:
    """{targets} of the path: an id, or the target string as stored; 404 unless it belongs to the upstream."""
    key = ctx.params["targets"]
    row: Row | None = None
    if is_uuid(key):
        row = await ctx.store.select(TARGETS.name, {"id": key})
    elif bindable(key):
        found, _ = await ctx.store.page(TARGETS.name, size=1, filters={"upstream": upstream["id"], "target": key})
        row = found[0] if found else None
    if row is None or fk_id(row, "upstream") != upstream["id"]:
        raise not_found()
    return row


def _int_page(ctx: Ctx, rows: list[Any]) -> tuple[list[Any], str | None]:
    """Kong's in-memory pages of `page_for_upstream`: `offset` is the index of the first row, as a string."""
    size = parse_size(ctx.query_first("size"))
    raw = ctx.query_first("offset") or "0"
    if not raw.isascii() or not raw.isdigit():
        raise errors.invalid_offset(raw, "not an integer")
    start = int(raw)
    end = start + size
    return rows[start:end], (str(end) if len(rows) > end else None)


def _out(row: Row) -> dict[str, Any]:
    return to_output(TARGETS, row)


# ---------------------------------------------------------------------------------------------
# targets


async def targets_get(ctx: Ctx) -> Response:
    upstream = await _upstream(ctx)
    rows = await upstream_target_rows(ctx.store, upstream["id"])
    page, offset = _int_page(ctx, rows)
    base = f"/upstreams/{ctx.raw_params['upstreams']}/targets"
    return json_reply(200, list_body([_out(r) for r in page], offset, next_link(base, offset)))


async def targets_all(ctx: Ctx) -> Response:
    upstream = await _upstream(ctx)
    args = page_args(ctx)
    rows, offset = await ctx.store.page(
        TARGETS.name, size=args.size, offset=args.offset, filters={"upstream": upstream["id"]}
    )
    base = f"/upstreams/{ctx.raw_params['upstreams']}/targets/all"
    return json_reply(200, list_body([_out(r) for r in rows], offset, next_link(base, offset)))


async def target_get(ctx: Ctx) -> Response:
    return json_reply(200, _out(await _target(ctx, await _upstream(ctx))))


async def target_update(ctx: Ctx) -> Response:
    """PATCH and PUT alike (Kong's PUT here is an update, not an upsert)."""
    row = await _target(ctx, await _upstream(ctx))
    saved = await crud.update(ctx, TARGETS, row, ctx.body_args(TARGETS))
    return json_reply(200, _out(saved))


async def target_delete(ctx: Ctx) -> Response:
    row = await _target(ctx, await _upstream(ctx))
    await crud.delete(ctx, TARGETS, row)
    return empty_reply(204)


# ---------------------------------------------------------------------------------------------
# health


def _dns_kind(ips: list[str]) -> str:
    """Kong's `dns` of a target status: the record type its addresses came from."""
    if not ips:
        return "unknown"
    return "AAAA" if all(":" in ip for ip in ips) else "A"


async def known_addresses(
    upstream_id: str, target: str, *, register: bool = False
) -> tuple[list[tuple[str, float]], str | None]:
    """(address key, state) of the target's addresses, and the DNS error when its name does not resolve: the
    ones the workers registered, else the target resolved here (states UNSET), which `register` adds to the
    table as a worker would (before a health write, so that the other addresses stay listed)."""
    table = health.table()
    registered = table.addresses(upstream_id, target)
    if registered:
        return registered, None
    if table.dns_error(upstream_id, target):
        return [], "name resolution failed"
    host, port = split_target(target)
    if dns.is_ip(host):
        ips = [host]
    else:
        try:
            ips, _ttl = await asyncio.wait_for(dns.resolve(host), DNS_TIMEOUT_S)
        except dns.NameNotFound:
            return [], "name resolution failed"
        except (OSError, TimeoutError) as e:
            return [], str(e) or "dns server error"
    known = [(address_key(ip, port), health.UNSET) for ip in ips]
    if register:
        for key, _ in known:
            table.cell(upstream_id, target, key)  # added as UNSET (never checked: healthy)
    return known, None


async def _status(upstream: Row, target: Row) -> tuple[str, dict[str, Any]]:
    """(Kong's `health` of the target, Kong's target status: host, port, dns, weights and addresses, each
    address with `healthy` as a boolean)."""
    uid, name = upstream["id"], target["target"]
    known, dns_err = await known_addresses(uid, name)
    weight = target.get("weight") or 0
    addresses: list[dict[str, Any]] = []
    ips: list[str] = []
    unavailable = 0
    for key, state in known:
        parsed = parse_address(key)
        if parsed is None:
            continue
        healthy = state != health.DOWN
        if not healthy:
            unavailable += weight
        ips.append(parsed[0])
        addresses.append({"ip": parsed[0], "port": parsed[1], "weight": weight, "healthy": healthy})
    host, port = split_target(name)
    total = weight * len(addresses)
    status = {
        "host": host,
        "port": port,
        "dns": dns_err or _dns_kind(ips),
        "nodeWeight": weight,
        "weight": {"total": total, "unavailable": unavailable, "available": total - unavailable},
        "addresses": addresses,
    }
    if dns_err is not None or not addresses:
        verdict = health.DNS_ERROR
    elif weight == 0 or not health.checks_enabled(upstream):
        verdict = health.HEALTHCHECKS_OFF
    else:
        verdict = health.target_health(upstream, health.table(), name, [(k, s) for k, s in known])
    return verdict, status


def _with_address_health(upstream: Row, target: Row, status: dict[str, Any]) -> dict[str, Any]:
    """/health's `data`: the status, each address's boolean `healthy` replaced by Kong's `health` string."""
    on = health.checks_enabled(upstream) and (target.get("weight") or 0) > 0
    out = dict(status)
    out["addresses"] = [
        {"ip": a["ip"], "port": a["port"],
         "health": (health.HEALTHY if a["healthy"] else health.UNHEALTHY) if on else health.HEALTHCHECKS_OFF,
         "weight": a["weight"]}
        for a in status["addresses"]
    ]
    return out


async def health_get(ctx: Ctx) -> Response:
    upstream = await _upstream(ctx)
    node_id = ctx.state.node_id
    rows = await upstream_target_rows(ctx.store, upstream["id"])
    if ctx.query_first("balancer_health") == "1":
        return json_reply(200, {"data": await _balancer_health(upstream, rows), "next": None, "node_id": node_id})
    page, offset = _int_page(ctx, rows)
    statuses = await asyncio.gather(*(_status(upstream, t) for t in page))
    data = []
    for target, (verdict, status) in zip(page, statuses, strict=True):
        item = {**_out(target), "health": verdict}
        if verdict != health.DNS_ERROR:  # Kong has no data for a target whose name did not resolve
            item["data"] = _with_address_health(upstream, target, status)
        data.append(item)
    body: dict[str, Any] = {"data": data}
    if offset is not None:
        body["offset"] = offset
    body["next"] = next_link(f"/upstreams/{ctx.raw_params['upstreams']}/health", offset)
    body["node_id"] = node_id
    return json_reply(200, body)


async def _balancer_health(upstream: Row, rows: list[Row]) -> dict[str, Any]:
    statuses = await asyncio.gather(*(_status(upstream, t) for t in rows))
    hosts = [status for _, status in statuses]
    total = sum(h["weight"]["total"] for h in hosts)
    unavailable = sum(h["weight"]["unavailable"] for h in hosts)
    hc = upstream.get("healthchecks")
    threshold = (hc.get("threshold") if isinstance(hc, dict) else None) or 0
    # Kong: healthy while the available weight is above `threshold` percent of the total (never when it is 0).
    healthy = total > 0 and (total - unavailable) / total * 100 > threshold
    balancer = health.HEALTHY if healthy else health.UNHEALTHY
    return {
        "health": balancer if health.checks_enabled(upstream) else health.HEALTHCHECKS_OFF,
        "balancer_health": balancer,
        "id": upstream["id"],
        "details": {
            "healthy": healthy,
            "weight": {"total": total, "unavailable": unavailable, "available": total - unavailable},
            "hosts": hosts,
        },
    }


async def post_health(upstream: Row, target: Row, address: str | None, healthy: bool) -> str | None:
    """Set the health of a target's addresses (all of them, or the one `address` names); an error message or
    None. As Kong's: an address the target does not have changes nothing (and is not an error); an address
    given as a name sets all the target's addresses on that port."""
    uid, name = upstream["id"], target["target"]
    known, _ = await known_addresses(uid, name, register=True)
    chosen = [key for key, _ in known]
    if address is not None:
        res, err = checks.normalize_ip(address)
        if res is None:
            return f"Invalid address ('{address}'); {err}"
        port = res["port"] if res["port"] is not None else DEFAULT_TARGET_PORT
        if res["type"] == "name":
            chosen = chosen if port == split_target(name)[1] else []
        else:
            wanted = (res["host"], port)
            chosen = [key for key in chosen if (p := parse_address(key)) is not None and same_address(p, wanted)]
        if not chosen:
            log.warning("admin: health of %s set for an address the target does not have", name)
    table = health.table()
    for key in chosen:
        table.set_target(uid, name, key, healthy)
    return None


def _set_health(healthy: bool) -> Handler:
    async def handler(ctx: Ctx) -> Response:
        upstream = await _upstream(ctx)
        target = await _target(ctx, upstream)
        err = await post_health(upstream, target, ctx.params.get("address"), healthy)
        if err is not None:
            return message_reply(400, err)
        return empty_reply(204)

    return handler


# ---------------------------------------------------------------------------------------------


def add_endpoints(table: PathTable) -> None:
    nested = "/upstreams/{upstreams}/targets"
    one = f"{nested}/{{targets}}"
    table.add(nested, "GET", targets_get)  # POST stays the generated one (nested insert, 201, 409)
    table.add(f"{nested}/all", "GET", targets_all)
    table.add(one, "GET", target_get)
    table.add(one, "PATCH", target_update)
    table.add(one, "PUT", target_update)
    table.add(one, "DELETE", target_delete)
    for word, healthy in (("healthy", True), ("unhealthy", False)):
        table.add(f"{one}/{word}", "PUT", _set_health(healthy))
        table.add(f"{one}/{{address}}/{word}", "PUT", _set_health(healthy))
    table.add("/upstreams/{upstreams}/health", "GET", health_get)
