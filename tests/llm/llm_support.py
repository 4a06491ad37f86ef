"""Helpers of the LLM record's tests: the gateway under test and plugin rows."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from proxy_support import Proxy


class Gateway:
    """A proxy in front of one backend with `test-llm` on its route; `records()` reads the log hook's lines."""

    def __init__(self, proxy: Proxy, log_file: Path) -> None:
        self.proxy = proxy
        self.log_file = log_file

    @property
    def url(self) -> str:
        return self.proxy.url

    def records(self, n: int, timeout: float = 5) -> list[dict[str, Any]]:
        """The first `n` log lines, waiting for them (the log phase runs after the last byte is sent)."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.log_file.read_text().splitlines() if self.log_file.exists() else []
            if len(lines) >= n or time.monotonic() > deadline:
                assert len(lines) >= n, f"{len(lines)} log lines, wanted {n}"
                return [json.loads(line) for line in lines[:n]]
            time.sleep(0.02)

    def access_lines(self, n: int, timeout: float = 5) -> list[str]:
        """The proxy's first `n` access log lines (stdout; flushed by the sweep)."""
        deadline = time.monotonic() + timeout
        while True:
            lines = [ln for ln in self.proxy.output().splitlines() if " HTTP/1.1\" " in ln or ln.startswith("{")]
            if len(lines) >= n or time.monotonic() > deadline:
                assert len(lines) >= n, self.proxy.output()
                return lines[:n]
            time.sleep(0.05)


def plugin_row(name: str, config: dict[str, Any], **scope: Any) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "name": name, "instance_name": None, "config": config, "enabled": True,
            "protocols": ["grpc", "grpcs", "http", "https"], "tags": None, "route": None, "service": None,
            "consumer": None, "created_at": 0, "updated_at": 0, **scope}
