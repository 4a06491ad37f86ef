"""The gateway the setup job runs against: a real `servegate start`, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from setup_support import echo_server

from helpers import Servegate
from support import create_pg_database, drop_pg_database


@pytest.fixture(params=["sqlite", "postgres"])
def gateway(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Servegate]:
    db_name = None
    if request.param == "postgres":
        db_name, dsn = create_pg_database("servegate_setup")
        sg = Servegate(database="postgres", pg_dsn=dsn, prefix=str(tmp_path))
    else:
        sg = Servegate(prefix=str(tmp_path))
    try:
        with sg:
            yield sg
    finally:
        if db_name:
            drop_pg_database(db_name)


@pytest.fixture
def echo() -> Iterator[str]:
    """The base URL of a backend that answers every GET with {"path": ..., "port": ...}."""
    with echo_server() as (url, _server):
        yield url
