"""ttl expiry of key-auth credentials and the config version counter."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from servegate.schema.errors import DaoError
from servegate.store import Store


async def test_ttl_rows_expire(store: Store, make: Any) -> None:
    c = await store.insert("consumers", make("consumers", username="bob"))
    short = await store.insert(
        "keyauth_credentials", make("keyauth_credentials", key="short", consumer={"id": c["id"]}, ttl=1)
    )
    assert short["ttl"] in (0, 1)
    keep = await store.insert("keyauth_credentials", make("keyauth_credentials", key="keep", consumer={"id": c["id"]}))
    assert "ttl" not in keep
    long = await store.insert(
        "keyauth_credentials", make("keyauth_credentials", key="long", consumer={"id": c["id"]}, ttl=100)
    )
    assert 98 <= long["ttl"] <= 100
    assert (await store.select_by("keyauth_credentials", "key", "short"))["key"] == "short"

    await asyncio.sleep(1.1)
    assert await store.select("keyauth_credentials", {"id": short["id"]}) is None
    assert await store.select_by("keyauth_credentials", "key", "short") is None
    keys = sorted(r["key"] for r in await store.all("keyauth_credentials"))
    assert keys == ["keep", "long"]
    rows, _ = await store.page("keyauth_credentials")
    assert sorted(r["key"] for r in rows) == ["keep", "long"]
    # an expired row is gone for updates and deletes, and no longer holds its unique key
    with pytest.raises(DaoError) as ei:
        await store.update("keyauth_credentials", dict(short, ttl=None))
    assert ei.value.code == 6
    assert await store.delete("keyauth_credentials", {"id": short["id"]}) is False
    again = await store.insert("keyauth_credentials", make("keyauth_credentials", key="short", consumer={"id": c["id"]}))
    assert "ttl" not in again


async def test_update_keeps_or_resets_ttl(store: Store, make: Any) -> None:
    c = await store.insert("consumers", make("consumers", username="bob"))
    cred = await store.insert(
        "keyauth_credentials", make("keyauth_credentials", key="k", consumer={"id": c["id"]}, ttl=50)
    )
    base = {k: v for k, v in cred.items() if k != "ttl"}
    kept = await store.update("keyauth_credentials", dict(base, tags=["t"]))
    assert 48 <= kept["ttl"] <= 50 and kept["tags"] == ["t"]
    reset = await store.update("keyauth_credentials", dict(base, ttl=500))
    assert 498 <= reset["ttl"] <= 500
    cleared = await store.update("keyauth_credentials", dict(base, ttl=None))
    assert "ttl" not in cleared


async def test_config_version_bumps_on_every_write(store: Store, make: Any) -> None:
    v0 = await store.config_version()
    c = await store.insert("consumers", make("consumers", username="bob"))
    assert await store.config_version() == v0 + 1
    await store.update("consumers", dict(c, custom_id="x"))
    assert await store.config_version() == v0 + 2
    await store.upsert("consumers", dict(c, custom_id="y"))
    assert await store.config_version() == v0 + 3
    with pytest.raises(DaoError):
        await store.insert("consumers", make("consumers", username="bob"))
    assert await store.config_version() == v0 + 3  # failed writes roll the bump back
    assert await store.delete("consumers", {"id": c["id"]})
    assert await store.config_version() == v0 + 4
    assert not await store.delete("consumers", {"id": c["id"]})
    assert await store.config_version() == v0 + 4


async def test_config_version_seen_by_another_connection(store_url: str, store: Store, make: Any) -> None:
    from servegate.store import open_store_url

    other = open_store_url(store_url)
    await other.connect()
    try:
        before = await other.config_version()
        await store.insert("consumers", make("consumers", username="bob"))
        assert await other.config_version() == before + 1
        assert (await other.select_by("consumers", "username", "bob")) is not None
    finally:
        await other.close()
