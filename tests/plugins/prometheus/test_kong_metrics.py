"""The prometheus plugin's Kong families through real nodes: config schema, status codes and sources, latencies,
bandwidth, the consumer label with key-auth, upstream target health, node gauges, one view over two workers,
a reload, the status listener, a restart."""

from __future__ import annotations

import marshal
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prom_support import add_plugin, add_route, raw_exchange, scrape, wait_scrape

import servegate
from helpers import Servegate, fake_backend
from support import free_port

KONG_SWITCHES = ["per_consumer", "status_code_metrics", "ai_metrics", "latency_metrics", "bandwidth_metrics",
                 "upstream_health_metrics"]


@pytest.fixture(scope="module")
def backend() -> Iterator[str]:
    with fake_backend() as url:
        yield url


def _node(tmp_path: Path, workers: int = 1, **env: str) -> Servegate:
    return Servegate(workers=workers, prefix=str(tmp_path / "prefix"),
                     extra_env={"SERVEGATE_PROXY_ACCESS_LOG": "off", **env})


def test_config_schema_is_kongs(tmp_path: Path) -> None:
    with _node(tmp_path) as sg:
        status, body = sg.admin("GET", "/schemas/plugins/prometheus")
        assert status == 200
        config = next(f["config"] for f in body["fields"] if "config" in f)
        fields = [(name, spec) for f in config["fields"] for name, spec in f.items()]
        assert [name for name, _ in fields] == KONG_SWITCHES
        assert all(spec["type"] == "boolean" and spec["default"] is False for _, spec in fields)
        status, body = sg.admin("POST", "/plugins", {"name": "prometheus"})
        assert status == 201 and body["config"] == dict.fromkeys(KONG_SWITCHES, False)
        status, body = sg.admin("POST", "/plugins", {"name": "prometheus", "config": {"latency_metrics": "x"}})
        assert status == 400 and body["fields"]["config"] == {"latency_metrics": "expected a boolean"}
        status, enabled = sg.admin("GET", "/plugins/enabled")
        assert "prometheus" in enabled["enabled_plugins"]


def test_node_gauges_without_the_plugin(tmp_path: Path, backend: str) -> None:
    with _node(tmp_path) as sg:
        add_route(sg, backend)
        assert httpx.get(sg.proxy_url + "/v1/models").status_code == 200
        got = scrape(sg.admin_url)
        node_id = sg.admin("GET", "/")[1]["node_id"]
        assert got.value("kong_datastore_reachable") == 1
        assert got.value("kong_node_info", node_id=node_id, version=servegate.KONG_VERSION) == 1
        (mem,) = got.samples("kong_memory_workers_lua_vms_bytes", node_id=node_id, kong_subsystem="http")
        assert mem.labels["pid"] == str(sg.proc.pid if sg.proc else 0) and mem.value > 10_000_000
        # Kong: with no prometheus plugin configured, only the node's own gauges
        assert not got.has("kong_http_requests_total") and not got.has("kong_nginx_metric_errors_total")
        add_plugin(sg, {})  # the defaults record nothing per request
        assert httpx.get(sg.proxy_url + "/v1/models").status_code == 200
        time.sleep(1.2)
        got = scrape(sg.admin_url)
        assert got.value("kong_nginx_metric_errors_total") == 0
        assert not got.has("kong_http_requests_total") and not got.has("kong_request_latency_ms_count")


def _request(port: int, path: str, key: str | None = None) -> tuple[bytes, bytes]:
    headers = f"apikey: {key}\r\n" if key else ""
    req = f"GET {path} HTTP/1.1\r\nHost: gw\r\n{headers}Connection: close\r\n\r\n".encode()
    return req, raw_exchange(port, req)


