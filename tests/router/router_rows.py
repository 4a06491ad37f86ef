"""Row builders for router tests: Kong Admin JSON shapes with Kong's defaults."""

from __future__ import annotations

import importlib.util
import uuid
from pathlib import Path
from typing import Any

from servegate.proxy.router import Router

SERVICE_ID = "5b0f6a28-4c3b-4d0c-9e6f-3f6d2d2a0001"


def route_row(**fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "name": None,
        "created_at": 0,
        "updated_at": 0,
        "protocols": ["http", "https"],
        "methods": None,
        "hosts": None,
        "paths": None,
        "headers": None,
        "snis": None,
        "sources": None,
        "destinations": None,
        "https_redirect_status_code": 426,
        "regex_priority": 0,
        "strip_path": True,
        "path_handling": "v0",
        "preserve_host": False,
        "request_buffering": True,
        "response_buffering": True,
        "tags": None,
        "service": {"id": SERVICE_ID},
    }
    row.update(fields)
    return row


def service_row(**fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": SERVICE_ID,
        "name": "svc",
        "created_at": 0,
        "updated_at": 0,
        "protocol": "http",
        "host": "upstream.test",
        "port": 80,
        "path": None,
        "retries": 5,
        "connect_timeout": 60000,
        "write_timeout": 60000,
        "read_timeout": 60000,
        "tags": None,
        "client_certificate": None,
        "tls_verify": None,
        "tls_verify_depth": None,
        "ca_certificates": None,
        "enabled": True,
    }
    row.update(fields)
    return row


def make_router(routes: list[dict[str, Any]], *services: dict[str, Any]) -> Router:
    svcs = services or (service_row(),)
    return Router(routes, {s["id"]: s for s in svcs})


BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "router_bench.py"


def bench_module() -> Any:
    """benchmarks/router_bench.py loaded as a module (its route mix, its request shapes)."""
    spec = importlib.util.spec_from_file_location("router_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
