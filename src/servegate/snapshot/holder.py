"""Per-worker reference to the current snapshot."""

from __future__ import annotations

import asyncio

from servegate.snapshot.model import Snapshot, SnapshotStore, load_snapshot

__all__ = ["SnapshotHolder"]


class SnapshotHolder:
    """Requests read ``current`` once and keep using that snapshot to the end, even if it is swapped meanwhile."""

    __slots__ = ("_lock", "with_plugins", "current")

    def __init__(self, current: Snapshot, *, with_plugins: bool = True) -> None:
        self.current = current
        self._lock = asyncio.Lock()
        self.with_plugins = with_plugins

    def swap(self, new: Snapshot) -> Snapshot:
        """Install ``new``; returns the previous snapshot."""
        old, self.current = self.current, new
        return old

    async def refresh(self, store: SnapshotStore, *, force: bool = False) -> bool:
        """Reload in full from ``store`` when its config version moved (or when forced). True if swapped.
        (A worker follows the store with servegate.snapshot.feed.SnapshotFeed, which applies change events.)"""
        async with self._lock:
            if not force and await store.config_version() == self.current.version:
                return False
            source = getattr(self.current.caches.source, "store", None)
            caches = self.current.caches if source is store else None
            self.swap(await load_snapshot(store, with_plugins=self.with_plugins, caches=caches, previous=self.current))
            if caches is not None:
                caches.clear()
            return True
