"""The store itself holds both databases to one behaviour at the edges of what they can hold.

Validation keeps such values out of Admin input; these tests hand rows to the store directly (as any
internal caller could) and check that a write either stores what reads can give back, or fails
without leaving anything behind.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from servegate.schema.errors import DaoError
from servegate.store import Store
from servegate.store.backend import IntegrityFailure

INT64_BOUND = "value should be between -9223372036854775808 and 9223372036854775807"


@pytest.mark.parametrize(
    ("created_at", "message"),
    [(1e30, INT64_BOUND), (1e308, INT64_BOUND), (2**63, INT64_BOUND), (-(2**63) - 1, INT64_BOUND),
     (1.5, "expected an integer"), ("1", "expected an integer")],
)
async def test_an_integer_no_column_can_hold_is_refused_before_the_write(
    store: Store, make: Any, created_at: Any, message: str
) -> None:
    with pytest.raises(DaoError) as ei:
        await store.insert("services", make("services", host="h", created_at=created_at))
    assert ei.value.code == 2 and ei.value.fields == {"created_at": message}
    assert await store.all("services") == []
    rows, _ = await store.page("services")
    assert rows == []


async def test_integral_floats_are_stored_as_integers(store: Store, make: Any) -> None:
    row = await store.insert("services", make("services", host="h", port=8080.0, created_at=1.7e9))
    assert row["port"] == 8080 and isinstance(row["port"], int)
    assert row["created_at"] == 1_700_000_000 and isinstance(row["created_at"], int)


async def test_a_string_with_nul_is_refused_on_insert_update_and_upsert(store: Store, make: Any) -> None:
    with pytest.raises(DaoError) as ei:
        await store.insert("consumers", make("consumers", username="a\x00b"))
    assert ei.value.code == 2 and ei.value.fields == {"username": "must not contain a null byte"}
    bob = await store.insert("consumers", make("consumers", username="bob"))
    for op in (store.update, store.upsert):
        with pytest.raises(DaoError):
            await op("consumers", dict(bob, custom_id="x\x00"))
    assert await store.all("consumers") == [bob]


async def test_reads_with_a_nul_byte_find_nothing(store: Store, make: Any) -> None:
    await store.insert("consumers", make("consumers", username="a", custom_id="c"))
    assert await store.select_by("consumers", "username", "a\x00") is None
    assert await store.select("consumers", {"id": "x\x00"}) is None
    assert await store.page("consumers", filters={"custom_id": "c\x00"}) == ([], None)
    assert await store.page("consumers", tags=["t\x00"]) == ([], None)
    assert await store.delete("consumers", {"id": "x\x00"}) is False
    assert len(await store.all("consumers")) == 1


async def test_a_failure_after_the_insert_rolls_it_back(store: Store, make: Any) -> None:
    row = make("consumers", username="ghost")
    with pytest.raises(RuntimeError):
        async with store.backend.write() as conn:
            await conn.execute(
                'INSERT INTO "consumers" ("id", "username", "created_at", "updated_at") VALUES '
                + ("(?, ?, ?, ?)" if store.backend.dialect.name == "sqlite" else "($1, $2, $3, $4)"),
                [row["id"], row["username"], row["created_at"], row["updated_at"]],
            )
            raise RuntimeError("fails after the INSERT")
    assert await store.all("consumers") == []
    await store.insert("consumers", make("consumers", username="next"))
    assert [c["username"] for c in await store.all("consumers")] == ["next"]


async def test_a_failed_sqlite_commit_is_rolled_back(tmp_path: Any, make: Any) -> None:
    """A COMMIT that fails (here: a deferred foreign key) must not leave its transaction open on the
    shared connection, where the next writer's COMMIT would commit the failed write."""
    from servegate.store import open_store_url

    store = open_store_url(f"sqlite:///{tmp_path}/commit.db")
    await store.connect()
    try:
        await store.bootstrap()
        orphan = make("keyauth_credentials", consumer={"id": "00000000-0000-4000-8000-000000000000"}, key="k")
        with pytest.raises((IntegrityFailure, sqlite3.IntegrityError, DaoError)):
            async with store.backend.write() as conn:
                await conn.execute("PRAGMA defer_foreign_keys = ON")
                await conn.execute(
                    'INSERT INTO "keyauth_credentials" ("id", "consumer_id", "key", "created_at") '
                    "VALUES (?, ?, ?, ?)",
                    [orphan["id"], orphan["consumer"]["id"], orphan["key"], orphan["created_at"]],
                )
        # the next write works and commits only itself
        await store.insert("consumers", make("consumers", username="after"))
        assert await store.all("keyauth_credentials") == []
        assert [c["username"] for c in await store.all("consumers")] == ["after"]
    finally:
        await store.close()
