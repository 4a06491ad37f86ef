"""Plugin-owned Admin API endpoints (Kong's api.lua) through a real node on both stores: a new endpoint, and a
generated one (POST /consumers/{consumers}/key-auth) wrapped with a check before and a header after.
The nodetest plugin lives in tests/node and is registered only in the node these tests start."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "node"))

from node_support import get, node  # noqa: E402

from helpers import Servegate  # noqa: E402


@pytest.fixture(params=["sqlite", "postgres"])
def sg(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Servegate]:
    n = node(tmp_path)
    if request.param == "postgres":
        n.database, n.pg_dsn = "postgres", request.getfixturevalue("fresh_pg_db")
    with n:
        yield n


def post_json(sg: Servegate, path: str, body: dict) -> tuple[int, dict[str, str], dict]:
    status, headers, raw = get(sg.admin_port, path, "POST", json.dumps(body).encode(),
                               {"Content-Type": "application/json"})
    return status, headers, json.loads(raw) if raw else None


def test_a_plugin_endpoint_gets_the_request_and_the_store(sg):
    assert sg.admin("GET", "/nodetest/hello") == (200, {"hello": "world", "consumers": 0})
    assert sg.admin("POST", "/consumers", {"username": "alice"})[0] == 201
    assert sg.admin("GET", "/nodetest/hello?name=kong") == (200, {"hello": "kong", "consumers": 1})
    status, body = sg.admin("GET", "/endpoints")
    assert status == 200 and "/nodetest/hello" in body["data"]
    # Only the declared method: others get Kong's 405.
    assert sg.admin("DELETE", "/nodetest/hello") == (405, {"message": "Method not allowed"})


def test_a_wrapped_generated_endpoint_runs_around_the_generated_handler(sg):
    assert sg.admin("POST", "/consumers", {"username": "alice"})[0] == 201
    # Before: the plugin refuses, the generated handler never runs, nothing is stored.
    status, headers, body = post_json(sg, "/consumers/alice/key-auth", {"key": "refused-by-nodetest"})
    assert (status, body) == (400, {"message": "nodetest refuses this key"})
    assert "x-nodetest-wrapped" not in headers
    assert sg.admin("GET", "/consumers/alice/key-auth")[1]["data"] == []
    # After: the generated answer, as Kong gives it, plus the plugin's header.
    status, headers, body = post_json(sg, "/consumers/alice/key-auth", {"key": "a-good-key-1234"})
    assert status == 201 and headers["x-nodetest-wrapped"] == "201"
    assert body["key"] == "a-good-key-1234" and body["consumer"] == {"id": sg.admin("GET", "/consumers/alice")[1]["id"]}
    # The generated handler's own errors come through the wrapper unchanged.
    status, headers, body = post_json(sg, "/consumers/alice/key-auth", {"key": "a-good-key-1234"})
    assert status == 409 and headers["x-nodetest-wrapped"] == "409" and body["name"] == "unique constraint violation"
    status, headers, body = post_json(sg, "/consumers/nobody/key-auth", {"key": "k2-abcdef"})
    assert status == 404 and headers["x-nodetest-wrapped"] == "404"
    # Form bodies reach the wrapper parsed too.
    status, headers, raw = get(sg.admin_port, "/consumers/alice/key-auth", "POST", b"key=refused-by-nodetest",
                               {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 400 and json.loads(raw) == {"message": "nodetest refuses this key"}
    # The other methods on that path stay the generated ones.
    status, body = sg.admin("GET", "/consumers/alice/key-auth")
    assert status == 200 and [c["key"] for c in body["data"]] == ["a-good-key-1234"]
