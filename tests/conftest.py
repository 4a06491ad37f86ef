"""Fixtures shared by every test area: PostgreSQL databases, free ports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support import PG_DSN, create_pg_database, drop_pg_database, free_port


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
