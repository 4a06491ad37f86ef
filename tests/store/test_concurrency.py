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


_WRITER = """
import asyncio, sys, time, uuid
from servegate.schema.errors import DaoError
from servegate.store import open_store_url

async def main(url, start_at):
    store = open_store_url(url)
    await store.connect()
    await asyncio.sleep(max(0.0, start_at - time.time()))  # both processes start writing together
    ok = dup = 0
    for i in range(15):
        row = {"id": str(uuid.uuid4()), "name": f"p-{i}", "host": "h", "tags": ["proc"],
               "created_at": int(time.time()), "updated_at": int(time.time())}
        try:
            await store.insert("services", row)
            ok += 1
        except DaoError as e:
            assert e.code == 5, e
            dup += 1
    await store.close()
    print(ok, dup)

asyncio.run(main(sys.argv[1], float(sys.argv[2])))
"""


async def test_two_processes_writing_the_same_names(store_url: str, store: Any) -> None:
    import sys
    import time

    start_at = str(time.time() + 1.0)
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _WRITER,
            store_url,
            start_at,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outs = [await asyncio.wait_for(p.communicate(), 60) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err.decode()[-2000:]
    counts = [tuple(map(int, out.split())) for out, _ in outs]
    assert sum(ok for ok, _ in counts) == 15 and sum(dup for _, dup in counts) == 15
    rows = await store.all("services")
    assert sorted(r["name"] for r in rows) == sorted(f"p-{i}" for i in range(15))
