"""A worker's snapshot follows the store through change events (snapshot/feed.py), on both stores: indexes
patched in place of a reload, the router rebuilt only for routes and services, deletes cascaded, API keys
found through the bounded lookup cache and dropped from it when they change."""

from __future__ import annotations

import asyncio
from typing import Any

from servegate.plugins import Context, Exit, load_all
from servegate.schema.entities import declared
from servegate.schema.validate import process_input
from servegate.snapshot import Caches, SnapshotHolder, load_snapshot
from servegate.snapshot.feed import SnapshotFeed
from servegate.snapshot.source import StoreSource
from servegate.store import Store, open_store_url

load_all()


def new(entity: str, **body: Any) -> dict[str, Any]:
    return process_input(declared()[entity], body, op="insert")


class Probe:
    """The store as row source, counting reads and running `during` inside each one."""

    def __init__(self, store: Store) -> None:
        self.inner = StoreSource(store)
        self.reads = 0
        self.during: Any = None

    async def find(self, entity: str, field: str, value: Any) -> Any:
        self.reads += 1
        row = await self.inner.find(entity, field, value)
        if self.during is not None:
            await self.during()
        return row


async def feed_for(store: Store, capacity: int = 1000, source: Any = None) -> SnapshotFeed:
    caches = Caches(source or StoreSource(store), capacity)
    holder = SnapshotHolder(await load_snapshot(store, caches=caches))
    return SnapshotFeed(store, holder, 0.05)


async def authenticate(feed: SnapshotFeed, route_id: str, key: str) -> str | int:
    """Run the route's access phase with `key`: the consumer's username, or the status a plugin exited with."""
    snap = feed.holder.current
    plan = snap.plugins.plan(route_id, None)
    ctx = Context("GET", "/", f"apikey={key}", {}, "127.0.0.1")
    try:
        pending = plan.access(ctx)
        if pending is not None:
            await pending
    except Exit as e:
        return e.status
    return str(ctx.consumer["username"]) if ctx.consumer else 0


async def setup_route(store: Store) -> tuple[dict[str, Any], dict[str, Any]]:
    svc = await store.insert("services", new("services", name="llm", host="127.0.0.1", port=9))
    route = await store.insert("routes", new("routes", name="r", paths=["/r"], service={"id": svc["id"]}))
    plugin = new("plugins", name="key-auth", config={})
    plugin["route"] = {"id": route["id"]}
    await store.insert("plugins", plugin)
    return svc, route


async def test_changes_patch_the_snapshot_and_keep_unchanged_rows(store: Store) -> None:
    svc, route = await setup_route(store)
    feed = await feed_for(store)
    before = feed.holder.current
    assert before.router.match("GET", None, "/r/x") is not None
    # a consumer write changes no held entity: the router and the plugin index stay as they are
    await store.insert("consumers", new("consumers", username="bob"))
    assert await feed.refresh()
    after = feed.holder.current
    assert after.version == before.version + 1
    assert after.router is before.router and after.plugins is before.plugins
    assert after.index("routes", "id")[route["id"]] is before.index("routes", "id")[route["id"]]
    # a new route: the router is rebuilt, the old rows keep their identity
    r2 = await store.insert("routes", new("routes", name="r2", paths=["/two"], service={"id": svc["id"]}))
    assert await feed.refresh()
    snap = feed.holder.current
    assert snap.router is not after.router and snap.router.match("GET", None, "/two") is not None
    assert snap.index("routes", "id")[route["id"]] is after.index("routes", "id")[route["id"]]
    assert snap.index("routes", "name")["r2"]["id"] == r2["id"]
    # renamed: the old name is gone from the index
    await store.update("routes", dict(r2, name="r3", paths=["/three"]))
    await store.delete("routes", {"id": route["id"]})  # and its key-auth plugin with it (ON DELETE CASCADE)
    assert await feed.refresh()
    snap = feed.holder.current
    assert "r2" not in snap.index("routes", "name") and snap.index("routes", "name")["r3"]["id"] == r2["id"]
    assert snap.router.match("GET", None, "/two") is None and snap.router.match("GET", None, "/three") is not None
    assert snap.router.match("GET", None, "/r/x") is None
    assert list(snap.rows("plugins")) == []
    assert snap.plugins.plan(route["id"], None) is None
    assert not await feed.refresh()  # nothing new
    assert feed.reloads == 0 and feed.applied == 3


async def test_deleting_a_consumer_drops_its_plugins(store: Store) -> None:
    bob = await store.insert("consumers", new("consumers", username="bob"))
    plugin = new("plugins", name="rate-limiting", config={"minute": 5, "policy": "local"})
    plugin["consumer"] = {"id": bob["id"]}
    await store.insert("plugins", plugin)
    feed = await feed_for(store)
    assert len(list(feed.holder.current.rows("plugins"))) == 1
    await store.delete("consumers", {"id": bob["id"]})
    await feed.refresh()
    assert list(feed.holder.current.rows("plugins")) == []


