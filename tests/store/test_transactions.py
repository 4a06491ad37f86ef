"""store.transaction(): writes spanning entities commit together or not at all, and move the config version
(and so the snapshot) once per batch."""

from __future__ import annotations

from typing import Any

import pytest

from servegate.admin import crud
from servegate.admin.context import AppState, Ctx
from servegate.admin.http import Request
from servegate.schema.entities import declared
from servegate.schema.errors import DaoError
from servegate.snapshot import SnapshotHolder, build_snapshot
from servegate.snapshot.feed import SnapshotFeed
from servegate.store import Store, open_store_url


class Boom(Exception):
    pass


async def test_batch_commits_once_with_one_version_bump(store: Store, store_url: str, make: Any) -> None:
    v0 = await store.config_version()
    holder = SnapshotHolder(build_snapshot({}, v0, with_plugins=False), with_plugins=False)
    other = open_store_url(store_url)  # another node / worker on the same database
    await other.connect()
    try:
        async with store.transaction():
            bob = await store.insert("consumers", make("consumers", username="bob"))
            for i in range(5):
                await store.insert("keyauth_credentials", make("keyauth_credentials", consumer={"id": bob["id"]},
                                                                key=f"k{i}", tags=None))
            await store.update("consumers", dict(bob, custom_id="c-bob"))
            # the transaction reads its own writes
            assert len(await store.all("keyauth_credentials")) == 5
            assert (await store.select_by("consumers", "username", "bob"))["custom_id"] == "c-bob"
        assert await store.config_version() == v0 + 1
        assert await other.config_version() == v0 + 1
        assert len(await other.all("keyauth_credentials")) == 5
        # one version step: one rebuild, however many rows the batch wrote
        feed = SnapshotFeed(other, holder, 1.0)
        assert await feed.refresh() is True
        assert await feed.refresh() is False
    finally:
        await other.close()


async def test_exception_inside_stores_nothing(store: Store, make: Any) -> None:
    v0 = await store.config_version()
    with pytest.raises(Boom):
        async with store.transaction():
            bob = await store.insert("consumers", make("consumers", username="bob"))
            await store.insert("keyauth_credentials", make("keyauth_credentials", consumer={"id": bob["id"]},
                                                            key="k1", tags=None))
            raise Boom
    assert await store.all("consumers") == [] and await store.all("keyauth_credentials") == []
    assert await store.config_version() == v0
    # the store is usable afterwards, outside and inside a transaction
    await store.insert("consumers", make("consumers", username="eve"))
    async with store.transaction():
        await store.insert("consumers", make("consumers", username="ann"))
    assert sorted(r["username"] for r in await store.all("consumers")) == ["ann", "eve"]


async def test_failed_write_inside_is_undone_alone(store: Store, make: Any) -> None:
    async with store.transaction():
        await store.insert("consumers", make("consumers", username="bob"))
        with pytest.raises(DaoError) as ei:
            await store.insert("consumers", make("consumers", username="bob"))
        assert ei.value.code == 5  # unique violation, mapped as outside a transaction
        async with store.transaction():  # nested: joins the outer one
            await store.insert("consumers", make("consumers", username="eve"))
    assert sorted(r["username"] for r in await store.all("consumers")) == ["bob", "eve"]


async def test_no_write_no_bump(store: Store) -> None:
    v0 = await store.config_version()
    async with store.transaction():
        assert await store.all("consumers") == []
    assert await store.config_version() == v0


def _ctx(store: Store, calls: list[int]) -> Ctx:
    async def on_change() -> None:
        calls.append(await store.config_version())

    state = AppState(store=store, settings=None, on_change=on_change, node_id="n1")
    return Ctx(Request("POST", "/consumers", "", {}), state, {}, {})


async def test_admin_batch_refreshes_the_snapshot_once(store: Store) -> None:
    consumers = declared()["consumers"]
    calls: list[int] = []
    ctx = _ctx(store, calls)
    v0 = await store.config_version()
    async with ctx.transaction():
        for i in range(4):
            await crud.insert(ctx, consumers, {"username": f"u{i}"})
        assert calls == []  # nothing committed yet: no refresh
    assert calls == [v0 + 1]

    calls.clear()
    with pytest.raises(Boom):
        async with ctx.transaction():
            await crud.insert(ctx, consumers, {"username": "gone"})
            raise Boom
    assert calls == []
    assert await store.select_by("consumers", "username", "gone") is None
    # outside a batch every write refreshes, as before
    await crud.insert(ctx, consumers, {"username": "single"})
    assert calls == [v0 + 2]
