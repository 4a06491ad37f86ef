"""Find or install a Docker engine and the Compose V2 plugin, and start `dockerd` when none runs.

Debian's docker.io (engine 20.10) comes from the machine's own apt sources. Compose V2 is the static binary of
Debian trixie's `docker-compose` package, fetched with apt into a private apt state (the machine's sources are
left alone) and put where the docker client looks for CLI plugins. Each step that cannot be done yields a reason,
and the test is skipped with it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("SERVEGATE_E2E_CACHE", "/var/cache/servegate-compose-e2e"))
PLUGIN = Path("/usr/local/lib/docker/cli-plugins/docker-compose")
TRIXIE_SOURCES = """Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


class EngineUnavailable(Exception):
    """No engine can run here; the message says why (the test is skipped with it)."""


@dataclass
class Engine:
    docker: str
    compose_version: str
    server_version: str
    started: subprocess.Popen[bytes] | None  # dockerd started by us (stopped again at the end), or None
    notes: list[str]

    def stop_started_daemon(self) -> None:
        if self.started is None or self.started.poll() is not None:
            return
        self.started.terminate()
        try:
            self.started.wait(30)
        except subprocess.TimeoutExpired:
            self.started.kill()
            self.started.wait(10)


def _run(*cmd: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def apt_install(packages: list[str], notes: list[str]) -> None:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise EngineUnavailable(f"{', '.join(packages)} missing and cannot be installed (not root or no apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run("apt-get", "update", "-qq", timeout=300, env=env)
    r = _run("apt-get", "install", "-y", "-qq", *packages, timeout=600, env=env)
    if r.returncode != 0:
        raise EngineUnavailable(f"apt-get install {' '.join(packages)} failed: {r.stderr.strip()[-300:]}")
    notes.append(f"installed {' '.join(packages)} with apt-get")


def _daemon_up(docker: str) -> str | None:
    r = _run(docker, "version", "--format", "{{.Server.Version}}", timeout=20)
    return r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else None


def _start_dockerd(docker: str) -> tuple[subprocess.Popen[bytes], str]:
    dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
    if not os.path.exists(dockerd):
        raise EngineUnavailable("no dockerd binary")
    if os.geteuid() != 0:
        raise EngineUnavailable("dockerd is not running and this user cannot start it (not root)")
    CACHE.mkdir(parents=True, exist_ok=True)
    log = open(CACHE / "dockerd.log", "ab")  # noqa: SIM115 - handed to the daemon, which outlives this call
    proc = subprocess.Popen([dockerd], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        version = _daemon_up(docker)
        if version:
            return proc, version
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    tail = (CACHE / "dockerd.log").read_text(errors="replace")[-600:]
    if proc.poll() is None:
        proc.terminate()
    raise EngineUnavailable(f"dockerd did not start: {tail.strip()}")


def _compose_version(docker: str) -> str | None:
    r = _run(docker, "compose", "version", "--short", timeout=20)
    version = r.stdout.strip().lstrip("v")
    return version if r.returncode == 0 and version[:1].isdigit() and int(version.split(".")[0]) >= 2 else None


def _install_compose_plugin(notes: list[str]) -> None:
    """Compose V2 from Debian trixie's docker-compose package (a static binary), via a private apt state."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise EngineUnavailable("Docker Compose V2 missing and cannot be installed (not root or no apt-get)")
    state = CACHE / "apt-trixie"
    for sub in ("sources", "lists/partial", "cache/archives/partial"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    (state / "sources" / "trixie.sources").write_text(TRIXIE_SOURCES)
    opts = ["-oDir::Etc::SourceList=/dev/null", f"-oDir::Etc::SourceParts={state / 'sources'}",
            f"-oDir::State::Lists={state / 'lists'}", f"-oDir::Cache={state / 'cache'}",
            "-oAPT::Sandbox::User=root"]
    r = _run("apt-get", *opts, "update", "-qq", timeout=300)
    if r.returncode != 0:
        raise EngineUnavailable(f"apt-get update (trixie) failed: {r.stderr.strip()[-300:]}")
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run(["apt-get", *opts, "download", "docker-compose"], cwd=tmp, capture_output=True,
                           text=True, timeout=300)
        debs = list(Path(tmp).glob("docker-compose_*.deb"))
        if r.returncode != 0 or not debs:
            raise EngineUnavailable(f"apt-get download docker-compose failed: {r.stderr.strip()[-300:]}")
        r = _run("dpkg-deb", "-x", str(debs[0]), f"{tmp}/x")
        binary = Path(tmp) / "x/usr/libexec/docker/cli-plugins/docker-compose"
        if r.returncode != 0 or not binary.exists():
            raise EngineUnavailable(f"unexpected docker-compose package layout: {r.stderr.strip()}")
        PLUGIN.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(binary, PLUGIN)
        PLUGIN.chmod(0o755)
        notes.append(f"installed Compose V2 from {debs[0].name} at {PLUGIN}")


def ensure_engine() -> Engine:
    notes: list[str] = []
    docker = shutil.which("docker")
    has_dockerd = bool(shutil.which("dockerd")) or os.path.exists("/usr/sbin/dockerd")
    if docker is None or (not has_dockerd and _daemon_up(docker) is None):
        apt_install(["docker.io"], notes)
        docker = shutil.which("docker")
    if docker is None:
        raise EngineUnavailable("no docker client after installing docker.io")
    started = None
    server = _daemon_up(docker)
    if server is None:
        started, server = _start_dockerd(docker)
        notes.append(f"started dockerd (pid {started.pid}); it is stopped again at the end")
    else:
        notes.append("using the running Docker engine")
    compose = _compose_version(docker)
    if compose is None:
        _install_compose_plugin(notes)
        compose = _compose_version(docker)
        if compose is None:
            raise EngineUnavailable("docker compose still not usable after installing the plugin")
    return Engine(docker=docker, compose_version=compose, server_version=server, started=started, notes=notes)
