"""`servegate setup` run as a process against a real `servegate start`, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from setup_support import KEY_A, KEY_B, admin_state, by_name, run_setup

from helpers import Servegate
from support import free_port

VLLM = "http://vllm.example.internal:8080"
SGLANG = "https://sglang.example.internal:30000/base"


def test_second_run_changes_nothing(gateway: Servegate) -> None:
    first = run_setup(gateway, VLLM_UPSTREAM_URL=VLLM, SGLANG_UPSTREAM_URL=SGLANG, KONG_ADMIN_API_KEY=KEY_A)
    assert first.returncode == 0, first.stdout + first.stderr
    state1 = admin_state(gateway)

    second = run_setup(gateway, VLLM_UPSTREAM_URL=VLLM, SGLANG_UPSTREAM_URL=SGLANG, KONG_ADMIN_API_KEY=KEY_A)
    assert second.returncode == 0, second.stdout + second.stderr
    assert admin_state(gateway) == state1
    assert "created" not in second.stdout and "updated" not in second.stdout
    assert second.stdout.count(": unchanged") == 12

    services = by_name(state1["services"])
    assert set(services) == {"vllm-service", "sglang-service", "admin-api-service", "llm-service"}
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

    # /v1 for every model: the model router over both backends, on a route of its own that keeps its path.
    llm = services["llm-service"]
    assert (llm["protocol"], llm["host"], llm["port"], llm["path"]) == ("http", "vllm.example.internal", 8080, None)
    assert (routes["llm-route"]["paths"], routes["llm-route"]["strip_path"]) == (["/v1"], False)
    assert routes["llm-route"]["service"] == {"id": llm["id"]}
    plugins = by_name(state1["plugins"])
    router = plugins["model-router"]
    assert router["route"] == {"id": routes["llm-route"]["id"]} and router["service"] is None
    assert router["config"]["backends"] == ["vllm-service", "sglang-service"]

    plugin = plugins["key-auth"]
    assert plugin["enabled"] is True
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
    assert set(by_name(state["services"])) == {"vllm-service", "admin-api-service", "llm-service"}
    assert set(by_name(state["routes"])) == {"vllm-route", "admin-api-route", "llm-route"}


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


def test_configured_gateway_serves_the_seed_routes(tmp_path: Any, echo: str) -> None:
    """After setup: LLM routes strip their prefix, /admin-api needs the key, and a re-run keeps a raised timeout."""
    with Servegate(prefix=str(tmp_path)) as sg:
        assert run_setup(sg, VLLM_UPSTREAM_URL=echo, KONG_ADMIN_API_KEY=KEY_A).returncode == 0

        def get(path: str, method: str = "GET", data: bytes | None = None, **headers: str) -> tuple[int, Any]:
            req = urllib.request.Request(sg.proxy_url + path, data=data, method=method, headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    return r.status, json.loads(r.read() or b"null")
            except urllib.error.HTTPError as e:
                return e.code, None

        status, body = get("/v1/vllm/v1/models")
        assert (status, body["path"]) == (200, "/v1/models")
        assert get("/admin-api/services")[0] == 401
        assert get("/admin-api/services?apikey=wrong")[0] == 401
        status, body = get(f"/admin-api/services?apikey={KEY_A}")
        assert status == 200 and {s["name"] for s in body["data"]} == {"vllm-service", "admin-api-service",
                                                                        "llm-service"}
        assert get("/admin-api/services", apikey=KEY_A)[0] == 200
        status, body = get(
            f"/admin-api/services/vllm-service?apikey={KEY_A}", "PATCH", b"read_timeout=300000&write_timeout=300000",
            **{"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert status == 200 and body["read_timeout"] == 300000

        rerun = run_setup(sg, VLLM_UPSTREAM_URL=echo, KONG_ADMIN_API_KEY=KEY_A)
        assert rerun.returncode == 0
        assert sg.admin("GET", "/services/vllm-service")[1]["read_timeout"] == 300000
