"""The seed documents' Docker path, run for real: `cp .env.example .env && docker compose up -d` in a copy of the
repository, then `docker compose ps`, `logs kong-setup`, every curl line of both seed documents through the
ports published on 127.0.0.1, `restart kong-setup`, `down && up -d`, and a POSTGRES_PASSWORD changed before the
first start.

The fake LLM backends run on this machine, on the Docker bridge's gateway address: the gateway container reaches
them as host.docker.internal (extra_hosts: host-gateway). The base images are local stand-ins
(standin_images.py). Run with scripts/compose-e2e; skipped unless SERVEGATE_COMPOSE_E2E=1.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from compose_stack import ComposeProject, copy_repository, set_env_values
from docker_engine import Engine, EngineUnavailable, ensure_engine
from phases import NOTES, timed
from standin_images import ensure_standins

from seed_checks import CHECKS, SeedTarget, start_backend

pytestmark = pytest.mark.timeout(2400)

RUN = uuid.uuid4().hex[:8]
KEY = f"e2e-compose-key-{uuid.uuid4().hex[:12]}"
NEW_PASSWORD = "my-secure-password"  # the seed's own example


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    with timed("engine: find or install docker.io + Compose V2, start dockerd"):
        try:
            eng = ensure_engine()
        except EngineUnavailable as exc:
            NOTES.append(f"SKIPPED: no Docker engine can run here: {exc}")
            pytest.skip(f"no Docker engine can run here: {exc}")
    NOTES.extend(eng.notes)
    NOTES.append(f"docker client {eng.docker}, engine {eng.server_version}, Compose {eng.compose_version}")
    try:
        yield eng
    finally:
        eng.stop_started_daemon()


@pytest.fixture(scope="session")
def standins(engine: Engine) -> None:
    with timed("image builds: stand-ins python:3.11-slim + postgres:17"):
        NOTES.extend(ensure_standins(engine.docker))


@pytest.fixture(scope="module")
def backends(engine: Engine, standins: None) -> Iterator[tuple[str, int, int]]:
    """Two fake OpenAI backends on the address host-gateway stands for (the bridge's, on this machine)."""
    r = subprocess.run([engine.docker, "run", "--rm", "--add-host", "host.docker.internal:host-gateway",
                        "python:3.11-slim", "getent", "hosts", "host.docker.internal"], capture_output=True,
                       text=True, timeout=120)
    host = r.stdout.split()[0] if r.returncode == 0 and r.stdout.split() else ""
    if not host:
        pytest.fail(f"host.docker.internal (host-gateway) does not resolve in a container: {r.stderr}")
    ports = (free_port(host), free_port(host))
    procs = [start_backend(host, p) for p in ports]
    try:
        yield host, ports[0], ports[1]
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)


def remove_image(engine: Engine, tag: str) -> None:
    subprocess.run([engine.docker, "image", "rm", "-f", tag], capture_output=True, timeout=120)


def new_project(engine: Engine, tmp_path_factory: pytest.TempPathFactory, backends: tuple[str, int, int],
                label: str, image: str, *, before_env: str = "") -> tuple[ComposeProject, dict[str, int]]:
    """A copy of the repository after the quick start's steps 2-4: .env copied, then edited."""
    workdir = copy_repository(tmp_path_factory.mktemp(label) / "servegate")
    project = ComposeProject(engine.docker, workdir, f"sge2e-{RUN}-{label}", image)
    project.sh("cp .env.example .env")
    if before_env:
        project.sh(before_env)
    # Free ports rather than the seed's 8000/8443, which other programs on a shared machine may hold: the
    # curl lines are run with their port changed to these (SeedTarget.command), as after KONG_PROXY_PORT=9000.
    ports = {"proxy": free_port(), "ssl": free_port(), "postgres": free_port()}
    _, vllm, sglang = backends
    set_env_values(workdir / ".env", {
        "SERVEGATE_IMAGE": image,
        "SERVEGATE_PUBLISH_ADDRESS": "127.0.0.1",
        "KONG_PROXY_PORT": str(ports["proxy"]),
        "KONG_PROXY_SSL_PORT": str(ports["ssl"]),
        "POSTGRES_PORT": str(ports["postgres"]),
        "VLLM_UPSTREAM_URL": f"http://host.docker.internal:{vllm}",
        "SGLANG_UPSTREAM_URL": f"http://host.docker.internal:{sglang}",
        "KONG_ADMIN_API_KEY": KEY,
    })
    return project, ports


