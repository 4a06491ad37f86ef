"""Shared by the setup tests: run `servegate setup` as a process, read the gateway's state back."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from helpers import Servegate

KEY_A = "setup-test-key-aaaaaaaaaaaaaaaa"
KEY_B = "setup-test-key-bbbbbbbbbbbbbbbb"


def run_setup(sg: Servegate | None, *, admin_url: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items()
            if not k.startswith(("SERVEGATE_", "KONG_")) and k not in ("BACKENDS_FILE", "VLLM_UPSTREAM_URL",
                                                                       "SGLANG_UPSTREAM_URL")}
    full.update(SERVEGATE_ADMIN_URL=admin_url or (sg.admin_url if sg else ""), SERVEGATE_SETUP_WAIT="20")
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "servegate.cli.setup"], env=full, capture_output=True, text=True, timeout=60
    )


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _rows(sg: Servegate, path: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    next_path: str | None = path
    while next_path:
        status, body = sg.admin("GET", next_path)
        assert status == 200, (next_path, body)
        rows.extend(body["data"])
        next_path = body.get("next")
    return sorted(({k: v for k, v in row.items() if k != "updated_at"} for row in rows), key=lambda r: r["id"])


def admin_state(sg: Servegate, *, upstreams: bool = False) -> dict[str, list[dict[str, Any]]]:
    state = {c: _rows(sg, f"/{c}") for c in ("services", "routes", "plugins", "consumers", "key-auths")}
    if upstreams:
        state["upstreams"] = _rows(sg, "/upstreams")
        state["targets"] = [t for u in state["upstreams"] for t in _rows(sg, f"/upstreams/{u['id']}/targets")]
    return state


def by_name(rows: list[dict[str, Any]], key: str = "name") -> dict[str, dict[str, Any]]:
    return {r[key]: r for r in rows}


def targets(sg: Servegate, upstream: str) -> dict[str, dict[str, Any]]:
    return {t["target"]: t for t in _rows(sg, f"/upstreams/{upstream}/targets")}


class _Echo(BaseHTTPRequestHandler):
    """Answers every GET with the path it received and the port it listens on."""

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        body = json.dumps({"path": self.path, "port": self.server.server_address[1]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def echo_server() -> Iterator[tuple[str, ThreadingHTTPServer]]:
    """A backend on a loopback port: (its base URL, the server, to stop it early)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server
    finally:
        server.shutdown()
        server.server_close()
