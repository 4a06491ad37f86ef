"""SQLite backend (embedded default) on aiosqlite.

One connection per store. An asyncio lock serialises its use inside the process because statements of
two coroutines would otherwise interleave inside one transaction; between processes, WAL mode plus
`BEGIN IMMEDIATE` and busy_timeout serialise writers while readers keep going.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiosqlite

from .backend import Dialect, IntegrityFailure, SqliteDialect

BUSY_TIMEOUT_MS = 10000

_UNIQUE_RE = re.compile(r"UNIQUE constraint failed: (.+)$")
_NOTNULL_RE = re.compile(r"NOT NULL constraint failed: (\w+)\.(\w+)")


def _translate(err: sqlite3.IntegrityError) -> IntegrityFailure:
    msg = str(err)
    m = _UNIQUE_RE.search(msg)
    if m:
        target = m.group(1).strip()
        if target.startswith("index "):
            return IntegrityFailure("unique", constraint=target[6:].strip("'\""), detail=msg)
        parts = [p.strip().split(".", 1) for p in target.split(",")]
        table = parts[0][0] if parts and len(parts[0]) == 2 else None
        cols = tuple(p[1] for p in parts if len(p) == 2)
        return IntegrityFailure("unique", table=table, columns=cols, detail=msg)
    if "FOREIGN KEY constraint failed" in msg:
        return IntegrityFailure("fk", detail=msg)
    m = _NOTNULL_RE.search(msg)
    if m:
        return IntegrityFailure("notnull", table=m.group(1), columns=(m.group(2),), detail=msg)
    return IntegrityFailure("other", detail=msg)


class _SqliteConn:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        try:
            cur = await self._db.execute(sql, tuple(args))
        except sqlite3.IntegrityError as e:
            raise _translate(e) from e
        rc = cur.rowcount
        await cur.close()
        return rc

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        try:
            cur = await self._db.execute(sql, tuple(args))
            rows = await cur.fetchall()
        except sqlite3.IntegrityError as e:
            raise _translate(e) from e
        names = [d[0] for d in cur.description or ()]
        await cur.close()
        return [dict(zip(names, r, strict=True)) for r in rows]


class SqliteBackend:
    def __init__(self, path: str) -> None:
        self.path = path
        self.dialect: Dialect = SqliteDialect()
        self.description = path
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def connect(self) -> None:
        if self._db is not None:
            return
        parent = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(parent, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves.
        pending = aiosqlite.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        # aiosqlite's worker thread is not a daemon: a process that exits (e.g. on a signal) without
        # closing the store would hang in interpreter shutdown. SQLite recovers from an unclean stop.
        thread = getattr(pending, "_thread", None)
        if thread is not None and not thread.is_alive():
            thread.daemon = True
        db = await pending
        for pragma in (
            f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
            "PRAGMA journal_mode=WAL",
            "PRAGMA foreign_keys=ON",
            "PRAGMA synchronous=NORMAL",
        ):
            await (await db.execute(pragma)).close()
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()

    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("store is not connected")
        return self._db

    @asynccontextmanager
    async def write(self) -> AsyncIterator[_SqliteConn]:
        async with self._lock:
            db = self._conn()
            # IMMEDIATE takes the write lock up front, so a writer never has to upgrade a stale read
            # snapshot (which SQLite answers with SQLITE_BUSY without waiting).
            await (await db.execute("BEGIN IMMEDIATE")).close()
            try:
                yield _SqliteConn(db)
                # A failed COMMIT (a deferred constraint, an I/O error) leaves the transaction open on
                # this shared connection: it must be rolled back like any other failure, or its writes
                # would be committed by the next writer's COMMIT.
                try:
                    await (await db.execute("COMMIT")).close()
                except sqlite3.IntegrityError as e:
                    raise _translate(e) from e
            except BaseException:
                if db.in_transaction:
                    await (await db.execute("ROLLBACK")).close()
                raise

    @asynccontextmanager
    async def read(self) -> AsyncIterator[_SqliteConn]:
        async with self._lock:
            yield _SqliteConn(self._conn())

    async def table_exists(self, conn: Any, table: str) -> bool:
        rows = await conn.fetch("SELECT 1 AS x FROM sqlite_master WHERE type='table' AND name=?", (table,))
        return bool(rows)

    async def drop_all(self, tables: list[str]) -> None:
        async with self._lock:
            db = self._conn()
            # Dropping a parent table with FK enforcement on would run implicit deletes; turn it off
            # (only possible outside a transaction) for the duration.
            await (await db.execute("PRAGMA foreign_keys=OFF")).close()
            try:
                await (await db.execute("BEGIN IMMEDIATE")).close()
                try:
                    for t in tables:
                        await (await db.execute(f'DROP TABLE IF EXISTS "{t}"')).close()
                except BaseException:
                    await (await db.execute("ROLLBACK")).close()
                    raise
                await (await db.execute("COMMIT")).close()
            finally:
                await (await db.execute("PRAGMA foreign_keys=ON")).close()

    async def schema_changed(self) -> None:
        return None
