"""A balanced service through a real node: the Host a target receives, consistent-hashing's cookie, a plugin's
set_path with a balanced service, and a retry on another target after a refused connection."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest

from helpers import Servegate, fake_backend
from support import free_port


@pytest.fixture(scope="module")
def node() -> Iterator[tuple[Servegate, list[str]]]:
    with ExitStack() as stack:
        backends = [stack.enter_context(fake_backend()) for _ in range(2)]
        sg = stack.enter_context(Servegate())
        yield sg, [b.split("//", 1)[1] for b in backends]


def host_of(r: httpx.Response) -> str:
    """The Host header the fake backend received (its echo lists headers as [name, value] pairs)."""
    return next(v for k, v in r.json()["headers"] if k.lower() == "host")


def _upstream(sg: Servegate, name: str, targets: list[str], **fields: object) -> None:
    status, body = sg.admin("POST", "/upstreams", {"name": name, **fields})
    assert status == 201, body
    for t in targets:
        assert sg.admin("POST", f"/upstreams/{name}/targets", {"target": t})[0] == 201
    status, body = sg.admin("POST", "/services", {"name": f"{name}-svc", "url": f"http://{name}:8000"})
    assert status == 201, body
    status, body = sg.admin("POST", f"/services/{name}-svc/routes", {"paths": [f"/{name}"], "strip_path": True})
    assert status == 201, body


def test_the_target_gets_its_own_host_and_port_as_host(node: tuple[Servegate, list[str]]) -> None:
    sg, targets = node
    _upstream(sg, "hosted", targets[:1])
    r = httpx.get(f"{sg.proxy_url}/hosted/__echo")
    assert r.status_code == 200
    assert host_of(r) == targets[0]


def test_host_header_of_the_upstream_wins(node: tuple[Servegate, list[str]]) -> None:
    sg, targets = node
    _upstream(sg, "named", targets[:1], host_header="models.internal")
    assert host_of(httpx.get(f"{sg.proxy_url}/named/__echo")) == "models.internal"


def test_consistent_hashing_gives_a_cookie_and_keeps_its_holder_on_one_target(
        node: tuple[Servegate, list[str]]) -> None:
    sg, targets = node
    _upstream(sg, "sticky", targets, hash_on="cookie", hash_on_cookie="lb", hash_on_cookie_path="/sticky")
    first = httpx.get(f"{sg.proxy_url}/sticky/__echo")
    cookie = first.headers.get("set-cookie", "")
    assert cookie.startswith("lb=") and "Path=/sticky" in cookie
    value = cookie.split(";", 1)[0].split("=", 1)[1]
    with httpx.Client(cookies={"lb": value}) as client:
        seen = {host_of(client.get(f"{sg.proxy_url}/sticky/__echo")) for _ in range(10)}
        again = client.get(f"{sg.proxy_url}/sticky/__echo")
    assert len(seen) == 1
    assert "set-cookie" not in again.headers


def test_a_refused_connection_is_retried_on_another_target(node: tuple[Servegate, list[str]]) -> None:
    sg, targets = node
    dead = f"127.0.0.1:{free_port()}"
    _upstream(sg, "retried", [dead, targets[0]], algorithm="round-robin")
    for _ in range(6):
        r = httpx.get(f"{sg.proxy_url}/retried/__echo")
        assert r.status_code == 200
        assert host_of(r) == targets[0]


def test_no_target_answers_kongs_ring_balancer_error(node: tuple[Servegate, list[str]]) -> None:
    sg, _ = node
    _upstream(sg, "empty", [])
    r = httpx.get(f"{sg.proxy_url}/empty/x")
    assert r.status_code == 503
    assert r.json()["message"] == "failure to get a peer from the ring-balancer"


def test_a_named_target_is_resolved_and_reported(node: tuple[Servegate, list[str]]) -> None:
    sg, targets = node
    port = targets[0].rsplit(":", 1)[1]
    _upstream(sg, "byname", [f"localhost:{port}"])
    r = httpx.get(f"{sg.proxy_url}/byname/__echo")  # the first request waits for the name's first answer
    assert r.status_code == 200 and host_of(r) == f"localhost:{port}"
    status, body = sg.admin("GET", "/upstreams/byname/health")
    assert status == 200
    addresses = body["data"][0]["data"]["addresses"]
    assert [(a["ip"], a["port"]) for a in addresses] == [("127.0.0.1", int(port))]
    _upstream(sg, "nowhere", [f"no-such-host.invalid:{port}"])
    r = httpx.get(f"{sg.proxy_url}/nowhere/x")
    assert r.status_code == 503
    assert r.json()["message"] == "name resolution failed"
    status, body = sg.admin("GET", "/upstreams/nowhere/health")
    assert body["data"][0]["health"] == "DNS_ERROR"
