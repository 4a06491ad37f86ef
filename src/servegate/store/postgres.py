"""PostgreSQL backend on an asyncpg pool."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from .backend import Dialect, IntegrityFailure, PostgresDialect


def _translate(err: asyncpg.exceptions.IntegrityConstraintViolationError) -> IntegrityFailure:
    table = getattr(err, "table_name", None)
    constraint = getattr(err, "constraint_name", None)
    detail = getattr(err, "detail", None) or str(err)
    if isinstance(err, asyncpg.exceptions.UniqueViolationError):
        return IntegrityFailure("unique", table=table, constraint=constraint, detail=detail)
    if isinstance(err, asyncpg.exceptions.ForeignKeyViolationError):
        return IntegrityFailure("fk", table=table, constraint=constraint, detail=detail)
    if isinstance(err, asyncpg.exceptions.NotNullViolationError):
        col = getattr(err, "column_name", None)
        return IntegrityFailure("notnull", table=table, columns=(col,) if col else (), detail=detail)
    return IntegrityFailure("other", table=table, constraint=constraint, detail=detail)


def _rowcount(status: str) -> int:
    # asyncpg returns the command tag, e.g. "UPDATE 1" / "INSERT 0 1" / "DELETE 3"
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


class _PgConn:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._c = conn

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        try:
            return _rowcount(await self._c.execute(sql, *args))
        except asyncpg.exceptions.IntegrityConstraintViolationError as e:
            raise _translate(e) from e

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        try:
            rows = await self._c.fetch(sql, *args)
        except asyncpg.exceptions.IntegrityConstraintViolationError as e:
            raise _translate(e) from e
        return [dict(r) for r in rows]


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool release without asyncpg's reset query (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL): one
    round trip per released connection, ~15% of an Admin write's time. The store sets no session state: its
    transactions are closed by their context managers (asyncpg still rolls back one left open), migrations take
    transaction-scoped advisory locks, and nothing LISTENs."""


class PostgresBackend:
    def __init__(self, dsn: str, *, timeout_s: float = 5.0, max_size: int = 10) -> None:
        self.dsn = dsn
        self.timeout_s = timeout_s
        self.max_size = max_size
        self.dialect: Dialect = PostgresDialect()
        self.description = urlsplit(dsn).path.lstrip("/") or "postgres"
        self._pool: asyncpg.Pool | None = None

    async def connect(self) -> None:
        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                self.dsn, min_size=1, max_size=self.max_size, timeout=self.timeout_s, command_timeout=60,
                reset=_keep_session,
            )

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    def _p(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("store is not connected")
        return self._pool

    @asynccontextmanager
    async def write(self) -> AsyncIterator[_PgConn]:
        async with self._p().acquire() as conn, conn.transaction():
            yield _PgConn(conn)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[_PgConn]:
        async with self._p().acquire() as conn:
            yield _PgConn(conn)

    async def table_exists(self, conn: Any, table: str) -> bool:
        rows = await conn.fetch("SELECT to_regclass($1) IS NOT NULL AS x", (table,))
        return bool(rows and rows[0]["x"])

    async def drop_all(self, tables: list[str]) -> None:
        async with self.write() as conn:
            for t in tables:
                await conn.execute(f'DROP TABLE IF EXISTS "{t}" CASCADE')
        await self.schema_changed()

    async def schema_changed(self) -> None:
        # Pooled connections cache prepared statements bound to the old tables; inside a
        # transaction asyncpg cannot re-prepare them, so replace the connections.
        if self._pool is not None:
            await self._pool.expire_connections()
