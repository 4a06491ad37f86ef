"""Two stores (two connections, as two workers or nodes would have) racing on one database."""

from __future__ import annotations

import asyncio
from typing import Any

from servegate.schema.errors import DaoError
from servegate.store import open_store_url


async def test_concurrent_inserts_of_same_name_one_wins(store_url: str, store: Any, make: Any) -> None:
    a, b = open_store_url(store_url), open_store_url(store_url)
    await a.connect()
    await b.connect()
    try:
        for i in range(5):
            name = f"dup-{i}"
            results = await asyncio.gather(
                a.insert("services", make("services", host="h", name=name)),
                b.insert("services", make("services", host="h", name=name)),
                return_exceptions=True,
            )
            ok = [r for r in results if isinstance(r, dict)]
            errs = [r for r in results if isinstance(r, BaseException)]
            assert len(ok) == 1, results
            assert len(errs) == 1 and isinstance(errs[0], DaoError), errs
            assert errs[0].code == 5 and errs[0].fields == {"name": name}
        rows = await store.all("services")
        assert sorted(r["name"] for r in rows) == [f"dup-{i}" for i in range(5)]
    finally:
        await a.close()
        await b.close()


async def test_concurrent_global_plugins_one_wins(store_url: str, store: Any, make: Any) -> None:
    a, b = open_store_url(store_url), open_store_url(store_url)
    await a.connect()
    await b.connect()
    try:
        results = await asyncio.gather(
            a.insert("plugins", make("plugins", name="key-auth", config={})),
            b.insert("plugins", make("plugins", name="key-auth", config={})),
            return_exceptions=True,
        )
        assert sum(isinstance(r, dict) for r in results) == 1, results
        assert sum(isinstance(r, DaoError) and r.code == 5 for r in results) == 1, results
    finally:
        await a.close()
        await b.close()
