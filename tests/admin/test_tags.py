"""?tags= filters and /tags endpoints: facts from Kong's 14-tags_spec."""

from __future__ import annotations

from urllib.parse import quote

from admin_client import Admin


async def _fixture(admin: Admin) -> None:
    for i in (1, 2):
        await admin.ok(
            "POST",
            "/consumers",
            201,
            json={"username": f"adminapi-filter-by-tag-{i}", "tags": ["corp_a", f"consumer{i}", "🦍"]},
        )
        await admin.ok(
            "POST",
            f"/consumers/adminapi-filter-by-tag-{i}/plugins",
            201,
            json={"name": "rate-limiting", "config": {"minute": 10}, "tags": ["corp_a", f"consumer{i}"]},
        )
    await admin.ok(
        "POST", "/consumers", 201, json={"username": "adminapi-filter-by-tag-3", "tags": ["consumer3"]}
    )


async def test_tag_filters(admin: Admin) -> None:
    await _fixture(admin)
    data = (await admin.ok("GET", "/consumers?tags=corp_a", 200))["data"]
    assert len(data) == 2 and all("corp_a" in c["tags"] for c in data)
    data = (await admin.ok("GET", f"/consumers?tags={quote('🦍')}", 200))["data"]
    assert len(data) == 2
    data = (await admin.ok("GET", "/consumers?tags=corp_a,consumer1", 200))["data"]
    assert [c["username"] for c in data] == ["adminapi-filter-by-tag-1"]
    assert data[0]["tags"] == ["corp_a", "consumer1", "🦍"]
    data = (await admin.ok("GET", "/consumers?tags=consumer2/consumer1", 200))["data"]
    assert len(data) == 2
    # nested collections ignore tags (#6779)
    data = (await admin.ok("GET", "/consumers/adminapi-filter-by-tag-1/plugins?tags=consumer2", 200))["data"]
    assert len(data) == 1 and data[0]["tags"] == ["corp_a", "consumer1"]
    for bad in ("consumer3,consumer2/consumer1", "consumer3/consumer2,consumer1", "foo%20bar", "%FF"):
        err = await admin.ok("GET", f"/consumers?tags={bad}", 400)
        assert err == {
            "code": 11,
            "name": "invalid options",
            "message": "invalid option (tags: invalid filter syntax)",
            "options": {"tags": "invalid filter syntax"},
        }, bad
    err = await admin.ok("GET", "/consumers?tags=a,b,c,d,e,f", 400)
    assert err["message"] == "invalid option (tags: cannot query more than 5 tags)"
    page = await admin.ok("GET", "/consumers?tags=corp_a&size=1", 200)
    assert len(page["data"]) == 1 and "&tags=corp_a&size=1" in page["next"]
    rest = await admin.ok("GET", page["next"], 200)
    assert len(rest["data"]) == 1 and rest["next"] is None


async def test_tags_endpoints(admin: Admin) -> None:
    for i in (1, 2):
        await admin.ok(
            "POST", "/consumers", 201, json={"username": f"c{i}", "tags": ["corp_a", f"consumer{i}"]}
        )
    everything = await admin.ok("GET", "/tags", 200)
    assert len(everything["data"]) == 4 and everything["next"] is None
    row = everything["data"][0]
    assert set(row) == {"entity_name", "entity_id", "tag"} and row["entity_name"] == "consumers"
    corp = await admin.ok("GET", "/tags/corp_a", 200)
    assert len(corp["data"]) == 2 and {r["tag"] for r in corp["data"]} == {"corp_a"}
    err = await admin.ok("GET", "/tags/%FF", 400)
    assert "invalid utf-8" in err["message"]
    for q in ("not_a_tag", "invalid@tag"):
        assert len((await admin.ok("GET", f"/tags?tags={q}", 200))["data"]) == 4
        assert len((await admin.ok("GET", f"/tags/corp_a?tags={q}", 200))["data"]) == 2
    seen = []
    path: str | None = "/tags?size=3"
    while path:
        page = await admin.ok("GET", path, 200)
        seen += page["data"]
        path = page["next"]
    assert seen == everything["data"]
    page = await admin.ok("GET", "/tags/corp_a?size=1", 200)
    assert page["next"].startswith("/tags/corp_a?offset=")
