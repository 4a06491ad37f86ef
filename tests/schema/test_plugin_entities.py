"""Plugin-owned entities and migrations (Kong's daos.lua and migrations/): declared on the plugin class,
registered with it, stored, migrated, indexed by the snapshot and served by the generated Admin endpoints;
the core names no plugin's entity."""

from __future__ import annotations

import pathlib
import re
from collections.abc import Iterator
from typing import Any

import pytest

import servegate
from servegate import plugins
from servegate.plugins.base import Plugin
from servegate.schema.entities import declared, unregister_entity
from servegate.schema.fields import Entity, Field
from servegate.schema.plugins import unregister_plugin
from servegate.schema.validate import process_input
from servegate.snapshot import build_snapshot, entity_names
from servegate.store import Migration, open_store_url, sql, unregister_migrations
from servegate.store.catalog import schema_drift

NOTES = Entity(
    name="sgtest_notes",
    endpoint_key="title",
    admin_name="sgtest-notes",
    nested_name="notes",
    fields=(
        ("id", Field("string", uuid=True, auto=True)),
        ("created_at", Field("integer", auto=True, timestamp=True)),
        ("updated_at", Field("integer", auto=True, timestamp=True)),
        ("consumer", Field("foreign", reference="consumers", required=True, on_delete="cascade")),
        ("title", Field("string", unique=True, required=True)),
    ),
)
_DDL = ('CREATE TABLE "sgtest_notes" ("id" TEXT{c} NOT NULL, "created_at" {i}, "updated_at" {i}, '
        '"consumer_id" TEXT, "title" TEXT, CONSTRAINT "sgtest_notes_pkey" PRIMARY KEY ("id"), '
        'CONSTRAINT "sgtest_notes_title_key" UNIQUE ("title"), CONSTRAINT "sgtest_notes_consumer_id_fkey" '
        'FOREIGN KEY ("consumer_id") REFERENCES "consumers" ("id") ON DELETE CASCADE)')
_IDX = 'CREATE INDEX "sgtest_notes_consumer_id_idx" ON "sgtest_notes" ("consumer_id")'


class NotesPlugin(Plugin):
    name = "sgtest-notes"
    PRIORITY = 1
    VERSION = "1.0.0"
    config_schema = Field("record", fields=())
    daos = (NOTES,)
    migrations = (
        Migration("000_base_sgtest_notes", up=sql(
            sqlite=[_DDL.format(c="", i="INTEGER"), _IDX],
            postgres=[_DDL.format(c=' COLLATE "C"', i="BIGINT"), _IDX],
        )),
    )


@pytest.fixture
def notes_plugin() -> Iterator[None]:
    plugins.load_all()
    plugins.register(NotesPlugin)
    try:
        yield
    finally:
        plugins._HANDLERS.pop(NotesPlugin.name, None)
        unregister_plugin(NotesPlugin.name)
        unregister_entity(NOTES.name)
        unregister_migrations(NotesPlugin.name)


def test_key_auth_declares_its_credentials() -> None:
    handler = plugins.get_handler("key-auth")
    assert handler is not None
    assert [e.name for e in handler.daos] == ["keyauth_credentials"]
    assert declared()["keyauth_credentials"] is handler.daos[0]
    assert [m.name for m in handler.migrations] == ["000_base_key_auth"]
    assert "keyauth_credentials" in entity_names()


def test_core_names_no_plugin_entity() -> None:
    # Only the plugin itself, and core's frozen 000_base (history: it made the table before key-auth owned
    # it), may name key-auth's entity.
    root = pathlib.Path(servegate.__file__).parent
    allowed = {root / "plugins" / "key_auth.py", root / "store" / "core_migrations.py"}
    named = [
        str(p.relative_to(root)) for p in root.rglob("*.py")
        if p not in allowed and re.search(r"keyauth|key-auths|credentials_by_key", p.read_text(), re.I)
    ]
    assert named == []


async def test_plugin_entity_is_migrated_stored_and_indexed(notes_plugin: None, tmp_path: Any) -> None:
    assert list(declared())[-1] == NOTES.name
    store = open_store_url(f"sqlite:///{tmp_path}/notes.db")
    await store.connect()
    try:
        run = await store.bootstrap()
        assert ("sgtest-notes", "000_base_sgtest_notes", "executed") in run.ran
        assert await schema_drift(store) == []
        consumers = declared()["consumers"]
        bob = await store.insert("consumers", process_input(consumers, {"username": "bob"}, op="insert"))
        note = await store.insert(NOTES.name, process_input(NOTES, {"consumer": {"id": bob["id"]}, "title": "t1"},
                                                            op="insert"))
        rows = {name: await store.all(name) for name in entity_names()}
        snap = build_snapshot(rows, with_plugins=False)
        assert snap.index(NOTES.name, "title")["t1"] == note
        assert snap.index(NOTES.name, "id")[note["id"]] == note
        assert await store.delete("consumers", {"id": bob["id"]})
        assert await store.all(NOTES.name) == []  # the declared cascade is a real FOREIGN KEY
    finally:
        await store.reset()
        await store.close()


def test_plugin_entity_gets_generated_endpoints(notes_plugin: None) -> None:
    from servegate.admin.endpoints import add_entity_endpoints
    from servegate.admin.routing import PathTable

    table = PathTable()
    add_entity_endpoints(table)
    paths = table.paths()
    for path in ("/sgtest-notes", "/sgtest-notes/{sgtest_notes}", "/consumers/{consumers}/notes",
                 "/consumers/{consumers}/notes/{sgtest_notes}", "/sgtest-notes/{sgtest_notes}/consumer"):
        assert path in paths, path
