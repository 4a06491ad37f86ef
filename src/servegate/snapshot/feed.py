"""Keeps a worker's snapshot in step with the store, from its change events.

Every `interval` (db_update_frequency), and at once after a write made through this process's Admin API,
the feed reads the events after its snapshot's version and applies them: O(rows changed) for the indexes,
cache invalidations for cached entities, a router rebuilt (in slices, reusing unchanged routes' matchers)
only when routes or services changed, a plugin index rebuilt only when its inputs changed. Then one atomic
swap. Missing events (pruned while this worker lagged, a reset database) fall back to a full reload.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, TypeVar

from servegate.proxy.router import Router
from servegate.snapshot.apply import apply_steps, replace_entity
from servegate.snapshot.holder import SnapshotHolder
from servegate.snapshot.model import Snapshot, declared, load_snapshot, plugin_index

__all__ = ["ROUTER_INPUTS", "SnapshotFeed"]

log = logging.getLogger("servegate")

ROUTER_INPUTS = frozenset({"routes", "services"})
# How long the feed works on the event loop before it lets requests through (a batch of a write storm's events
# takes several ms to decode and apply; the router build uses the same slice).
SLICE_S = 0.001

T = TypeVar("T")


async def sliced(steps: Generator[None, None, T], slice_s: float = SLICE_S) -> T:
    """Run a generator of small steps to its return value, giving the event loop a turn every `slice_s`."""
    deadline = time.perf_counter() + slice_s
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value
        if time.perf_counter() >= deadline:
            await asyncio.sleep(0)
            deadline = time.perf_counter() + slice_s


def _plugin_inputs() -> frozenset[str]:
    from servegate.plugins.runner import plugin_inputs

    return plugin_inputs()


class SnapshotFeed:
    def __init__(self, store: Any, holder: SnapshotHolder, interval: float,
                 on_tick: Callable[[Snapshot], None] | None = None) -> None:
        self.store, self.holder, self.interval = store, holder, interval
        # Called after every poll (publishing cache counters to the node's shared values).
        self.on_tick = on_tick
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.applied = 0  # batches of events applied
        self.reloads = 0  # full reloads

    async def refresh(self, force: bool = False) -> bool:
        """Bring the snapshot up to the store's version; True when it was swapped. `force`: reload in full."""
        async with self._lock:
            started = time.perf_counter()
            current = self.holder.current
            if force:
                await self._reload(current)
            else:
                version, changes = await self.store.changes_since(current.version)
                if changes is None:
                    await self._reload(current)
                elif changes:
                    await self._apply(current, version, changes)
                else:
                    return False
            log.debug("snapshot v%s in %.1f ms", self.holder.current.version, (time.perf_counter() - started) * 1000)
            return True

    async def _reload(self, current: Snapshot) -> None:
        new = await load_snapshot(self.store, with_plugins=self.holder.with_plugins, caches=current.caches,
                                  previous=current)
        current.caches.clear()
        self.holder.swap(new)
        self.reloads += 1

    async def _apply(self, current: Snapshot, version: int, changes: list[Any]) -> None:
        entities = {e.name: e for e in declared()}
        done = await sliced(apply_steps(current.indexes, changes, entities, self.store.decode_row))
        indexes = done.indexes
        for name in sorted(done.reload):
            indexes = replace_entity(indexes, entities[name], await self.store.all(name))
            done.changed.add(name)
        if done.clear_caches:
            current.caches.clear()
        elif done.tags:
            current.caches.invalidate(done.tags)
        router = current.router
        if done.changed & ROUTER_INPUTS:
            router = await Router.build(list(indexes["routes"]["id"].values()), indexes["services"]["id"],
                                        previous=current.router)
        now = time.time()
        plugins = current.plugins
        if self.holder.with_plugins and (plugins is None or done.changed & _plugin_inputs()):
            plugins = plugin_index(indexes, now, current.caches)
        self.holder.swap(Snapshot(version, router, indexes, plugins, now, current.caches))
        self.applied += 1

    async def _poll(self) -> None:
        # Every failure keeps the last snapshot serving. A failure is logged once when it starts and once when
        # polling works again, not every `interval` (4 lines a second): one warning line, no traceback, and
        # only the driver's short reason or the error's type and place, never values that could carry secrets.
        from servegate.store.outage import StoreUnavailable

        failing: str | None = None
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.refresh()
            except StoreUnavailable as e:
                if failing != "database":
                    log.warning("%s: serving the last configuration (v%s) until it is back", e.message,
                                self.holder.current.version)
                failing = "database"
                continue
            except Exception as e:
                kind = self._failure_kind(e)
                if failing != kind:
                    log.error("cannot refresh configuration (%s); serving the last configuration (v%s)", kind,
                              self.holder.current.version)
                failing = kind
                continue
            if failing is not None:
                log.info("configuration polling works again%s", ": database reachable" if failing == "database" else "")
                failing = None
            if self.on_tick is not None:
                self.on_tick(self.holder.current)

    @staticmethod
    def _failure_kind(exc: BaseException) -> str:
        """Type and innermost place of an unexpected error (its text may quote configuration values)."""
        frames = traceback.extract_tb(exc.__traceback__)
        where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
        return type(exc).__name__ + where

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._poll())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
