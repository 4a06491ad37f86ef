"""Database outages on a running node (real processes, real PostgreSQL and SQLite failures).

The Admin API answers 503 with a Kong-shaped message (no DSN, no password); the config poller logs the outage once
and its end once, without tracebacks; the proxy keeps serving its last snapshot all along.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from helpers import Servegate
from support import PG_DSN, _admin_exec, create_pg_database, drop_pg_database

SECRET = "pg-outage-secret-7f3a"
STALE = "serving the last configuration"


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def backend() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def admin(sg: Servegate, method: str, path: str, data: dict[str, Any] | None = None,
          timeout: float = 30) -> tuple[int, Any]:
    body = json.dumps(data).encode() if data is not None else None
    req = urllib.request.Request(sg.admin_url + path, data=body, method=method,
                                 headers={"Content-Type": "application/json"} if body else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def proxy(sg: Servegate, path: str) -> int:
    try:
        with urllib.request.urlopen(sg.proxy_url + path, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def wait_for(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def add_route(sg: Servegate, name: str, port: int) -> None:
    assert admin(sg, "POST", "/services", {"name": name, "url": f"http://127.0.0.1:{port}"})[0] == 201
    assert admin(sg, "POST", f"/services/{name}/routes", {"paths": [f"/{name}"]})[0] == 201
    wait_for(lambda: proxy(sg, f"/{name}") == 200)


def cut_off(name: str) -> None:
    """Close the database to new connections and end the open ones (again, until none is left: a connection
    still authenticating when the door closed does not show its database yet)."""
    _admin_exec(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    for _ in range(20):
        _admin_exec(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        if pg_value(f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}'") == 0:
            return
        time.sleep(0.1)
    raise AssertionError("connections to the test database survived pg_terminate_backend")


def pg_value(sql: str) -> Any:
    async def run() -> Any:
        conn = await asyncpg.connect(PG_DSN)
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    return asyncio.run(run())


def log_lines(sg: Servegate, text: str) -> list[str]:
    return [line for line in sg.log().splitlines() if text in line]


def test_postgres_outage_is_503_logged_once_and_the_proxy_keeps_serving(backend: int, tmp_path: Path) -> None:
    name, dsn = create_pg_database("servegate_outage")
    try:
        sg = Servegate(database="postgres", pg_dsn=dsn, prefix=str(tmp_path / "pg"),
                       extra_env={"SERVEGATE_PG_PASSWORD": SECRET})
        with sg:
            add_route(sg, "up", backend)
            # The outage: the database refuses new connections and the node's are cut (as when PostgreSQL
            # restarts or an operator closes the database).
            cut_off(name)
            deadline = time.monotonic() + 3.0  # a dozen polls
            while time.monotonic() < deadline:
                assert proxy(sg, "/up") == 200
                status, body = admin(sg, "GET", "/services")
                assert status == 503, body
                assert set(body) == {"message"} and body["message"].startswith("database unavailable: "), body
                assert SECRET not in body["message"] and "postgresql://" not in body["message"]
                time.sleep(0.1)
            status, body = admin(sg, "POST", "/services", {"name": "during", "host": "h.test"})
            assert status == 503 and body["message"].startswith("database unavailable: "), body
            status, body = admin(sg, "GET", "/status")
            assert (status, body["database"]) == (200, {"reachable": False})
            # Recovery: the poller and the Admin API find the database again by themselves.
            _admin_exec(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            wait_for(lambda: admin(sg, "GET", "/services")[0] == 200)
            add_route(sg, "after", backend)  # a change made after the outage reaches the proxy
            assert proxy(sg, "/up") == 200
            wait_for(lambda: log_lines(sg, "configuration polling works again"), 5)
        log = sg.log()
        stale = log_lines(sg, STALE)
        assert len(stale) == 1, stale
        assert "WARNING" in stale[0] and "database unavailable: " in stale[0]
        assert len(log_lines(sg, "configuration polling works again")) == 1
        assert not log_lines(sg, "cannot refresh configuration")  # every failure was recognised as the outage
        assert "Traceback" not in log
        assert SECRET not in log
    finally:
        drop_pg_database(name)


def test_sqlite_locked_is_503_and_the_proxy_keeps_serving(backend: int, tmp_path: Path) -> None:
    sg = Servegate(database="sqlite", prefix=str(tmp_path / "lite"))
    with sg:
        add_route(sg, "up", backend)
        # Another process holds the database's write lock (a `sqlite3` shell in a transaction, a backup tool)
        # for longer than the node's busy timeout.
        locker = sqlite3.connect(str(Path(sg.prefix or "") / "servegate.db"), isolation_level=None)
        try:
            locker.execute("BEGIN IMMEDIATE")
            answer: list[tuple[int, Any]] = []
            writer = threading.Thread(target=lambda: answer.append(
                admin(sg, "POST", "/services", {"name": "blocked", "host": "h.test"})))
            writer.start()
            while writer.is_alive():  # the Admin API waits out its busy timeout; the proxy does not wait
                assert proxy(sg, "/up") == 200
                writer.join(0.2)
        finally:
            locker.close()
        assert answer == [(503, {"message": "database unavailable: database is locked"})]
        add_route(sg, "after", backend)
        assert admin(sg, "GET", "/services/blocked")[0] == 404
    log = sg.log()
    assert "Traceback" not in log
    assert not log_lines(sg, STALE)  # WAL readers are not blocked by a writer: the poller never failed
