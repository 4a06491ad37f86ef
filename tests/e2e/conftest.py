"""Fixtures shared by the multi-worker and multi-node tests: a fake OpenAI backend, a PostgreSQL database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from helpers import fake_backend
from support import create_pg_database, drop_pg_database


@pytest.fixture(scope="module")
def backend() -> Iterator[str]:
    with fake_backend() as url:
        yield url


@pytest.fixture
def pg_db() -> Iterator[str]:
    name, dsn = create_pg_database("servegate_e2e")
    yield dsn
    drop_pg_database(name)
