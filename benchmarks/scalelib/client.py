"""Timed HTTP requests over aiohttp, to one node's Admin API or proxy (loopback only)."""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
from benchlib.load import CHAT_PATH, Target

CHAT_BODY = Target(0).body()


def session(timeout_s: float, *, fresh: bool = False) -> aiohttp.ClientSession:
    """One keep-alive connection (a writer is one client), or a new connection per request (`fresh`: a new
    connection lands on any worker of a multi-worker node)."""
    conn = aiohttp.TCPConnector(limit=1, force_close=fresh)
    return aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=timeout_s))


async def call(s: aiohttp.ClientSession, method: str, url: str, body: dict[str, Any] | None = None,
               headers: dict[str, str] | None = None) -> tuple[int, Any, float]:
    """(status, decoded JSON body or None, latency ms). A transport error or timeout is status 0 (counted by
    the caller as an error), so one bad request never ends a phase."""
    t0 = time.perf_counter()
    try:
        async with s.request(method, url, json=body, headers=headers) as resp:
            raw = await resp.read()
            status = resp.status
    except (TimeoutError, aiohttp.ClientError):
        return 0, None, (time.perf_counter() - t0) * 1000
    ms = (time.perf_counter() - t0) * 1000
    data: Any = None
    if raw and raw[:1] in (b"{", b"["):
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
    return status, data, ms


async def unrouted(s: aiohttp.ClientSession, port: int) -> int:
    """A proxy request that matches no route (404 from the router, no plugin runs)."""
    try:
        async with s.get(f"http://127.0.0.1:{port}/scale-no-route") as resp:
            await resp.read()
            return resp.status
    except (TimeoutError, aiohttp.ClientError):
        return 0


async def proxied(s: aiohttp.ClientSession, port: int, apikey: str) -> tuple[int, float]:
    """One chat POST through the key-auth route: (status, latency ms)."""
    t0 = time.perf_counter()
    try:
        async with s.post(f"http://127.0.0.1:{port}{CHAT_PATH}", data=CHAT_BODY,
                          headers={"apikey": apikey, "Content-Type": "application/json"}) as resp:
            await resp.read()
            status = resp.status
    except (TimeoutError, aiohttp.ClientError):
        status = 0
    return status, (time.perf_counter() - t0) * 1000
