"""Helpers for the prometheus plugin's tests: scrape /metrics (parsed by prometheus_client's text parser), read
samples by labels, wait until the node-wide view has caught up."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from helpers import Servegate

ALL_ON = {"per_consumer": True, "status_code_metrics": True, "latency_metrics": True, "bandwidth_metrics": True,
          "upstream_health_metrics": True, "ai_metrics": True}


def scrape_text(url: str) -> str:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "text/plain; charset=UTF-8"
        return r.read().decode()


class Scrape:
    """One /metrics answer: `samples(name, **labels)` the samples of that name whose labels include `labels`."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.all = [s for f in self.families.values() for s in f.samples]

    def samples(self, name: str, **labels: str) -> list[Any]:
        return [s for s in self.all if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the matching samples' values (0 when none)."""
        return sum(s.value for s in self.samples(name, **labels))

    def has(self, name: str) -> bool:
        return any(s.name == name for s in self.all)


def scrape(url: str) -> Scrape:
    return Scrape(scrape_text(url))


def wait_scrape(url: str, check: Callable[[Scrape], bool], timeout: float = 5.0) -> Scrape:
    """Scrape until `check` holds (the node-wide view lags a worker by up to one flush interval, 1 s)."""
    deadline = time.monotonic() + timeout
    while True:
        got = scrape(url)
        if check(got):
            return got
        if time.monotonic() > deadline:
            raise AssertionError("metrics did not reach the expected values:\n" + got.text)
        time.sleep(0.1)


def add_route(sg: Servegate, backend: str, name: str = "llm", path: str = "/v1") -> None:
    status, body = sg.admin("POST", "/services", {"name": name, "url": backend})
    assert status == 201, body
    status, body = sg.admin("POST", f"/services/{name}/routes", {"name": name + "-route", "paths": [path],
                                                                  "strip_path": False})
    assert status == 201, body


def add_plugin(sg: Servegate, config: dict[str, Any], **scope: Any) -> dict[str, Any]:
    status, body = sg.admin("POST", "/plugins", {"name": "prometheus", "config": config, **scope})
    assert status == 201, body
    return body


def raw_exchange(port: int, request: bytes) -> bytes:
    """Send one request on its own connection (Connection: close) and return every byte of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)
