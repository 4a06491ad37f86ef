"""Fixtures for the LLM record's tests: the fake OpenAI backend (tests/proxy/fake_openai.py) and the proxy data
plane (tests/proxy/run_proxy.py), each a real process, with the `test-llm` plugin (llm_plugin.py) on the route."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
PROXY_TESTS = HERE.parent / "proxy"
sys.path.insert(0, str(PROXY_TESTS))

from llm_support import Gateway, plugin_row  # noqa: E402
from proxy_support import Backend, Proxy, route, service  # noqa: E402


@pytest.fixture
def backend() -> Iterator[Backend]:
    b = Backend([sys.executable, str(PROXY_TESTS / "fake_openai.py"), "--port", "0"], "PORT")
    yield b
    b.stop()


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    procs: list[Proxy] = []

    def start(backend: Backend, *extra_plugins: dict[str, Any], service_name: str | None = "llm-svc",
              imports: tuple[str, ...] = (), rows: dict[str, list[dict[str, Any]]] | None = None,
              service_fields: dict[str, Any] | None = None, **settings: Any) -> Gateway:
        log_file = tmp_path / f"llm{len(procs)}.jsonl"
        svc = service(backend.port, name=service_name, **(service_fields or {}))
        plugins = [plugin_row("test-llm", {"log_file": str(log_file)}), *extra_plugins]
        conf = {"settings": {"proxy_listen": "127.0.0.1:0", "prefix": str(tmp_path / f"prefix{len(procs)}"),
                             "proxy_access_log": "stdout", **settings},
                "rows": {"services": [svc], "routes": [route(svc)], "plugins": plugins, **(rows or {})},
                "imports": ["llm_plugin", *imports]}
        path = tmp_path / f"proxy{len(procs)}.json"
        path.write_text(json.dumps(conf))
        paths = [str(HERE), str(PROXY_TESTS), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        env = {"PYTHONPATH": os.pathsep.join(paths)}
        p = Proxy([sys.executable, str(PROXY_TESTS / "run_proxy.py"), str(path)], "READY", env=env)
        procs.append(p)
        return Gateway(p, log_file)

    yield start
    for p in procs:
        p.stop()
