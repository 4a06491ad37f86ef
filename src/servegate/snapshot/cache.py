"""A worker's bounded cache for entities too many to hold in every snapshot (consumers, credentials).

Kong keeps credentials in a per-worker LRU filled from the database on a miss and invalidated by cluster
events; this is that cache. Entries are whatever a lookup computes (a row, or a plugin's value derived from
rows), or None for "no such row" (negative caching). Each entry carries *tags*, `(entity, field, value)`
triples naming the rows it was built from; a change event invalidates every entry tagged with a row it
touched, by primary key and by each unique field's new value (which is what drops a negative entry when
the missing key is created).

The cache survives snapshot swaps. A hit costs one dict lookup and an LRU move; a miss awaits the row source
(the store) for that request only, and concurrent misses of one key share one read. A read that overlapped
an invalidation is answered but not kept: it may have seen the row before the change.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from typing import Any, Protocol

__all__ = ["MISS", "Caches", "LookupCache", "MemorySource", "RowSource", "Tag"]

Tag = tuple[str, str, Any]  # (entity, field, value)
Row = Mapping[str, Any]

# get() found nothing (distinct from a cached None, "known not to exist")
MISS: Any = object()
DEFAULT_CAPACITY = 50_000


class RowSource(Protocol):
    async def find(self, entity: str, field: str, value: Any) -> Row | None:
        """The live row of `entity` whose `field` (primary key or a unique field) is `value`, or None."""
        ...


class MemorySource:
    """Rows held in memory (a snapshot built from given rows: tests, tools, DB-less use)."""

    def __init__(self, indexes: Mapping[str, Mapping[str, Mapping[Any, Row]]]) -> None:
        self._indexes = indexes

    async def find(self, entity: str, field: str, value: Any) -> Row | None:
        index = self._indexes.get(entity, {}).get(field)
        if index is not None:
            return index.get(value)
        for row in self._indexes.get(entity, {}).get("id", {}).values():
            if row.get(field) == value:
                return row
        return None


class LookupCache:
    __slots__ = ("source", "capacity", "_entries", "_by_tag", "_loading", "generation",
                 "hits", "negative_hits", "misses", "evictions")

    def __init__(self, source: RowSource, capacity: int = DEFAULT_CAPACITY) -> None:
        self.source = source
        self.capacity = max(1, capacity)
        self._entries: OrderedDict[Hashable, tuple[Any, tuple[Tag, ...]]] = OrderedDict()
        self._by_tag: dict[Tag, set[Hashable]] = {}
        self._loading: dict[Hashable, asyncio.Future[Any]] = {}
        # Moves on every invalidation: a load that saw it move does not keep its result.
        self.generation = 0
        self.hits = self.negative_hits = self.misses = self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> Any:
        """The cached value (None: known missing), or MISS."""
        entry = self._entries.get(key)
        if entry is None:
            return MISS
        self._entries.move_to_end(key)
        if entry[0] is None:
            self.negative_hits += 1
        else:
            self.hits += 1
        return entry[0]

    async def load(self, key: Hashable, compute: Callable[[], Awaitable[tuple[Any, Iterable[Tag]]]]) -> Any:
        """Compute the value of a missed key (once, however many requests wait for it), cache it, return it.
        `compute` returns (value, tags). An exception reaches every waiter and caches nothing."""
        pending = self._loading.get(key)
        if pending is not None:
            # shield: one waiter's cancellation (a client gone) must not cancel the read the others await
            return await asyncio.shield(pending)
        self.misses += 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._loading[key] = fut
        generation = self.generation
        try:
            value, tags = await compute()
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            del self._loading[key]
        if generation == self.generation:
            self._put(key, value, tuple(tags))
        fut.set_result(value)
        return value

    def _put(self, key: Hashable, value: Any, tags: tuple[Tag, ...]) -> None:
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (value, tags)
        for tag in tags:
            keys = self._by_tag.get(tag)
            if keys is None:
                self._by_tag[tag] = {key}
            else:
                keys.add(key)
        while len(self._entries) > self.capacity:
            old, (_, old_tags) = self._entries.popitem(last=False)
            self._untag(old, old_tags)
            self.evictions += 1

    def _untag(self, key: Hashable, tags: tuple[Tag, ...]) -> None:
        for tag in tags:
            keys = self._by_tag.get(tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_tag[tag]

    def _drop(self, key: Hashable) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._untag(key, entry[1])

    def invalidate(self, tags: Iterable[Tag]) -> int:
        """Drop every entry tagged with one of `tags`; returns how many."""
        self.generation += 1
        dropped = 0
        for tag in tags:
            keys = self._by_tag.pop(tag, None)
            if keys:
                for key in keys:
                    if key in self._entries:
                        self._drop(key)
                        dropped += 1
        return dropped

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()
        self._by_tag.clear()

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "negative_hits": self.negative_hits, "misses": self.misses,
                "evictions": self.evictions, "size": len(self._entries), "capacity": self.capacity}


class Caches:
    """A worker's named caches (one per plugin that looks rows up) over one row source. Every change event
    reaches all of them; each is bounded by `capacity` entries."""

    __slots__ = ("source", "capacity", "_named")

    def __init__(self, source: RowSource, capacity: int = DEFAULT_CAPACITY) -> None:
        self.source = source
        self.capacity = capacity
        self._named: dict[str, LookupCache] = {}

    def named(self, name: str) -> LookupCache:
        cache = self._named.get(name)
        if cache is None:
            cache = self._named[name] = LookupCache(self.source, self.capacity)
        return cache

    def invalidate(self, tags: Iterable[Tag]) -> None:
        tags = tuple(tags)
        for cache in self._named.values():
            cache.invalidate(tags)

    def clear(self) -> None:
        for cache in self._named.values():
            cache.clear()

    def stats(self) -> dict[str, dict[str, int]]:
        return {name: cache.stats() for name, cache in self._named.items()}
