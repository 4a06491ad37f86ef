"""Access-phase PDK through the running proxy: set_target, set_path, set_upstream, json_body()
parsed once, and the client_body_buffer_size cap (Kong's 413 "Request size limit exceeded")."""

from __future__ import annotations

import json
import socket
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from proxy_support import HERE, Backend, route, service
from test_phases import IMPORTS, plugin


@pytest.fixture
def backend2() -> Iterator[Backend]:
    b = Backend([sys.executable, str(HERE / "fake_openai.py"), "--port", "0"], "PORT")
    yield b
    b.stop()


def pdk_proxy(backend: Backend, start_proxy: Any, **settings: Any) -> Any:
    svc = service(backend.port, path="/base")
    return start_proxy({"services": [svc], "routes": [route(svc, paths=["/r"])],
                        "plugins": [plugin("test-pdk", {"log_file": None})]}, IMPORTS, **settings)


def upstream_proxy(start_proxy: Any, svc: dict[str, Any], name: str, target_port: int) -> Any:
    """A proxy with route /r on `svc`, the test-pdk plugin, and an upstream `name` of one target on target_port."""
    upstream = {"id": str(uuid.uuid4()), "name": name, "algorithm": "round-robin", "slots": 10000,
                "healthchecks": None}
    target = {"id": str(uuid.uuid4()), "upstream": {"id": upstream["id"]}, "target": f"127.0.0.1:{target_port}",
              "weight": 100}
    return start_proxy({"services": [svc], "routes": [route(svc, paths=["/r"])], "upstreams": [upstream],
                        "targets": [target], "plugins": [plugin("test-pdk", {"log_file": None})]}, IMPORTS)


def echo_headers(r: requests.Response) -> dict[str, str]:
    return {k.lower(): v for k, v in r.json()["headers"]}


def test_set_target_and_path(backend: Backend, backend2: Backend, start_proxy: Any) -> None:
    proxy = pdk_proxy(backend, start_proxy)
    before = backend2.stats()["requests"]
    r = requests.get(proxy.url + "/r/__echo?q=1", timeout=5,
                     headers={"X-Pdk-Target": f"127.0.0.1:{backend2.port}", "X-Pdk-Path": "/__echo/new path"})
    assert r.status_code == 200
    seen = r.json()
    assert seen["url"] == "/__echo/new%20path?q=1"  # set_path replaces the service/route join; query kept
    assert echo_headers(r)["host"] == "127.0.0.1"  # Kong: Host becomes the target's host, no port
    assert backend2.stats()["requests"] == before + 2  # this request (and the stats call itself)
    # without the plugin's choice the service's own host and path are used
    r = requests.get(proxy.url + "/r/__echo", timeout=5)
    assert r.status_code == 404  # /base/__echo: the fake backend has no such path
    r = requests.get(proxy.url + "/r/__echo", timeout=5, headers={"X-Pdk-Path": "/__echo"})
    assert echo_headers(r)["host"] == f"127.0.0.1:{backend.port}"


def test_set_upstream_balances_over_the_named_upstream(backend: Backend, backend2: Backend,
                                                       start_proxy: Any) -> None:
    proxy = upstream_proxy(start_proxy, service(backend.port, path="/base"), "llm", backend2.port)
    r = requests.get(proxy.url + "/r", timeout=5, headers={"X-Pdk-Upstream": "nope", "X-Pdk-Path": "/__echo"})
    assert echo_headers(r)["x-upstream-error"] == "could not find an Upstream named 'nope'"
    assert echo_headers(r)["host"] == f"127.0.0.1:{backend.port}"  # still the service's
    r = requests.get(proxy.url + "/r", timeout=5, headers={"X-Pdk-Upstream": "llm", "X-Pdk-Path": "/__echo"})
    h = echo_headers(r)
    assert h["x-upstream-error"] == "none"
    assert h["host"] == f"127.0.0.1:{backend2.port}"  # the upstream's target, and its Host


