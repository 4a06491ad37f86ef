"""The immutable runtime view of the configuration that the proxy serves from."""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

from servegate.proxy.router import Router
from servegate.schema.fields import Entity

__all__ = ["Snapshot", "SnapshotStore", "build_snapshot", "entity_names", "load_snapshot"]

log = logging.getLogger(__name__)

Row = dict[str, Any]
# entity -> field -> value -> row
Indexes = Mapping[str, Mapping[str, Mapping[Any, Row]]]


class SnapshotStore(Protocol):
    async def all(self, entity: str) -> list[Row]: ...

    async def config_version(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int
    router: Router
    # Every declared entity's rows by primary key and endpoint key: indexes["consumers"]["username"]["bob"].
    indexes: Indexes
    # servegate.plugins.runner.PluginIndex, or None when built without plugins.
    plugins: Any
    rows: Mapping[str, tuple[Row, ...]]
    # Epoch seconds when the rows were read: a row's `ttl` (remaining seconds) counts from here.
    loaded_at: float

    def index(self, entity: str, by: str) -> Mapping[Any, Row]:
        return self.indexes.get(entity, {}).get(by, MappingProxyType({}))


def _declared() -> list[Entity]:
    from servegate.schema.entities import declared

    return list(declared().values())


def entity_names() -> tuple[str, ...]:
    """The entities a snapshot holds: every declared one (core, then the loaded plugins')."""
    return tuple(e.name for e in _declared())


def _index(rows: Iterable[Row], field: str) -> Mapping[Any, Row]:
    return MappingProxyType({r[field]: r for r in rows if r.get(field) is not None})


def _indexes(entities: list[Entity], lists: Mapping[str, list[Row]]) -> Indexes:
    out: dict[str, Mapping[str, Mapping[Any, Row]]] = {}
    for e in entities:
        keys = dict.fromkeys([*e.primary_key, *([e.endpoint_key] if e.endpoint_key else [])])
        out[e.name] = MappingProxyType({k: _index(lists[e.name], k) for k in keys})
    return MappingProxyType(out)


def _plugin_index(plugin_rows: list[Row], indexes: Indexes, loaded_at: float) -> Any:
    runner = importlib.import_module("servegate.plugins.runner")
    return runner.PluginIndex(
        plugin_rows,
        consumers_by_id=indexes["consumers"]["id"],
        indexes=indexes,
        loaded_at=loaded_at,
    )


def build_snapshot(
    rows: Mapping[str, list[Row]],
    version: int = 0,
    *,
    loaded_at: float | None = None,
    with_plugins: bool = True,
) -> Snapshot:
    """Pure: index the rows of every declared entity and compile the router.

    ``with_plugins=False`` leaves ``plugins`` as None (routing-only uses, tests).
    """
    entities = _declared()
    lists = {e.name: list(rows.get(e.name) or ()) for e in entities}
    indexes = _indexes(entities, lists)
    at = time.time() if loaded_at is None else loaded_at
    return Snapshot(
        version=version,
        router=Router(lists["routes"], indexes["services"]["id"]),
        indexes=indexes,
        plugins=_plugin_index(lists["plugins"], indexes, at) if with_plugins else None,
        rows=MappingProxyType({name: tuple(v) for name, v in lists.items()}),
        loaded_at=at,
    )


async def load_snapshot(store: SnapshotStore, *, with_plugins: bool = True) -> Snapshot:
    """Read everything from the store and build a snapshot.

    The version is read first: a write that lands while the rows are read bumps it past this snapshot's
    version, so the next poll rebuilds again rather than keeping a half-old view labelled as current.
    """
    version = await store.config_version()
    loaded_at = time.time()
    rows = {name: await store.all(name) for name in entity_names()}
    return build_snapshot(rows, version, loaded_at=loaded_at, with_plugins=with_plugins)