@pytest.fixture(scope="module")
def stack(engine: Engine, standins: None, backends: tuple[str, int, int],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ComposeProject, SeedTarget]]:
    image = f"servegate-e2e:{RUN}"
    project, ports = new_project(engine, tmp_path_factory, backends, "main", image)
    host, vllm, sglang = backends
    target = SeedTarget(key=KEY, backend_host=host, upstream_host="host.docker.internal", vllm_port=vllm,
                        sglang_port=sglang, log=project.logs, proxy_port=ports["proxy"], ssl_port=ports["ssl"])
    try:
        with timed("image builds: servegate (docker compose build)"):
            project.compose("build", timeout=1800)
        with timed("docker compose up -d, until kong-setup exited"):
            project.sh("docker compose up -d", timeout=900)
            project.wait_exited("kong-setup")
        yield project, target
    finally:
        with timed("teardown: docker compose down -v, image removed"):
            left = project.remove()
            remove_image(engine, image)
        assert not left, f"left behind: {left}"


@pytest.fixture(autouse=True)
def _time_each_check(request: pytest.FixtureRequest) -> Iterator[None]:
    with timed(f"check {request.node.name}"):
        yield


def admin_snapshot(target: SeedTarget) -> dict[str, Any]:
    out = {}
    for entity in ("services", "routes", "plugins", "consumers"):
        req = urllib.request.Request(f"http://127.0.0.1:{target.proxy_port}/admin-api/{entity}",
                                     headers={"apikey": KEY})
        with urllib.request.urlopen(req, timeout=10) as r:
            out[entity] = sorted(json.loads(r.read())["data"], key=lambda e: e["id"])
    return out


# ---- the quick start's own checks ------------------------------------------------------------------------------

def test_ps_shows_healthy_services_and_finished_jobs(stack: tuple[ComposeProject, SeedTarget]) -> None:
    project, _ = stack
    shown = project.sh("docker compose ps").stdout
    NOTES.append("`docker compose ps`:\n" + shown.rstrip())
    rows = project.containers()
    for service in ("postgres", "kong"):
        assert rows[service]["State"] == "running" and rows[service]["Health"] == "healthy", rows[service]
        assert service in shown
    for job in ("kong-migrations", "kong-setup"):
        assert rows[job]["State"] == "exited" and rows[job]["ExitCode"] == 0, rows[job]
        # No health state on a one-shot job (the image's HEALTHCHECK probes a gateway it does not run).
        health = subprocess.run([project.docker, "inspect", "--format",
                                 "{{if .State.Health}}{{.State.Health.Status}}{{end}}", rows[job]["ID"]],
                                capture_output=True, text=True, timeout=60, check=True).stdout.strip()
        assert health == "", f"{job}: {health}"


