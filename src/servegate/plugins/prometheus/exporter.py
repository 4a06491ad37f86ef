"""`GET /metrics` on the Admin API and on `status_listen`: the node's metrics, gathered at scrape time.

What a scrape shows, as Kong 3.9's exporter:
- with no enabled prometheus plugin in the configuration, only the node's own gauges (`kong_datastore_reachable`,
  `kong_node_info`, `kong_memory_workers_lua_vms_bytes`);
- otherwise also every family the workers recorded (added up over the node's workers, store.node_values), and
  `kong_upstream_target_health` when any enabled instance has `upstream_health_metrics`.

The configuration is read from the store on each scrape (one read of the plugins), which is also what
`kong_datastore_reachable` reports; when that read fails the last answer is used.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from servegate import KONG_VERSION
from servegate.plugins.prometheus import families as fam
from servegate.plugins.prometheus.exposition import CONTENT_TYPE, render
from servegate.plugins.prometheus.store import Series, node_values

log = logging.getLogger("servegate.plugins.prometheus")

NAME = "prometheus"
SUBSYSTEM = "http"
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class _Seen:
    # What the configuration said at the last successful read: (any enabled instance, any with upstream health).
    enabled = True
    upstream_health = False


async def _configuration(store: Any) -> bool:
    """Read the plugin rows; False when the database did not answer."""
    try:
        rows = await store.all("plugins")
    except Exception as e:  # any driver error means "not reachable"; its text may quote values
        log.error("prometheus: failed to reach database while processing /metrics endpoint: %s", type(e).__name__)
        return False
    mine = [r for r in rows if r.get("name") == NAME and r.get("enabled") is not False]
    _Seen.enabled = bool(mine)
    _Seen.upstream_health = any((r.get("config") or {}).get("upstream_health_metrics") for r in mine)
    return True


def _rss(pid: int) -> int | None:
    """Resident memory of a worker (bytes), from /proc; None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return None


async def collect(settings: Any, store: Any, node_id: str) -> bytes:
    reachable = await _configuration(store)
    values, pids = node_values(settings.prefix, max(int(settings.workers), 1))
    node: dict[str, Series] = {
        fam.DATASTORE_REACHABLE.name: {(): 1.0 if reachable else 0.0},
        fam.NODE_INFO.name: {(node_id, KONG_VERSION): 1.0},
        fam.WORKER_MEMORY.name: {(node_id, str(pid), SUBSYSTEM): float(rss)
                                 for pid in pids if (rss := _rss(pid)) is not None},
    }
    if _Seen.upstream_health:
        node[fam.UPSTREAM_TARGET_HEALTH.name] = await upstream_health(store)
    chosen: dict[str, Series] = dict(node)
    if _Seen.enabled:
        chosen[fam.METRIC_ERRORS.name] = {(): 0.0}
        chosen.update(values)
    return render((fam.ALL[name], chosen[name]) for name in sorted(chosen))


_STATES = ("healthchecks_off", "healthy", "unhealthy", "dns_error")


def _states(out: Series, upstream: str, target: str, address: str, state: str) -> None:
    for s in _STATES:
        out[(upstream, target, address, s, SUBSYSTEM)] = 1.0 if s == state else 0.0


async def upstream_health(store: Any) -> Series:
    """Each target address of each upstream in one of Kong's four states: the same view as the Admin API's
    `GET /upstreams/{u}/health` (the node's health table, addresses resolved there when no worker has yet)."""
    # The Admin API's own reading of the health table (this runs in the process that serves it).
    from servegate.admin.upstreams import known_addresses, upstream_target_rows
    from servegate.proxy.balancer import health

    out: Series = {}
    try:
        upstreams = await store.all("upstreams")
    except Exception as e:
        log.error("prometheus: cannot read upstreams: %s", type(e).__name__)
        return out
    for upstream in sorted(upstreams, key=lambda u: u.get("name") or ""):
        uid, uname = upstream["id"], upstream.get("name") or upstream["id"]
        try:
            targets = await upstream_target_rows(store, uid)
        except Exception as e:
            log.error("prometheus: cannot read targets: %s", type(e).__name__)
            continue
        checked = health.checks_enabled(upstream)
        found = await asyncio.gather(*(known_addresses(uid, t["target"]) for t in targets))
        for target, (known, dns_error) in zip(targets, found, strict=True):
            label = target["target"]  # stored as `host:port` (Kong's target.name .. ":" .. target.port)
            if dns_error is not None or not known:
                _states(out, uname, label, "", "dns_error")
                continue
            on = checked and (target.get("weight") or 0) > 0
            for address, state in known:
                if not on:
                    verdict = "healthchecks_off"
                else:
                    verdict = "unhealthy" if state == health.DOWN else "healthy"
                _states(out, uname, label, address, verdict)
    return out


async def metrics_endpoint(ctx: Any, parent: Any) -> Any:
    from servegate.admin.http import Response

    body = await collect(ctx.state.settings, ctx.store, ctx.state.node_id)
    return Response(200, body, {"Content-Type": CONTENT_TYPE})
