"""Admin API fixtures: the real Admin server on a loopback port over a fresh SQLite or PostgreSQL store."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import pytest
from admin_client import Admin

from servegate.admin import serve
from servegate.settings import Listen, load_settings
from servegate.store import open_store_url

PG_DSN = os.environ.get("SERVEGATE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def _with_db(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path="/" + name))


@pytest.fixture(params=["sqlite", "postgres"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/admin.db"
        return
    name = f"servegate_admin_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield _with_db(PG_DSN, name)
    finally:
        conn = await asyncpg.connect(PG_DSN)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest.fixture
async def admin(store_url: str, tmp_path: Any) -> AsyncIterator[Admin]:
    store = open_store_url(store_url)
    await store.connect()
    await store.bootstrap()
    settings = load_settings(
        env={
            "SERVEGATE_PREFIX": str(tmp_path),
            "SERVEGATE_DATABASE": "postgres" if store_url.startswith("postgres") else "sqlite",
            "SERVEGATE_PG_PASSWORD": "pg-secret-value",
            "SERVEGATE_ADMIN_API_KEY": "admin-secret-value",
        }
    )
    changes: list[int] = []
    hooks: dict[str, bool] = {}

    async def on_change() -> None:
        changes.append(await store.config_version())
        if hooks.get("fail"):
            raise RuntimeError("snapshot rebuild failed")

    server = await serve(store, settings, on_change=on_change, listen=[Listen("127.0.0.1", 0)])
    host, port = server.addresses[0]
    session = aiohttp.ClientSession(auto_decompress=False)
    try:
        yield Admin(f"http://{host}:{port}", session, store, changes, hooks)
    finally:
        await session.close()
        await server.stop(0)
        await store.close()
