"""CRUD round trips through the generic DAO, on both databases."""

from __future__ import annotations

import uuid
from typing import Any

from servegate.store import Store, open_store_url


async def test_insert_select_round_trip_keeps_types(store: Store, make: Any) -> None:
    svc = make(
        "services",
        name="svc-1",
        host="upstream.test",
        port=8080,
        protocol="http",
        path="/v1",
        retries=5,
        connect_timeout=60000,
        tags=["b", "a"],
        ca_certificates=[],
        enabled=False,
    )
    stored = await store.insert("services", svc)
    assert stored == svc
    assert await store.select("services", {"id": svc["id"]}) == svc
    got = await store.select_by("services", "name", "svc-1")
    assert got is not None and got["enabled"] is False and got["tags"] == ["b", "a"]
    assert got["ca_certificates"] == [] and got["port"] == 8080 and got["path"] == "/v1"
    assert await store.select("services", {"id": str(uuid.uuid4())}) is None
    assert await store.select_by("services", "name", "nope") is None


async def test_records_maps_and_foreign_keys_round_trip(store: Store, make: Any) -> None:
    svc = await store.insert("services", make("services", host="h"))
    route = make(
        "routes",
        name="r1",
        service={"id": svc["id"]},
        paths=["/a", "/b"],
        headers={"x-model": ["llama"]},
        protocols=["http", "https"],
        strip_path=True,
    )
    assert await store.insert("routes", route) == route
    plugin = make(
        "plugins",
        name="rate-limiting",
        route={"id": route["id"]},
        config={"minute": 5, "policy": "local", "redis": {"host": None, "port": 6379}},
        enabled=True,
    )
    stored = await store.insert("plugins", plugin)
    assert stored["config"] == plugin["config"]
    assert list(stored["config"]) == ["minute", "policy", "redis"]  # record field order survives
    assert stored["service"] is None and stored["route"] == {"id": route["id"]}


async def test_update_upsert_delete(store: Store, make: Any) -> None:
    c = await store.insert("consumers", make("consumers", username="bob"))
    c2 = dict(c, custom_id="cid", tags=["t"])
    assert await store.update("consumers", c2) == c2
    assert await store.select("consumers", {"id": c["id"]}) == c2

    # upsert replaces the whole row (username cleared) and creates missing rows
    replaced = dict(c2, username=None)
    assert await store.upsert("consumers", replaced) == replaced
    fresh = make("consumers", username="alice")
    assert await store.upsert("consumers", fresh) == fresh
    assert len(await store.all("consumers")) == 2

    assert await store.delete("consumers", {"id": c["id"]}) is True
    assert await store.select("consumers", {"id": c["id"]}) is None
    assert await store.delete("consumers", {"id": c["id"]}) is False


async def test_update_of_missing_row_is_not_found(store: Store, make: Any) -> None:
    from servegate.schema.errors import DaoError

    ghost = make("consumers", username="ghost")
    try:
        await store.update("consumers", ghost)
    except DaoError as e:
        assert e.code == 6
        assert e.fields == {"id": ghost["id"]}
    else:
        raise AssertionError("update of a missing row must fail")


async def test_data_survives_close_and_reopen(store_url: str, make: Any) -> None:
    s1 = open_store_url(store_url)
    await s1.connect()
    await s1.bootstrap()
    svc = await s1.insert("services", make("services", name="keep", host="h", tags=["x"]))
    v = await s1.config_version()
    await s1.close()

    s2 = open_store_url(store_url)
    await s2.connect()
    try:
        assert (await s2.state()).bootstrapped
        assert await s2.select_by("services", "name", "keep") == svc
        assert await s2.config_version() == v
    finally:
        await s2.close()
