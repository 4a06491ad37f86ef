"""Fixtures for plugin tests: node-local counter files, PostgreSQL metrics database."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from servegate.plugins import load_all
from servegate.plugins.ratelimit import configure, runtime

load_all()


@pytest.fixture(autouse=True)
def counters_prefix(tmp_path: Any) -> Iterator[str]:
    """Each test gets its own node prefix (local counters file) and no PostgreSQL by default."""
    saved = (runtime.prefix, runtime.pg_dsn)
    configure(prefix=str(tmp_path), pg_dsn=None)
    yield str(tmp_path)
    configure(prefix=saved[0], pg_dsn=saved[1])


async def _create_metrics_table(dsn: str) -> None:
    # the table as the store's migrations make it: bootstrap the whole schema
    from servegate.store import open_store_url

    store = open_store_url(dsn)
    await store.connect()
    try:
        await store.bootstrap()
    finally:
        await store.close()


@pytest.fixture
def metrics_db(fresh_pg_db: str) -> str:
    """A fresh PostgreSQL database with the store's ratelimiting_metrics table."""
    asyncio.run(_create_metrics_table(fresh_pg_db))
    return fresh_pg_db
