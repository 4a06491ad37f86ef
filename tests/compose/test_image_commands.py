"""The commands the image runs (migrations job, health check, setup job), run here the way the containers run
them: the same command lines, the environment the compose file gives each service, only the database host and
the ports rewritten to this machine's."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from compose_file import env_dict, load_compose, read_env_file

from helpers import Servegate
from support import free_port


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return load_compose(read_env_file())["services"]


def container_env(service: dict[str, Any], **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SERVEGATE_", "KONG_"))}
    env.update(env_dict(service))
    env.update(overrides)
    return env


def sh(command: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


def test_migrations_job_on_a_fresh_database(services: dict[str, Any], fresh_pg_db: str, tmp_path: Path) -> None:
    u = urlsplit(fresh_pg_db)
    secret = tmp_path / "postgres_password"
    secret.write_text("unused-with-trust-auth\n")
    env = container_env(
        services["kong-migrations"],
        SERVEGATE_PG_HOST=u.hostname or "127.0.0.1",
        SERVEGATE_PG_PORT=str(u.port or 5432),
        # The compose file passes these under their KONG_ names; keep them there to exercise the fallback.
        KONG_PG_DATABASE=u.path.lstrip("/"),
        KONG_PG_USER=u.username or "postgres",
        SERVEGATE_PG_PASSWORD_FILE=str(secret),
        SERVEGATE_PREFIX=str(tmp_path),
    )
    command = services["kong-migrations"]["command"]
    first = sh(command, env)
    assert first.returncode == 0, first.stdout + first.stderr
    # The job runs again on every `docker compose up`: on a bootstrapped database it must succeed too.
    again = sh(command, env)
    assert again.returncode == 0, again.stdout + again.stderr
    listing = sh(["servegate", "migrations", "list"], env)
    assert listing.returncode == 0, listing.stdout + listing.stderr


def test_migrations_job_fails_on_an_unreachable_database(services: dict[str, Any], tmp_path: Path) -> None:
    secret = tmp_path / "postgres_password"
    secret.write_text("x\n")
    env = container_env(
        services["kong-migrations"],
        SERVEGATE_PG_HOST="127.0.0.1",
        SERVEGATE_PG_PORT=str(free_port()),
        SERVEGATE_PG_PASSWORD_FILE=str(secret),
        SERVEGATE_PREFIX=str(tmp_path),
    )
    proc = sh(services["kong-migrations"]["command"], env)
    assert proc.returncode != 0


def test_healthcheck_command_follows_the_gateway(services: dict[str, Any], tmp_path: Path) -> None:
    health = services["kong"]["healthcheck"]["test"][1:]  # drop "CMD"
    env = container_env({}, SERVEGATE_PREFIX=str(tmp_path))
    assert sh(health, env).returncode != 0, "healthy before the gateway started"
    with Servegate(prefix=str(tmp_path)):
        proc = sh(health, env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sh(health, env).returncode != 0, "still healthy after the gateway stopped"


def test_setup_job_command_against_a_gateway(services: dict[str, Any], tmp_path: Path) -> None:
    setup = services["kong-setup"]
    with Servegate(prefix=str(tmp_path)) as sg:
        env = container_env(setup, SERVEGATE_ADMIN_URL=sg.admin_url, SERVEGATE_ADMIN_UPSTREAM=sg.admin_url)
        proc = sh(setup["command"], env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "setup complete" in proc.stdout
        names = {s["name"] for s in sg.admin("GET", "/services")[1]["data"]}
        # llm-service carries /v1 (the model-router over both backends)
        assert names == {"vllm-service", "sglang-service", "admin-api-service", "llm-service"}
        vllm = sg.admin("GET", "/services/vllm-service")[1]
        assert (vllm["host"], vllm["port"]) == ("host.docker.internal", 8080)
