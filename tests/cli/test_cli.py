"""`servegate` as a user runs it: real processes, real databases."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from helpers import Servegate
from support import create_pg_database, drop_pg_database


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SERVEGATE_", "KONG_"))}
    base.update(env or {})
    return subprocess.run([sys.executable, "-m", "servegate", *args], env=base, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request, tmp_path):
    """Yields (database, env for the CLI, pg_dsn or None)."""
    env = {"SERVEGATE_PREFIX": str(tmp_path / "prefix"), "SERVEGATE_DATABASE": request.param}
    if request.param == "sqlite":
        yield request.param, env, None
        return
    name, dsn = create_pg_database("servegate_cli")
    env.update(SERVEGATE_PG_HOST="127.0.0.1", SERVEGATE_PG_USER="postgres", SERVEGATE_PG_DATABASE=name)
    try:
        yield request.param, env, dsn
    finally:
        drop_pg_database(name)


def test_version():
    r = run_cli("version")
    assert r.returncode == 0
    assert r.stdout.startswith("servegate ")


def test_bad_setting_stops_startup_with_one_line(tmp_path):
    r = run_cli("start", env={"SERVEGATE_PREFIX": str(tmp_path), "SERVEGATE_PG_PORT": "nope"})
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == ["Error: invalid pg_port (SERVEGATE_PG_PORT='nope'): "
                                             "invalid literal for int() with base 10: 'nope'"]


def test_unreachable_database_is_one_clear_line(tmp_path):
    r = run_cli("start", env={"SERVEGATE_PREFIX": str(tmp_path), "SERVEGATE_DATABASE": "postgres",
                              "SERVEGATE_PG_PORT": "1", "SERVEGATE_PG_TIMEOUT": "1000"})
    assert r.returncode == 1
    assert "cannot connect to the postgres database" in r.stderr


def test_migrations_round_trip(backend):
    _, env, _ = backend
    r = run_cli("migrations", "list", env=env)
    assert r.returncode == 3, r.stdout + r.stderr
    r = run_cli("migrations", "bootstrap", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Bootstrapping database..." in r.stdout
    r = run_cli("migrations", "bootstrap", env=env)
    assert "Database already bootstrapped" in r.stdout
    r = run_cli("migrations", "up", env=env)
    assert r.returncode == 0 and "up-to-date" in r.stdout
    r = run_cli("migrations", "finish", env=env)
    assert r.returncode == 0 and "No pending migrations to finish" in r.stdout
    assert run_cli("migrations", "list", env=env).returncode == 0
    r = run_cli("migrations", "reset", env=env)
    assert r.returncode == 1
    assert "not a tty: invoke 'reset' non-interactively with the --yes flag" in r.stderr
    r = run_cli("migrations", "reset", "--yes", env=env)
    assert r.returncode == 0 and "Database successfully reset" in r.stdout
    r = run_cli("migrations", "reset", "--yes", env=env)
    assert "Database not bootstrapped, nothing to reset" in r.stdout


def test_health_reports_running_and_stopped(tmp_path):
    env = {"SERVEGATE_PREFIX": str(tmp_path)}
    r = run_cli("health", env=env)
    assert r.returncode == 1
    assert f"servegate is not running at {tmp_path}" in r.stderr
    sg = Servegate(prefix=str(tmp_path)).start()
    try:
        r = run_cli("health", env=env)
        assert r.returncode == 0, r.stderr
        assert f"servegate is healthy at {tmp_path}" in r.stdout
    finally:
        assert sg.stop() == 0
    assert run_cli("health", env=env).returncode == 1


def test_state_survives_restart_and_sigint_stops_cleanly(backend):
    database, env, dsn = backend
    sg = Servegate(database=database, pg_dsn=dsn, prefix=env["SERVEGATE_PREFIX"]).start()
    try:
        assert sg.admin("POST", "/services", {"name": "llm", "url": "http://h:8080/v1"})[0] == 201
        assert sg.admin("POST", "/services/llm/routes", {"name": "r", "paths": ["/v1/llm"]})[0] == 201
        assert sg.admin("POST", "/consumers", {"username": "a"})[0] == 201
        assert sg.admin("POST", "/consumers/a/key-auth", {"key": "k"})[0] == 201
        before = {e: sg.admin("GET", f"/{e}")[1]["data"] for e in ("services", "routes", "consumers", "key-auths")}
    finally:
        assert sg.stop(signal.SIGINT) == 0
    sg2 = Servegate(database=database, pg_dsn=dsn, prefix=env["SERVEGATE_PREFIX"],
                    proxy_port=sg.proxy_port, ssl_port=sg.ssl_port, admin_port=sg.admin_port).start()
    try:
        after = {e: sg2.admin("GET", f"/{e}")[1]["data"] for e in ("services", "routes", "consumers", "key-auths")}
        assert after == before
        assert [len(v) for v in after.values()] == [1, 1, 1, 1]
    finally:
        assert sg2.stop() == 0


def test_start_refuses_pending_migrations(backend):
    """A database whose schema is older than this servegate must be migrated before start."""
    _, env, dsn = backend
    assert run_cli("migrations", "bootstrap", env=env).returncode == 0
    # Forget the recorded migrations, as if the database had been made by an older release.
    if dsn is None:
        import sqlite3

        with sqlite3.connect(f"{env['SERVEGATE_PREFIX']}/servegate.db") as db:
            db.execute("DELETE FROM schema_meta")
    else:
        import asyncio

        import asyncpg

        async def forget() -> None:
            conn = await asyncpg.connect(dsn)
            await conn.execute("DELETE FROM schema_meta")
            await conn.close()

        asyncio.run(forget())
    assert run_cli("migrations", "list", env=env).returncode == 5
    r = run_cli("start", env=env, timeout=30)
    assert r.returncode == 1
    assert "servegate migrations up" in r.stderr
