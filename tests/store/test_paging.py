"""Kong-style paging (pk order, base64 json offsets), tags filters, nested and custom_id filters."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from servegate.schema.errors import DaoError
from servegate.store import Store


async def _services(store: Store, make: Any, n: int, **kw: Any) -> list[dict[str, Any]]:
    return [await store.insert("services", make("services", host="h", name=f"s{i}", **kw)) for i in range(n)]


async def test_walk_pages_with_size_one(store: Store, make: Any) -> None:
    created = await _services(store, make, 3)
    seen: list[str] = []
    offset = None
    for _ in range(5):
        rows, offset = await store.page("services", size=1, offset=offset)
        assert len(rows) == 1
        seen.append(rows[0]["id"])
        if offset is None:
            break
        # Kong's offset format: base64 (no padding) of the json array of the last row's pk
        padded = offset + "=" * (-len(offset) % 4)
        assert json.loads(base64.b64decode(padded)) == [rows[0]["id"]]
        assert not offset.endswith("=")
    assert seen == sorted(r["id"] for r in created)
    assert offset is None


async def test_page_sizes_and_empty(store: Store, make: Any) -> None:
    assert await store.page("services") == ([], None)
    await _services(store, make, 3)
    rows, nxt = await store.page("services", size=3)
    assert len(rows) == 3 and nxt is None
    rows, nxt = await store.page("services", size=2)
    assert len(rows) == 2 and nxt is not None
    rows2, nxt2 = await store.page("services", size=2, offset=nxt)
    assert len(rows2) == 1 and nxt2 is None


@pytest.mark.parametrize(
    ("offset", "why"),
    [("x", "bad base64 encoding"), ("!!!!", "bad base64 encoding"), ("aGVsbG8", "bad json encoding")],
)
async def test_invalid_offsets(store: Store, offset: str, why: str) -> None:
    with pytest.raises(DaoError) as ei:
        await store.page("services", offset=offset)
    assert ei.value.code == 7
    assert ei.value.message == f"'{offset}' is not a valid offset: {why}"


async def test_invalid_size(store: Store) -> None:
    for size in (0, 1001):
        with pytest.raises(DaoError) as ei:
            await store.page("services", size=size)
        assert ei.value.code == 9
        assert ei.value.message == "size must be an integer between 1 and 1000"


async def test_tags_and_or(store: Store, make: Any) -> None:
    a = await store.insert("services", make("services", host="h", tags=["a"]))
    ab = await store.insert("services", make("services", host="h", tags=["a", "b"]))
    b = await store.insert("services", make("services", host="h", tags=["b", "c"]))
    await store.insert("services", make("services", host="h"))

    def ids(rows: list[dict[str, Any]]) -> set[str]:
        return {r["id"] for r in rows}

    assert ids((await store.page("services", tags=["a"]))[0]) == {a["id"], ab["id"]}
    assert ids((await store.page("services", tags=["a", "b"]))[0]) == {ab["id"]}
    assert ids((await store.page("services", tags=["a", "b"], tags_mode="or"))[0]) == {a["id"], ab["id"], b["id"]}
    assert ids((await store.page("services", tags=["zzz"]))[0]) == set()
    # tag filtering pages too
    rows, nxt = await store.page("services", tags=["b"], size=1)
    rows2, nxt2 = await store.page("services", tags=["b"], size=1, offset=nxt)
    assert ids(rows + rows2) == {ab["id"], b["id"]} and nxt2 is None
    with pytest.raises(DaoError) as ei:
        await store.page("services", tags=list("abcdef"))
    assert ei.value.code == 11


async def test_nested_and_custom_id_filters(store: Store, make: Any) -> None:
    s1, s2 = await _services(store, make, 2)
    r1 = await store.insert("routes", make("routes", paths=["/1"], service={"id": s1["id"]}))
    await store.insert("routes", make("routes", paths=["/2"], service={"id": s2["id"]}))
    rows, _ = await store.page("routes", filters={"service": s1["id"]})
    assert [r["id"] for r in rows] == [r1["id"]]
    rows, _ = await store.page("routes", filters={"service": {"id": s1["id"]}})
    assert [r["id"] for r in rows] == [r1["id"]]

    c = await store.insert("consumers", make("consumers", username="u", custom_id="abc"))
    await store.insert("consumers", make("consumers", username="v", custom_id="xyz"))
    rows, nxt = await store.page("consumers", filters={"custom_id": "abc"})
    assert [r["id"] for r in rows] == [c["id"]] and nxt is None
    assert (await store.page("consumers", filters={"custom_id": "nope"})) == ([], None)
