"""/upstreams/{u}/health and PUT .../healthy|unhealthy: facts from Kong's 08-targets_routes_spec (shapes,
HEALTHCHECKS_OFF / HEALTHY / UNHEALTHY / DNS_ERROR, weight 0, node_id, every combination of upstream and target
for the health writes), over the node's health table that workers fill."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from admin_client import Admin

from servegate.proxy.balancer import dns, health

PASSIVE_ON = {"healthchecks": {"passive": {"healthy": {"successes": 1},
                                           "unhealthy": {"tcp_failures": 1, "http_failures": 1, "timeouts": 1}}}}
# names the fake resolver knows; anything else does not resolve
NAMES = {"custom_localhost": ["127.0.0.1"], "two.test": ["10.0.0.1", "10.0.0.2"], "v6.test": ["::1"]}


@pytest.fixture(autouse=True)
def fresh_table(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    health.configure(None)  # a private table for this test

    async def resolve(host: str) -> tuple[list[str], float]:
        if dns.is_ip(host):
            return [host.strip("[]")], float("inf")
        if host not in NAMES:
            raise dns.NameNotFound(host)
        return NAMES[host], 30.0

    monkeypatch.setattr(dns, "resolve", resolve)
    yield
    health.configure(None)


async def _upstream(admin: Admin, **body: Any) -> dict[str, Any]:
    up: dict[str, Any] = await admin.ok("POST", "/upstreams", 201, json={"name": f"u{uuid.uuid4().hex[:8]}", **body})
    return up


async def _add(admin: Admin, up: dict[str, Any], fmt: str, weights: tuple[int, ...] = (10, 10, 10, 10)) -> list[Any]:
    return [await admin.ok("POST", f"/upstreams/{up['name']}/targets", 201,
                           json={"target": fmt % (i + 1), "weight": w}) for i, w in enumerate(weights)]


async def _health(admin: Admin, up: dict[str, Any], query: str = "") -> dict[str, Any]:
    body: dict[str, Any] = await admin.ok("GET", f"/upstreams/{up['name']}/health{query}", 200)
    return body


async def _check(admin: Admin, up: dict[str, Any], targets: list[Any], n: int, expected: str) -> list[Any]:
    """Kong's check_health_endpoint: n targets, the latest first, every target and address `expected`."""
    node_id = (await admin.ok("GET", "/", 200))["node_id"]
    for suffix in ("", "/"):
        body = await admin.ok("GET", f"/upstreams/{up['name']}/health{suffix}", 200)
        assert body["node_id"] == node_id and len(body["data"]) == n
        assert body["data"][0]["id"] == targets[3]["id"]
        assert [d["target"] for d in body["data"][1:3]] == [targets[2]["target"], targets[1]["target"]]
        for item in body["data"]:
            assert item["health"] == expected
            for address in (item.get("data") or {}).get("addresses", []):
                assert address["health"] == expected
    data: list[Any] = body["data"]
    return data


async def test_checks_off(admin: Admin) -> None:
    up = await _upstream(admin)
    await _add(admin, up, "127.0.0.1:8%d")
    targets = await _add(admin, up, "custom_localhost:8%d")
    data = await _check(admin, up, targets, 8, "HEALTHCHECKS_OFF")
    first = data[0]
    assert {k: first[k] for k in ("id", "target", "weight", "upstream")} == {
        "id": targets[3]["id"], "target": "custom_localhost:84", "weight": 10, "upstream": {"id": up["id"]}}
    assert first["data"] == {
        "host": "custom_localhost", "port": 84, "dns": "A", "nodeWeight": 10,
        "weight": {"total": 10, "unavailable": 0, "available": 10},
        "addresses": [{"ip": "127.0.0.1", "port": 84, "health": "HEALTHCHECKS_OFF", "weight": 10}],
    }
    body = await _health(admin, up)
    assert "offset" not in body and body["next"] is None


