"""Process helpers for the proxy tests: the fake backend and the proxy as real processes."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

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


def read_response(s: socket.socket, deadline_s: float = 5) -> bytes:
    """Read one response with a Content-Length body (or until close)."""
    buf = b""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if b"\r\n\r\n" in buf:
            head, _, body = buf.partition(b"\r\n\r\n")
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    if len(body) >= int(line.split(b":")[1]):
                        return buf
        chunk = s.recv(65536)
        if not chunk:
            return buf
        buf += chunk
    return buf


class RawUpstream:
    """A loopback TCP upstream for fault tests: `on_conn(sock)` runs for each accepted connection, in the
    accept thread (or, with threaded=True, in a thread of its own). A context manager; `port` to route to."""

    def __init__(self, on_conn: Any, threaded: bool = False) -> None:
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port: int = self.lsock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._on_conn, self._threaded = on_conn, threaded
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            self.accepted.append(c)
            if self._threaded:
                threading.Thread(target=self._on_conn, args=(c,), daemon=True).start()
            else:
                self._on_conn(c)

    def close(self) -> None:
        self.lsock.close()

    def __enter__(self) -> RawUpstream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