def test_logs_kong_setup_show_setup_output(stack: tuple[ComposeProject, SeedTarget]) -> None:
    project, _ = stack
    out = project.sh("docker compose logs kong-setup").stdout
    NOTES.append("`docker compose logs kong-setup`:\n" + re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", out).rstrip())
    for expected in ("vllm-service", "sglang-service", "admin-api-route", "setup complete"):
        assert expected in out, expected
    assert KEY not in out


@pytest.mark.parametrize("check", CHECKS, ids=[c.__name__ for c in CHECKS])
def test_seed_command(stack: tuple[ComposeProject, SeedTarget], check) -> None:
    check(stack[1])


def test_admin_port_not_reachable_from_host(stack: tuple[ComposeProject, SeedTarget]) -> None:
    project, _ = stack
    for row in project.containers().values():
        published = [p for p in row.get("Publishers") or [] if p.get("PublishedPort")]
        assert all(p["TargetPort"] != 8001 for p in published), row
    with socket.socket() as s:
        busy = s.connect_ex(("127.0.0.1", 8001)) == 0
    if busy:
        NOTES.append("something else listens on localhost:8001 here: `curl localhost:8001` not run")
        return
    assert project.sh("curl localhost:8001", check=False).returncode != 0


def test_gateway_runs_as_unprivileged_user(stack: tuple[ComposeProject, SeedTarget]) -> None:
    project, _ = stack
    assert project.compose("exec", "-T", "kong", "id", "-u").stdout.strip() == "10001"
    top = project.compose("top", "kong").stdout
    # Below the container's name and the UID PID ... header: one row per process, as the host sees it.
    rows = [line.split() for line in top.splitlines() if len(line.split()) > 1 and line.split()[1].isdigit()]
    assert len(rows) >= 2 and all(r[0] == "10001" for r in rows), top


def test_image_size_reported(stack: tuple[ComposeProject, SeedTarget]) -> None:
    project, _ = stack
    sizes = {}
    for tag in (project.image, "python:3.11-slim"):
        r = subprocess.run([project.docker, "image", "inspect", "--format", "{{.Size}}", tag], capture_output=True,
                           text=True, timeout=60, check=True)
        sizes[tag] = int(r.stdout.strip())
    NOTES.append(f"gateway image {project.image}: {sizes[project.image] / 1e6:.0f} MB, of which the python:3.11-slim "
                 f"base (here the stand-in) {sizes['python:3.11-slim'] / 1e6:.0f} MB: the Dockerfile adds "
                 f"{(sizes[project.image] - sizes['python:3.11-slim']) / 1e6:.0f} MB")
    assert sizes[project.image] > sizes["python:3.11-slim"]


def test_restart_kong_setup_is_idempotent(stack: tuple[ComposeProject, SeedTarget]) -> None:
    project, target = stack
    before = admin_snapshot(target)
    started = project.started_at("kong-setup")
    project.sh("docker compose restart kong-setup")
    row = project.wait_exited("kong-setup", since=started)
    assert row["ExitCode"] == 0, project.logs("kong-setup")
    assert admin_snapshot(target) == before
    assert project.logs("kong-setup").count("setup complete") == 2


def test_down_then_up_keeps_configuration(stack: tuple[ComposeProject, SeedTarget]) -> None:
    project, target = stack
    code, _ = target.sh('curl -X POST "http://localhost:8000/admin-api/consumers" -H "apikey: YOUR_KEY" '
                        '-d "username=kept-across-down"')
    assert code == 201
    before = admin_snapshot(target)
    with timed("docker compose down && docker compose up -d, until kong-setup exited"):
        project.sh("docker compose down && docker compose up -d", timeout=900)
        project.wait_exited("kong-setup")
    assert admin_snapshot(target) == before
    assert target.sh("curl http://localhost:8000/v1/sglang/v1/models")[0] == 200


def test_postgres_password_changed_before_first_start(
    engine: Engine, standins: None, backends: tuple[str, int, int], tmp_path_factory: pytest.TempPathFactory,
    stack: tuple[ComposeProject, SeedTarget],
) -> None:
    """README step 3, then `docker compose up -d` with no image built yet: the stack builds it and uses the
    new password; PostgreSQL refuses the shipped default."""
    image = f"servegate-e2e:{RUN}-password"
    project, ports = new_project(engine, tmp_path_factory, backends, "password", image,
                                 before_env=f"echo '{NEW_PASSWORD}' > POSTGRES_PASSWORD")
    host, vllm, sglang = backends
    target = SeedTarget(key=KEY, backend_host=host, upstream_host="host.docker.internal", vllm_port=vllm,
                        sglang_port=sglang, log=project.logs, proxy_port=ports["proxy"], ssl_port=ports["ssl"])
    try:
        with timed("password project: docker compose up -d (builds its image from cache), until kong-setup exited"):
            up = project.sh("docker compose up -d", timeout=1200)
            row = project.wait_exited("kong-setup")
        # The image is built here, once: Compose does not first try to pull it from a registry.
        assert "Pulling" not in up.stdout + up.stderr, up.stderr
        assert row["ExitCode"] == 0, project.logs()
        code, body = target.sh('curl -i "http://localhost:8000/admin-api/services?apikey=YOUR_KEY"', status=False)
        assert " 200 " in body.split("\n", 1)[0], body
        psql = 'psql "postgresql://kong:{}@postgres:5432/kong" -tAc "select 1"'
        ok = project.compose("exec", "-T", "postgres", "sh", "-c", psql.format(NEW_PASSWORD), check=False)
        assert ok.returncode == 0 and ok.stdout.strip() == "1", ok.stderr
        shipped = (stack[0].workdir / "POSTGRES_PASSWORD").read_text().strip()
        refused = project.compose("exec", "-T", "postgres", "sh", "-c", psql.format(shipped), check=False)
        assert refused.returncode != 0 and "password authentication failed" in refused.stderr, refused.stderr
    finally:
        left = project.remove()
        remove_image(engine, image)
        assert not left, f"left behind: {left}"
