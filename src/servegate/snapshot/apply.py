"""Apply change events to a snapshot's indexes in O(rows changed), copying only the entities they touch.

Rows that did not change keep their identity from one snapshot to the next, which is what lets the router
reuse the matchers it compiled for them. Deletes cascade here as the database cascaded them (a consumer's
plugins, a route's plugins): the events name only the row the write deleted. Cached entities are not held;
their events become cache invalidations (`tags`).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from servegate.schema.fields import Entity
from servegate.snapshot.cache import Tag
from servegate.snapshot.model import Index, Indexes, Row, index_fields, index_rows
from servegate.store.changes import DELETE, RELOAD, UPSERT, Change

__all__ = ["Applied", "apply_changes", "apply_steps", "replace_entity", "row_tags"]

Decode = Callable[[str, dict[str, Any]], Row]


@dataclass
class Applied:
    indexes: Indexes
    # Held entities whose rows changed (the router and the plugin index depend on some of them).
    changed: set[str] = field(default_factory=set)
    # Held entities to read back in full (a bulk write sent one `reload` event instead of its rows).
    reload: set[str] = field(default_factory=set)
    # Cache invalidations, and whether the caches must be emptied (a bulk write to a cached entity).
    tags: list[Tag] = field(default_factory=list)
    clear_caches: bool = False


def row_tags(e: Entity, row: Mapping[str, Any]) -> list[Tag]:
    """The tags a row's change invalidates: its primary key and each unique field's value."""
    names = dict.fromkeys([*index_fields(e), *(n for n, f in e.fields if f.unique)])
    return [(e.name, n, row[n]) for n in names if isinstance(row.get(n), (str, int))]


def _fk_id(value: Any) -> Any:
    return value.get("id") if isinstance(value, Mapping) else value


class _Editor:
    """Copy-on-write over the indexes: an entity's index dicts are copied on its first change."""

    def __init__(self, indexes: Indexes, entities: Mapping[str, Entity]) -> None:
        self.indexes = indexes
        self.entities = entities
        self.work: dict[str, dict[str, dict[Any, Row]]] = {}
        # parent entity -> [(held child entity, foreign field)] for ON DELETE CASCADE references
        self.cascades: dict[str, list[tuple[Entity, str]]] = {}
        for child in entities.values():
            for name, f in child.fields:
                if f.type == "foreign" and f.on_delete == "cascade" and not child.cached and f.reference:
                    self.cascades.setdefault(f.reference, []).append((child, name))

    def _tables(self, e: Entity) -> dict[str, dict[Any, Row]]:
        tables = self.work.get(e.name)
        if tables is None:
            current = self.indexes.get(e.name, {})
            tables = self.work[e.name] = {k: dict(current.get(k, {})) for k in index_fields(e)}
        return tables

    def put(self, e: Entity, row: Row) -> None:
        tables = self._tables(e)
        pk = e.primary_key[0]
        old = tables[pk].get(row.get(pk))
        if old is not None:
            self._unindex(tables, old)
        for k, table in tables.items():
            v = row.get(k)
            if v is not None:
                table[v] = row

    @staticmethod
    def _unindex(tables: dict[str, dict[Any, Row]], old: Row) -> None:
        for k, table in tables.items():
            v = old.get(k)
            if v is not None and table.get(v) is old:
                del table[v]

    def remove(self, e: Entity, key: Any, tags: list[Tag]) -> None:
        if not e.cached:
            tables = self._tables(e)
            old = tables[e.primary_key[0]].get(key)
            if old is not None:
                self._unindex(tables, old)
        self.cascade(e, key, tags)

    def cascade(self, parent: Entity, key: Any, tags: list[Tag]) -> None:
        for child, fk in self.cascades.get(parent.name, ()):
            pk = child.primary_key[0]
            current = self.work[child.name][pk] if child.name in self.work else self.indexes.get(child.name, {}).get(pk, {})
            doomed = [r[pk] for r in current.values() if _fk_id(r.get(fk)) == key]
            for child_key in doomed:
                tags.append((child.name, pk, child_key))
                self.remove(child, child_key, tags)

    def result(self) -> Indexes:
        out = dict(self.indexes)
        for name, tables in self.work.items():
            out[name] = MappingProxyType({k: MappingProxyType(v) for k, v in tables.items()})
        return MappingProxyType(out)


def apply_changes(indexes: Indexes, changes: Iterable[Change], entities: Mapping[str, Entity],
                  decode: Decode) -> Applied:
    """The indexes after `changes`, and what else must follow (reloads, cache invalidations)."""
    steps = apply_steps(indexes, changes, entities, decode)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def apply_steps(indexes: Indexes, changes: Iterable[Change], entities: Mapping[str, Entity],
                decode: Decode) -> Generator[None, None, Applied]:
    """`apply_changes` one change at a time: yields after each, so that a caller on the event loop can let
    requests through during a large batch (decoding a row is most of the cost); returns the Applied. Nothing
    the caller's snapshot can reach is changed meanwhile."""
    ed = _Editor(indexes, entities)
    out = Applied(indexes)
    for ch in changes:
        e = entities.get(ch.entity)
        if e is None:  # an entity of a plugin this node does not load
            continue
        if ch.op == RELOAD:
            if e.cached:
                out.clear_caches = True
            # A bulk delete of parents removed their cascading children too: read those back as well.
            todo = [e]
            while todo:
                parent = todo.pop()
                if not parent.cached and parent.name not in out.reload:
                    out.reload.add(parent.name)
                todo.extend(child for child, _ in ed.cascades.get(parent.name, ()) if child.name not in out.reload)
            yield
            continue
        if ch.op == UPSERT and ch.row is not None:
            row = decode(e.name, ch.row)
            out.tags.extend(row_tags(e, row))
            if not e.cached:
                ed.put(e, row)
                out.changed.add(e.name)
        elif ch.op == DELETE and ch.pk:
            key = ch.pk.get(e.primary_key[0])
            out.tags.append((e.name, e.primary_key[0], key))
            before = len(out.tags)
            ed.remove(e, key, out.tags)
            if not e.cached:
                out.changed.add(e.name)
            out.changed.update(t[0] for t in out.tags[before:])
        yield
    out.changed -= {name for name, e in entities.items() if e.cached}
    out.indexes = ed.result()
    return out


def replace_entity(indexes: Indexes, e: Entity, rows: Iterable[Row]) -> Indexes:
    """`indexes` with every row of `e` replaced (a reload of one entity)."""
    out: dict[str, Mapping[str, Index]] = dict(indexes)
    out[e.name] = index_rows(e, rows)
    return MappingProxyType(out)
