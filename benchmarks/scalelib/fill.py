"""Filling a database in-process, before a node starts: the store's bulk API, rows validated as the Admin API
validates them (process_input), so the node loads exactly what it would have stored itself.

Keys are deterministic (`key-00000042` belongs to consumer `scale-00000042`), so later phases can pick keys that
are stored and were never used.
"""

from __future__ import annotations

import time
from typing import Any

from .common import log

KEY_ROUTE_PATH = "/v1"  # the key-auth route every proxied request goes through (benchlib.load's CHAT_PATH)


def key_of(i: int) -> str:
    return f"key-{i:08d}"


class Filler:
    """An open store on one database (use `async with`)."""

    def __init__(self, url: str, batch: int) -> None:
        self.url = url
        self.batch = batch
        self.bulk = False  # insert_many used (False: one insert per row, a slower fallback)

    async def __aenter__(self) -> Filler:
        from servegate import plugins
        from servegate.schema.entities import declared
        from servegate.store import open_store_url

        plugins.load_all()  # bundled plugins: key-auth declares keyauth_credentials, its schema validates plugin rows
        self.entities = declared()
        self.store = open_store_url(self.url)
        await self.store.connect()
        await self.store.ensure_schema()
        self.bulk = hasattr(self.store, "insert_many")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.store.close()

    def row(self, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        from servegate.schema.validate import process_input

        row: dict[str, Any] = process_input(self.entities[entity], body, op="insert")
        return row

    async def _insert(self, entity: str, rows: list[dict[str, Any]]) -> None:
        if self.bulk:
            await self.store.insert_many(entity, rows)
            return
        for row in rows:  # fallback for a store without insert_many
            await self.store.insert(entity, row)

    async def base_config(self, backend_url: str) -> dict[str, str]:
        """Service `scale` -> the fake backend, route /v1 with key-auth. Returns their ids."""
        service = self.row("services", {"name": "scale", "url": backend_url})
        route = self.row("routes", {"service": {"id": service["id"]}, "paths": [KEY_ROUTE_PATH],
                                    "strip_path": False})
        plugin = self.row("plugins", {"name": "key-auth", "route": {"id": route["id"]}})
        async with self.store.transaction():
            await self._insert("services", [service])
            await self._insert("routes", [route])
            await self._insert("plugins", [plugin])
        return {"service": service["id"], "route": route["id"]}

    async def consumers(self, start: int, stop: int) -> float:
        """Consumers start..stop-1, each with its key; one transaction per batch. Returns the seconds taken."""
        began = time.perf_counter()
        last_log = began
        for lo in range(start, stop, self.batch):
            hi = min(stop, lo + self.batch)
            cons = [self.row("consumers", {"username": f"scale-{i:08d}"}) for i in range(lo, hi)]
            keys = [self.row("keyauth_credentials", {"consumer": {"id": c["id"]}, "key": key_of(i)})
                    for i, c in zip(range(lo, hi), cons, strict=True)]
            async with self.store.transaction():
                await self._insert("consumers", cons)
                await self._insert("keyauth_credentials", keys)
            if time.perf_counter() - last_log > 10:
                last_log = time.perf_counter()
                log(f"  filled {hi:,}/{stop:,} consumers")
        return time.perf_counter() - began

    async def routes(self, service_id: str, count: int) -> float:
        """Routes /r0../r{count-1} on one service (no plugins). Returns the seconds taken."""
        began = time.perf_counter()
        for lo in range(0, count, self.batch):
            rows = [self.row("routes", {"service": {"id": service_id}, "paths": [f"/r{i}"]})
                    for i in range(lo, min(count, lo + self.batch))]
            async with self.store.transaction():
                await self._insert("routes", rows)
        return time.perf_counter() - began