def test_set_scheme_applies_to_a_set_upstream(backend: Backend, backend2: Backend, start_proxy: Any) -> None:
    """An https service whose plugin sends the request to an upstream of plain-http targets."""
    proxy = upstream_proxy(start_proxy, service(backend.port, protocol="https"), "plain", backend2.port)
    hdrs = {"X-Pdk-Upstream": "plain", "X-Pdk-Path": "/__echo", "X-Pdk-Scheme": "http"}
    r = requests.get(proxy.url + "/r", timeout=5, headers=hdrs)
    assert r.status_code == 200 and echo_headers(r)["host"] == f"127.0.0.1:{backend2.port}"


def test_json_body_parsed_once(backend: Backend, start_proxy: Any) -> None:
    proxy = pdk_proxy(backend, start_proxy)
    r = requests.post(proxy.url + "/r", json={"model": "gpt-x", "n": 1}, timeout=5,
                      headers={"X-Pdk-Json": "1", "X-Pdk-Path": "/__echo"})
    h = echo_headers(r)
    assert h["x-model"] == "gpt-x" and h["x-parsed-once"] == "yes"
    assert json.loads(r.json()["body"]) == {"model": "gpt-x", "n": 1}  # the body still goes upstream
    r = requests.post(proxy.url + "/r", data=b"not json", timeout=5,
                      headers={"X-Pdk-Json": "1", "X-Pdk-Path": "/__echo"})
    assert echo_headers(r)["x-model"] == "None"
    # no plugin asks: the body is not read by a plugin, whatever its size
    big = b"x" * 5000
    r = requests.post(proxy.url + "/r", data=big, timeout=5, headers={"X-Pdk-Path": "/__echo"})
    assert r.json()["body"] == big.decode()


def test_body_over_cap_is_413(backend: Backend, start_proxy: Any) -> None:
    proxy = pdk_proxy(backend, start_proxy, client_body_buffer_size="1k")
    hdrs = {"X-Pdk-Json": "1", "X-Pdk-Path": "/__echo", "Accept": "application/json"}
    r = requests.post(proxy.url + "/r", json={"model": "m", "pad": "x" * 2000}, timeout=5, headers=hdrs)
    assert r.status_code == 413 and r.json()["message"] == "Request size limit exceeded"
    r = requests.post(proxy.url + "/r", json={"model": "m"}, timeout=5, headers=hdrs)
    assert r.status_code == 200 and echo_headers(r)["x-model"] == "m"
    # chunked: the size is known only while reading; the wait ends with the 413
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.sendall(b"POST /r HTTP/1.1\r\nHost: x\r\nX-Pdk-Json: 1\r\nTransfer-Encoding: chunked\r\n"
                  b"Accept: application/json\r\n\r\n" + b"400\r\n" + b"y" * 1024 + b"\r\n")
        s.sendall(b"10\r\n" + b"z" * 16 + b"\r\n")
        data = s.recv(65536)
    assert data.startswith(b"HTTP/1.1 413") and b'"message":"Request size limit exceeded"' in data


def test_respond_answers_with_the_plugins_body(backend: Backend, start_proxy: Any) -> None:
    proxy = pdk_proxy(backend, start_proxy)
    r = requests.post(proxy.url + "/r", json={"model": "x"}, timeout=5, headers={"X-Pdk-Respond": "no such model"})
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/json" and r.headers["x-answered-by"] == "plugin"
    assert r.json() == {"error": {"message": "no such model", "code": "model_not_found"}}
    assert "x-kong-request-id" in r.headers


def test_set_timeouts_and_retries_replace_the_services(backend: Backend, start_proxy: Any) -> None:
    proxy = pdk_proxy(backend, start_proxy)
    hdrs = {"X-Pdk-Path": "/__echo", "X-Fake-Sleep-Ms": "600"}
    assert requests.get(proxy.url + "/r", timeout=5, headers=hdrs).status_code == 200  # the service's 60 s
    r = requests.get(proxy.url + "/r", timeout=5, headers={**hdrs, "X-Pdk-Read-Ms": "150", "X-Pdk-Retries": "0",
                                                            "Accept": "application/json"})
    assert r.status_code == 504
    assert r.json()["message"] == "The upstream server is timing out"
