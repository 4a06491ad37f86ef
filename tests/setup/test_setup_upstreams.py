"""A comma-separated backend URL list: the setup job keeps an upstream with one target per URL, against a real
`servegate start` on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from setup_support import KEY_A, admin_state, by_name, echo_server, ok, run_setup, targets

from helpers import Servegate
from servegate.cli.setup import run_setup as run_in_process
from support import free_port

# Nothing listens on these: the active health checks get a quick connection refusal, no DNS lookup.
PA, PB, PC = 18301, 18302, 18303
A, B, C = (f"http://127.0.0.1:{p}" for p in (PA, PB, PC))
TA, TB, TC = (f"127.0.0.1:{p}" for p in (PA, PB, PC))
SGLANG = "https://sglang.example.internal:30000/base"


def service(sg: Servegate, name: str) -> dict[str, Any]:
    status, body = sg.admin("GET", f"/services/{name}")
    assert status == 200, body
    return body


def upstream(sg: Servegate, name: str) -> dict[str, Any] | None:
    status, body = sg.admin("GET", f"/upstreams/{name}")
    assert status in (200, 404), body
    return body if status == 200 else None


def test_a_url_list_becomes_an_upstream_and_a_second_run_changes_nothing(gateway: Servegate) -> None:
    sg = gateway
    env = dict(VLLM_UPSTREAM_URL=f"{A}, {B}", SGLANG_UPSTREAM_URL=SGLANG, KONG_ADMIN_API_KEY=KEY_A)
    first = ok(run_setup(sg, **env))
    assert "upstream vllm-upstream: created (least-outstanding" in first.stdout
    assert f"target {TA} of vllm-upstream: created" in first.stdout
    state = admin_state(sg, upstreams=True)

    [up] = state["upstreams"]
    assert up["name"] == "vllm-upstream" and up["algorithm"] == "least-outstanding"
    active, passive = up["healthchecks"]["active"], up["healthchecks"]["passive"]
    assert (active["type"], active["http_path"], active["timeout"]) == ("http", "/health", 2)
    assert active["healthy"]["interval"] == 5 and active["healthy"]["successes"] == 1
    assert sorted(active["healthy"]["http_statuses"]) == [200, 302, 404]  # a server without /health is up
    unhealthy = active["unhealthy"]
    assert sorted(unhealthy["http_statuses"]) == [500, 502, 503, 504]
    assert (unhealthy["interval"], unhealthy["tcp_failures"], unhealthy["timeouts"], unhealthy["http_failures"]) == (
        5, 2, 2, 2)
    unhealthy = passive["unhealthy"]
    assert (unhealthy["tcp_failures"], unhealthy["timeouts"], unhealthy["http_failures"]) == (1, 1, 2)
    assert sorted(unhealthy["http_statuses"]) == [500, 502, 503, 504]
    assert passive["healthy"]["successes"] == 0  # active checks bring a target back, not the next 200

    assert {t["target"]: t["weight"] for t in state["targets"]} == {TA: 100, TB: 100}
    assert all(t["upstream"] == {"id": up["id"]} for t in state["targets"])
    services = by_name(state["services"])
    vllm = services["vllm-service"]
    assert (vllm["protocol"], vllm["host"], vllm["port"], vllm["path"]) == ("http", "vllm-upstream", PA, None)
    assert (vllm["read_timeout"], vllm["write_timeout"]) == (120000, 120000)
    assert services["sglang-service"]["host"] == "sglang.example.internal"  # one URL: a plain service
    assert by_name(state["routes"])["vllm-route"]["service"] == {"id": vllm["id"]}

    second = ok(run_setup(sg, **env))
    assert admin_state(sg, upstreams=True) == state
    for word in ("created", "updated", "deleted"):
        assert word not in second.stdout
    assert "service vllm-service -> upstream vllm-upstream (2 targets): unchanged" in second.stdout


def test_targets_follow_the_list(gateway: Servegate) -> None:
    sg = gateway
    ok(run_setup(sg, VLLM_UPSTREAM_URL=f"{A},{B},{C}"))
    before = targets(sg, "vllm-upstream")
    assert set(before) == {TA, TB, TC}

    proc = ok(run_setup(sg, VLLM_UPSTREAM_URL=f"{A},{C}"))
    assert f"target {TB} of vllm-upstream: deleted" in proc.stdout
    after = targets(sg, "vllm-upstream")
    assert set(after) == {TA, TC}
    assert {after[t]["id"] for t in (TA, TC)} == {before[t]["id"] for t in (TA, TC)}  # the others stay as they are
    assert sg.admin("GET", f"/upstreams/vllm-upstream/targets/{before[TB]['id']}")[0] == 404

    # The order of the list does not matter, except for the service's port (taken from the first URL).
    proc = ok(run_setup(sg, VLLM_UPSTREAM_URL=f"{C},{B},{A}"))
    assert f"target {TB} of vllm-upstream: created" in proc.stdout
    assert set(targets(sg, "vllm-upstream")) == {TA, TB, TC}
    assert service(sg, "vllm-service")["port"] == PC


def test_back_to_one_url_restores_the_plain_service_and_deletes_the_upstream(gateway: Servegate) -> None:
    sg = gateway
    ok(run_setup(sg, VLLM_UPSTREAM_URL=f"{A},{B}"))
    vllm_id = service(sg, "vllm-service")["id"]

    proc = ok(run_setup(sg, VLLM_UPSTREAM_URL=B))
    assert "upstream vllm-upstream: deleted (vllm-service has a single URL again)" in proc.stdout
    svc = service(sg, "vllm-service")
    assert (svc["id"], svc["host"], svc["port"]) == (vllm_id, "127.0.0.1", PB)
    assert upstream(sg, "vllm-upstream") is None
    status, body = sg.admin("GET", "/upstreams")
    assert status == 200 and body["data"] == []

    again = ok(run_setup(sg, VLLM_UPSTREAM_URL=B))
    assert "upstream" not in again.stdout and "created" not in again.stdout

    # A trailing comma does not make a list: one URL is one URL.
    assert "upstream" not in ok(run_setup(sg, VLLM_UPSTREAM_URL=f"{B},")).stdout
    ok(run_setup(sg, VLLM_UPSTREAM_URL=f"{B},{A}"))
    assert set(targets(sg, "vllm-upstream")) == {TA, TB}


def test_an_upstream_another_service_uses_is_kept(gateway: Servegate) -> None:
    sg = gateway
    ok(run_setup(sg, VLLM_UPSTREAM_URL=f"{A},{B}"))
    assert sg.admin("PUT", "/services/batch-service", {"host": "vllm-upstream", "port": 8000})[0] == 200
    proc = ok(run_setup(sg, VLLM_UPSTREAM_URL=A))
    assert "upstream vllm-upstream: kept, still the host of service batch-service" in proc.stdout
    assert upstream(sg, "vllm-upstream") is not None
    assert service(sg, "vllm-service")["host"] == "127.0.0.1"


def test_settings_changed_through_the_admin_api_survive_a_rerun(gateway: Servegate) -> None:
    sg = gateway
    ok(run_setup(sg, VLLM_UPSTREAM_URL=f"{A},{B}"))
    status, body = sg.admin("PATCH", "/upstreams/vllm-upstream",
                            {"algorithm": "round-robin", "healthchecks": {"active": {"http_path": "/ping"}}})
    assert status == 200, body
    status, body = sg.admin("PATCH", f"/upstreams/vllm-upstream/targets/{TB}", {"weight": 10})
    assert status == 200, body
    before = admin_state(sg, upstreams=True)

    proc = ok(run_setup(sg, VLLM_UPSTREAM_URL=f"{A},{B}"))
    assert "upstream vllm-upstream: unchanged" in proc.stdout
    assert admin_state(sg, upstreams=True) == before
    up = upstream(sg, "vllm-upstream")
    assert up is not None and up["algorithm"] == "round-robin"
    assert up["healthchecks"]["active"]["http_path"] == "/ping"
    assert targets(sg, "vllm-upstream")[TB]["weight"] == 10


def test_health_checks_follow_the_scheme(gateway: Servegate) -> None:
    sg = gateway
    ok(run_setup(sg, SGLANG_UPSTREAM_URL="http://127.0.0.1:18401/base,http://127.0.0.1:18402/base"))
    proc = ok(run_setup(sg, SGLANG_UPSTREAM_URL="https://127.0.0.1:18401/base,https://127.0.0.1:18402/base"))
    assert "upstream sglang-upstream: updated (health checks over https)" in proc.stdout
    up = upstream(sg, "sglang-upstream")
    assert up is not None
    assert (up["healthchecks"]["active"]["type"], up["healthchecks"]["passive"]["type"]) == ("https", "https")
    assert up["healthchecks"]["active"]["healthy"]["interval"] == 5  # the rest is kept
    svc = service(sg, "sglang-service")
    assert (svc["protocol"], svc["host"], svc["path"]) == ("https", "sglang-upstream", "/base")
    rerun = ok(run_setup(sg, SGLANG_UPSTREAM_URL="https://127.0.0.1:18401/base,https://127.0.0.1:18402/base"))
    assert "upstream sglang-upstream: unchanged" in rerun.stdout and "updated" not in rerun.stdout


def test_ipv6_and_default_ports(gateway: Servegate) -> None:
    sg = gateway
    urls = "http://[::1]:18501,http://[0:0:0:0:0:0:0:1]:18502,http://127.0.0.1"
    ok(run_setup(sg, VLLM_UPSTREAM_URL=urls))
    have = targets(sg, "vllm-upstream")
    assert len(have) == 3 and "127.0.0.1:80" in have
    # However the server writes an IPv6 target, a re-run recognizes it.
    proc = ok(run_setup(sg, VLLM_UPSTREAM_URL=urls))
    assert "created" not in proc.stdout and "deleted" not in proc.stdout


def _get(sg: Servegate, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(sg.proxy_url + path, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, None


def test_the_proxy_balances_over_the_replicas_and_skips_a_dead_one(gateway: Servegate) -> None:
    sg = gateway
    with echo_server() as (url_a, _), echo_server() as (url_b, server_b):
        port_a, port_b = (int(u.rsplit(":", 1)[1]) for u in (url_a, url_b))
        ok(run_setup(sg, VLLM_UPSTREAM_URL=f"{url_a},{url_b}"))
        seen = set()
        deadline = time.monotonic() + 10
        while seen != {port_a, port_b} and time.monotonic() < deadline:
            status, body = _get(sg, "/v1/vllm/v1/models")
            assert status == 200 and body["path"] == "/v1/models"
            seen.add(body["port"])
        assert seen == {port_a, port_b}

        server_b.shutdown()
        server_b.server_close()
        # The dead replica's refused connection is retried on the other one, then passive checks take it out.
        for _ in range(20):
            status, body = _get(sg, "/v1/vllm/v1/models")
            assert (status, body["port"]) == (200, port_a)
        status, health = sg.admin("GET", "/upstreams/vllm-upstream/health")
        assert status == 200, health
        states = {row["target"]: row["health"] for row in health["data"]}
        assert states == {f"127.0.0.1:{port_a}": "HEALTHY", f"127.0.0.1:{port_b}": "UNHEALTHY"}


@pytest.mark.parametrize(("urls", "message"), [
    ("http://a:8000,https://b:8000", "the URLs of a list must share scheme and path; 'http://a:8000' and "
                                     "'https://b:8000' differ"),
    ("http://a:8000/v1,http://b:8000/v2", "must share scheme and path"),
    ("http://a:8000,http://b:8000/", "must share scheme and path"),
    ("http://a:8000,http://A:8000/", "must share scheme and path"),
    ("http://a:8000,http://A:8000", "'http://a:8000' and 'http://A:8000' are the same target a:8000"),
    ("http://a,http://a:80", "are the same target a:80"),
    ("http://a:8000,ftp://b:21", "'ftp://b:21' is not an http:// or https:// URL with a host"),
    ("http://a:8000,b:8000", "'b:8000' is not an http:// or https:// URL with a host"),
    ("http://a:8000,http://b:99999", "'http://b:99999' is not a valid URL"),
    ("http://a:8000,http://user:secret@b:8000", "http://***@b:8000 carries a user name or password"),
])
def test_a_bad_list_fails_before_any_write(urls: str, message: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = run_in_process(
        {"SERVEGATE_ADMIN_URL": f"http://127.0.0.1:{free_port()}", "SGLANG_UPSTREAM_URL": urls},
        out=lambda line: print(line, file=out), err=lambda line: print(line, file=err), wait_s=0,
    )
    assert code == 1
    assert err.getvalue().startswith("setup failed: SGLANG_UPSTREAM_URL: ")
    assert message in err.getvalue()
    assert "waiting for the Admin API" not in out.getvalue()  # checked before the first request
    assert "secret" not in out.getvalue() + err.getvalue()


def test_a_bad_list_writes_nothing(gateway: Servegate) -> None:
    proc = run_setup(gateway, VLLM_UPSTREAM_URL=A, SGLANG_UPSTREAM_URL="http://a:1,https://b:2",
                     KONG_ADMIN_API_KEY=KEY_A)
    assert proc.returncode == 1
    assert "setup failed: SGLANG_UPSTREAM_URL: the URLs of a list must share scheme and path" in proc.stderr
    status, body = gateway.admin("GET", "/services")
    assert status == 200 and body["data"] == []
