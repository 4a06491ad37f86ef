"""The generic entity DAO: one implementation for every declared entity, over either backend."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from servegate.schema import errors as _errors
from servegate.schema.fields import Entity

from . import changes as _changes
from .backend import Backend, Conn, IntegrityFailure, Params
from .paging import MAX_TAGS, check_size, decode_offset, encode_offset
from .table import CACHE_KEY, TTL, Table, build_table, q

T = TypeVar("T")

CONFIG_TABLE = _changes.CONFIG_TABLE
# Tables that are not generated from entity declarations (core migrations create them directly).
RESERVED_TABLES = frozenset({"ratelimiting_metrics", CONFIG_TABLE, _changes.CHANGES_TABLE, "schema_meta"})


@dataclass
class _Tx:
    """An open `Store.transaction()`: its connection, and whether a write in it changed the configuration."""

    dao: EntityDao
    conn: Conn
    changes: _changes.Pending


# The transaction the current task is in (a task's context: another coroutine's writes never join it).
_TX: ContextVar[_Tx | None] = ContextVar("servegate_store_tx", default=None)
_SAVEPOINT = "sg_write"


def _unmatchable(values: Iterable[Any]) -> bool:
    """A string with a NUL byte matches no stored value: validation keeps NUL out of every stored
    string, and PostgreSQL could not even bind one. Reads answer "none" for it on both stores."""
    return any(isinstance(v, str) and "\x00" in v for v in values)


def default_entities() -> list[Entity]:
    from servegate.schema.entities import declared

    return _as_list(declared())


def _as_list(entities: Iterable[Entity] | Mapping[str, Entity]) -> list[Entity]:
    if isinstance(entities, Mapping):
        return list(entities.values())
    return list(entities)


class EntityDao:
    """CRUD, paging and the config version. Migrations and rate-limit counters are mixed in by Store."""

    def __init__(
        self, backend: Backend, entities: Iterable[Entity] | Mapping[str, Entity] | None = None
    ) -> None:
        self.backend = backend
        self.dialect = backend.dialect
        self._entities = _as_list(entities) if entities is not None else None
        self._tables: dict[str, Table] | None = None
        # Whether the change events table exists (known after the first write; forgotten on schema changes).
        self._events_table: bool | None = None

    # --- metadata ------------------------------------------------------------------------------

    @property
    def tables(self) -> dict[str, Table]:
        """Entity tables in dependency order (parents first), built on first use."""
        if self._tables is None:
            ents = self._entities if self._entities is not None else default_entities()
            ents = [e for e in ents if e.name not in RESERVED_TABLES]
            known = {e.name for e in ents}
            self._tables = {e.name: build_table(e, known) for e in ents}
        return self._tables

    def table(self, entity: Entity | str) -> Table:
        name = entity if isinstance(entity, str) else entity.name
        try:
            return self.tables[name]
        except KeyError:
            raise ValueError(f"unknown entity '{name}'") from None

    # --- helpers -------------------------------------------------------------------------------

    def _live(self, t: Table, p: Params, now: float, alias: str = "") -> str:
        if not t.has_ttl:
            return "1=1"
        col = f"{alias}{q(TTL)}"
        return f"({col} IS NULL OR {col} > {p(now)})"

    def _pk_where(self, t: Table, pk: dict[str, Any], p: Params) -> str:
        return " AND ".join(f"{q(c)} = {p(pk.get(c))}" for c in t.pk)

    def _decode_all(self, t: Table, rows: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
        return [t.decode(r, self.dialect, now) for r in rows]

    # --- transactions --------------------------------------------------------------------------

    def _tx(self) -> _Tx | None:
        tx = _TX.get()
        return tx if tx is not None and tx.dao is self else None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """Run the writes (and reads) inside in one database transaction: committed together when the block
        ends, all rolled back when it raises. The config version moves once, at commit, so the snapshot is
        rebuilt once for the batch. Nested use joins the outer transaction. A write that fails inside
        (a constraint) is undone alone and raises its DaoError; what the block does with it is its choice.
        Statements run one at a time: don't gather writes of one transaction concurrently."""
        if self._tx() is not None:
            yield
            return
        async with self.backend.write() as conn:
            tx = _Tx(self, conn, _changes.Pending())
            token = _TX.set(tx)
            try:
                yield
                if tx.changes:
                    await self._commit(conn, tx.changes)
            finally:
                _TX.reset(token)

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[Conn]:
        tx = self._tx()
        if tx is not None:  # inside a transaction: read what it wrote (and never wait on its own lock)
            yield tx.conn
            return
        async with self.backend.read() as conn:
            yield conn

    async def _changed(self, conn: Conn, t: Table, op: str, pk: dict[str, Any], raw: dict[str, Any] | None) -> None:
        """Record a change event for one written row: at commit for a transaction (one version for the batch),
        now otherwise (the config version moves in the write's own transaction)."""
        tx = self._tx()
        if tx is not None:
            tx.changes.add(t.name, op, pk, raw)
            return
        pending = _changes.Pending()
        pending.add(t.name, op, pk, raw)
        await self._commit(conn, pending)

    async def _commit(self, conn: Conn, pending: _changes.Pending) -> None:
        if self._events_table is None:
            self._events_table = await self.backend.table_exists(conn, _changes.CHANGES_TABLE)
        await _changes.commit(conn, pending, Params(self.dialect), events_table=self._events_table)

    async def schema_changed(self) -> None:
        """Tables were created or dropped (migrations): forget what was known about them."""
        self._events_table = None
        await self.backend.schema_changed()

    def decode_row(self, entity: Entity | str, raw: dict[str, Any]) -> dict[str, Any]:
        """A change event's stored columns as a row (the shape reads return)."""
        return self.table(entity).decode(raw, self.dialect, time.time())

    async def changes_since(self, version: int) -> tuple[int, list[_changes.Change] | None]:
        """The change events after `version` (see store/changes.py): (current version, events), or
        (current version, None) when the caller must reload everything."""
        async with self._reading() as conn:
            return await _changes.read_since(conn, version, Params(self.dialect))

    async def _purge_expired(self, conn: Conn, t: Table, now: float) -> None:
        # Expired rows must not block the unique key of a new row with the same key.
        if t.has_ttl:
            p = Params(self.dialect)
            await conn.execute(f"DELETE FROM {q(t.name)} WHERE {q(TTL)} <= {p(now)}", p.values)

    def _expiry(self, row: dict[str, Any], now: float) -> float | None:
        ttl = row.get(TTL)
        if ttl is None or ttl == 0:
            return None
        return now + float(ttl)

    async def _write(
        self, t: Table, op: str, row: dict[str, Any], body: Callable[[Conn], Awaitable[T]]
    ) -> T:
        tx = self._tx()
        if tx is not None:
            # A savepoint per write: a failed one is undone alone and the transaction stays usable
            # (PostgreSQL refuses every statement of a transaction after an error otherwise).
            await tx.conn.execute(f"SAVEPOINT {_SAVEPOINT}")
            try:
                result = await body(tx.conn)
            except IntegrityFailure as failure:
                await tx.conn.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
                await tx.conn.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
                raise await self._map_failure(t, op, row, failure) from None
            await tx.conn.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
            return result
        try:
            async with self.backend.write() as conn:
                return await body(conn)
        except IntegrityFailure as failure:
            raise await self._map_failure(t, op, row, failure) from None

    # --- writes --------------------------------------------------------------------------------

    async def insert(self, entity: Entity | str, row: dict[str, Any]) -> dict[str, Any]:
        t = self.table(entity)
        now = time.time()
        cols = t.encode(row, self.dialect)
        if t.has_ttl:
            cols[TTL] = self._expiry(row, now)
        p = Params(self.dialect)
        sql = (
            f"INSERT INTO {q(t.name)} ({', '.join(q(c) for c in cols)}) "
            f"VALUES ({', '.join(p(v) for v in cols.values())}) RETURNING *"
        )

        return await self._write_returning(t, "insert", row, sql, p, now)

    async def insert_many(self, entity: Entity | str, rows: Iterable[dict[str, Any]]) -> int:
        """Insert many rows (bulk imports): multi-row INSERTs inside the current transaction, or one of its own.
        Returns the count. A constraint failure raises the DaoError of the first failing row (found by retrying
        its batch row by row); the rows of the call are then kept or rolled back with the transaction."""
        t = self.table(entity)
        now = time.time()
        rows = list(rows)
        encoded: list[dict[str, Any]] = []
        for row in rows:
            cols = t.encode(row, self.dialect)
            if t.has_ttl:
                cols[TTL] = self._expiry(row, now)
            encoded.append(cols)
        if not encoded:
            return 0
        names = list(encoded[0])
        # Both drivers bind at most 32767 values per statement.
        per = max(1, 30000 // len(names))
        async with self.transaction():
            tx = self._tx()
            assert tx is not None
            await self._purge_expired(tx.conn, t, now)
            for start in range(0, len(encoded), per):
                batch = encoded[start:start + per]
                p = Params(self.dialect)
                values = ", ".join("(" + ", ".join(p(cols.get(c)) for c in names) + ")" for cols in batch)
                sql = f"INSERT INTO {q(t.name)} ({', '.join(q(c) for c in names)}) VALUES {values}"

                async def body(conn: Conn, sql: str = sql, p: Params = p) -> None:
                    await conn.execute(sql, p.values)

                try:
                    await self._write(t, "insert", {}, body)
                except _errors.DaoError:
                    for row in rows[start:start + per]:  # which row: its own error, Kong's message
                        await self.insert(t.name, row)
                    raise
                for cols in batch:
                    tx.changes.add(t.name, _changes.UPSERT, {c: cols[c] for c in t.pk}, cols)
        return len(encoded)

    async def upsert(self, entity: Entity | str, row: dict[str, Any]) -> dict[str, Any]:
        t = self.table(entity)
        now = time.time()
        cols = t.encode(row, self.dialect)
        if t.has_ttl:
            cols[TTL] = self._expiry(row, now)
        p = Params(self.dialect)
        updates = ", ".join(f"{q(c)} = excluded.{q(c)}" for c in cols if c not in t.pk)
        sql = (
            f"INSERT INTO {q(t.name)} ({', '.join(q(c) for c in cols)}) "
            f"VALUES ({', '.join(p(v) for v in cols.values())}) "
            f"ON CONFLICT ({', '.join(q(c) for c in t.pk)}) DO UPDATE SET {updates} RETURNING *"
        )

        return await self._write_returning(t, "upsert", row, sql, p, now)

    async def _write_returning(self, t: Table, op: str, row: dict[str, Any], sql: str, p: Params,
                               now: float) -> dict[str, Any]:
        """Run one INSERT ... RETURNING * in a write transaction that also bumps the config version."""

        async def body(conn: Conn) -> dict[str, Any]:
            await self._purge_expired(conn, t, now)
            rows = await conn.fetch(sql, p.values)
            await self._changed(conn, t, _changes.UPSERT, {c: rows[0][c] for c in t.pk}, rows[0])
            return t.decode(rows[0], self.dialect, now)

        return await self._write(t, op, row, body)

    async def update(self, entity: Entity | str, row: dict[str, Any]) -> dict[str, Any]:
        """Replace the stored row with `row`. A `ttl` key resets the expiry; without it the expiry is kept."""
        t = self.table(entity)
        now = time.time()
        cols = {c: v for c, v in t.encode(row, self.dialect).items() if c not in t.pk}
        if t.has_ttl and TTL in row:
            cols[TTL] = self._expiry(row, now)
        p = Params(self.dialect)
        sets = ", ".join(f"{q(c)} = {p(v)}" for c, v in cols.items())
        pk = {c: row.get(c) for c in t.pk}
        sql = (
            f"UPDATE {q(t.name)} SET {sets} WHERE {self._pk_where(t, pk, p)} "
            f"AND {self._live(t, p, now)} RETURNING *"
        )

        async def body(conn: Conn) -> dict[str, Any] | None:
            rows = await conn.fetch(sql, p.values)
            if not rows:
                return None
            await self._changed(conn, t, _changes.UPSERT, {c: rows[0][c] for c in t.pk}, rows[0])
            return t.decode(rows[0], self.dialect, now)

        result = await self._write(t, "update", row, body)
        if result is None:
            raise _errors.not_found(pk)
        return result

    async def delete(self, entity: Entity | str, pk: dict[str, Any]) -> bool:
        t = self.table(entity)
        now = time.time()
        p = Params(self.dialect)
        sql = f"DELETE FROM {q(t.name)} WHERE {self._pk_where(t, pk, p)} AND {self._live(t, p, now)}"
        if _unmatchable(p.values):
            return False

        async def body(conn: Conn) -> bool:
            n = await conn.execute(sql, p.values)
            if n:
                await self._changed(conn, t, _changes.DELETE, {c: pk.get(c) for c in t.pk}, None)
            return n > 0

        return await self._write(t, "delete", dict(pk), body)

    # --- reads ---------------------------------------------------------------------------------

    async def _select_where(self, t: Table, where: str, p: Params, now: float) -> dict[str, Any] | None:
        if _unmatchable(p.values):
            return None
        sql = f"SELECT * FROM {q(t.name)} WHERE {where} AND {self._live(t, p, now)} LIMIT 1"
        async with self._reading() as conn:
            rows = await conn.fetch(sql, p.values)
        return t.decode(rows[0], self.dialect, now) if rows else None

    async def select(self, entity: Entity | str, pk: dict[str, Any]) -> dict[str, Any] | None:
        t = self.table(entity)
        p = Params(self.dialect)
        return await self._select_where(t, self._pk_where(t, pk, p), p, time.time())

    async def select_by(self, entity: Entity | str, field: str, value: Any) -> dict[str, Any] | None:
        t = self.table(entity)
        if field == CACHE_KEY:
            col, value = CACHE_KEY, t.cache_key_value(value)
        else:
            if field not in t.entity.field_map():
                raise ValueError(f"unknown field '{field}' of '{t.name}'")
            col = t.column_of(field)
            if isinstance(value, dict):
                value = value.get("id")
        p = Params(self.dialect)
        return await self._select_where(t, f"{q(col)} = {p(value)}", p, time.time())

    async def page(
        self,
        entity: Entity | str,
        *,
        size: int = 100,
        offset: str | None = None,
        tags: list[str] | None = None,
        tags_mode: str = "and",
        filters: dict[str, Any] | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        t = self.table(entity)
        size = check_size(size)
        now = time.time()
        p = Params(self.dialect)
        where = [self._live(t, p, now)]
        if offset is not None:
            after = decode_offset(offset, len(t.pk))
            lhs = ", ".join(q(c) for c in t.pk)
            rhs = ", ".join(p(v) for v in after)
            where.append(f"({lhs}) > ({rhs})" if len(t.pk) > 1 else f"{lhs} > {rhs}")
        for name, value in (filters or {}).items():
            if name not in t.entity.field_map():
                raise ValueError(f"unknown filter field '{name}' of '{t.name}'")
            v = value.get("id") if isinstance(value, dict) else value
            col = q(t.column_of(name))
            where.append(f"{col} IS NULL" if v is None else f"{col} = {p(v)}")
        if tags:
            if len(tags) > MAX_TAGS:
                raise _errors.invalid_options({"tags": "cannot query more than 5 tags"})
            if not t.has_tags:
                return [], None
            joiner = " OR " if tags_mode == "or" else " AND "
            parts = [self.dialect.json_contains(q("tags"), p(self.dialect.json_contains_arg(tag))) for tag in tags]
            where.append("(" + joiner.join(parts) + ")")
        if _unmatchable(p.values) or _unmatchable(tags or ()):
            return [], None
        order = ", ".join(q(c) for c in t.pk)
        sql = (
            f"SELECT * FROM {q(t.name)} WHERE {' AND '.join(where)} ORDER BY {order} "
            f"LIMIT {p(size + 1)}"
        )
        async with self._reading() as conn:
            raw = await conn.fetch(sql, p.values)
        rows = self._decode_all(t, raw[:size], now)
        next_offset = None
        if len(raw) > size:
            next_offset = encode_offset([rows[-1][c] for c in t.pk])
        return rows, next_offset

    async def all(self, entity: Entity | str) -> list[dict[str, Any]]:
        t = self.table(entity)
        now = time.time()
        p = Params(self.dialect)
        order = ", ".join(q(c) for c in t.pk)
        sql = f"SELECT * FROM {q(t.name)} WHERE {self._live(t, p, now)} ORDER BY {order}"
        async with self._reading() as conn:
            raw = await conn.fetch(sql, p.values)
        return self._decode_all(t, raw, now)

    async def config_version(self) -> int:
        async with self._reading() as conn:
            rows = await conn.fetch(f"SELECT {q('version')} AS v FROM {q(CONFIG_TABLE)} WHERE id = 1")
        return int(rows[0]["v"]) if rows else 0

    # --- constraint failures -> Kong errors ----------------------------------------------------

    def _output_value(self, t: Table, field: str, row: dict[str, Any]) -> Any:
        v = row.get(field)
        if field in t.foreign:
            if isinstance(v, dict):
                return {"id": v.get("id")}
            return None if v is None else {"id": v}
        return v

    def _unique_fields(self, t: Table, failure: IntegrityFailure) -> tuple[str, ...] | None:
        if failure.constraint:
            if failure.constraint == f"{t.name}_pkey":
                return t.pk
            if failure.constraint in t.unique:
                return t.unique[failure.constraint]
        if failure.columns:
            cols = tuple(failure.columns)
            if set(cols) == set(t.pk):
                return t.pk
            if cols == (CACHE_KEY,):
                return tuple(t.entity.cache_key)
            fields = tuple(t.column_field.get(c, c) for c in cols)
            return fields
        return None

    async def _map_failure(
        self, t: Table, op: str, row: dict[str, Any], failure: IntegrityFailure
    ) -> Exception:
        if failure.kind == "unique":
            fields = self._unique_fields(t, failure)
            if fields is None:
                return _errors.database_error(failure.detail)
            if fields == t.pk:
                return _errors.primary_key_violation({c: row.get(c) for c in t.pk})
            return _errors.unique_violation({f: self._output_value(t, f, row) for f in fields})
        if failure.kind == "fk":
            if op == "delete":
                child = await self._restricting_child(t, row, failure)
                return _errors.foreign_key_restrict(child, t.name)
            field = await self._missing_parent(t, row, failure)
            if field is not None:
                fk = t.foreign[field]
                return _errors.foreign_key_violation(field, fk.reference, self._output_value(t, field, row))
        return _errors.database_error(failure.detail)

    def _fk_constraint_owner(self, constraint: str | None) -> tuple[Table, str] | None:
        if not constraint:
            return None
        for tab in self.tables.values():
            for fk in tab.foreign.values():
                if f"{tab.name}_{fk.column}_fkey" == constraint:
                    return tab, fk.field
        return None

    async def _restricting_child(self, t: Table, pk: dict[str, Any], failure: IntegrityFailure) -> str:
        owner = self._fk_constraint_owner(failure.constraint)
        if owner is not None:
            return owner[0].name
        # SQLite does not name the constraint: look for a direct child that still references the row.
        candidates = [
            (tab, fk)
            for tab in self.tables.values()
            for fk in tab.foreign.values()
            if fk.constrained and fk.reference == t.name and not fk.cascade
        ]
        async with self._reading() as conn:
            for tab, fk in candidates:
                p = Params(self.dialect)
                sql = f"SELECT 1 AS x FROM {q(tab.name)} WHERE {q(fk.column)} = {p(pk.get('id'))} LIMIT 1"
                if await conn.fetch(sql, p.values):
                    return tab.name
        return candidates[0][0].name if candidates else "unknown"

    async def _missing_parent(self, t: Table, row: dict[str, Any], failure: IntegrityFailure) -> str | None:
        owner = self._fk_constraint_owner(failure.constraint)
        if owner is not None and owner[0] is t:
            return owner[1]
        async with self._reading() as conn:
            for fk in t.foreign.values():
                value = self._output_value(t, fk.field, row)
                if not fk.constrained or value is None:
                    continue
                p = Params(self.dialect)
                sql = f"SELECT 1 AS x FROM {q(fk.reference)} WHERE {q('id')} = {p(value['id'])} LIMIT 1"
                if not await conn.fetch(sql, p.values):
                    return fk.field
        return None
