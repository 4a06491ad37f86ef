"""Frozen migrations: a fresh bootstrap and an upgrade from every earlier migration state reach the same
catalogue, and the declarations agree with it (a field declared without its migration is caught)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from servegate.schema.entities import declared
from servegate.schema.fields import Entity, Field
from servegate.store import MIGRATIONS, Migration, Store, migrations_cli, open_store_url, sql
from servegate.store.catalog import read_catalogue, schema_drift
from servegate.store.migrations import register_migrations, registered_migrations, unregister_migrations

TEST_SUBSYSTEM = "sg-test"

# A later release: consumers gain a unique `email`, and a new `widgets` table that references consumers.
_WIDGETS = {
    "sqlite": ('CREATE TABLE "widgets" ("id" TEXT NOT NULL, "consumer_id" TEXT, "size" INTEGER, '
               'CONSTRAINT "widgets_pkey" PRIMARY KEY ("id"), CONSTRAINT "widgets_consumer_id_fkey" '
               'FOREIGN KEY ("consumer_id") REFERENCES "consumers" ("id") ON DELETE CASCADE)'),
    "postgres": ('CREATE TABLE "widgets" ("id" TEXT COLLATE "C" NOT NULL, "consumer_id" TEXT, "size" BIGINT, '
                 'CONSTRAINT "widgets_pkey" PRIMARY KEY ("id"), CONSTRAINT "widgets_consumer_id_fkey" '
                 'FOREIGN KEY ("consumer_id") REFERENCES "consumers" ("id") ON DELETE CASCADE)'),
}
_EMAIL = [
    'ALTER TABLE "consumers" ADD COLUMN "email" TEXT',
    # SQLite cannot add a UNIQUE column: a unique index does the same job on both
    'CREATE UNIQUE INDEX "consumers_email_key" ON "consumers" ("email")',
]
_INDEX = 'CREATE INDEX "widgets_consumer_id_idx" ON "widgets" ("consumer_id")'

TEST_MIGRATIONS = (
    Migration("001_consumers_email", up=sql(sqlite=_EMAIL, postgres=_EMAIL)),
    Migration("002_widgets", up=sql(sqlite=[_WIDGETS["sqlite"], _INDEX], postgres=[_WIDGETS["postgres"], _INDEX]),
              tables=("widgets",)),
)

WIDGETS = Entity(
    name="widgets",
    fields=(
        ("id", Field("string", uuid=True, auto=True)),
        ("consumer", Field("foreign", reference="consumers", on_delete="cascade")),
        ("size", Field("integer")),
    ),
)


def _newer_entities() -> dict[str, Entity]:
    """The declarations of that later release."""
    entities = dict(declared())
    consumers = entities["consumers"]
    entities["consumers"] = dataclasses.replace(
        consumers, fields=(*consumers.fields, ("email", Field("string", unique=True)))
    )
    entities["widgets"] = WIDGETS
    return entities


@pytest.fixture
def test_migrations() -> Iterator[list[Migration]]:
    """The test release's migrations, registered only for this test (after the bundled plugins' ones)."""
    registered_migrations()
    register_migrations(TEST_SUBSYSTEM, TEST_MIGRATIONS)
    try:
        yield registered_migrations()
    finally:
        unregister_migrations(TEST_SUBSYSTEM)


def _store(url: str, **kw: Any) -> Store:
    return open_store_url(url) if not kw else Store(open_store_url(url).backend, **kw)


async def _fresh_catalogue(url: str, entities: dict[str, Entity]) -> dict[str, Any]:
    store = _store(url, entities=entities)
    await store.connect()
    try:
        await store.bootstrap()
        cat = await read_catalogue(store)
        assert await schema_drift(store, cat) == []
        assert await store.reset()
        assert await read_catalogue(store) == {}
        return cat
    finally:
        await store.close()


async def test_registered_migrations_are_grouped_by_subsystem(test_migrations: list[Migration]) -> None:
    assert [(m.subsystem, m.name) for m in test_migrations] == [
        ("core", "000_base"),
        ("core", "001_config_changes"),
        ("core", "002_upstreams_targets"),
        ("key-auth", "000_base_key_auth"),
        (TEST_SUBSYSTEM, "001_consumers_email"),
        (TEST_SUBSYSTEM, "002_widgets"),
    ]


async def test_fresh_bootstrap_and_every_upgrade_reach_one_schema(
    store_url: str, test_migrations: list[Migration], make: Any
) -> None:
    entities = _newer_entities()
    fresh = await _fresh_catalogue(store_url, entities)
    assert "widgets" in fresh and any(c[0] == "email" for c in fresh["consumers"]["columns"])

    # every earlier release: the database ran the first k migrations, then the newer release runs `up`
    for k in range(1, len(test_migrations)):
        older = _store(store_url, migrations=test_migrations[:k])
        await older.connect()
        try:
            await older.bootstrap()
            await older.insert("consumers", make("consumers", username="bob"))
        finally:
            await older.close()
        newer = _store(store_url, entities=entities)
        await newer.connect()
        try:
            code, _ = await migrations_cli(newer, "list")
            assert code == 5, k
            code, lines = await migrations_cli(newer, "up")
            assert code == 0, lines
            assert (await newer.state()).new == []
            cat = await read_catalogue(newer)
            assert cat == fresh, f"upgrade from {[m.key for m in test_migrations[:k]]} differs"
            assert await schema_drift(newer, cat) == []
            bob = await newer.select_by("consumers", "username", "bob")
            assert bob is not None and bob["email"] is None
            assert await newer.reset()
        finally:
            await newer.close()


async def test_database_from_before_plugin_owned_entities_upgrades_in_place(store_url: str, make: Any) -> None:
    # core's frozen 000_base alone: what a database bootstrapped before key-auth owned its table holds
    old = _store(store_url, migrations=list(MIGRATIONS[:1]))
    await old.connect()
    try:
        await old.bootstrap()
        bob = await old.insert("consumers", make("consumers", username="bob"))
        cred = await old.insert("keyauth_credentials", make("keyauth_credentials", consumer={"id": bob["id"]},
                                                            key="k-1", tags=None, cache_key=None))
        before = await read_catalogue(old)
    finally:
        await old.close()
    store = open_store_url(store_url)
    await store.connect()
    try:
        st = await store.state()
        assert (st.executed, st.new, st.pending) == (["000_base", "key-auth:000_base_key_auth"],
                                                     ["001_config_changes", "002_upstreams_targets"], [])
        assert (await migrations_cli(store, "up"))[0] == 0
        assert await migrations_cli(store, "up") == (0, ["Database is already up-to-date"])
        assert (await migrations_cli(store, "list"))[0] == 0
        after = await read_catalogue(store)
        # what 000_base made is kept as it was; 001 added the change events table, 002 upstreams and targets
        added = {"config_changes", "upstreams", "targets"}
        assert {t: v for t, v in after.items() if t not in added} == before
        assert await schema_drift(store) == []
        assert await store.select_by("keyauth_credentials", "key", "k-1") == cred
    finally:
        await store.reset()
        await store.close()
    # and it is the schema a fresh bootstrap of today's release makes
    assert await _fresh_catalogue(store_url, dict(declared())) == after


async def test_declared_field_without_migration_is_detected(store_url: str) -> None:
    store = _store(store_url, entities=_newer_entities())  # declares consumers.email and widgets...
    await store.connect()
    try:
        await store.bootstrap()  # ...but runs only the shipped migrations
        drift = await schema_drift(store)
        assert any(p.startswith('consumers.email: column missing') and 'ADD COLUMN "email"' in p for p in drift)
        assert any(p.startswith("consumers: no UNIQUE (email)") for p in drift)
        assert any(p.startswith("widgets: table missing") and 'CREATE TABLE IF NOT EXISTS "widgets"' in p
                   for p in drift)
    finally:
        await store.reset()
        await store.close()


async def test_shipped_declarations_match_the_migrated_schema(store: Store) -> None:
    # what stops a field being declared without its migration
    assert await schema_drift(store) == []
