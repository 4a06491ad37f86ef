"""Counter policies against real backends: exactness under concurrency across processes.

local: 2 worker processes x 100 concurrent threads on one node file -> exactly `limit` admitted.
cluster / redis: 2 independent processes (own pools/clients) x 100 concurrent requests.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
import pytest
import redis
from plugin_support import needs_redis

from servegate.plugins.ratelimit import EMPTY_UUID, Window
from servegate.plugins.ratelimit.windows import window_start

FORK = mp.get_context("fork")
REDIS_CONF = {"host": "127.0.0.1", "port": 6379, "database": 0, "timeout": 2000}


def windows(now: int, **limits: float) -> list[Window]:
    return [(p, limit, window_start(p, now)) for p, limit in limits.items()]


# -- workers (run in forked processes) -----------------------------------------------------------

def _local_worker(path: str | None, route: str, wins: list[Window], now: int, n: int, per_thread: int,
                  barrier: Any, out: Any) -> None:
    import sys

    from servegate.plugins.ratelimit.local import LocalPolicy

    sys.setswitchinterval(1e-6)  # interleave threads as much as possible
    policy = LocalPolicy(path)

    def burst(_: int) -> int:
        return sum(policy.hit(route, EMPTY_UUID, "1.2.3.4", wins, now)[1] for _ in range(per_thread))

    barrier.wait()
    with ThreadPoolExecutor(max_workers=n) as ex:
        out.put(sum(ex.map(burst, range(n))))


def _async_worker(kind: str, arg: Any, route: str, wins: list[Window], now: int, n: int,
                  barrier: Any, out: Any) -> None:
    async def main() -> int:
        if kind == "cluster":
            from servegate.plugins.ratelimit.cluster import ClusterPolicy, close_pools

            policy: Any = ClusterPolicy(arg)
            close = close_pools
        else:
            from servegate.plugins.ratelimit.redis_policy import RedisPolicy, close_clients

            policy = RedisPolicy(arg)
            close = close_clients
        # open the connection first, so that the race is on the counters, not on connecting
        await policy.hit(new_route := str(uuid.uuid4()), EMPTY_UUID, "warmup", wins, now)
        del new_route
        barrier.wait()
        try:
            results = await asyncio.gather(*(policy.hit(route, EMPTY_UUID, "1.2.3.4", wins, now)
                                              for _ in range(n)))
        finally:
            await close()
        return sum(1 for _, ok in results if ok)

    out.put(asyncio.run(main()))


def run_two(target: Any, *args: Any) -> int:
    barrier, out = FORK.Barrier(2), FORK.Queue()
    procs = [FORK.Process(target=target, args=(*args, barrier, out)) for _ in range(2)]
    for p in procs:
        p.start()
    try:
        total = out.get(timeout=60) + out.get(timeout=60)
    finally:
        for p in procs:
            p.join(timeout=10)
    assert all(p.exitcode == 0 for p in procs)
    return int(total)


# -- local ---------------------------------------------------------------------------------------

def test_local_exact_across_processes(tmp_path: Any) -> None:
    now = int(time.time())
    admitted = run_two(_local_worker, str(tmp_path / "c.shm"), str(uuid.uuid4()),
                       windows(now, minute=137), now, 100, 1)
    assert admitted == 137
    # heavier contention: 2 x 100 threads x 10 requests
    admitted = run_two(_local_worker, str(tmp_path / "c.shm"), str(uuid.uuid4()),
                       windows(now, minute=1500), now, 100, 10)
    assert admitted == 1500


def test_prepare_node_then_forked_workers_share_counters(tmp_path: Any) -> None:
    """The node flow: prepare_node in the parent, workers forked after it use the default path."""
    from servegate.plugins import prepare_node
    from servegate.plugins.ratelimit import runtime
    from servegate.settings import load_settings

    prepare_node(load_settings({"SERVEGATE_PREFIX": str(tmp_path), "SERVEGATE_WORKERS": "2"}))
    assert runtime.prefix == str(tmp_path) and runtime.pg_dsn is None and runtime.workers == 2
    now = int(time.time())
    assert run_two(_local_worker, None, str(uuid.uuid4()), windows(now, minute=99), now, 100, 1) == 99


def test_single_worker_node_counts_in_process(tmp_path: Any) -> None:
    """With one worker nothing else shares the counters: no file is made, limits still hold exactly."""
    from servegate.plugins.ratelimit import configure, runtime
    from servegate.plugins.ratelimit.local import LocalPolicy
    from servegate.plugins.ratelimit.shm import ProcessCounters

    saved = (runtime.prefix, runtime.pg_dsn, runtime.pg_timeout_s, runtime.workers)
    configure(prefix=str(tmp_path), workers=1)
    try:
        now, route = 1_700_000_000, str(uuid.uuid4())  # 800 s into an hour: now + 60 is the same hour
        policy, other = LocalPolicy(), LocalPolicy()  # two plugin instances share one process table
        wins = windows(now, minute=5, hour=7)
        results = [(policy if i % 2 else other).hit(route, EMPTY_UUID, "ip", wins, now)[1] for i in range(9)]
        assert results == [True] * 5 + [False] * 4
        assert isinstance(policy._tbl(), ProcessCounters)
        assert not (tmp_path / "ratelimit-counters.shm").exists()
        # A new minute window starts from zero; the hour window keeps counting to its limit of 7.
        later = windows(now + 60, minute=5, hour=7)
        assert [policy.hit(route, EMPTY_UUID, "ip", later, now + 60) for _ in range(3)] == [
            ([0, 5], True), ([1, 6], True), ([2, 7], False)]
    finally:
        configure(prefix=saved[0], pg_dsn=saved[1], pg_timeout_s=saved[2], workers=saved[3])


def test_local_multi_window_exact_and_rejections_not_counted(tmp_path: Any) -> None:
    from servegate.plugins.ratelimit.local import LocalPolicy

    now = int(time.time())
    path, route = str(tmp_path / "c.shm"), str(uuid.uuid4())
    wins = windows(now, minute=150, hour=120)
    assert run_two(_local_worker, path, route, wins, now, 100, 1) == 120
    usage, ok = LocalPolicy(path).hit(route, EMPTY_UUID, "1.2.3.4", wins, now)
    assert (usage, ok) == ([120, 120], False)


def test_local_new_window_resets_and_keys_are_separate(tmp_path: Any) -> None:
    from servegate.plugins.ratelimit.local import LocalPolicy

    policy, now = LocalPolicy(str(tmp_path / "c.shm")), 1_700_000_000
    route = str(uuid.uuid4())
    assert policy.hit(route, EMPTY_UUID, "a", windows(now, second=1), now) == ([0], True)
    assert policy.hit(route, EMPTY_UUID, "a", windows(now, second=1), now) == ([1], False)
    assert policy.hit(route, EMPTY_UUID, "b", windows(now, second=1), now) == ([0], True)
    assert policy.hit(route, EMPTY_UUID, "a", windows(now + 1, second=1), now + 1) == ([0], True)


def test_local_table_survives_stripe_pressure(tmp_path: Any) -> None:
    """More live keys than one stripe holds: every key still counts (tiny table)."""
    from servegate.plugins.ratelimit.shm import SharedCounters

    t = SharedCounters(str(tmp_path / "tiny.shm"), stripes=1, slots=8)
    now = 1_700_000_000
    for i in range(8):
        kd = SharedCounters.digest(f"k{i}")
        assert t.hit(b"stripe00", [(kd, now, now + 60, 2)], now) == ([0], True)
        assert t.hit(b"stripe00", [(kd, now, now + 60, 2)], now) == ([1], True)
        assert t.hit(b"stripe00", [(kd, now, now + 60, 2)], now) == ([2], False)
    # all slots live: a ninth key evicts the one closest to expiry instead of failing
    kd = SharedCounters.digest("k8")
    assert t.hit(b"stripe00", [(kd, now, now + 60, 2)], now) == ([0], True)
    # once expired, slots are reused
    later = now + 61
    kd = SharedCounters.digest("k9")
    assert t.hit(b"stripe00", [(kd, later, later + 60, 2)], later) == ([0], True)
    t.close()


# -- cluster (PostgreSQL) ------------------------------------------------------------------------

async def _metrics(dsn: str, route: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT period, value FROM ratelimiting_metrics WHERE route_id = $1", route)
    finally:
        await conn.close()
    return {r["period"]: r["value"] for r in rows}


def test_cluster_exact_across_processes(metrics_db: str) -> None:
    now, route = int(time.time()), str(uuid.uuid4())
    wins = windows(now, minute=150, hour=120)
    assert run_two(_async_worker, "cluster", metrics_db, route, wins, now, 100) == 120
    assert asyncio.run(_metrics(metrics_db, route)) == {"minute": 120, "hour": 120}


async def test_cluster_rows_shape_and_rejection(metrics_db: str) -> None:
    from servegate.plugins.ratelimit.cluster import ClusterPolicy, close_pools

    policy, now = ClusterPolicy(metrics_db), int(time.time())
    route, service = str(uuid.uuid4()), str(uuid.uuid4())
    wins = windows(now, second=1, day=5)
    try:
        assert await policy.hit(route, service, "id1", wins, now) == ([0, 0], True)
        assert await policy.hit(route, service, "id1", wins, now) == ([1, 1], False)
        conn = await asyncpg.connect(metrics_db)
        try:
            rows = await conn.fetch("SELECT * FROM ratelimiting_metrics WHERE route_id = $1 ORDER BY period", route)
        finally:
            await conn.close()
        got = [(r["identifier"], r["period"], r["period_date"], r["service_id"], r["value"]) for r in rows]
        assert got == [("id1", "day", window_start("day", now), service, 1),
                       ("id1", "second", now, service, 1)]
        assert all(r["ttl"] > time.time() for r in rows)
    finally:
        await close_pools()


async def test_cluster_missing_table_raises(fresh_pg_db: str) -> None:
    from servegate.plugins.ratelimit.cluster import ClusterPolicy, close_pools

    try:
        with pytest.raises(asyncpg.UndefinedTableError):
            await ClusterPolicy(fresh_pg_db).hit(EMPTY_UUID, EMPTY_UUID, "x", windows(0, minute=1), 0)
    finally:
        await close_pools()


# -- redis ---------------------------------------------------------------------------------------

def _redis_cleanup(route: str) -> dict[str, int]:
    r = redis.Redis(host="127.0.0.1", port=6379)
    keys = list(r.scan_iter(f"ratelimit:{route}:*"))
    values = {k.decode().rsplit(":", 1)[1]: int(r.get(k) or 0) for k in keys}
    ttls = [r.ttl(k) for k in keys]
    if keys:
        r.delete(*keys)
    assert all(t > 0 for t in ttls)
    return values


@needs_redis
def test_redis_exact_across_processes() -> None:
    now, route = int(time.time()), str(uuid.uuid4())
    wins = windows(now, minute=150, hour=120)
    try:
        assert run_two(_async_worker, "redis", REDIS_CONF, route, wins, now, 100) == 120
    finally:
        values = _redis_cleanup(route)
    assert values == {"minute": 120, "hour": 120}


@needs_redis
async def test_redis_key_format_and_expiry() -> None:
    from servegate.plugins.ratelimit.redis_policy import RedisPolicy, close_clients

    now, route, service = int(time.time()), str(uuid.uuid4()), str(uuid.uuid4())
    policy = RedisPolicy(REDIS_CONF)
    try:
        assert await policy.hit(route, service, "1.2.3.4", windows(now, minute=1), now) == ([0], True)
        assert await policy.hit(route, service, "1.2.3.4", windows(now, minute=1), now) == ([1], False)
        r = redis.Redis(host="127.0.0.1", port=6379)
        key = f"ratelimit:{route}:{service}:1.2.3.4:{window_start('minute', now) * 1000}:minute"
        assert r.get(key) == b"1" and 0 < r.ttl(key) <= 60
    finally:
        await close_clients()
        _redis_cleanup(route)


async def test_cluster_unreachable_fails_fast_after_first_error(counters_prefix: str) -> None:
    from servegate.plugins.ratelimit import configure
    from servegate.plugins.ratelimit.cluster import ClusterPolicy, close_pools

    configure(prefix=counters_prefix, pg_dsn=None, pg_timeout_s=0.3)
    # A loopback server that accepts (the kernel completes the handshake from the backlog) and never
    # answers: the connect times out as against a dead host, with traffic kept on this machine.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    policy = ClusterPolicy(f"postgresql://postgres@127.0.0.1:{silent.getsockname()[1]}/none")
    wins = windows(0, minute=1)
    try:
        with pytest.raises(Exception) as first:
            await policy.hit(EMPTY_UUID, EMPTY_UUID, "x", wins, 0)
        started = time.monotonic()
        with pytest.raises(Exception) as second:
            await policy.hit(EMPTY_UUID, EMPTY_UUID, "x", wins, 0)
        assert time.monotonic() - started < 0.05
        assert second.value is first.value
    finally:
        silent.close()
        await close_pools()


@pytest.mark.parametrize("identifier", ["h" * 5000, "a\x00b", "bad\udcff"])
async def test_cluster_identifier_postgres_cannot_index_is_counted_by_digest(metrics_db: str, identifier: str) -> None:
    # limit_by header/path values come from the client: longer than a btree entry, a NUL, or bytes that are
    # not UTF-8 must still count (and be limited), not fail the request with a database error.
    from servegate.plugins.ratelimit.cluster import ClusterPolicy, close_pools, stored_identifier

    policy, now = ClusterPolicy(metrics_db), int(time.time())
    route, service = str(uuid.uuid4()), str(uuid.uuid4())
    wins = windows(now, minute=1)
    try:
        assert await policy.hit(route, service, identifier, wins, now) == ([0], True)
        assert await policy.hit(route, service, identifier, wins, now) == ([1], False)
        conn = await asyncpg.connect(metrics_db)
        try:
            stored = await conn.fetchval("SELECT identifier FROM ratelimiting_metrics WHERE route_id = $1", route)
        finally:
            await conn.close()
        assert stored == stored_identifier(identifier) and stored.startswith("sha256:")
    finally:
        await close_pools()
