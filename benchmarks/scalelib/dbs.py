"""The databases under test: a SQLite file in the run's work directory, or a PostgreSQL database the run creates
on a loopback server and drops at the end. Each gives a store URL (the in-process bulk fill) and the node's env."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

LOOPBACK = ("127.0.0.1", "localhost", "::1")


class Database(Protocol):
    kind: str
    name: str

    def url(self) -> str: ...

    def env(self) -> dict[str, str]: ...

    def create(self) -> None: ...

    def drop(self) -> None: ...


class SqliteDb:
    kind = "sqlite"

    def __init__(self, workdir: Path, tag: str) -> None:
        self.path = workdir / f"scale-{tag}.db"
        self.name = self.path.name

    def url(self) -> str:
        return f"sqlite:///{self.path}"

    def env(self) -> dict[str, str]:
        # every node on this database names the same file: nodes A and B share it (propagation)
        return {"SERVEGATE_DATABASE": "sqlite", "SERVEGATE_SQLITE_PATH": str(self.path)}

    def create(self) -> None:
        self.drop()

    def drop(self) -> None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(str(self.path) + suffix).unlink(missing_ok=True)


class PostgresDb:
    """`servegate_scale_<pid>_<tag>` on the server `server_url` names (trust auth, loopback only)."""

    kind = "postgres"

    def __init__(self, server_url: str, tag: str) -> None:
        parts = urlsplit(server_url)
        if parts.scheme not in ("postgres", "postgresql") or (parts.hostname or "") not in LOOPBACK:
            raise ValueError(f"--pg must be a postgresql:// URL on loopback, got {server_url!r}")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 5432
        self.user = parts.username or "postgres"
        self.name = f"servegate_scale_{os.getpid()}_{tag}"

    def _dsn(self, database: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def url(self) -> str:
        return self._dsn(self.name)

    def env(self) -> dict[str, str]:
        return {
            "SERVEGATE_DATABASE": "postgres",
            "SERVEGATE_PG_HOST": self.host,
            "SERVEGATE_PG_PORT": str(self.port),
            "SERVEGATE_PG_USER": self.user,
            "SERVEGATE_PG_PASSWORD": "",
            "SERVEGATE_PG_DATABASE": self.name,
        }

    def _admin_sql(self, statement: str) -> None:
        # asyncpg (a servegate dependency) rather than psql, which a machine may not have
        import asyncpg

        async def run() -> None:
            conn = await asyncpg.connect(self._dsn("postgres"), timeout=10)
            try:
                await conn.execute(statement, timeout=60)
            finally:
                await conn.close()

        asyncio.run(run())

    def create(self) -> None:
        self.drop()
        self._admin_sql(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        # FORCE: a node killed mid-run may leave sessions behind, which would block a plain DROP
        self._admin_sql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def open_database(kind: str, workdir: Path, tag: str, pg_url: str) -> Database:
    if kind == "sqlite":
        return SqliteDb(workdir, tag)
    if kind == "postgres":
        return PostgresDb(pg_url, tag)
    raise ValueError(f"unknown store {kind!r} (sqlite, postgres)")