async def test_dns_error(admin: Admin) -> None:
    up = await _upstream(admin)
    targets = await _add(admin, up, "bad-health-target-%d:80")
    data = await _check(admin, up, targets, 4, "DNS_ERROR")
    assert all("data" not in d for d in data)  # Kong: no data for a name that did not resolve
    # a worker that failed to resolve a name says so in the table
    up2 = await _upstream(admin, **PASSIVE_ON)
    (t,) = await _add(admin, up2, "custom_localhost:%d", (10,))
    health.table().set_dns_error(up2["id"], t["target"], True)
    assert (await _health(admin, up2))["data"][0]["health"] == "DNS_ERROR"
    up3 = await _upstream(admin, **PASSIVE_ON)
    targets = await _add(admin, up3, "bad-target-%d:80")
    await _check(admin, up3, targets, 4, "DNS_ERROR")


async def test_checks_on(admin: Admin) -> None:
    up = await _upstream(admin)
    patched = await admin.ok("PATCH", f"/upstreams/{up['name']}", 200, json=PASSIVE_ON)
    assert patched["updated_at"] >= up["updated_at"]
    targets = await _add(admin, up, "custom_localhost:222%d")
    await _check(admin, up, targets, 4, "HEALTHY")
    # a worker's checker found every address of every target down
    for t in targets:
        health.table().set_target(up["id"], t["target"], "127.0.0.1:" + t["target"].rsplit(":", 1)[1], False)
    await _check(admin, up, targets, 4, "UNHEALTHY")


async def test_weight_zero_is_checks_off_until_weighted(admin: Admin) -> None:
    up = await _upstream(admin, **PASSIVE_ON)
    await admin.ok("POST", f"/upstreams/{up['name']}/targets", 201, json={"target": "custom_localhost:2221",
                                                                           "weight": 0})
    data = (await _health(admin, up))["data"]
    assert len(data) == 1 and data[0]["health"] == "HEALTHCHECKS_OFF"
    assert [a["health"] for a in data[0]["data"]["addresses"]] == ["HEALTHCHECKS_OFF"]
    await admin.ok("PATCH", f"/upstreams/{up['name']}/targets/custom_localhost:2221", 200, json={"weight": 10})
    data = (await _health(admin, up))["data"]
    assert data[0]["health"] == "HEALTHY" and [a["health"] for a in data[0]["data"]["addresses"]] == ["HEALTHY"]


@pytest.mark.parametrize("host", ["127.0.0.1", "[0000:0000:0000:0000:0000:0000:0000:0001]", "custom_localhost"])
async def test_every_combination_of_upstream_and_target(admin: Admin, host: str) -> None:
    up = await _upstream(admin, **PASSIVE_ON)
    other = await _upstream(admin)
    name = f"{host}:8192"
    wrong = await admin.ok("POST", f"/upstreams/{other['id']}/targets", 201, json={"target": name, "weight": 10})
    target = await admin.ok("POST", f"/upstreams/{up['id']}/targets", 201, json={"target": name, "weight": 10})
    assert target["target"] == name
    for i, u in enumerate([str(uuid.uuid4()), "invalid", up["name"], up["id"]]):
        for j, t in enumerate([str(uuid.uuid4()), "invalid:1234", wrong["id"], target["target"], target["id"]]):
            for word in ("healthy", "unhealthy"):
                r = await admin.put(f"/upstreams/{u}/targets/{t}/{word}")
                assert r.status == (204 if i >= 2 and j >= 3 else 404), (u, t, word)
                if r.status == 204:
                    assert r.body == b""


@pytest.mark.parametrize("host", ["127.0.0.1", "[0000:0000:0000:0000:0000:0000:0000:0001]", "custom_localhost"])
async def test_flip_unhealthy_and_healthy(admin: Admin, host: str) -> None:
    up = await _upstream(admin, **PASSIVE_ON)
    target = await admin.ok("POST", f"/upstreams/{up['id']}/targets", 201, json={"target": f"{host}:8192",
                                                                                 "weight": 10})
    path = f"/upstreams/{up['id']}/targets/{target['target']}"
    # the cell the workers read: the address named as they name it (an IPv6 literal as the target writes it)
    key = ("127.0.0.1" if host == "custom_localhost" else host) + ":8192"
    for word, expected in [("unhealthy", "UNHEALTHY"), ("healthy", "HEALTHY"), ("unhealthy", "UNHEALTHY")]:
        await admin.ok("PUT", f"{path}/{word}", 204)
        item = (await _health(admin, up))["data"][0]
        assert (item["target"], item["health"]) == (target["target"], expected)
        assert [a["health"] for a in item["data"]["addresses"]] == [expected]
        assert health.table().get(up["id"], target["target"], key) == (health.UP if word == "healthy" else
                                                                       health.DOWN)
    # with checks off the write is kept, but health says HEALTHCHECKS_OFF (Kong's)
    await admin.ok("PATCH", f"/upstreams/{up['id']}", 200, json={"healthchecks": {"passive": {"unhealthy": {
        "tcp_failures": 0, "http_failures": 0, "timeouts": 0}}}})
    item = (await _health(admin, up))["data"][0]
    assert item["health"] == "HEALTHCHECKS_OFF" and item["data"]["weight"]["unavailable"] == 10


