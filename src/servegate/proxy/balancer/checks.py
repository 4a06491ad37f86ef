"""Active health checks (healthchecks.active): worker 0 of a node probes every address of an upstream, each
`healthy.interval` seconds while it is up and `unhealthy.interval` seconds while it is down (0: not probed in
that state), and writes what it finds to the node's health table, which every worker reads."""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Any

from servegate.proxy.balancer import health
from servegate.proxy.balancer.core import Balancer, _section
from servegate.proxy.balancer.endpoint import Endpoint

OK, TCP, TIMEOUT, HTTP, OTHER = "ok", "tcp", "timeout", "http", "other"
TICK_MIN_S = 0.05


def active_enabled(upstream: dict[str, Any]) -> bool:
    return bool(_section(upstream, "active", "healthy").get("interval")
                or _section(upstream, "active", "unhealthy").get("interval"))


async def probe(active: dict[str, Any], ep: Endpoint) -> str:
    """One check of one address: OK, TCP (no connection), TIMEOUT, HTTP (an unhealthy status) or OTHER."""
    kind = str(active.get("type") or "http")
    timeout = float(active.get("timeout") or 1)
    ctx = None
    if kind in ("https", "grpcs"):
        ctx = ssl.create_default_context()
        if active.get("https_verify_certificate") is False:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
    writer = None
    try:
        async with asyncio.timeout(timeout):
            try:
                reader, writer = await asyncio.open_connection(
                    ep.ip, ep.port, ssl=ctx, server_hostname=(active.get("https_sni") or ep.host) if ctx else None)
            except OSError:
                return TCP
            if kind == "tcp":
                return OK
            host = f"[{ep.host}]" if ":" in ep.host else ep.host
            lines = [f"GET {active.get('http_path') or '/'} HTTP/1.1", f"Host: {host}:{ep.port}",
                     "Connection: close", "User-Agent: servegate-healthcheck"]
            headers = active.get("headers") or {}
            if isinstance(headers, dict):
                for name, values in headers.items():
                    for value in values if isinstance(values, list) else [values]:
                        lines.append(f"{name}: {value}")
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            status_line = await reader.readline()
    except TimeoutError:
        return TIMEOUT
    except (OSError, UnicodeEncodeError):
        return TCP
    finally:
        if writer is not None:
            writer.close()
    parts = status_line.split()
    status = int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0
    if status in (_section({"healthchecks": {"active": active}}, "active", "healthy").get("http_statuses") or ()):
        return OK
    if status in (_section({"healthchecks": {"active": active}}, "active", "unhealthy").get("http_statuses") or ()):
        return HTTP
    return HTTP if status == 0 else OTHER


def record(bal: Balancer, ep: Endpoint, outcome: str) -> None:
    """Count one probe's outcome and move the address across a threshold."""
    good = _section(bal.upstream, "active", "healthy")
    bad = _section(bal.upstream, "active", "unhealthy")
    if outcome == OK:
        ep.checks_tcp = ep.checks_timeout = ep.checks_http = 0
        ep.checks_ok += 1
        need = int(good.get("successes") or 0)
        if need and ep.checks_ok >= need and bal.cells[ep.cell] == health.DOWN:
            bal.mark(ep, True, f"{ep.checks_ok} successful active check(s)")
        return
    if outcome == OTHER:
        return
    ep.checks_ok = 0
    if outcome == TCP:
        ep.checks_tcp += 1
        n, limit = ep.checks_tcp, int(bad.get("tcp_failures") or 0)
    elif outcome == TIMEOUT:
        ep.checks_timeout += 1
        n, limit = ep.checks_timeout, int(bad.get("timeouts") or 0)
    else:
        ep.checks_http += 1
        n, limit = ep.checks_http, int(bad.get("http_failures") or 0)
    if limit and n >= limit and bal.cells[ep.cell] != health.DOWN:
        bal.mark(ep, False, f"{n} failed active check(s) ({outcome})")


async def run_active(balancers: Any, uid: str) -> None:
    """The check loop of one upstream, for as long as it is configured (cancelled on change or stop)."""
    last: dict[str, float] = {}
    while True:
        bal: Balancer | None = balancers.by_id.get(uid)
        if bal is None:
            return
        active = _section(bal.upstream, "active")
        up_every = float(_section(bal.upstream, "active", "healthy").get("interval") or 0)
        down_every = float(_section(bal.upstream, "active", "unhealthy").get("interval") or 0)
        limit = asyncio.Semaphore(max(1, int(active.get("concurrency") or 10)))
        now = time.monotonic()
        due = []
        for ep in bal.all:
            every = down_every if bal.cells[ep.cell] == health.DOWN else up_every
            if every and now - last.get(ep.address, 0.0) >= every:
                last[ep.address] = now
                due.append(ep)

        async def one(ep: Endpoint, bal: Balancer = bal, limit: asyncio.Semaphore = limit,
                      active: dict[str, Any] = active) -> None:
            async with limit:
                record(bal, ep, await probe(active, ep))

        if due:
            await asyncio.gather(*(one(ep) for ep in due))
        tick = min(x for x in (up_every, down_every) if x) / 4
        await asyncio.sleep(max(TICK_MIN_S, min(tick, 1.0)))
