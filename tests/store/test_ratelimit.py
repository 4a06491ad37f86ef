"""ratelimiting_metrics counters for the rate-limiting cluster policy."""

from __future__ import annotations

import asyncio
import uuid

from servegate.store import Store, open_store_url


async def test_incr_and_get(store: Store) -> None:
    svc, route = str(uuid.uuid4()), str(uuid.uuid4())
    keys = [("1.2.3.4", "second", 1700000000, svc, route, 1), ("1.2.3.4", "minute", 1699999980, svc, route, 60)]
    periods = [("second", 1700000000), ("minute", 1699999980), ("hour", 1699999200)]
    assert await store.ratelimit_get("1.2.3.4", periods, svc, route) == {"second": 0, "minute": 0, "hour": 0}
    await store.ratelimit_incr(keys, 1)
    await store.ratelimit_incr(keys, 2)
    assert await store.ratelimit_get("1.2.3.4", periods, svc, route) == {"second": 3, "minute": 3, "hour": 0}
    # other windows, identifiers and scopes are separate counters
    assert await store.ratelimit_get("1.2.3.4", [("second", 1700000001)], svc, route) == {"second": 0}
    assert await store.ratelimit_get("5.6.7.8", periods[:1], svc, route) == {"second": 0}
    assert await store.ratelimit_get("1.2.3.4", periods[:1], svc, None) == {"second": 0}
    await store.ratelimit_incr([("1.2.3.4", "second", 1700000000, None, None, 1)], 1)
    assert await store.ratelimit_get("1.2.3.4", periods[:1], None, None) == {"second": 1}


async def test_concurrent_increments_are_not_lost(store_url: str, store: Store) -> None:
    other = open_store_url(store_url)
    await other.connect()
    try:
        key = [("consumer-1", "minute", 1700000000, None, None, 60)]
        await asyncio.gather(*(s.ratelimit_incr(key, 1) for _ in range(10) for s in (store, other)))
        got = await other.ratelimit_get("consumer-1", [("minute", 1700000000)], None, None)
        assert got == {"minute": 20}
    finally:
        await other.close()


async def test_stale_rows_are_cleaned(store: Store) -> None:
    store._counters._last_cleanup = 0.0  # force the periodic cleanup on the next increment
    # the increment writes an already expired row; the cleanup in the same call removes it
    await store.ratelimit_incr([("a", "second", 1, None, None, -10), ("b", "second", 2, None, None, 60)], 1)
    assert await store.ratelimit_get("a", [("second", 1)], None, None) == {"second": 0}
    assert await store.ratelimit_get("b", [("second", 2)], None, None) == {"second": 1}


async def test_identifiers_no_index_could_hold_count_alike_on_both_stores(store: Store) -> None:
    """limit_by header/path: a long header value or a path with an escaped NUL is still one counter."""
    import secrets

    for identifier in (secrets.token_hex(3000), "a\x00b", "/p\udcff"):
        key = [(identifier, "minute", 1700000000, None, None, 60)]
        await store.ratelimit_incr(key, 1)
        await store.ratelimit_incr(key, 2)
        assert await store.ratelimit_get(identifier, [("minute", 1700000000)], None, None) == {"minute": 3}
    assert await store.ratelimit_get("a", [("minute", 1700000000)], None, None) == {"minute": 0}
