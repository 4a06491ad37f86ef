"""Fixtures for the proxy tests: the fake OpenAI backend and the proxy, each a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

HERE = Path(__file__).parent


class Proc:
    def __init__(self, args: list[str], ready: str, env: dict[str, str] | None = None) -> None:
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  env={**os.environ, **(env or {})})
        self.lines: list[str] = []
        self.ready_words: list[str] = []
        deadline = time.time() + 15
        assert self.p.stdout is not None
        while time.time() < deadline:
            line = self.p.stdout.readline()
            if not line:
                raise RuntimeError(f"{args} exited: {''.join(self.lines)}")
            if line.startswith(ready):
                self.ready_words = line.split()[1:]
                break
            self.lines.append(line)
        else:
            raise RuntimeError(f"{args} not ready")
        self._t = threading.Thread(target=self._drain, daemon=True)
        self._t.start()

    def _drain(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def stop(self, timeout: float = 10) -> int:
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self._t.join(2)
        return self.p.returncode


class Backend(Proc):
    @property
    def port(self) -> int:
        return int(self.ready_words[0])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def events(self) -> list[dict[str, Any]]:
        return requests.get(self.url + "/__events", timeout=5).json()

    def stats(self) -> dict[str, int]:
        return requests.get(self.url + "/__stats", timeout=5).json()


class Proxy(Proc):
    @property
    def port(self) -> int:
        return int(self.ready_words[0])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def backend() -> Iterator[Backend]:
    b = Backend([sys.executable, str(HERE / "fake_openai.py"), "--port", "0"], "PORT")
    yield b
    b.stop()


def service(port: int, **kw: Any) -> dict[str, Any]:
    row = {"id": str(uuid.uuid4()), "name": None, "protocol": "http", "host": "127.0.0.1", "port": port,
           "path": None, "retries": 5, "connect_timeout": 60000, "write_timeout": 60000,
           "read_timeout": 60000, "enabled": True, "tags": None}
    row.update(kw)
    return row


def route(svc: dict[str, Any] | None, **kw: Any) -> dict[str, Any]:
    row = {"id": str(uuid.uuid4()), "name": None, "protocols": ["http", "https"], "methods": None,
           "hosts": None, "paths": ["/"], "headers": None, "strip_path": True, "preserve_host": False,
           "regex_priority": 0, "path_handling": "v0", "https_redirect_status_code": 426,
           "request_buffering": True, "response_buffering": True, "snis": None, "sources": None,
           "destinations": None, "tags": None, "service": {"id": svc["id"]} if svc else None}
    row.update(kw)
    return row


@pytest.fixture
def start_proxy(tmp_path: Path) -> Iterator[Callable[..., Proxy]]:
    procs: list[Proxy] = []

    def start(rows: dict[str, list[dict[str, Any]]], **settings: Any) -> Proxy:
        conf = {"settings": {"proxy_listen": "127.0.0.1:0", "prefix": str(tmp_path / "prefix"),
                             "proxy_access_log": "stdout", **settings}, "rows": rows}
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
