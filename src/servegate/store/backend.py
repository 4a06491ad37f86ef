"""What the generic DAO needs from a database driver: connections, transactions, dialect bits.

Drivers translate their constraint errors into `IntegrityFailure` so the DAO can map them to Kong's
DaoErrors without knowing the driver.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass
class IntegrityFailure(Exception):
    """A constraint failed. kind: unique | fk | notnull | other."""

    kind: str
    table: str | None = None
    # constraint name (PostgreSQL) or the failing column list (SQLite), whichever the driver reports
    constraint: str | None = None
    columns: tuple[str, ...] = ()
    detail: str = ""


class Conn(Protocol):
    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int: ...

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]: ...


class Dialect:
    """SQL differences between SQLite and PostgreSQL, kept in one small place."""

    name = "base"
    types: dict[str, str] = {}
    binary_collation = ""  # SQLite's default (BINARY) already compares bytes

    def placeholder(self, n: int) -> str:
        raise NotImplementedError

    def column_type(self, field_type: str) -> str:
        return self.types.get(field_type, "TEXT")

    def json_contains(self, column: str, ph: str) -> str:
        """SQL true when the JSON array in column contains the string bound at ph."""
        raise NotImplementedError

    def json_contains_arg(self, tag: str) -> Any:
        return tag

    def to_db_bool(self, value: bool) -> Any:
        return value

    def from_db_bool(self, value: Any) -> bool | None:
        return None if value is None else bool(value)


class SqliteDialect(Dialect):
    name = "sqlite"
    types = {
        "string": "TEXT",
        "integer": "INTEGER",
        "number": "REAL",
        "boolean": "INTEGER",
        "foreign": "TEXT",
    }

    def placeholder(self, n: int) -> str:
        return "?"

    def json_contains(self, column: str, ph: str) -> str:
        return f"EXISTS (SELECT 1 FROM json_each({column}) WHERE value = {ph})"

    def to_db_bool(self, value: bool) -> Any:
        return 1 if value else 0


class PostgresDialect(Dialect):
    name = "postgres"
    binary_collation = ' COLLATE "C"'
    types = {
        "string": "TEXT",
        "integer": "BIGINT",
        "number": "DOUBLE PRECISION",
        "boolean": "BOOLEAN",
        "foreign": "TEXT",
    }

    def placeholder(self, n: int) -> str:
        return f"${n}"

    def json_contains(self, column: str, ph: str) -> str:
        return f"({column})::jsonb @> ({ph})::jsonb"

    def json_contains_arg(self, tag: str) -> Any:
        return json.dumps([tag])


class Params:
    """Collects bind values and hands out the dialect's placeholder for each."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.values: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return self.dialect.placeholder(len(self.values))


class Backend(Protocol):
    dialect: Dialect
    description: str  # e.g. database name, for migration messages

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    def write(self) -> AbstractAsyncContextManager[Conn]:
        """A write transaction; commits on normal exit, rolls back on exception."""
        ...

    def read(self) -> AbstractAsyncContextManager[Conn]: ...

    async def table_exists(self, conn: Conn, table: str) -> bool: ...

    async def drop_all(self, tables: list[str]) -> None:
        """Drop the given tables (and anything depending on them)."""
        ...

    async def schema_changed(self) -> None:
        """Tables were created or dropped: forget anything cached about them."""
        ...
