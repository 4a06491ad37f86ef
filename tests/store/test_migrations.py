"""Migrations: bootstrap / list / up / finish / reset with Kong's messages and exit codes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from servegate.store import MIGRATIONS, Migration, Store, migrations_cli, open_store_url


async def test_cli_round_trip(raw_store: Store, make: Any) -> None:
    store = raw_store
    assert not (await store.state()).bootstrapped
    code, lines = await migrations_cli(store, "list")
    assert code == 3 and lines[0] == "Database needs bootstrapping or is older than Kong 1.0."
    code, lines = await migrations_cli(store, "up")
    assert code == 1 and lines[0].startswith("Cannot run migrations: Database needs bootstrapping")
    code, lines = await migrations_cli(store, "reset", yes=True)
    assert (code, lines) == (1, ["Database not bootstrapped, nothing to reset"])

    code, lines = await migrations_cli(store, "bootstrap")
    assert code == 0
    assert lines[0] == "Bootstrapping database..."
    assert "core migrated up to: 000_base (executed)" in lines
    assert lines[-1] == "Database is up-to-date"
    assert await migrations_cli(store, "bootstrap") == (0, ["Database already bootstrapped"])

    assert "migrating key-auth on database" in " ".join(lines)
    assert "key-auth migrated up to: 000_base_key_auth (executed)" in lines
    code, lines = await migrations_cli(store, "list")
    # Kong's layout: subsystem names right-aligned to the longest one
    assert code == 0 and lines == ["Executed migrations:",
                                   "    core: 000_base, 001_config_changes, 002_upstreams_targets",
                                   "key-auth: 000_base_key_auth"]
    assert await migrations_cli(store, "up") == (0, ["Database is already up-to-date"])
    assert await migrations_cli(store, "finish") == (0, ["No pending migrations to finish"])
    code, lines = await migrations_cli(store, "status")
    assert code == 0 and json.loads(lines[0]) == {
        "needs_bootstrap": False,
        "executed_migrations": {"core": ["000_base", "001_config_changes", "002_upstreams_targets"],
                                "key-auth": ["000_base_key_auth"]},
        "pending_migrations": {"core": [], "key-auth": []},
        "new_migrations": {"core": [], "key-auth": []},
    }

    await store.insert("consumers", make("consumers", username="bob"))
    assert await migrations_cli(store, "reset") == (
        1,
        ["not a tty: invoke 'reset' non-interactively with the --yes flag"],
    )
    assert (await store.state()).bootstrapped
    code, lines = await migrations_cli(store, "reset", yes=True)
    assert code == 0 and lines[-1] == "Database successfully reset"
    assert not (await store.state()).bootstrapped
    assert (await migrations_cli(store, "list"))[0] == 3

    # a fresh bootstrap after reset starts empty
    await migrations_cli(store, "bootstrap")
    assert await store.all("consumers") == []
    assert await store.config_version() == 0


async def test_bootstrap_force_resets(store: Store, make: Any) -> None:
    await store.insert("consumers", make("consumers", username="bob"))
    code, lines = await migrations_cli(store, "bootstrap", force=True)
    assert code == 0 and "Database successfully reset" in lines and "Bootstrapping database..." in lines
    assert await store.all("consumers") == []


async def _make_extra(store: Store, conn: Any) -> None:
    await conn.execute("CREATE TABLE extra_things (id TEXT PRIMARY KEY, legacy TEXT)")


async def _drop_legacy(store: Store, conn: Any) -> None:
    await conn.execute("INSERT INTO extra_things (id, legacy) VALUES ('finished', 'yes')")


@pytest.fixture
def with_001() -> list[Migration]:
    return [*MIGRATIONS, Migration("001_extra", up=_make_extra, teardown=_drop_legacy)]


async def test_new_migration_up_then_finish(store_url: str, store: Store, with_001: list[Migration]) -> None:
    # the database was bootstrapped with 000 only; a newer release ships 001
    newer = Store(open_store_url(store_url).backend, migrations=with_001)
    await newer.connect()
    try:
        code, lines = await migrations_cli(newer, "list")
        assert code == 5
        assert "New migrations available:" in lines and "core: 001_extra" in lines
        code, lines = await migrations_cli(newer, "up")
        assert code == 0
        assert "core migrated up to: 001_extra (pending)" in lines
        assert lines[-1] == "Database has pending migrations; run 'servegate migrations finish' when ready"
        st = await newer.state()
        assert (st.executed, st.pending, st.new) == ([m.key for m in MIGRATIONS], ["001_extra"], [])
        code, lines = await migrations_cli(newer, "list")
        assert code == 4 and "Pending migrations:" in lines
        code, lines = await migrations_cli(newer, "up")
        assert code == 1 and "pending migrations" in lines[0]

        code, lines = await migrations_cli(newer, "finish")
        assert code == 0 and "core migrated up to: 001_extra (executed)" in lines
        async with newer.backend.read() as conn:
            assert await conn.fetch("SELECT legacy FROM extra_things") == [{"legacy": "yes"}]
        assert (await migrations_cli(newer, "list"))[0] == 0
        code, _ = await migrations_cli(newer, "reset", yes=True)
        assert code == 0
        # the extra table is not an entity table: reset drops only what it knows, so clean it here
        async with newer.backend.write() as conn:
            await conn.execute("DROP TABLE extra_things")
    finally:
        await newer.close()


async def test_ensure_schema_bootstraps_once(raw_store: Store, make: Any) -> None:
    await raw_store.ensure_schema()
    await raw_store.insert("consumers", make("consumers", username="bob"))
    await raw_store.ensure_schema()
    assert len(await raw_store.all("consumers")) == 1


async def test_writes_work_after_reset_and_bootstrap_on_same_store(store: Store, make: Any) -> None:
    # warm any per-connection statement caches, then recreate the tables underneath them
    for i in range(3):
        await store.insert("consumers", make("consumers", username=f"u{i}"))
        await store.select_by("consumers", "username", f"u{i}")
    assert await store.reset()
    await store.bootstrap()
    for i in range(3):
        row = await store.insert("consumers", make("consumers", username=f"u{i}"))
        assert await store.select_by("consumers", "username", f"u{i}") == row
        assert await store.update("consumers", dict(row, custom_id=f"c{i}"))
