"""`servegate setup` run as a process against a real `servegate start`, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from helpers import Servegate
from support import create_pg_database, drop_pg_database, free_port

KEY_A = "setup-test-key-aaaaaaaaaaaaaaaa"
KEY_B = "setup-test-key-bbbbbbbbbbbbbbbb"
VLLM = "http://vllm.example.internal:8080"
SGLANG = "https://sglang.example.internal:30000/base"


@pytest.fixture(params=["sqlite", "postgres"])
def gateway(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Servegate]:
    db_name = None
    if request.param == "postgres":
        db_name, dsn = create_pg_database("servegate_setup")
        sg = Servegate(database="postgres", pg_dsn=dsn, prefix=str(tmp_path))
    else:
        sg = Servegate(prefix=str(tmp_path))
    try:
        with sg:
            yield sg
    finally:
        if db_name:
            drop_pg_database(db_name)


def run_setup(sg: Servegate | None, *, admin_url: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("SERVEGATE_", "KONG_"))}
    full.update(SERVEGATE_ADMIN_URL=admin_url or (sg.admin_url if sg else ""), SERVEGATE_SETUP_WAIT="20")
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "servegate.cli.setup"], env=full, capture_output=True, text=True, timeout=60
    )


def admin_state(sg: Servegate) -> dict[str, list[dict[str, Any]]]:
    state = {}
    for collection in ("services", "routes", "plugins", "consumers", "key-auths"):
        status, body = sg.admin("GET", f"/{collection}")
        assert status == 200, (collection, body)
        rows = [{k: v for k, v in row.items() if k != "updated_at"} for row in body["data"]]
        state[collection] = sorted(rows, key=lambda r: r["id"])
    return state


def by_name(rows: list[dict[str, Any]], key: str = "name") -> dict[str, dict[str, Any]]:
    return {r[key]: r for r in rows}


def test_second_run_changes_nothing(gateway: Servegate) -> None:
    first = run_setup(gateway, VLLM_UPSTREAM_URL=VLLM, SGLANG_UPSTREAM_URL=SGLANG, KONG_ADMIN_API_KEY=KEY_A)
    assert first.returncode == 0, first.stdout + first.stderr
    state1 = admin_state(gateway)

    second = run_setup(gateway, VLLM_UPSTREAM_URL=VLLM, SGLANG_UPSTREAM_URL=SGLANG, KONG_ADMIN_API_KEY=KEY_A)
    assert second.returncode == 0, second.stdout + second.stderr
    assert admin_state(gateway) == state1
    assert "created" not in second.stdout and "updated" not in second.stdout
    assert second.stdout.count(": unchanged") == 9

    services = by_name(state1["services"])
    assert set(services) == {"vllm-service", "sglang-service", "admin-api-service"}
    vllm = services["vllm-service"]
    assert (vllm["protocol"], vllm["host"], vllm["port"], vllm["path"]) == ("http", "vllm.example.internal", 8080, None)
    assert (vllm["read_timeout"], vllm["write_timeout"]) == (120000, 120000)
    sglang = services["sglang-service"]
    assert (sglang["protocol"], sglang["host"], sglang["port"], sglang["path"]) == (
        "https", "sglang.example.internal", 30000, "/base")
    admin_svc = services["admin-api-service"]
    assert (admin_svc["host"], admin_svc["port"]) == ("127.0.0.1", gateway.admin_port)

    routes = by_name(state1["routes"])
    for route, prefix, service in (
        ("vllm-route", "/v1/vllm", "vllm-service"),
        ("sglang-route", "/v1/sglang", "sglang-service"),
        ("admin-api-route", "/admin-api", "admin-api-service"),
    ):
        assert routes[route]["paths"] == [prefix]
        assert routes[route]["strip_path"] is True
        assert routes[route]["service"] == {"id": services[service]["id"]}

    [plugin] = state1["plugins"]
    assert plugin["name"] == "key-auth" and plugin["enabled"] is True
    assert plugin["service"] == {"id": admin_svc["id"]}
    [consumer] = state1["consumers"]
    assert consumer["username"] == "admin"
    [cred] = state1["key-auths"]
    assert cred["key"] == KEY_A and cred["consumer"] == {"id": consumer["id"]}
    # The key is never echoed.
    for proc in (first, second):
        assert KEY_A not in proc.stdout + proc.stderr


def test_changed_key_replaces_the_old_one(gateway: Servegate) -> None:
    assert run_setup(gateway, VLLM_UPSTREAM_URL=VLLM, KONG_ADMIN_API_KEY=KEY_A).returncode == 0
    before = admin_state(gateway)
    # SERVEGATE_ADMIN_API_KEY wins over KONG_ADMIN_API_KEY.
    proc = run_setup(gateway, VLLM_UPSTREAM_URL=VLLM, KONG_ADMIN_API_KEY=KEY_A, SERVEGATE_ADMIN_API_KEY=KEY_B)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "replaced" in proc.stdout
    after = admin_state(gateway)
    assert [c["key"] for c in after["key-auths"]] == [KEY_B]
    assert after["consumers"] == before["consumers"]
    assert after["services"] == before["services"] and after["routes"] == before["routes"]
    assert KEY_A not in proc.stdout + proc.stderr and KEY_B not in proc.stdout + proc.stderr


def test_unset_backend_is_skipped(gateway: Servegate) -> None:
    proc = run_setup(gateway, VLLM_UPSTREAM_URL=VLLM, SGLANG_UPSTREAM_URL="", KONG_ADMIN_API_KEY=KEY_A)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SGLANG_UPSTREAM_URL is not set: skipping sglang-service and sglang-route" in proc.stdout
    state = admin_state(gateway)
    assert set(by_name(state["services"])) == {"vllm-service", "admin-api-service"}
    assert set(by_name(state["routes"])) == {"vllm-route", "admin-api-route"}


def test_admin_api_error_fails_the_job(gateway: Servegate) -> None:
    proc = run_setup(gateway, VLLM_UPSTREAM_URL="ftp://vllm.example.internal:21", KONG_ADMIN_API_KEY=KEY_A)
    assert proc.returncode == 1
    assert "setup failed: PUT /services/vllm-service failed with HTTP 400" in proc.stderr
    assert "schema violation" in proc.stderr and "protocol" in proc.stderr
    status, _ = gateway.admin("GET", "/services/vllm-service")
    assert status == 404


def test_unreachable_admin_api_fails_after_the_wait() -> None:
    proc = run_setup(None, admin_url=f"http://127.0.0.1:{free_port()}", SERVEGATE_SETUP_WAIT="1",
                     VLLM_UPSTREAM_URL=VLLM)
    assert proc.returncode == 1
    assert "did not become ready within 1 s" in proc.stderr


class _Upstream(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server API
        body = json.dumps({"path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_configured_gateway_serves_the_seed_routes(tmp_path: Any) -> None:
    """After setup: LLM routes strip their prefix, /admin-api needs the key, and a re-run keeps a raised timeout."""
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    backend = f"http://127.0.0.1:{upstream.server_address[1]}"
    try:
        with Servegate(prefix=str(tmp_path)) as sg:
            assert run_setup(sg, VLLM_UPSTREAM_URL=backend, KONG_ADMIN_API_KEY=KEY_A).returncode == 0

            def get(path: str, method: str = "GET", data: bytes | None = None, **headers: str) -> tuple[int, Any]:
                req = urllib.request.Request(sg.proxy_url + path, data=data, method=method, headers=headers)
                try:
                    with urllib.request.urlopen(req, timeout=10) as r:
                        return r.status, json.loads(r.read() or b"null")
                except urllib.error.HTTPError as e:
                    return e.code, None

            assert get("/v1/vllm/v1/models") == (200, {"path": "/v1/models"})
            assert get("/admin-api/services")[0] == 401
            assert get("/admin-api/services?apikey=wrong")[0] == 401
            status, body = get(f"/admin-api/services?apikey={KEY_A}")
            assert status == 200 and {s["name"] for s in body["data"]} == {"vllm-service", "admin-api-service"}
            assert get("/admin-api/services", apikey=KEY_A)[0] == 200
            status, body = get(
                f"/admin-api/services/vllm-service?apikey={KEY_A}", "PATCH", b"read_timeout=300000&write_timeout=300000",
                **{"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert status == 200 and body["read_timeout"] == 300000

            rerun = run_setup(sg, VLLM_UPSTREAM_URL=backend, KONG_ADMIN_API_KEY=KEY_A)
            assert rerun.returncode == 0
            assert sg.admin("GET", "/services/vllm-service")[1]["read_timeout"] == 300000
    finally:
        upstream.shutdown()
        upstream.server_close()
