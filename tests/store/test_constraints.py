"""Uniqueness, foreign keys and cascades are enforced by the database and mapped to Kong's errors."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from servegate.schema.errors import DaoError
from servegate.store import Store


async def test_unique_field_conflict(store: Store, make: Any) -> None:
    await store.insert("consumers", make("consumers", username="bob"))
    with pytest.raises(DaoError) as ei:
        await store.insert("consumers", make("consumers", username="bob"))
    e = ei.value
    assert (e.code, e.http_status) == (5, 409)
    assert e.fields == {"username": "bob"}
    assert e.message == "UNIQUE violation detected on '{username=\"bob\"}'"
    # NULL is not a value for a plain unique field: many consumers without custom_id are fine
    await store.insert("consumers", make("consumers", username="carol"))


async def test_unique_conflict_on_update_and_upsert(store: Store, make: Any) -> None:
    await store.insert("services", make("services", name="a", host="h"))
    b = await store.insert("services", make("services", name="b", host="h"))
    for op in (store.update, store.upsert):
        with pytest.raises(DaoError) as ei:
            await op("services", dict(b, name="a"))
        assert ei.value.code == 5 and ei.value.fields == {"name": "a"}
    assert (await store.select("services", {"id": b["id"]}))["name"] == "b"


async def test_primary_key_conflict(store: Store, make: Any) -> None:
    c = await store.insert("consumers", make("consumers", username="x"))
    with pytest.raises(DaoError) as ei:
        await store.insert("consumers", make("consumers", id=c["id"], username="y"))
    assert ei.value.code == 3
    assert ei.value.fields == {"id": c["id"]}
    assert ei.value.message == f"primary key violation on key '{{id=\"{c['id']}\"}}'"


async def test_plugin_cache_key_treats_null_as_a_value(store: Store, make: Any) -> None:
    await store.insert("plugins", make("plugins", name="key-auth", config={}))
    with pytest.raises(DaoError) as ei:
        await store.insert("plugins", make("plugins", name="key-auth", config={}))
    assert ei.value.code == 5
    assert ei.value.fields == {"name": "key-auth", "route": None, "service": None, "consumer": None}
    assert ei.value.message == (
        "UNIQUE violation detected on '{consumer=null,name=\"key-auth\",route=null,service=null}'"
    )

    svc = await store.insert("services", make("services", host="h"))
    await store.insert("plugins", make("plugins", name="key-auth", service={"id": svc["id"]}, config={}))
    await store.insert("plugins", make("plugins", name="cors", service={"id": svc["id"]}, config={}))
    with pytest.raises(DaoError) as ei:
        await store.insert("plugins", make("plugins", name="key-auth", service={"id": svc["id"]}, config={}))
    assert ei.value.fields == {"name": "key-auth", "route": None, "service": {"id": svc["id"]}, "consumer": None}


async def test_instance_name_unique(store: Store, make: Any) -> None:
    await store.insert("plugins", make("plugins", name="cors", instance_name="i1", config={}))
    with pytest.raises(DaoError) as ei:
        await store.insert("plugins", make("plugins", name="key-auth", instance_name="i1", config={}))
    assert ei.value.code == 5 and ei.value.fields == {"instance_name": "i1"}


async def test_foreign_key_to_missing_parent(store: Store, make: Any) -> None:
    missing = str(uuid.uuid4())
    with pytest.raises(DaoError) as ei:
        await store.insert("routes", make("routes", paths=["/"], service={"id": missing}))
    e = ei.value
    assert e.code == 4
    assert e.fields == {"service": {"id": missing}}
    assert e.message == f"the foreign key '{{id=\"{missing}\"}}' does not reference an existing 'services' entity."

    c = await store.insert("consumers", make("consumers", username="u"))
    with pytest.raises(DaoError) as ei:
        await store.insert(
            "plugins", make("plugins", name="p", consumer={"id": c["id"]}, route={"id": missing}, config={})
        )
    assert ei.value.code == 4 and ei.value.fields == {"route": {"id": missing}}
    assert await store.all("plugins") == []


async def test_delete_of_referenced_service_is_restricted(store: Store, make: Any) -> None:
    svc = await store.insert("services", make("services", host="h"))
    route = await store.insert("routes", make("routes", paths=["/"], service={"id": svc["id"]}))
    version = await store.config_version()
    with pytest.raises(DaoError) as ei:
        await store.delete("services", {"id": svc["id"]})
    e = ei.value
    assert e.code == 4 and e.http_status == 400
    assert e.message == "an existing 'routes' entity references this 'services' entity"
    assert e.fields == {"@referenced_by": "routes"}
    assert await store.select("services", {"id": svc["id"]}) is not None
    assert await store.config_version() == version

    assert await store.delete("routes", {"id": route["id"]})
    assert await store.delete("services", {"id": svc["id"]})


async def test_cascades(store: Store, make: Any) -> None:
    consumer = await store.insert("consumers", make("consumers", username="bob"))
    cred = await store.insert("keyauth_credentials", make("keyauth_credentials", key="k1", consumer={"id": consumer["id"]}))
    cplug = await store.insert("plugins", make("plugins", name="rl", consumer={"id": consumer["id"]}, config={}))
    svc = await store.insert("services", make("services", host="h"))
    route = await store.insert("routes", make("routes", paths=["/"], service={"id": svc["id"]}))
    rplug = await store.insert("plugins", make("plugins", name="rl", route={"id": route["id"]}, config={}))
    splug = await store.insert("plugins", make("plugins", name="rl", service={"id": svc["id"]}, config={}))
    gplug = await store.insert("plugins", make("plugins", name="rl", config={}))

    assert await store.delete("consumers", {"id": consumer["id"]})
    assert await store.select("keyauth_credentials", {"id": cred["id"]}) is None
    assert await store.select("plugins", {"id": cplug["id"]}) is None
    assert await store.select_by("keyauth_credentials", "key", "k1") is None

    assert await store.delete("routes", {"id": route["id"]})
    assert await store.select("plugins", {"id": rplug["id"]}) is None
    assert await store.select("plugins", {"id": splug["id"]}) is not None

    assert await store.delete("services", {"id": svc["id"]})
    assert [p["id"] for p in await store.all("plugins")] == [gplug["id"]]


async def test_credential_key_unique(store: Store, make: Any) -> None:
    c = await store.insert("consumers", make("consumers", username="bob"))
    await store.insert("keyauth_credentials", make("keyauth_credentials", key="k", consumer={"id": c["id"]}))
    with pytest.raises(DaoError) as ei:
        await store.insert("keyauth_credentials", make("keyauth_credentials", key="k", consumer={"id": c["id"]}))
    assert ei.value.code == 5 and ei.value.fields == {"key": "k"}
