"""The immutable runtime view of the configuration that the proxy serves from."""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

from servegate.proxy.router import Router
from servegate.schema.fields import Entity
from servegate.snapshot.cache import Caches, MemorySource

__all__ = ["Snapshot", "SnapshotStore", "build_snapshot", "entity_names", "held_entities", "load_snapshot"]

Row = dict[str, Any]
Index = Mapping[Any, Row]
# entity -> field -> value -> row
Indexes = Mapping[str, Mapping[str, Index]]


class SnapshotStore(Protocol):
    async def all(self, entity: str) -> list[Row]: ...

    async def config_version(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int
    router: Router
    # The held entities' rows by primary key and endpoint key: indexes["routes"]["name"]["r1"]. Cached
    # entities (Entity.cached: consumers, credentials) are empty here unless the snapshot was built from given
    # rows; they are looked up through `caches`.
    indexes: Indexes
    # servegate.plugins.runner.PluginIndex, or None when built without plugins.
    plugins: Any
    # Epoch seconds when the rows were read: a row's `ttl` (remaining seconds) counts from here.
    loaded_at: float
    # The worker's lookup caches and their row source; shared by every snapshot of the worker.
    caches: Caches

    def index(self, entity: str, by: str) -> Index:
        return self.indexes.get(entity, {}).get(by, MappingProxyType({}))

    def rows(self, entity: str) -> Iterable[Row]:
        """Every row of a held entity (no order)."""
        return self.index(entity, "id").values()


def declared() -> list[Entity]:
    from servegate.schema.entities import declared as _declared

    return list(_declared().values())


def entity_names() -> tuple[str, ...]:
    """Every declared entity (core, then the loaded plugins')."""
    return tuple(e.name for e in declared())


def held_entities() -> tuple[str, ...]:
    """The entities a snapshot loaded from the store holds: every declared one that is not `cached`."""
    return tuple(e.name for e in declared() if not e.cached)


def index_fields(e: Entity) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*e.primary_key, *([e.endpoint_key] if e.endpoint_key else [])]))


def index_rows(e: Entity, rows: Iterable[Row]) -> Mapping[str, Index]:
    rows = list(rows)
    return MappingProxyType(
        {k: MappingProxyType({r[k]: r for r in rows if r.get(k) is not None}) for k in index_fields(e)}
    )


def plugin_index(indexes: Indexes, loaded_at: float, caches: Caches) -> Any:
    """The plugin instances of `indexes`, compiled (servegate.plugins.runner.PluginIndex)."""
    runner = importlib.import_module("servegate.plugins.runner")
    return runner.PluginIndex(
        indexes.get("plugins", {}).get("id", {}).values(), indexes=indexes, loaded_at=loaded_at, caches=caches
    )


def _assemble(indexes: Indexes, version: int, router: Router, loaded_at: float, with_plugins: bool,
              caches: Caches) -> Snapshot:
    return Snapshot(
        version=version,
        router=router,
        indexes=indexes,
        plugins=plugin_index(indexes, loaded_at, caches) if with_plugins else None,
        loaded_at=loaded_at,
        caches=caches,
    )


def _index_all(rows: Mapping[str, Iterable[Row]]) -> Indexes:
    return MappingProxyType({e.name: index_rows(e, rows.get(e.name) or ()) for e in declared()})


def build_snapshot(
    rows: Mapping[str, list[Row]],
    version: int = 0,
    *,
    loaded_at: float | None = None,
    with_plugins: bool = True,
    caches: Caches | None = None,
) -> Snapshot:
    """Pure: index the given rows of every declared entity and compile the router.

    Without `caches`, lookups of cached entities are answered from the given rows (MemorySource).
    ``with_plugins=False`` leaves ``plugins`` as None (routing-only uses, tests).
    """
    indexes = _index_all(rows)
    router = Router(list(indexes["routes"]["id"].values()), indexes["services"]["id"])
    return _assemble(indexes, version, router, time.time() if loaded_at is None else loaded_at, with_plugins,
                     caches if caches is not None else Caches(MemorySource(indexes)))


async def load_snapshot(store: SnapshotStore, *, with_plugins: bool = True, caches: Caches | None = None,
                        previous: Snapshot | None = None) -> Snapshot:
    """Read every held entity from the store and build a snapshot (start-up and the recovery path).

    The version is read first: a write that lands while the rows are read bumps it past this snapshot's
    version, so the next poll applies it again rather than keeping a half-old view labelled as current.
    Cached entities are not read: `caches` (the worker's; a new one over the store when None) finds them.
    The router is built in slices (the proxy keeps serving meanwhile), reusing `previous`'s matchers.
    """
    version = await store.config_version()
    loaded_at = time.time()
    indexes = _index_all({name: await store.all(name) for name in held_entities()})
    if caches is None:
        from servegate.snapshot.source import StoreSource

        caches = Caches(StoreSource(store))
    router = await Router.build(list(indexes["routes"]["id"].values()), indexes["services"]["id"],
                                previous=previous.router if previous is not None else None)
    return _assemble(indexes, version, router, loaded_at, with_plugins, caches)