@pytest.mark.parametrize("per_consumer", [True, False])
def test_status_latency_bandwidth_and_consumer(tmp_path: Path, backend: str, per_consumer: bool) -> None:
    with _node(tmp_path) as sg:
        add_route(sg, backend)
        assert sg.admin("POST", "/routes/llm-route/plugins", {"name": "key-auth"})[0] == 201
        assert sg.admin("POST", "/consumers", {"username": "alice"})[0] == 201
        assert sg.admin("POST", "/consumers/alice/key-auth", {"key": "alice-key"})[0] == 201
        add_plugin(sg, {"per_consumer": per_consumer, "status_code_metrics": True, "latency_metrics": True,
                        "bandwidth_metrics": True})
        sent = received = 0
        answers: list[bytes] = []
        for path, key in [("/v1/models", "alice-key")] * 3 + [("/v1/nothing", "alice-key")] + \
                         [("/v1/models", None)] * 2 + [("/v1/models", "wrong")]:
            req, resp = _request(sg.proxy_port, path, key)
            sent += len(req)
            received += len(resp)
            answers.append(resp.split(b" ", 2)[1])
        assert answers == [b"200"] * 3 + [b"404"] + [b"401"] * 3
        alice = "alice" if per_consumer else ""
        got = wait_scrape(sg.admin_url, lambda s: s.value("kong_http_requests_total") == 7)
        rows = {(s.labels["code"], s.labels["source"], s.labels["consumer"]): s.value
                for s in got.samples("kong_http_requests_total", service="llm", route="llm-route",
                                     workspace="default")}
        # key-auth's answers come from Kong, the backend's 404 from the service
        assert rows == {("200", "service", alice): 3, ("404", "service", alice): 1, ("401", "kong", ""): 3}
        where = {"service": "llm", "route": "llm-route", "workspace": "default"}
        assert got.value("kong_request_latency_ms_count", **where) == 7
        assert got.value("kong_kong_latency_ms_count", **where) == 7
        # an exit has no upstream latency (Kong's -1 is not observed)
        assert got.value("kong_upstream_latency_ms_count", **where) == 4
        assert got.value("kong_request_latency_ms_bucket", le="+Inf", **where) == 7
        assert got.value("kong_request_latency_ms_bucket", le="25", **where) == 7  # loopback: all under 25 ms
        # (prometheus_client's parser names a counter's samples `_total`; the exposition says kong_bandwidth_bytes)
        assert "\nkong_bandwidth_bytes{" in got.text
        by_direction = {(s.labels["direction"], s.labels["consumer"]): s.value
                        for s in got.samples("kong_bandwidth_bytes_total", **where)}
        assert sum(v for (d, _), v in by_direction.items() if d == "ingress") == sent
        assert sum(v for (d, _), v in by_direction.items() if d == "egress") == received
        assert {c for _, c in by_direction} == ({"alice", ""} if per_consumer else {""})


def test_upstream_target_health(tmp_path: Path, backend: str) -> None:
    port = backend.rsplit(":", 1)[1]
    dead = f"127.0.0.1:{free_port()}"
    with _node(tmp_path) as sg:
        add_plugin(sg, {"upstream_health_metrics": True})
        assert sg.admin("POST", "/upstreams", {"name": "plain"})[0] == 201
        for target, weight in ((f"127.0.0.1:{port}", 100), ("127.0.0.2:9", 0), (f"no-such-host.invalid:{port}", 10)):
            assert sg.admin("POST", "/upstreams/plain/targets", {"target": target, "weight": weight})[0] == 201
        checks = {"passive": {"healthy": {"successes": 1},
                              "unhealthy": {"tcp_failures": 1, "http_failures": 1, "timeouts": 1}}}
        assert sg.admin("POST", "/upstreams", {"name": "checked", "healthchecks": checks})[0] == 201
        for target in (f"127.0.0.1:{port}", dead):
            assert sg.admin("POST", "/upstreams/checked/targets", {"target": target})[0] == 201
        assert sg.admin("PUT", f"/upstreams/checked/targets/{dead}/unhealthy")[0] == 204
        got = scrape(sg.admin_url)
        states = {(s.labels["upstream"], s.labels["target"], s.labels["address"]): s.labels["state"]
                  for s in got.samples("kong_upstream_target_health", subsystem="http") if s.value == 1}
        assert states == {
            ("plain", f"127.0.0.1:{port}", f"127.0.0.1:{port}"): "healthchecks_off",
            ("plain", "127.0.0.2:9", "127.0.0.2:9"): "healthchecks_off",
            ("plain", f"no-such-host.invalid:{port}", ""): "dns_error",
            ("checked", f"127.0.0.1:{port}", f"127.0.0.1:{port}"): "healthy",
            ("checked", dead, dead): "unhealthy",
        }
        # each address has its four states, one of them 1
        assert len(got.samples("kong_upstream_target_health")) == 4 * len(states)
        # the same view as the Admin API's
        status, body = sg.admin("GET", "/upstreams/checked/health")
        assert {d["target"]: d["health"] for d in body["data"]} == {f"127.0.0.1:{port}": "HEALTHY",
                                                                   dead: "UNHEALTHY"}
        assert sg.admin("PUT", f"/upstreams/checked/targets/{dead}/healthy")[0] == 204
        got = scrape(sg.admin_url)
        assert got.value("kong_upstream_target_health", upstream="checked", address=dead, state="healthy") == 1