async def test_a_key_works_on_its_first_request_and_stops_when_deleted(store: Store) -> None:
    _, route = await setup_route(store)
    bob = await store.insert("consumers", new("consumers", username="bob"))
    feed = await feed_for(store)
    cache = feed.holder.current.caches.named("key-auth")
    # unknown key: read once, then answered from the negative entry
    assert await authenticate(feed, route["id"], "k-1") == 401
    assert await authenticate(feed, route["id"], "k-1") == 401
    assert (cache.misses, cache.negative_hits) == (1, 1)
    cred = await store.insert("keyauth_credentials", new("keyauth_credentials", consumer={"id": bob["id"]}, key="k-1"))
    await feed.refresh()  # the insert event drops the negative entry
    assert await authenticate(feed, route["id"], "k-1") == "bob"
    assert await authenticate(feed, route["id"], "k-1") == "bob"
    assert (cache.misses, cache.hits) == (2, 1)
    # the consumer renamed: the cached entry built from it is dropped
    await store.update("consumers", dict(bob, username="robert"))
    await feed.refresh()
    assert await authenticate(feed, route["id"], "k-1") == "robert"
    # the key changed: the old value stops, the new one works
    await store.update("keyauth_credentials", dict(cred, key="k-2"))
    await feed.refresh()
    assert await authenticate(feed, route["id"], "k-1") == 401
    assert await authenticate(feed, route["id"], "k-2") == "robert"
    # deleted, through its consumer (ON DELETE CASCADE): the cached key stops working
    await store.delete("consumers", {"id": bob["id"]})
    await feed.refresh()
    assert await authenticate(feed, route["id"], "k-2") == 401


async def test_the_cache_is_bounded_and_misses_share_one_read(store: Store) -> None:
    _, route = await setup_route(store)
    bob = await store.insert("consumers", new("consumers", username="bob"))
    async with store.transaction():
        await store.insert_many("keyauth_credentials", [
            new("keyauth_credentials", consumer={"id": bob["id"]}, key=f"key-{i}") for i in range(50)])
    probe = Probe(store)
    feed = await feed_for(store, capacity=20, source=probe)
    for i in range(50):
        assert await authenticate(feed, route["id"], f"key-{i}") == "bob"
    cache = feed.holder.current.caches.named("key-auth")
    assert len(cache) == 20 and cache.evictions == 30
    # 10 concurrent requests with one unseen key (evicted): one read of the store
    probe.reads = 0
    probe.during = lambda: asyncio.sleep(0.01)
    results = await asyncio.gather(*(authenticate(feed, route["id"], "key-0") for _ in range(10)))
    assert results == ["bob"] * 10
    assert probe.reads == 2  # the credential, then its consumer


async def test_a_read_overlapping_an_invalidation_is_not_kept(store: Store) -> None:
    _, route = await setup_route(store)
    bob = await store.insert("consumers", new("consumers", username="bob"))
    await store.insert("keyauth_credentials", new("keyauth_credentials", consumer={"id": bob["id"]}, key="k"))
    probe = Probe(store)
    feed = await feed_for(store, source=probe)
    cache = feed.holder.current.caches.named("key-auth")

    async def event_applied_meanwhile() -> None:
        cache.invalidate([("consumers", "id", "someone-else")])

    probe.during = event_applied_meanwhile
    assert await authenticate(feed, route["id"], "k") == "bob"
    assert len(cache) == 0
    probe.during = None
    assert await authenticate(feed, route["id"], "k") == "bob"
    assert len(cache) == 1


async def test_missing_events_fall_back_to_a_full_reload(store: Store, store_url: str) -> None:
    await setup_route(store)
    feed = await feed_for(store)
    v = feed.holder.current.version
    other = open_store_url(store_url)  # another node writing
    await other.connect()
    try:
        await other.insert("services", new("services", name="s2", host="h", port=1))
        await other.insert("services", new("services", name="s3", host="h", port=1))
    finally:
        await other.close()
    async with store.backend.write() as conn:
        await conn.execute(f'DELETE FROM "config_changes" WHERE "version" = {v + 1}')
    assert await feed.refresh()
    assert feed.reloads == 1 and feed.holder.current.version == v + 2
    assert set(feed.holder.current.index("services", "name")) == {"llm", "s2", "s3"}


async def test_a_bulk_import_reloads_the_entity(store: Store) -> None:
    svc, _ = await setup_route(store)
    feed = await feed_for(store)
    async with store.transaction():
        await store.insert_many("routes", [new("routes", name=f"b{i}", paths=[f"/b{i}"], service={"id": svc["id"]})
                                           for i in range(1100)])
    assert await feed.refresh()
    snap = feed.holder.current
    assert feed.reloads == 0 and len(snap.index("routes", "name")) == 1101
    assert snap.router.match("GET", None, "/b1099") is not None
