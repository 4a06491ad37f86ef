"""The store as the row source of a worker's lookup caches."""

from __future__ import annotations

from typing import Any

from servegate.snapshot.cache import Row

__all__ = ["StoreSource"]


class StoreSource:
    """`find` awaits one indexed read of the store; only the request that missed waits for it."""

    __slots__ = ("store",)

    def __init__(self, store: Any) -> None:
        self.store = store

    async def find(self, entity: str, field: str, value: Any) -> Row | None:
        if not isinstance(value, str):  # every looked-up key (ids, usernames, API keys) is a string
            return None
        if field == "id":
            row: Row | None = await self.store.select(entity, {"id": value})
            return row
        found: Row | None = await self.store.select_by(entity, field, value)
        return found
