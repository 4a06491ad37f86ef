"""open_store(settings) picks the backend from the lead's Settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from servegate.settings import load_settings
from servegate.store import open_store


async def test_open_store_sqlite_under_prefix(tmp_path: Path, make: Any) -> None:
    settings = load_settings(env={"SERVEGATE_PREFIX": str(tmp_path / "pfx")})
    store = open_store(settings)
    assert store.kind == "sqlite"
    await store.connect()
    try:
        await store.bootstrap()
        await store.insert("consumers", make("consumers", username="bob"))
    finally:
        await store.close()
    assert (tmp_path / "pfx" / "servegate.db").exists()


async def test_open_store_postgres(pg_module_db: str, make: Any) -> None:
    dsn = urlsplit(pg_module_db)
    env = {
        "SERVEGATE_DATABASE": "postgres",
        "SERVEGATE_PG_HOST": dsn.hostname or "127.0.0.1",
        "SERVEGATE_PG_PORT": str(dsn.port or 5432),
        "SERVEGATE_PG_USER": dsn.username or "postgres",
        "SERVEGATE_PG_DATABASE": dsn.path.lstrip("/"),
    }
    store = open_store(load_settings(env=env))
    assert store.kind == "postgres"
    await store.connect()
    try:
        await store.reset()
        await store.bootstrap()
        row = await store.insert("consumers", make("consumers", username="bob"))
        assert await store.select_by("consumers", "username", "bob") == row
        await store.reset()
    finally:
        await store.close()
