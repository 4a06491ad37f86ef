"""Run `servegate start` as a real process for tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support import free_port


@dataclass
class Servegate:
    """A servegate node: `with Servegate(database="sqlite") as sg: sg.admin("GET", "/services")`."""

    database: str = "sqlite"
    pg_dsn: str | None = None
    workers: int = 1
    extra_env: dict[str, str] = field(default_factory=dict)
    prefix: str | None = None
    proxy_port: int = 0
    ssl_port: int = 0
    admin_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log_path: str = ""
    # What runs after the interpreter: a script that registers a test plugin first (tests/node/run_node.py).
    argv: list[str] = field(default_factory=lambda: ["-m", "servegate"])

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SERVEGATE_", "KONG_"))}
        env.update(
            SERVEGATE_PREFIX=self.prefix or "",
            SERVEGATE_PROXY_LISTEN=f"127.0.0.1:{self.proxy_port}, 127.0.0.1:{self.ssl_port} ssl",
            SERVEGATE_ADMIN_LISTEN=f"127.0.0.1:{self.admin_port}",
            SERVEGATE_DATABASE=self.database,
            SERVEGATE_WORKERS=str(self.workers),
        )
        if self.database == "postgres":
            from urllib.parse import urlsplit

            assert self.pg_dsn, "postgres needs pg_dsn"
            u = urlsplit(self.pg_dsn)
            env.update(
                SERVEGATE_PG_HOST=u.hostname or "127.0.0.1",
                SERVEGATE_PG_PORT=str(u.port or 5432),
                SERVEGATE_PG_USER=u.username or "postgres",
                SERVEGATE_PG_PASSWORD=u.password or "",
                SERVEGATE_PG_DATABASE=u.path.lstrip("/"),
            )
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 20.0) -> Servegate:
        if not self.prefix:
            self.prefix = tempfile.mkdtemp(prefix="servegate-test-")
        self.proxy_port = self.proxy_port or free_port()
        self.ssl_port = self.ssl_port or free_port()
        self.admin_port = self.admin_port or free_port()
        Path(self.prefix).mkdir(parents=True, exist_ok=True)
        self.log_path = str(Path(self.prefix) / "stdout.log")
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [sys.executable, *self.argv, "start"], env=self.env(), stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"servegate exited {self.proc.returncode}:\n{self.log()}")
            try:
                status, _ = self.admin("GET", "/status")
                if status == 200 and self._proxy_up():
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"servegate did not come up:\n{self.log()}")

    def _proxy_up(self) -> bool:
        import socket

        try:
            socket.create_connection(("127.0.0.1", self.proxy_port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def log(self) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    def __enter__(self) -> Servegate:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    def admin(self, method: str, path: str, data: dict[str, Any] | None = None, *, form: bool = False) -> tuple[int, Any]:
        body: bytes | None = None
        headers = {}
        if data is not None:
            if form:
                from urllib.parse import urlencode

                body = urlencode(data, doseq=True).encode()
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            else:
                body = json.dumps(data).encode()
                headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.admin_url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                raw = r.read()
                return r.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw) if raw else None
            except ValueError:
                return e.code, raw.decode(errors="replace")


FAKE_BACKEND = Path(__file__).resolve().parent / "proxy" / "fake_openai.py"


@contextlib.contextmanager
def fake_backend(models: str = "", port: int | None = None) -> Iterator[str]:
    """The fake OpenAI backend (tests/proxy/fake_openai.py) in its own process; yields its base URL. `models`: its
    `--models` (comma-separated); `port`: where it listens (default: a free port)."""
    import socket

    port = port or free_port()
    proc = subprocess.Popen([sys.executable, str(FAKE_BACKEND), "--port", str(port), "--models", models],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
