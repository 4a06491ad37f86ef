"""Versioned schema migrations, recorded in `schema_meta`.

A migration has an `up` part and an optional `teardown` part (Kong's two-phase upgrades: `up` adds,
`finish` removes what old nodes still needed). `bootstrap` creates `schema_meta` and runs every
migration fully. To add a migration, append a `Migration("001_<what>", up=..., teardown=...)` to
MIGRATIONS; existing databases then report it as new (`list` exits 5) until `up` runs it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .backend import Conn
from .dao import CONFIG_TABLE
from .ratelimit import RATELIMIT_TABLE, ratelimit_ddl
from .table import q

if TYPE_CHECKING:
    from . import Store

META_TABLE = "schema_meta"
SUBSYSTEM = "core"
# Advisory lock id so that two nodes migrating one PostgreSQL database at once take turns.
_PG_LOCK_ID = 0x5E47E6A7E

Step = Callable[["Store", Conn], Awaitable[None]]


@dataclass(frozen=True)
class Migration:
    name: str
    up: Step
    teardown: Step | None = None


async def _base_up(store: Store, conn: Conn) -> None:
    for table in store.tables.values():
        for stmt in table.create_sql(store.dialect):
            await conn.execute(stmt)
    for stmt in ratelimit_ddl(store.dialect):
        await conn.execute(stmt)
    vtype = store.dialect.column_type("integer")
    await conn.execute(
        f"CREATE TABLE IF NOT EXISTS {q(CONFIG_TABLE)} (id INTEGER PRIMARY KEY, {q('version')} {vtype} NOT NULL)"
    )
    await conn.execute(
        f"INSERT INTO {q(CONFIG_TABLE)} (id, {q('version')}) VALUES (1, 0) ON CONFLICT (id) DO NOTHING"
    )


def add_field(entity: str, field_name: str) -> Step:
    """A migration step adding a newly declared field's column (with its FK / UNIQUE) to a table."""

    async def step(store: Store, conn: Conn) -> None:
        for stmt in store.table(entity).add_column_sql(field_name, store.dialect):
            await conn.execute(stmt)

    return step


# Append new migrations here, e.g. Migration("001_consumers_email", up=add_field("consumers", "email")).
MIGRATIONS: list[Migration] = [Migration("000_base", up=_base_up)]


@dataclass
class MigrationState:
    bootstrapped: bool
    executed: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # up ran, teardown (finish) still to run
    new: list[str] = field(default_factory=list)  # not run at all

    def to_json(self) -> dict[str, object]:
        return {
            "needs_bootstrap": not self.bootstrapped,
            "executed_migrations": {SUBSYSTEM: self.executed},
            "pending_migrations": {SUBSYSTEM: self.pending},
            "new_migrations": {SUBSYSTEM: self.new},
        }


@dataclass
class MigrationRun:
    """What one bootstrap / up / finish did: (name, resulting state) in order."""

    ran: list[tuple[str, str]] = field(default_factory=list)
    already: bool = False  # nothing to do (already bootstrapped / up-to-date / nothing pending)


class Migrator:
    def __init__(self, store: Store, migrations: list[Migration] | None = None) -> None:
        self.store = store
        self.migrations = migrations if migrations is not None else MIGRATIONS

    async def _lock(self, conn: Conn) -> None:
        if self.store.dialect.name == "postgres":
            await conn.execute(f"SELECT pg_advisory_xact_lock({_PG_LOCK_ID})")

    async def _recorded(self, conn: Conn) -> dict[str, str] | None:
        if not await self.store.backend.table_exists(conn, META_TABLE):
            return None
        rows = await conn.fetch(f"SELECT name, state FROM {q(META_TABLE)}")
        return {r["name"]: r["state"] for r in rows}

    def _state_from(self, recorded: dict[str, str] | None) -> MigrationState:
        if recorded is None:
            return MigrationState(False, new=[m.name for m in self.migrations])
        st = MigrationState(True)
        for m in self.migrations:
            s = recorded.get(m.name)
            if s == "executed":
                st.executed.append(m.name)
            elif s == "pending":
                st.pending.append(m.name)
            else:
                st.new.append(m.name)
        return st

    async def state(self) -> MigrationState:
        async with self.store.backend.read() as conn:
            return self._state_from(await self._recorded(conn))

    async def _record(self, conn: Conn, name: str, state: str) -> None:
        p = self.store.params()
        await conn.execute(
            f"INSERT INTO {q(META_TABLE)} (name, state) VALUES ({p(name)}, {p(state)}) "
            f"ON CONFLICT (name) DO UPDATE SET state = excluded.state",
            p.values,
        )

    async def bootstrap(self) -> MigrationRun:
        run = MigrationRun()
        async with self.store.backend.write() as conn:
            await self._lock(conn)
            if await self._recorded(conn) is not None:
                run.already = True
                return run
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {q(META_TABLE)} (name TEXT PRIMARY KEY, state TEXT NOT NULL)"
            )
            for m in self.migrations:
                await m.up(self.store, conn)
                if m.teardown is not None:
                    await m.teardown(self.store, conn)
                await self._record(conn, m.name, "executed")
                run.ran.append((m.name, "executed"))
        await self.store.backend.schema_changed()
        return run

    async def up(self) -> MigrationRun:
        run = MigrationRun()
        async with self.store.backend.write() as conn:
            await self._lock(conn)
            st = self._state_from(await self._recorded(conn))
            if not st.bootstrapped:
                raise RuntimeError("database needs bootstrapping")
            if st.pending:
                raise RuntimeError("pending migrations")
            by_name = {m.name: m for m in self.migrations}
            for name in st.new:
                m = by_name[name]
                await m.up(self.store, conn)
                state = "executed" if m.teardown is None else "pending"
                await self._record(conn, name, state)
                run.ran.append((name, state))
        run.already = not run.ran
        await self.store.backend.schema_changed()
        return run

    async def finish(self) -> MigrationRun:
        run = MigrationRun()
        async with self.store.backend.write() as conn:
            await self._lock(conn)
            st = self._state_from(await self._recorded(conn))
            if not st.bootstrapped:
                raise RuntimeError("database needs bootstrapping")
            by_name = {m.name: m for m in self.migrations}
            for name in st.pending:
                m = by_name[name]
                if m.teardown is not None:
                    await m.teardown(self.store, conn)
                await self._record(conn, name, "executed")
                run.ran.append((name, "executed"))
        run.already = not run.ran
        await self.store.backend.schema_changed()
        return run

    async def reset(self) -> bool:
        """Drop every servegate table. False when the database was not bootstrapped."""
        if not (await self.state()).bootstrapped:
            return False
        tables = list(reversed(list(self.store.tables))) + [RATELIMIT_TABLE, CONFIG_TABLE, META_TABLE]
        await self.store.backend.drop_all(tables)
        return True