async def test_health_of_one_address(admin: Admin) -> None:
    up = await _upstream(admin, **PASSIVE_ON)
    await admin.ok("POST", f"/upstreams/{up['id']}/targets", 201, json={"target": "two.test:80"})
    base = f"/upstreams/{up['name']}/targets/two.test:80"

    def states() -> list[tuple[str, str]]:
        return [(a["ip"], a["health"]) for a in item["data"]["addresses"]]

    await admin.ok("PUT", f"{base}/10.0.0.2:80/unhealthy", 204)
    item = (await _health(admin, up))["data"][0]
    assert states() == [("10.0.0.1", "HEALTHY"), ("10.0.0.2", "UNHEALTHY")]
    assert item["health"] == "HEALTHY"  # one healthy address is enough
    assert item["data"]["weight"] == {"total": 200, "unavailable": 100, "available": 100}
    await admin.ok("PUT", f"{base}/10.0.0.1/unhealthy", 204)  # no port: 8000, which the target does not use
    item = (await _health(admin, up))["data"][0]
    assert item["health"] == "HEALTHY"
    await admin.ok("PUT", f"{base}/10.0.0.1:80/unhealthy", 204)
    item = (await _health(admin, up))["data"][0]
    assert item["health"] == "UNHEALTHY" and states() == [("10.0.0.1", "UNHEALTHY"), ("10.0.0.2", "UNHEALTHY")]
    # an address the target does not have: nothing changes, no error (Kong's healthchecker ignores it)
    await admin.ok("PUT", f"{base}/10.9.9.9:80/healthy", 204)
    assert (await _health(admin, up))["data"][0]["health"] == "UNHEALTHY"
    # an address given by name sets every address on that port
    await admin.ok("PUT", f"{base}/two.test:80/healthy", 204)
    item = (await _health(admin, up))["data"][0]
    assert states() == [("10.0.0.1", "HEALTHY"), ("10.0.0.2", "HEALTHY")]
    err = await admin.ok("PUT", f"{base}/not%20an%20address/healthy", 400)
    assert err == {"message": "Invalid address ('not an address'); invalid hostname: not an address"}
    await admin.ok("PUT", f"/upstreams/{up['name']}/targets/nope.test:80/10.0.0.1:80/healthy", 404)


async def test_addresses_registered_by_workers(admin: Admin) -> None:
    up = await _upstream(admin, **PASSIVE_ON)
    await admin.ok("POST", f"/upstreams/{up['id']}/targets", 201, json={"target": "svc.internal:9000"})
    table = health.table()
    # a worker resolved the name (unknown to this process's resolver) and registered its addresses
    table.put(up["id"], "svc.internal:9000", "192.0.2.1:9000", health.UP)
    table.put(up["id"], "svc.internal:9000", "[2001:db8::1]:9000", health.DOWN)
    table.put(up["id"], "svc.internal:9000", "192.0.2.9:9000", health.GONE)  # no longer resolved
    item = (await _health(admin, up))["data"][0]
    assert item["health"] == "HEALTHY"
    assert sorted((a["ip"], a["port"], a["health"]) for a in item["data"]["addresses"]) == [
        ("192.0.2.1", 9000, "HEALTHY"), ("2001:db8::1", 9000, "UNHEALTHY")]
    await admin.ok("PUT", f"/upstreams/{up['id']}/targets/svc.internal:9000/[2001:0db8::1]:9000/healthy", 204)
    assert table.get(up["id"], "svc.internal:9000", "[2001:db8::1]:9000") == health.UP
    await admin.ok("PUT", f"/upstreams/{up['id']}/targets/svc.internal:9000/unhealthy", 204)
    item = (await _health(admin, up))["data"][0]
    assert item["health"] == "UNHEALTHY"
    assert table.get(up["id"], "svc.internal:9000", "192.0.2.9:9000") == health.GONE  # left alone


