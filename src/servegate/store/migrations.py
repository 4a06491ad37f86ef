"""Versioned schema migrations by subsystem (Kong's layout: `core`, then one subsystem per plugin),
recorded in `schema_meta`.

A migration carries its own SQL, frozen at its version (`sql(sqlite=[...], postgres=[...])`), so a fresh
bootstrap and an upgrade from any earlier version run the same statements and reach the same schema; it never
reads the entity declarations, which describe only the newest schema. A migration has an `up` part and an
optional `teardown` part (Kong's two-phase upgrades: `up` adds, `finish` removes what old nodes still needed).
`bootstrap` creates `schema_meta` and runs every migration fully.

Core migrations are in core_migrations.py; a plugin declares its own as the class attribute `migrations` and
they register with the plugin (subsystem = the plugin's name). `schema_meta.name` holds a core migration's
name as is and a plugin's as `<subsystem>:<name>`, so databases made before subsystems existed read unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .backend import Conn
from .table import q

if TYPE_CHECKING:
    from . import Store

META_TABLE = "schema_meta"
CORE_SUBSYSTEM = "core"
# Advisory lock id so that two nodes migrating one PostgreSQL database at once take turns.
_PG_LOCK_ID = 0x5E47E6A7E

Step = Callable[["Store", Conn], Awaitable[None]]


@dataclass(frozen=True)
class Migration:
    name: str
    up: Step
    teardown: Step | None = None
    subsystem: str = CORE_SUBSYSTEM
    # Tables it creates that no entity declares: `reset` drops them too.
    tables: tuple[str, ...] = ()
    # Key of an earlier migration that already made what this one makes (the tables a plugin took over from
    # core): wherever that one ran, this one counts as executed.
    implied_by: str | None = None

    @property
    def key(self) -> str:
        return self.name if self.subsystem == CORE_SUBSYSTEM else f"{self.subsystem}:{self.name}"


def sql(**by_dialect: Sequence[str]) -> Step:
    """A migration step running literal statements, one list per dialect (`sqlite=`, `postgres=`)."""
    frozen = {dialect: tuple(stmts) for dialect, stmts in by_dialect.items()}

    async def step(store: Store, conn: Conn) -> None:
        stmts = frozen.get(store.dialect.name)
        if stmts is None:
            raise RuntimeError(f"migration has no SQL for {store.dialect.name}")
        for stmt in stmts:
            await conn.execute(stmt)

    return step


# Plugins' migrations, in registration order (core's come first, from core_migrations.CORE).
_PLUGIN_MIGRATIONS: list[Migration] = []


def register_migrations(subsystem: str, migrations: Iterable[Migration]) -> None:
    """Add a subsystem's migrations (idempotent per key). Called when a plugin registers."""
    known = {m.key for m in _PLUGIN_MIGRATIONS}
    for m in migrations:
        m = dataclasses.replace(m, subsystem=subsystem)
        if m.key not in known:
            _PLUGIN_MIGRATIONS.append(m)
            known.add(m.key)


def unregister_migrations(subsystem: str) -> None:
    _PLUGIN_MIGRATIONS[:] = [m for m in _PLUGIN_MIGRATIONS if m.subsystem != subsystem]


def registered_migrations() -> list[Migration]:
    """Core's migrations, then every loaded plugin's (the bundled plugins are loaded first)."""
    from servegate.plugins import load_all

    from .core_migrations import CORE

    load_all()
    return [*CORE, *_PLUGIN_MIGRATIONS]


Status = str  # "executed" | "pending" (up ran, teardown still to run) | "new" (not run at all)


