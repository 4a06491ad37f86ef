"""Several workers and several nodes: live config propagation and exact rate limits."""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp
import pytest

from helpers import Servegate


async def fire(urls: list[str], n: int, headers: dict[str, str] | None = None) -> list[int]:
    """n concurrent GETs spread over urls; returns the statuses."""
    conn = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=conn) as s:
        async def one(i: int) -> int:
            async with s.get(urls[i % len(urls)], headers=headers) as r:
                await r.read()
                return r.status

        return list(await asyncio.gather(*(one(i) for i in range(n))))


def wait_window(seconds: int = 60, margin: float = 8.0) -> None:
    """Keep a burst inside one calendar window."""
    if time.time() % seconds > seconds - margin:
        time.sleep(seconds - time.time() % seconds + 0.2)


def configure(sg: Servegate, backend: str, plugin: dict | None = None) -> None:
    assert sg.admin("PUT", "/services/llm", {"url": backend})[0] == 200
    assert sg.admin("PUT", "/routes/llm", {"paths": ["/llm"], "service": {"name": "llm"}})[0] == 200
    if plugin:
        status, body = sg.admin("POST", "/routes/llm/plugins", plugin)
        assert status == 201, body


def wait_routed(url: str, timeout: float = 5.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        statuses = asyncio.run(fire([url], 20))
        if all(s == 200 for s in statuses):
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"{url} not routed within {timeout}s")


def test_every_worker_sees_a_change_within_one_second(backend, tmp_path):
    with Servegate(workers=2, prefix=str(tmp_path)) as sg:
        url = f"{sg.proxy_url}/llm/v1/models"
        assert set(asyncio.run(fire([url], 40))) == {404}
        configure(sg, backend)
        assert wait_routed(url) < 1.0
        # Keep-alive off: each request may land on either worker; all must route.
        assert set(asyncio.run(fire([url], 200))) == {200}
        assert sg.admin("DELETE", "/routes/llm")[0] == 204
        time.sleep(1.0)
        assert set(asyncio.run(fire([url], 200))) == {404}


def test_local_policy_exact_with_two_workers(backend, tmp_path):
    with Servegate(workers=2, prefix=str(tmp_path)) as sg:
        configure(sg, backend, {"name": "rate-limiting", "config": {"minute": 100, "policy": "local"}})
        url = f"{sg.proxy_url}/llm/v1/models"
        time.sleep(1.0)
        wait_window()
        statuses = asyncio.run(fire([url], 200))
        assert statuses.count(200) == 100, statuses
        assert statuses.count(429) == 100


@pytest.mark.parametrize("policy", ["cluster", "redis"])
def test_policy_exact_across_two_nodes(backend, pg_db, tmp_path, policy):
    config: dict = {"minute": 100, "policy": policy}
    if policy == "redis":
        config["redis"] = {"host": "127.0.0.1", "port": 6379, "database": 0}
    tag = uuid.uuid4().hex[:8]
    a = Servegate(database="postgres", pg_dsn=pg_db, prefix=str(tmp_path / f"a{tag}")).start()
    b = Servegate(database="postgres", pg_dsn=pg_db, prefix=str(tmp_path / f"b{tag}")).start()
    try:
        configure(a, backend, {"name": "rate-limiting", "config": config})
        urls = [f"{a.proxy_url}/llm/v1/models", f"{b.proxy_url}/llm/v1/models"]
        deadline = time.monotonic() + 5
        while b.admin("GET", "/plugins")[1]["data"] == [] and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # node b's proxy polls the config version
        wait_window()
        statuses = asyncio.run(fire(urls, 200))
        assert statuses.count(200) == 100, statuses
        assert statuses.count(429) == 100
    finally:
        a.stop()
        b.stop()
