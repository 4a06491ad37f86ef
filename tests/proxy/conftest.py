"""Fixtures for the proxy tests: the fake OpenAI backend and the proxy, each a real process."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from proxy_support import HERE, Backend, Proxy, route, service


@pytest.fixture
def backend() -> Iterator[Backend]:
    b = Backend([sys.executable, str(HERE / "fake_openai.py"), "--port", "0"], "PORT")
    yield b
    b.stop()


@pytest.fixture
def start_proxy(tmp_path: Path) -> Iterator[Callable[..., Proxy]]:
    procs: list[Proxy] = []

    def start(rows: dict[str, list[dict[str, Any]]], imports: tuple[str, ...] = (), **settings: Any) -> Proxy:
        conf = {"settings": {"proxy_listen": "127.0.0.1:0", "prefix": str(tmp_path / "prefix"),
                             "proxy_access_log": "stdout", **settings}, "rows": rows, "imports": list(imports)}
        path = tmp_path / f"proxy{len(procs)}.json"
        path.write_text(json.dumps(conf))
        p = Proxy([sys.executable, str(HERE / "run_proxy.py"), str(path)], "READY")
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.stop()


@pytest.fixture
def simple(backend: Backend, start_proxy: Callable[..., Proxy]) -> tuple[Backend, Proxy]:
    """A proxy with one route `/` to the backend."""
    svc = service(backend.port)
    return backend, start_proxy({"services": [svc], "routes": [route(svc)]})
