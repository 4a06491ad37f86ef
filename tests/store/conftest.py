"""Store fixtures: every store test runs once on SQLite and once on PostgreSQL.

PostgreSQL: one fresh database per test module (`servegate_test_<random>`), emptied before each test.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from servegate.schema.entities import declared
from servegate.store import Store, open_store_url

PG_DSN = os.environ.get("SERVEGATE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


async def _pg_exec(dsn: str, *sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for stmt in sql:
            await conn.execute(stmt)
    finally:
        await conn.close()


def _with_db(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path="/" + name))


@pytest.fixture(scope="module")
def pg_module_db() -> Iterator[str]:
    name = f"servegate_test_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_pg_exec(PG_DSN, f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as e:
        pytest.skip(f"PostgreSQL not available: {e}")
    try:
        yield _with_db(PG_DSN, name)
    finally:
        asyncio.run(_pg_exec(PG_DSN, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """URL of an empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/servegate.db"
    url: str = request.getfixturevalue("pg_module_db")
    asyncio.run(_pg_exec(url, "DROP SCHEMA public CASCADE", "CREATE SCHEMA public"))
    return url


@pytest.fixture
async def raw_store(store_url: str) -> AsyncIterator[Store]:
    """Connected, not bootstrapped."""
    store = open_store_url(store_url)
    await store.connect()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def store(raw_store: Store) -> Store:
    """Connected and bootstrapped."""
    await raw_store.bootstrap()
    return raw_store


def make_row(entity: str, **values: Any) -> dict[str, Any]:
    """A complete row (every field present, unset = None) as process_input would hand it over."""
    row: dict[str, Any] = {name: None for name, _ in declared()[entity].fields}
    row["id"] = str(uuid.uuid4())
    now = int(time.time())
    if "created_at" in row:
        row["created_at"] = now
    if "updated_at" in row:
        row["updated_at"] = now
    row.update(values)
    return row


Make = Callable[..., dict[str, Any]]


@pytest.fixture
def make() -> Make:
    return make_row
