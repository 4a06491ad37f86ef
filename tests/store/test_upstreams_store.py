"""upstreams and targets in the store: core migration 002 (fresh and upgraded alike), the (upstream, target)
uniqueness, the cascade from an upstream to its targets, millisecond timestamps, on both databases."""

from __future__ import annotations

from typing import Any

import pytest

from servegate.schema.entities import declared
from servegate.schema.errors import DaoError
from servegate.schema.upstreams import TARGETS, UPSTREAMS
from servegate.schema.validate import process_input
from servegate.store import MIGRATIONS, Store, migrations_cli, open_store_url
from servegate.store.catalog import read_catalogue, schema_drift


def _upstream(name: str = "u.test", **kw: Any) -> dict[str, Any]:
    return process_input(UPSTREAMS, {"name": name, **kw}, op="insert")


def _target(upstream: dict[str, Any], target: str, **kw: Any) -> dict[str, Any]:
    return process_input(TARGETS, {"upstream": {"id": upstream["id"]}, "target": target, **kw}, op="insert")


def test_migration_002_is_the_last_core_one() -> None:
    assert [m.name for m in MIGRATIONS] == ["000_base", "001_config_changes", "002_upstreams_targets"]


async def test_upgrade_from_001_reaches_the_fresh_schema(store_url: str, make: Any) -> None:
    fresh_store = open_store_url(store_url)
    await fresh_store.connect()
    try:
        await fresh_store.bootstrap()
        fresh = await read_catalogue(fresh_store)
        assert await schema_drift(fresh_store, fresh) == []
        assert {"upstreams", "targets"} <= set(fresh)
        assert await fresh_store.reset()
    finally:
        await fresh_store.close()

    # a database of the previous release: core 000 and 001 (and key-auth), with a service in it
    older = Store(open_store_url(store_url).backend, migrations=[*MIGRATIONS[:2]])
    await older.connect()
    try:
        await older.bootstrap()
        await older.insert("services", make("services", host="h.test", name="kept"))
        assert "upstreams" not in await read_catalogue(older)
    finally:
        await older.close()
    store = open_store_url(store_url)
    await store.connect()
    try:
        assert (await store.state()).new == ["002_upstreams_targets"]
        code, lines = await migrations_cli(store, "up")
        assert code == 0 and "core migrated up to: 002_upstreams_targets (executed)" in lines
        upgraded = await read_catalogue(store)
        assert upgraded == fresh
        assert await schema_drift(store, upgraded) == []
        assert (await store.select_by("services", "name", "kept")) is not None
        up = await store.insert("upstreams", _upstream())
        assert (await store.select("upstreams", {"id": up["id"]})) == up
    finally:
        await store.reset()
        await store.close()


async def test_rows_round_trip(store: Store) -> None:
    up = await store.insert("upstreams", _upstream(healthchecks={"active": {"healthy": {"interval": 2.5}}},
                                                    tags=["a", "b"]))
    got = await store.select("upstreams", {"id": up["id"]})
    assert got == up
    assert got is not None and got["healthchecks"]["active"]["healthy"]["interval"] == 2.5
    assert got["healthchecks"]["passive"]["unhealthy"]["http_statuses"] == [429, 500, 503]
    assert (got["use_srv_name"], got["retry_on_overload"], got["load_factor"]) == (False, True, 0.25)
    t = await store.insert("targets", _target(up, "10.0.0.1"))
    row = await store.select("targets", {"id": t["id"]})
    assert row == t and row is not None
    assert row["target"] == "10.0.0.1:8000" and row["upstream"] == {"id": up["id"]}
    # seconds with a millisecond fraction, kept as such by both databases
    assert isinstance(row["created_at"], float) and round(row["created_at"], 3) == row["created_at"]


async def test_one_row_per_upstream_and_target(store: Store) -> None:
    a = await store.insert("upstreams", _upstream("a.test"))
    b = await store.insert("upstreams", _upstream("b.test"))
    await store.insert("targets", _target(a, "h.test:80"))
    await store.insert("targets", _target(b, "h.test:80"))  # another upstream: fine
    with pytest.raises(DaoError) as exc:
        await store.insert("targets", _target(a, "h.test:80", weight=5))
    assert exc.value.code == 5 and exc.value.http_status == 409
    assert exc.value.fields == {"upstream": {"id": a["id"]}, "target": "h.test:80"}
    with pytest.raises(DaoError) as exc:
        await store.insert("upstreams", _upstream("a.test"))
    assert exc.value.code == 5 and exc.value.fields == {"name": "a.test"}


async def test_targets_need_their_upstream_and_go_with_it(store: Store) -> None:
    ghost = _upstream("ghost.test")
    with pytest.raises(DaoError) as exc:
        await store.insert("targets", _target(ghost, "h.test"))
    assert exc.value.code == 4 and exc.value.fields == {"upstream": {"id": ghost["id"]}}
    up = await store.insert("upstreams", _upstream())
    for i in range(3):
        await store.insert("targets", _target(up, f"h{i}.test"))
    other = await store.insert("upstreams", _upstream("other.test"))
    kept = await store.insert("targets", _target(other, "h0.test"))
    assert await store.delete("upstreams", {"id": up["id"]})
    assert await store.all("targets") == [kept]


def test_declared_after_the_core_entities() -> None:
    names = list(declared())
    assert names.index("upstreams") < names.index("targets")
    assert names[:6] == ["services", "routes", "consumers", "plugins", "upstreams", "targets"]
