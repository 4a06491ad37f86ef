"""The immutable runtime view of the configuration that the proxy serves from."""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

from servegate.proxy.router import Router

__all__ = ["ENTITIES", "Snapshot", "SnapshotStore", "build_snapshot", "load_snapshot"]

log = logging.getLogger(__name__)

ENTITIES = ("services", "routes", "consumers", "plugins", "keyauth_credentials")

Row = dict[str, Any]


class SnapshotStore(Protocol):
    async def all(self, entity: str) -> list[Row]: ...

    async def config_version(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int
    router: Router
    services_by_id: Mapping[str, Row]
    routes_by_id: Mapping[str, Row]
    consumers_by_id: Mapping[str, Row]
    consumers_by_username: Mapping[str, Row]
    credentials_by_key: Mapping[str, Row]
    # servegate.plugins.runner.PluginIndex, or None while that package is not available.
    plugins: Any
    rows: Mapping[str, tuple[Row, ...]]
    # Epoch seconds when the rows were read: a row's `ttl` (remaining seconds) counts from here.
    loaded_at: float

    def credential(self, key: str, now: float | None = None) -> Row | None:
        """The key-auth credential for ``key``, unless its ttl ran out since the snapshot was read."""
        row = self.credentials_by_key.get(key)
        if row is None:
            return None
        ttl = row.get("ttl")
        if ttl is not None and (time.time() if now is None else now) >= self.loaded_at + ttl:
            return None
        return row


def _index(rows: list[Row], field: str) -> Mapping[str, Row]:
    return MappingProxyType({r[field]: r for r in rows if r.get(field) is not None})


def _plugin_index(
    plugin_rows: list[Row],
    consumers_by_id: Mapping[str, Row],
    credentials_by_key: Mapping[str, Row],
    loaded_at: float,
) -> Any:
    try:
        runner = importlib.import_module("servegate.plugins.runner")
    except ModuleNotFoundError as exc:
        if exc.name not in ("servegate.plugins", "servegate.plugins.runner"):
            raise
        log.warning("servegate.plugins.runner not available: snapshot has no plugin index")
        return None
    return runner.PluginIndex(
        plugin_rows,
        consumers_by_id=consumers_by_id,
        credentials_by_key=credentials_by_key,
        loaded_at=loaded_at,
    )


def build_snapshot(
    rows: Mapping[str, list[Row]],
    version: int = 0,
    *,
    loaded_at: float | None = None,
    with_plugins: bool = True,
) -> Snapshot:
    """Pure: index the rows of every entity the proxy needs and compile the router.

    ``with_plugins=False`` leaves ``plugins`` as None (routing-only uses, tests).
    """
    lists = {name: list(rows.get(name) or ()) for name in ENTITIES}
    services_by_id = _index(lists["services"], "id")
    consumers_by_id = _index(lists["consumers"], "id")
    credentials_by_key = _index(lists["keyauth_credentials"], "key")
    at = time.time() if loaded_at is None else loaded_at
    return Snapshot(
        version=version,
        router=Router(lists["routes"], services_by_id),
        services_by_id=services_by_id,
        routes_by_id=_index(lists["routes"], "id"),
        consumers_by_id=consumers_by_id,
        consumers_by_username=_index(lists["consumers"], "username"),
        credentials_by_key=credentials_by_key,
        plugins=(
            _plugin_index(lists["plugins"], consumers_by_id, credentials_by_key, at) if with_plugins else None
        ),
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
    rows = {name: await store.all(name) for name in ENTITIES}
    return build_snapshot(rows, version, loaded_at=loaded_at, with_plugins=with_plugins)
