"""Change events: what each configuration write touched, so workers apply it instead of reloading everything.

Every committed write moves `config_version` by one and, in the same transaction, adds its events to
`config_changes` under that version: one row per entity row it wrote (`upsert` with the stored columns, or
`delete` with the primary key), or a single `reload` of an entity when one transaction wrote more rows than is
worth sending one by one (a bulk import). Bumping the version's one row first serialises writers on PostgreSQL
(its row lock is held to commit), so versions commit in order: a reader that sees version v sees every event up
to v. A reader that finds a hole (events pruned while it lagged, or a version bumped by older code) falls back to
a full reload; so does anyone who asks for more events than `MAX_READ`.

Events older than `RETENTION_S` are pruned by the writers, every `PRUNE_EVERY` versions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from .backend import Conn, Params
from .table import q

CHANGES_TABLE = "config_changes"
CONFIG_TABLE = "config_version"
# One transaction writing more rows than this sends one `reload` event per entity instead.
MAX_ROW_EVENTS = 1000
# A reader further behind than this many events reloads in full.
MAX_READ = 5000
RETENTION_S = 300.0
PRUNE_EVERY = 256

UPSERT, DELETE, RELOAD = "upsert", "delete", "reload"


@dataclass(frozen=True, slots=True)
class Change:
    """One event. `row`: the stored columns after an upsert (the table's raw form, decoded by the reader);
    `pk`: the primary key of the row (None for a reload)."""

    version: int
    entity: str
    op: str
    pk: dict[str, Any] | None
    row: dict[str, Any] | None


class Pending:
    """The events of one transaction, written at commit."""

    __slots__ = ("rows", "reloads")

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, dict[str, Any], dict[str, Any] | None]] = []
        self.reloads: dict[str, None] = {}  # entities, in order

    def add(self, entity: str, op: str, pk: dict[str, Any], row: dict[str, Any] | None) -> None:
        if entity in self.reloads:
            return
        self.rows.append((entity, op, pk, row))
        if len(self.rows) > MAX_ROW_EVENTS:  # a bulk write: stop keeping rows (a million would be held here)
            self.reloads.update(dict.fromkeys(e for e, _, _, _ in self.rows))
            self.rows.clear()

    def reload(self, entity: str) -> None:
        self.reloads[entity] = None

    def __bool__(self) -> bool:
        return bool(self.rows or self.reloads)

    def events(self) -> list[tuple[str, str, dict[str, Any] | None, dict[str, Any] | None]]:
        rows = [r for r in self.rows if r[0] not in self.reloads]
        return [*rows, *((e, RELOAD, None, None) for e in self.reloads)]


def _dumps(value: dict[str, Any] | None) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


async def commit(conn: Conn, pending: Pending, params: Params, *, events_table: bool = True) -> int:
    """Bump the version and write `pending` under it (inside the writing transaction). Returns the version.
    Without the events table (a database between releases, before `migrations up` made it) only the version
    moves, and readers reload in full."""
    rows = await conn.fetch(
        f"UPDATE {q(CONFIG_TABLE)} SET {q('version')} = {q('version')} + 1 WHERE id = 1 RETURNING {q('version')}"
    )
    version = int(rows[0]["version"])
    if not events_table:
        return version
    now = time.time()
    events = pending.events()
    p = Params(params.dialect)
    values = ", ".join(
        f"({p(version)}, {p(seq)}, {p(entity)}, {p(op)}, {p(_dumps(pk))}, {p(_dumps(row))}, {p(now)})"
        for seq, (entity, op, pk, row) in enumerate(events)
    )
    if values:
        # Batches of rows would pass the drivers' bind limits: 7 values a row, 1000 rows at most here.
        await conn.execute(
            f"INSERT INTO {q(CHANGES_TABLE)} ({q('version')}, {q('seq')}, {q('entity')}, {q('op')}, {q('pk')}, "
            f"{q('row')}, {q('at')}) VALUES {values}",
            p.values,
        )
    if version % PRUNE_EVERY == 0:
        p = Params(params.dialect)
        await conn.execute(f"DELETE FROM {q(CHANGES_TABLE)} WHERE {q('at')} < {p(now - RETENTION_S)}", p.values)
    return version


def _loads(text: Any) -> Any:
    return None if text is None else orjson.loads(text)


async def read_since(conn: Conn, version: int, params: Params) -> tuple[int, list[Change] | None]:
    """(current version, the events after `version`), or (current, None) when they are not all there and the
    reader must reload in full. (current, []) when nothing changed. One query: the version row joined with
    the events after `version` (a poll that finds nothing new costs what reading the version did)."""
    p = Params(params.dialect)
    raw = await conn.fetch(
        f"SELECT v.{q('version')} AS cur, e.{q('version')} AS ev, e.{q('entity')}, e.{q('op')}, e.{q('pk')}, "
        f"e.{q('row')} FROM {q(CONFIG_TABLE)} v LEFT JOIN {q(CHANGES_TABLE)} e "
        f"ON e.{q('version')} > {p(version)} AND e.{q('version')} <= v.{q('version')} "
        f"WHERE v.id = 1 ORDER BY e.{q('version')}, e.{q('seq')} LIMIT {p(MAX_READ + 1)}",
        p.values,
    )
    current = int(raw[0]["cur"]) if raw else 0
    if current == version:
        return current, []
    if current < version:  # the database was reset or replaced under the reader
        return current, None
    if len(raw) > MAX_READ:
        return current, None
    seen = {int(r["ev"]) for r in raw if r["ev"] is not None}
    # Every version in (version, current] must have its events: a hole means they were pruned (or written by
    # code that kept none), and only a full reload can tell what changed.
    if len(seen) != current - version or min(seen, default=version + 1) != version + 1:
        return current, None
    return current, [Change(int(r["ev"]), r["entity"], r["op"], _loads(r["pk"]), _loads(r["row"])) for r in raw]