@dataclass
class MigrationState:
    bootstrapped: bool
    # (subsystem, name, status) in migration order
    items: list[tuple[str, str, Status]] = field(default_factory=list)

    def _keys(self, status: Status) -> list[str]:
        return [n if s == CORE_SUBSYSTEM else f"{s}:{n}" for s, n, st in self.items if st == status]

    @property
    def executed(self) -> list[str]:
        return self._keys("executed")

    @property
    def pending(self) -> list[str]:
        return self._keys("pending")

    @property
    def new(self) -> list[str]:
        return self._keys("new")

    def by_subsystem(self, status: Status) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for s, n, st in self.items:
            if st == status:
                out.setdefault(s, []).append(n)
        return out

    def to_json(self) -> dict[str, object]:
        """`servegate migrations status`: lists grouped by subsystem, like `kong migrations list` prints them."""
        subsystems = list(dict.fromkeys(s for s, _, _ in self.items))

        def grouped(status: Status) -> dict[str, list[str]]:
            got = self.by_subsystem(status)
            return {s: got.get(s, []) for s in subsystems}

        return {
            "needs_bootstrap": not self.bootstrapped,
            "executed_migrations": grouped("executed"),
            "pending_migrations": grouped("pending"),
            "new_migrations": grouped("new"),
        }


@dataclass
class MigrationRun:
    """What one bootstrap / up / finish did: (subsystem, name, resulting state) in order."""

    ran: list[tuple[str, str, str]] = field(default_factory=list)
    already: bool = False  # nothing to do (already bootstrapped / up-to-date / nothing pending)


class Migrator:
    def __init__(self, store: Store, migrations: list[Migration] | None = None) -> None:
        self.store = store
        self._given = migrations

    @property
    def migrations(self) -> list[Migration]:
        # Read on use: plugins register theirs when they load, which may be after the store was made.
        return self._given if self._given is not None else registered_migrations()

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
            return MigrationState(False, [(m.subsystem, m.name, "new") for m in self.migrations])
        st = MigrationState(True)
        for m in self.migrations:
            s = recorded.get(m.key)
            if s is None and m.implied_by is not None and recorded.get(m.implied_by) == "executed":
                s = "executed"
            st.items.append((m.subsystem, m.name, s if s in ("executed", "pending") else "new"))
        return st

    async def state(self) -> MigrationState:
        async with self.store.backend.read() as conn:
            return self._state_from(await self._recorded(conn))

    async def _record(self, conn: Conn, m: Migration, state: str) -> None:
        p = self.store.params()
        await conn.execute(
            f"INSERT INTO {q(META_TABLE)} (name, state) VALUES ({p(m.key)}, {p(state)}) "
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
                await self._record(conn, m, "executed")
                run.ran.append((m.subsystem, m.name, "executed"))
        await self.store.schema_changed()
        return run

    def _with_status(self, st: MigrationState, status: Status) -> list[Migration]:
        wanted = {(s, n) for s, n, x in st.items if x == status}
        return [m for m in self.migrations if (m.subsystem, m.name) in wanted]

    async def up(self) -> MigrationRun:
        run = MigrationRun()
        async with self.store.backend.write() as conn:
            await self._lock(conn)
            st = self._state_from(await self._recorded(conn))
            if not st.bootstrapped:
                raise RuntimeError("database needs bootstrapping")
            if st.pending:
                raise RuntimeError("pending migrations")
            for m in self._with_status(st, "new"):
                await m.up(self.store, conn)
                state = "executed" if m.teardown is None else "pending"
                await self._record(conn, m, state)
                run.ran.append((m.subsystem, m.name, state))
        run.already = not run.ran
        await self.store.schema_changed()
        return run

    async def finish(self) -> MigrationRun:
        run = MigrationRun()
        async with self.store.backend.write() as conn:
            await self._lock(conn)
            st = self._state_from(await self._recorded(conn))
            if not st.bootstrapped:
                raise RuntimeError("database needs bootstrapping")
            for m in self._with_status(st, "pending"):
                if m.teardown is not None:
                    await m.teardown(self.store, conn)
                await self._record(conn, m, "executed")
                run.ran.append((m.subsystem, m.name, "executed"))
        run.already = not run.ran
        await self.store.schema_changed()
        return run

    async def reset(self) -> bool:
        """Drop every servegate table. False when the database was not bootstrapped."""
        if not (await self.state()).bootstrapped:
            return False
        extra = [t for m in reversed(self.migrations) for t in m.tables]
        tables = list(reversed(list(self.store.tables))) + extra + [META_TABLE]
        await self.store.backend.drop_all(list(dict.fromkeys(tables)))
        await self.store.schema_changed()
        return True