def _hammer(url: str, n: int, connections: int) -> None:
    """`n` requests over `connections` separate connections (so that every worker gets some)."""
    per = n // connections
    for _ in range(connections):
        with httpx.Client() as client:
            for _ in range(per):
                assert client.get(url).status_code == 200


def test_two_workers_add_up_and_survive_a_reload(tmp_path: Path, backend: str) -> None:
    status_port = free_port()
    with _node(tmp_path, 2, SERVEGATE_STATUS_LISTEN=f"127.0.0.1:{status_port}") as sg:
        add_route(sg, backend)
        add_plugin(sg, {"status_code_metrics": True, "latency_metrics": True})
        time.sleep(0.6)  # the workers poll the configuration
        _hammer(sg.proxy_url + "/v1/models", 200, 40)

        def total(s):  # type: ignore[no-untyped-def]
            return s.value("kong_http_requests_total", code="200")

        got = wait_scrape(sg.admin_url, lambda s: total(s) == 200)
        assert got.value("kong_request_latency_ms_count") == 200
        pids = {s.labels["pid"] for s in got.samples("kong_memory_workers_lua_vms_bytes")}
        assert len(pids) == 2
        files = sorted((tmp_path / "prefix" / "prometheus").iterdir())
        assert [f.name for f in files] == ["worker-0.metrics", "worker-1.metrics"]
        # both workers served some of them: the view is a sum (a file is (format, node, pid, series))
        per_worker = [sum(marshal.loads(f.read_bytes())[3]["kong_http_requests_total"].values()) for f in files]
        assert sum(per_worker) == 200 and min(per_worker) > 0, per_worker
        # the status listener serves the same view (and the same node id)
        status_url = f"http://127.0.0.1:{status_port}"
        on_status = scrape(status_url)
        assert total(on_status) == 200
        node_id = sg.admin("GET", "/")[1]["node_id"]
        assert on_status.value("kong_node_info", node_id=node_id) == 1
        assert sg.proc is not None
        sg.proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        _hammer(sg.proxy_url + "/v1/models", 100, 20)
        got = wait_scrape(sg.admin_url, lambda s: total(s) == 300)
        assert {s.labels["pid"] for s in got.samples("kong_memory_workers_lua_vms_bytes")} == pids
        assert "reloaded" in sg.log() or "reload" in sg.log()


def test_a_restarted_node_counts_from_zero(tmp_path: Path, backend: str) -> None:
    with _node(tmp_path, 2) as sg:
        add_route(sg, backend)
        add_plugin(sg, {"status_code_metrics": True})
        time.sleep(0.6)
        _hammer(sg.proxy_url + "/v1/models", 20, 10)
        wait_scrape(sg.admin_url, lambda s: s.value("kong_http_requests_total") == 20)
    with _node(tmp_path, 2) as sg:
        # the previous run's worker files are still there, and ignored
        assert (tmp_path / "prefix" / "prometheus" / "worker-1.metrics").exists()
        assert scrape(sg.admin_url).value("kong_http_requests_total") == 0
        _hammer(sg.proxy_url + "/v1/models", 10, 5)
        wait_scrape(sg.admin_url, lambda s: s.value("kong_http_requests_total") == 10)
