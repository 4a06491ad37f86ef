"""Database outages as one servegate exception: `StoreUnavailable`, whatever the driver said.

The drivers report "cannot reach or use the database right now" in many shapes: OSError from a refused or reset
connection, asyncpg's closed-connection errors and FATAL server messages (administrator shutdown, database not
accepting connections, authentication lost), SQLite's busy/locked/I/O/cannot-open codes. `GuardedBackend` wraps a
backend's transactions and turns those (only those) into `StoreUnavailable`, a DaoError that the Admin API
answers with 503 and that the config poller logs once per outage.

Its message is built from the driver's own short text, which names no DSN or password; a URL with credentials
that might slip in anyway is masked.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, NoReturn

from servegate.schema.errors import DATABASE_ERROR, DaoError

from .backend import Backend, Conn, Dialect

# SQLite primary result codes meaning "the file cannot be used now", not "this statement is wrong".
_SQLITE_OUTAGE = {
    5: "database is locked",  # SQLITE_BUSY
    6: "database table is locked",  # SQLITE_LOCKED
    8: "database is read-only",  # SQLITE_READONLY
    10: "disk I/O error",  # SQLITE_IOERR
    11: "database disk image is malformed",  # SQLITE_CORRUPT
    13: "database or disk is full",  # SQLITE_FULL
    14: "unable to open database file",  # SQLITE_CANTOPEN
    26: "file is not a database",  # SQLITE_NOTADB
}
_CREDENTIALS = re.compile(r"://[^/\s@]*@")
_MAX_REASON = 200


def _drop_pool_floor_warning(record: logging.LogRecord) -> bool:
    # While PostgreSQL is down, asyncpg's pool logs a full traceback each time it fails to reopen its minimum
    # connection (every 1, 2, 4... s). The outage is reported once by the config poller and by every Admin API
    # answer (503), so these records add only noise.
    return not str(record.msg).startswith("Failed to restore the pool connection floor")


logging.getLogger("asyncpg.pool").addFilter(_drop_pool_floor_warning)


class StoreUnavailable(DaoError):
    """The database cannot be reached or used right now; the request may succeed later (HTTP 503)."""

    def __init__(self, reason: str) -> None:
        reason = _CREDENTIALS.sub("://***@", reason)[:_MAX_REASON] or "unknown error"
        super().__init__(DATABASE_ERROR, message=f"database unavailable: {reason}")
        self.reason = reason

    @property
    def http_status(self) -> int:
        return 503

    def to_json(self) -> dict[str, Any]:
        return {"message": self.message}


def _asyncpg_reason(exc: BaseException) -> str | None:
    asyncpg = sys.modules.get("asyncpg")  # loaded only by PostgreSQL stores
    if asyncpg is None:
        return None
    errors = asyncpg.exceptions
    if isinstance(exc, errors.PostgresConnectionError):  # SQLSTATE class 08, connection closed mid-operation
        return str(exc) or "connection lost"
    if isinstance(exc, errors.PostgresError):
        # FATAL ends the session: administrator shutdown, database dropped or closed to connections, too many
        # connections, authentication failure. Errors of a single statement are ERROR and stay what they are.
        if getattr(exc, "severity", None) in ("FATAL", "PANIC"):
            return str(exc)
        return None
    if isinstance(exc, errors.InterfaceError) and ("closed" in str(exc) or "closing" in str(exc)):
        return str(exc)  # "connection is closed", "pool is closing"
    return None


def unavailable(exc: BaseException) -> StoreUnavailable | None:
    """`exc` as a StoreUnavailable when it means the database cannot be used right now, else None."""
    if isinstance(exc, StoreUnavailable):
        return exc
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is None or (code & 0xFF) not in _SQLITE_OUTAGE:
            return None
        return StoreUnavailable(str(exc) or _SQLITE_OUTAGE[code & 0xFF])
    if isinstance(exc, OSError):  # refused, reset, unreachable, timed out (TimeoutError is an OSError)
        return StoreUnavailable(exc.strerror or str(exc) or type(exc).__name__)
    reason = _asyncpg_reason(exc)
    return None if reason is None else StoreUnavailable(reason)


class GuardedBackend:
    """A Backend whose transactions raise StoreUnavailable for outages (other errors pass unchanged)."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.dialect: Dialect = inner.dialect
        self.description = inner.description

    def __getattr__(self, name: str) -> Any:  # driver specifics (path, dsn) stay reachable
        if name == "inner":  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    async def connect(self) -> None:
        await self.inner.connect()

    async def close(self) -> None:
        await self.inner.close()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Conn]:
        try:
            async with self.inner.write() as conn:
                yield conn
        except Exception as e:
            _reraise(e)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Conn]:
        try:
            async with self.inner.read() as conn:
                yield conn
        except Exception as e:
            _reraise(e)

    async def table_exists(self, conn: Conn, table: str) -> bool:
        return await self.inner.table_exists(conn, table)

    async def drop_all(self, tables: list[str]) -> None:
        try:
            await self.inner.drop_all(tables)
        except Exception as e:
            _reraise(e)

    async def schema_changed(self) -> None:
        await self.inner.schema_changed()


def _reraise(exc: Exception) -> NoReturn:
    outage = unavailable(exc)
    if outage is None or outage is exc:
        raise exc
    raise outage from exc


def guarded(backend: Backend) -> GuardedBackend:
    return backend if isinstance(backend, GuardedBackend) else GuardedBackend(backend)
