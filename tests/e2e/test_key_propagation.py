"""API keys through the lookup cache, across workers and nodes: a new key works on every worker of both nodes
within the propagation bound (db_update_frequency), a deleted key stops, and /status counts the cache."""

from __future__ import annotations

import asyncio
import time
import uuid

from test_nodes import configure, fire

from helpers import Servegate

BOUND_S = 2.0  # db_update_frequency is 0.25 s; the rest is slack for a loaded test machine


def until(urls: list[str], key: str, want: int) -> float:
    """Seconds until 40 fresh connections spread over `urls` (so over every worker) all answer `want`."""
    started = time.monotonic()
    while time.monotonic() - started < BOUND_S * 3:
        if set(asyncio.run(fire(urls, 40, {"apikey": key}))) == {want}:
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"not {want} within {BOUND_S * 3}s")


def test_keys_reach_every_worker_and_node(backend, pg_db, tmp_path):
    tag = uuid.uuid4().hex[:8]
    a = Servegate(database="postgres", pg_dsn=pg_db, workers=2, prefix=str(tmp_path / f"a{tag}")).start()
    b = Servegate(database="postgres", pg_dsn=pg_db, prefix=str(tmp_path / f"b{tag}")).start()
    try:
        configure(a, backend, {"name": "key-auth", "config": {}})
        urls = [f"{a.proxy_url}/llm/v1/models", f"{b.proxy_url}/llm/v1/models"]
        assert a.admin("POST", "/consumers", {"username": "bob"})[0] == 201
        # the key does not exist yet: every worker caches that (negative entries)...
        until(urls, "k-new", 401)
        status, cred = a.admin("POST", "/consumers/bob/key-auth", {"key": "k-new"})
        assert status == 201
        # ...and the creation event drops those entries everywhere
        assert until(urls, "k-new", 200) < BOUND_S
        assert a.admin("DELETE", f"/consumers/bob/key-auth/{cred['id']}")[0] == 204
        assert until(urls, "k-new", 401) < BOUND_S
        # deleting the consumer cascades to its keys, cached ones included
        assert a.admin("POST", "/consumers/bob/key-auth", {"key": "k-2"})[0] == 201
        until(urls, "k-2", 200)
        assert a.admin("DELETE", "/consumers/bob")[0] == 204
        assert until(urls, "k-2", 401) < BOUND_S
        time.sleep(0.6)  # the workers publish their counters after each poll
        caches = a.admin("GET", "/status")[1]["servegate"]["caches"]
        ka = caches["key-auth"]
        assert ka["misses"] > 0 and ka["hits"] + ka["negative_hits"] > 0
        assert ka["capacity"] == 2 * 50_000  # two workers, one cache each
    finally:
        a.stop()
        b.stop()
