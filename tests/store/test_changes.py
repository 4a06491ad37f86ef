"""Change events: every write records what it touched under the version it moved (store/changes.py)."""

from __future__ import annotations

from typing import Any

import pytest

from servegate.schema.errors import DaoError
from servegate.store import Store, open_store_url
from servegate.store import changes as ch


async def test_each_write_records_its_row_under_its_version(store: Store, make: Any) -> None:
    v0 = await store.config_version()
    bob = await store.insert("consumers", make("consumers", username="bob"))
    await store.update("consumers", dict(bob, custom_id="c-1"))
    await store.delete("consumers", {"id": bob["id"]})
    assert not await store.delete("consumers", {"id": bob["id"]})  # nothing deleted: no event, no version
    version, events = await store.changes_since(v0)
    assert version == v0 + 3 and events is not None
    assert [(e.version, e.entity, e.op, e.pk) for e in events] == [
        (v0 + 1, "consumers", "upsert", {"id": bob["id"]}),
        (v0 + 2, "consumers", "upsert", {"id": bob["id"]}),
        (v0 + 3, "consumers", "delete", {"id": bob["id"]}),
    ]
    # an event carries the stored row: decoded, it is what a read returned
    assert store.decode_row("consumers", events[1].row or {})["custom_id"] == "c-1"
    assert await store.changes_since(version) == (version, [])
    assert (await store.changes_since(v0 + 2))[1] == events[2:]


async def test_a_transaction_is_one_version_with_every_row(store: Store, make: Any) -> None:
    v0 = await store.config_version()
    async with store.transaction():
        bob = await store.insert("consumers", make("consumers", username="bob"))
        creds = [await store.insert("keyauth_credentials", make("keyauth_credentials", consumer={"id": bob["id"]},
                                                                 key=f"k{i}")) for i in range(3)]
    version, events = await store.changes_since(v0)
    assert version == v0 + 1 and events is not None
    assert [(e.version, e.entity, e.pk) for e in events] == [
        (v0 + 1, "consumers", {"id": bob["id"]}),
        *((v0 + 1, "keyauth_credentials", {"id": c["id"]}) for c in creds),
    ]


async def test_a_bulk_write_is_one_reload_event_per_entity(store: Store, make: Any) -> None:
    v0 = await store.config_version()
    consumers = [make("consumers", username=f"u{i}") for i in range(ch.MAX_ROW_EVENTS + 1)]
    async with store.transaction():
        assert await store.insert_many("consumers", consumers) == len(consumers)
        await store.insert("keyauth_credentials", make("keyauth_credentials", consumer={"id": consumers[0]["id"]},
                                                       key="k"))
    version, events = await store.changes_since(v0)
    assert version == v0 + 1 and events is not None
    assert [(e.entity, e.op) for e in events] == [("keyauth_credentials", "upsert"), ("consumers", "reload")]
    assert len(await store.all("consumers")) == len(consumers)


async def test_insert_many_reports_the_failing_row_and_keeps_nothing(store: Store, make: Any) -> None:
    await store.insert("consumers", make("consumers", username="taken"))
    v0 = await store.config_version()
    rows = [make("consumers", username="new-1"), make("consumers", username="taken")]
    with pytest.raises(DaoError) as failed:
        await store.insert_many("consumers", rows)
    assert failed.value.message == "UNIQUE violation detected on '{username=\"taken\"}'"
    assert await store.select_by("consumers", "username", "new-1") is None
    assert await store.config_version() == v0


async def test_a_hole_in_the_events_asks_for_a_full_reload(store: Store, store_url: str, make: Any) -> None:
    v0 = await store.config_version()
    for i in range(3):
        await store.insert("consumers", make("consumers", username=f"u{i}"))
    async with store.backend.write() as conn:  # as pruning would, while a reader lagged
        await conn.execute(f'DELETE FROM "config_changes" WHERE "version" = {v0 + 1}')
    assert await store.changes_since(v0) == (v0 + 3, None)
    assert (await store.changes_since(v0 + 1))[1] is not None
    # a reader ahead of the database (it was reset under it) reloads too
    assert await store.changes_since(v0 + 10) == (v0 + 3, None)
    # another node reads the same events
    other = open_store_url(store_url)
    await other.connect()
    try:
        assert await other.changes_since(v0 + 1) == await store.changes_since(v0 + 1)
    finally:
        await other.close()


async def test_old_events_are_pruned_by_writers(store: Store, make: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(ch, "PRUNE_EVERY", 2)
    monkeypatch.setattr(ch, "RETENTION_S", -1.0)  # everything already written is old enough
    v0 = await store.config_version()
    for i in range(4):
        await store.insert("consumers", make("consumers", username=f"u{i}"))
    version, events = await store.changes_since(v0)
    assert version == v0 + 4 and events is None
    async with store.backend.read() as conn:
        left = await conn.fetch('SELECT "version" FROM "config_changes"')
    assert len(left) < 4
