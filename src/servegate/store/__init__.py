"""Entity store on SQLite (embedded default) or PostgreSQL, with migrations.

Uniqueness, foreign keys and cascades are database constraints, so concurrent writers (several
workers, several nodes on one PostgreSQL) cannot create duplicates or orphans.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from servegate.schema.errors import DaoError
from servegate.schema.fields import Entity

from .backend import Backend, Params
from .commands import migrations_cli
from .core_migrations import CORE as MIGRATIONS
from .dao import EntityDao
from .migrations import (
    Migration,
    MigrationRun,
    MigrationState,
    Migrator,
    register_migrations,
    sql,
    unregister_migrations,
)
from .outage import StoreUnavailable, guarded

__all__ = [
    "MIGRATIONS",
    "DaoError",
    "Migration",
    "MigrationRun",
    "MigrationState",
    "Store",
    "StoreUnavailable",
    "migrations_cli",
    "open_store",
    "open_store_url",
    "register_migrations",
    "sql",
    "unregister_migrations",
]


class Store(EntityDao):
    """The store: entity DAO + migrations over one backend."""

    def __init__(
        self,
        backend: Backend,
        entities: Iterable[Entity] | Mapping[str, Entity] | None = None,
        migrations: list[Migration] | None = None,
    ) -> None:
        # Entity reads and writes report outages as StoreUnavailable.
        super().__init__(guarded(backend), entities)
        self.migrator = Migrator(self, migrations)

    @property
    def kind(self) -> str:
        return self.dialect.name

    def params(self) -> Params:
        return Params(self.dialect)

    async def connect(self) -> None:
        await self.backend.connect()

    async def close(self) -> None:
        await self.backend.close()

    async def __aenter__(self) -> Store:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- migrations ----------------------------------------------------------------------------

    async def state(self) -> MigrationState:
        return await self.migrator.state()

    async def bootstrap(self) -> MigrationRun:
        return await self.migrator.bootstrap()

    async def up(self) -> MigrationRun:
        return await self.migrator.up()

    async def finish(self) -> MigrationRun:
        return await self.migrator.finish()

    async def reset(self) -> bool:
        return await self.migrator.reset()

    async def ensure_schema(self) -> None:
        """Bootstrap a fresh database, or run new migrations of an existing one (embedded use)."""
        st = await self.state()
        if not st.bootstrapped:
            await self.bootstrap()
        elif st.new:
            await self.up()


def _postgres(dsn: str, timeout_s: float | None = None) -> Backend:
    # Imported on use: a SQLite node never loads asyncpg (~4 MB RSS, ~20 ms of start-up).
    from .postgres import PostgresBackend

    return PostgresBackend(dsn) if timeout_s is None else PostgresBackend(dsn, timeout_s=timeout_s)


def _sqlite(path: str) -> Backend:
    from .sqlite import SqliteBackend

    return SqliteBackend(path)


def open_store(settings: Any, entities: Iterable[Entity] | Mapping[str, Entity] | None = None) -> Store:
    """A Store for `servegate.settings.Settings` (not yet connected)."""
    if getattr(settings, "database", "sqlite") == "postgres":
        timeout_ms = getattr(settings, "pg_timeout_ms", 5000) or 5000
        backend = _postgres(settings.pg_dsn(), timeout_ms / 1000)
    else:
        backend = _sqlite(settings.sqlite_path)
    return Store(backend, entities)


def open_store_url(url: str, entities: Iterable[Entity] | Mapping[str, Entity] | None = None) -> Store:
    """A Store for `sqlite:///path/to/file.db` or `postgresql://user@host:port/db` (not yet connected)."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        # sqlite:///abs/x.db and sqlite:////abs/x.db are both /abs/x.db; sqlite://rel.db is relative
        path = unquote(url[len("sqlite://") :].split("?", 1)[0])
        if path.startswith("/"):
            path = "/" + path.lstrip("/")
        return Store(_sqlite(path or "servegate.db"), entities)
    if parts.scheme in ("postgres", "postgresql"):
        return Store(_postgres(url), entities)
    raise ValueError(f"unsupported store url scheme '{parts.scheme}'")
