"""Bounded fuzz of the Admin API: a real `servegate start` node on SQLite and on PostgreSQL.

Hypothesis (derandomized: the same requests every run) sends 1600 requests per store across every
endpoint: collections, entities, nested and foreign endpoints, /schemas, /plugins/enabled, /, /status, /tags,
paging and tag filters, JSON/form/multipart/broken bodies, odd query strings and methods. Every answer must be
below 500, arrive within a second, and every entity seeded before the fuzz must be unchanged after it.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fuzz_strategies import Pools, Req, request
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from helpers import Servegate
from support import create_pg_database, drop_pg_database

# Long examples: Hypothesis varies draws within an example more than it varies short examples (which
# repeat each other's prefixes); 100 draws stay within its buffer (longer ones get cut and replaced).
EXAMPLES = 16
PER_EXAMPLE = 100
TOTAL = EXAMPLES * PER_EXAMPLE
SLOW_S = 1.0

SEED: list[tuple[str, str, dict[str, Any]]] = [
    ("services", "/services", {"name": "seed-svc", "url": "http://a.test/v1", "tags": ["seed", "t1"]}),
    ("services", "/services", {"name": "seed-svc-2", "host": "b.test", "port": 8080, "tags": ["t2"]}),
    ("routes", "/services/seed-svc/routes", {"name": "seed-route", "paths": ["/seed"], "tags": ["seed"]}),
    ("routes", "/routes", {"name": "seed-route-2", "hosts": ["h.test"], "service": {"name": "seed-svc-2"}}),
    ("consumers", "/consumers", {"username": "seed-user", "custom_id": "seed-cid", "tags": ["seed"]}),
    ("consumers", "/consumers", {"username": "seed-user-2"}),
    ("keyauth_credentials", "/consumers/seed-user/key-auth", {"key": "seed-key-value", "tags": ["seed"]}),
    (
        "plugins",
        "/routes/seed-route/plugins",
        {"name": "key-auth", "instance_name": "seed-auth", "config": {"key_names": ["apikey"]}},
    ),
    (
        "plugins",
        "/consumers/seed-user/plugins",
        {
            "name": "rate-limiting",
            "instance_name": "seed-limit",
            "config": {"minute": 100, "policy": "local"},
        },
    ),
]
ENDPOINT_KEYS = {
    "services": "name",
    "routes": "name",
    "consumers": "username",
    "keyauth_credentials": "key",
    "plugins": "instance_name",
}
COLLECTIONS = {
    "services": "services",
    "routes": "routes",
    "consumers": "consumers",
    "keyauth_credentials": "key-auths",
    "plugins": "plugins",
}


class Client:
    """One keep-alive connection at a time; raw request-targets, every exchange timed."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: http.client.HTTPConnection | None = None
        self.last_headers: http.client.HTTPMessage | None = None

    def send(self, req: Req) -> tuple[int, bytes, float]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn = self.conn
        started = time.perf_counter()
        try:
            conn.putrequest(req.method, req.path, skip_accept_encoding=True)
            for name, value in req.headers.items():
                conn.putheader(name, value)
            if req.body or req.method in ("POST", "PUT", "PATCH"):
                conn.putheader("Content-Length", str(len(req.body)))
            conn.endheaders(req.body or None)
            resp = conn.getresponse()
            data = resp.read()
            self.last_headers = resp.headers
            if resp.will_close:
                self.close()
            return resp.status, data, time.perf_counter() - started
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def json(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        raw = json.dumps(body).encode() if body is not None else b""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        status, data, _ = self.send(Req(method, path, path, headers, raw))
        return status, json.loads(data) if data else None


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def node(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servegate]:
    prefix = str(tmp_path_factory.mktemp(f"fuzz-{request.param}"))
    db_name = None
    if request.param == "postgres":
        db_name, dsn = create_pg_database("servegate_fuzz")
        sg = Servegate(database="postgres", pg_dsn=dsn, prefix=prefix)
    else:
        sg = Servegate(database="sqlite", prefix=prefix)
    try:
        sg.start()
        yield sg
    finally:
        sg.stop()
        if db_name is not None:
            drop_pg_database(db_name)


def _seed(client: Client) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for entity, path, body in SEED:
        status, row = client.json("POST", path, body)
        assert status == 201, (path, row)
        keys.setdefault(entity, []).extend([row["id"], row[ENDPOINT_KEYS[entity]]])
    return keys


def _dump(client: Client, seeded: dict[str, list[str]]) -> dict[str, Any]:
    """Every seeded row, by id, as the Admin API shows it."""
    out: dict[str, Any] = {}
    for entity, keys in seeded.items():
        for row_id in keys[::2]:
            status, row = client.json("GET", f"/{COLLECTIONS[entity]}/{row_id}")
            out[f"{entity}/{row_id}"] = (status, row)
    return out


def _own_keys(client: Client, pools: Pools) -> None:
    """Ids and endpoint keys of rows the fuzz created so far, for later requests to aim at."""
    for entity, coll in COLLECTIONS.items():
        status, page = client.json("GET", f"/{coll}?size=50")
        if status != 200:
            continue
        status, small = client.json("GET", f"/{coll}?size=2")
        if status == 200 and small.get("offset"):
            pools.offsets = [*pools.offsets[-15:], small["offset"]]
        own = [
            v
            for row in page["data"]
            for v in (row["id"], row.get(ENDPOINT_KEYS[entity]))
            if isinstance(v, str) and not pools.protected(entity, v)
        ]
        pools.own[entity] = own[:24] or pools.own.get(entity, [])


@pytest.mark.timeout(240)  # ~15-30 s per store
def test_admin_api_fuzz(node: Servegate) -> None:
    client = Client(node.admin_port)
    seeded = _seed(client)
    pools = Pools(seeded=seeded, tags=["seed", "t1", "t2", "fz"])
    before = _dump(client, seeded)
    templates = _templates(client)

    problems: list[str] = []
    seen: set[str] = set()
    outcomes: dict[tuple[str, int], int] = {}
    count = 0

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def fuzz(data: st.DataObject) -> None:
        nonlocal count
        for _ in range(PER_EXAMPLE):
            req = data.draw(request(templates, pools))
            count += 1
            seen.add(req.template)
            try:
                status, body, took = client.send(req)
            except Exception as e:  # no answer at all: a crash or a hang
                problems.append(f"{req.method} {req.path[:200]} {req.headers} -> {type(e).__name__}: {e}")
                continue
            outcomes[(req.method, status)] = outcomes.get((req.method, status), 0) + 1
            if status >= 500 or took > SLOW_S:
                problems.append(
                    f"{req.method} {req.path[:200]} {req.headers} body={req.body[:300]!r} -> {status} "
                    f"{body[:200]!r} in {took:.2f}s"
                )
            if count % 200 == 0:
                _own_keys(client, pools)

    fuzz()
    client.close()
    assert count == TOTAL, count
    assert seen == set(templates), sorted(set(templates) - seen)
    # the fuzz wrote as well as read: writes and deletions that succeeded (how many varies a little from
    # run to run: generated ids, and so the order of the rows the fuzz aims at, differ)
    writes = sum(n for (m, st_), n in outcomes.items() if m in ("POST", "PUT", "PATCH") and 200 <= st_ < 300)
    deletes = sum(n for (m, st_), n in outcomes.items() if m == "DELETE" and st_ == 204)
    assert writes >= 20 and deletes >= 10, sorted(outcomes.items())
    assert not problems, f"{len(problems)} bad answers of {count}:\n" + "\n".join(problems[:40])
    after = _dump(client, seeded)
    assert after == before
    assert client.json("GET", "/status")[0] == 200
    assert node.proc is not None and node.proc.poll() is None


def _templates(client: Client) -> dict[str, list[str]]:
    """Every path the node serves (its own /endpoints list) -> the methods it allows there (OPTIONS)."""
    status, body = client.json("GET", "/endpoints")
    assert status == 200
    paths = body["data"]
    assert "/services/{services}/routes/{routes}" in paths, paths
    out: dict[str, list[str]] = {}
    for path in paths:
        status, _, _ = client.send(Req("OPTIONS", path, path, {}, b""))
        assert status == 204
        assert client.last_headers is not None
        out[path] = [m.strip() for m in client.last_headers.get("Allow", "GET").split(",")]
    return out