async def test_balancer_health(admin: Admin) -> None:
    up = await _upstream(admin)
    await _add(admin, up, "127.0.0.1:8%d", (10, 20))
    (v6,) = await _add(admin, up, "v6.test:%d", (0,))
    body = await _health(admin, up, "?balancer_health=1")
    node_id = (await admin.ok("GET", "/", 200))["node_id"]
    assert set(body) == {"data", "next", "node_id"} and body["next"] is None and body["node_id"] == node_id
    data = body["data"]
    assert (data["health"], data["balancer_health"], data["id"]) == ("HEALTHCHECKS_OFF", "HEALTHY", up["id"])
    details = data["details"]
    assert details["healthy"] is True
    assert details["weight"] == {"total": 30, "unavailable": 0, "available": 30}
    assert [h["host"] for h in details["hosts"]] == ["v6.test", "127.0.0.1", "127.0.0.1"]
    assert details["hosts"][0] == {
        "host": "v6.test", "port": 1, "dns": "AAAA", "nodeWeight": 0,
        "weight": {"total": 0, "unavailable": 0, "available": 0},
        "addresses": [{"ip": "::1", "port": 1, "weight": 0, "healthy": True}],
    }
    assert v6["target"] == "v6.test:1"
    # checks on, threshold 50: the balancer is healthy while more than half the weight is
    await admin.ok("PATCH", f"/upstreams/{up['id']}", 200, json={"healthchecks": {
        "threshold": 50, **PASSIVE_ON["healthchecks"]}})
    await admin.ok("PUT", f"/upstreams/{up['id']}/targets/127.0.0.1:81/unhealthy", 204)
    data = (await _health(admin, up, "?balancer_health=1"))["data"]
    assert (data["health"], data["balancer_health"]) == ("HEALTHY", "HEALTHY")
    assert data["details"]["weight"] == {"total": 30, "unavailable": 10, "available": 20}
    await admin.ok("PUT", f"/upstreams/{up['id']}/targets/127.0.0.1:82/unhealthy", 204)
    data = (await _health(admin, up, "?balancer_health=1"))["data"]
    assert (data["health"], data["balancer_health"], data["details"]["healthy"]) == ("UNHEALTHY", "UNHEALTHY", False)
    assert data["details"]["hosts"][1]["addresses"][0]["healthy"] is False
    # other values of the flag: the per-target list
    assert isinstance((await _health(admin, up, "?balancer_health=0"))["data"], list)
    empty = await _upstream(admin)
    data = (await _health(admin, empty, "?balancer_health=1"))["data"]
    assert (data["balancer_health"], data["details"]["hosts"]) == ("UNHEALTHY", [])


async def test_pages_and_errors(admin: Admin) -> None:
    up = await _upstream(admin)
    targets = await _add(admin, up, "127.0.0.1:9%d", (1, 1, 1, 1, 1))
    page = await _health(admin, up, "?size=2")
    assert [d["id"] for d in page["data"]] == [targets[4]["id"], targets[3]["id"]]
    assert (page["offset"], page["next"]) == ("2", f"/upstreams/{up['name']}/health?offset=2")
    rest = await _health(admin, up, "?size=3&offset=2")
    assert [d["id"] for d in rest["data"]] == [t["id"] for t in targets[2::-1]] and rest["next"] is None
    assert await admin.ok("GET", "/upstreams/nope/health", 404) == {"message": "Not found"}
    assert await admin.ok("GET", f"/upstreams/{uuid.uuid4()}/health", 404) == {"message": "Not found"}
    empty = await _upstream(admin)
    assert (await _health(admin, empty))["data"] == []
