"""Fixtures shared by every test area: PostgreSQL databases, free ports."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

PG_DSN = os.environ.get("SERVEGATE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _with_db(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + name))


def _admin_exec(sql: str) -> None:
    import asyncio

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(PG_DSN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def create_pg_database(prefix: str = "servegate_test") -> tuple[str, str]:
    """Create a uniquely named database; returns (name, dsn)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    _admin_exec(f'CREATE DATABASE "{name}"')
    return name, _with_db(PG_DSN, name)


def drop_pg_database(name: str) -> None:
    _admin_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    return PG_DSN


@pytest.fixture
def fresh_pg_db() -> Iterator[str]:
    name, dsn = create_pg_database()
    try:
        yield dsn
    finally:
        drop_pg_database(name)


@pytest.fixture(name="free_port")
def free_port_fixture() -> int:
    return free_port()
