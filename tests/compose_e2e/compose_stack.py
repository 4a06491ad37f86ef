"""One Docker Compose project of the stack in a throw-away copy of the repository.

Commands run as a user types them (`docker compose up -d`, in the copy's folder); the project name comes from
COMPOSE_PROJECT_NAME in their environment, unique per run, so nothing of a user's own stack is touched and
`remove()` finds everything the project made (containers, networks, volumes, the image tag) even after a
failure.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def copy_repository(dest: Path) -> Path:
    """The repository's files as a clone would have them (tracked and new, not ignored), into dest."""
    r = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                       capture_output=True, check=True, timeout=60)
    dest.mkdir(parents=True)
    for name in filter(None, r.stdout.decode().split("\0")):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def set_env_values(env_file: Path, values: dict[str, str]) -> None:
    """Edit .env as a user would: change the `NAME=` lines, append the names it lacks."""
    lines = env_file.read_text().splitlines()
    left = dict(values)
    for i, line in enumerate(lines):
        m = re.match(r"([A-Z_][A-Z0-9_]*)=", line)
        if m and m.group(1) in left:
            lines[i] = f"{m.group(1)}={left.pop(m.group(1))}"
    lines += [f"{k}={v}" for k, v in left.items()]
    env_file.write_text("\n".join(lines) + "\n")


@dataclass
class ComposeProject:
    docker: str
    workdir: Path
    name: str
    image: str

    def env(self) -> dict[str, str]:
        import os

        env = {k: v for k, v in os.environ.items() if not k.startswith(("SERVEGATE_", "KONG_", "COMPOSE_"))}
        env["COMPOSE_PROJECT_NAME"] = self.name
        return env

    def sh(self, command: str, *, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A shell command line in the project folder, as typed."""
        r = subprocess.run(["bash", "-c", command], cwd=self.workdir, env=self.env(), capture_output=True,
                           text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"`{command}` exited {r.returncode}:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
        return r

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([self.docker, "compose", *args], cwd=self.workdir, env=self.env(), capture_output=True,
                           text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"docker compose {' '.join(args)} exited {r.returncode}:\n{r.stdout[-4000:]}\n"
                                 f"{r.stderr[-4000:]}")
        return r

    def containers(self) -> dict[str, dict[str, Any]]:
        """Service name -> `docker compose ps -a` entry (State, Health, ExitCode, ...)."""
        out = self.compose("ps", "-a", "--format", "json").stdout.strip()
        rows: list[dict[str, Any]] = []
        if out.startswith("["):
            rows = json.loads(out)  # older Compose: one JSON array
        else:
            rows = [json.loads(line) for line in out.splitlines() if line.strip()]
        return {row["Service"]: row for row in rows}

    def wait_exited(self, service: str, timeout: float = 180, since: str | None = None) -> dict[str, Any]:
        """Wait until a one-shot service's container has exited (after `since`, a StartedAt it must differ
        from); returns its ps entry."""
        deadline = time.monotonic() + timeout
        row: dict[str, Any] = {}
        while time.monotonic() < deadline:
            row = self.containers().get(service, {})
            if row.get("State") == "exited" and (since is None or self.started_at(service) != since):
                return row
            time.sleep(1)
        raise AssertionError(f"{service} did not exit within {timeout:.0f}s: {row}\n{self.logs()[-4000:]}")

    def started_at(self, service: str) -> str:
        cid = self.compose("ps", "-a", "-q", service).stdout.strip()
        r = subprocess.run([self.docker, "inspect", "--format", "{{.State.StartedAt}}", cid], capture_output=True,
                           text=True, timeout=60)
        return r.stdout.strip()

    def logs(self, *services: str) -> str:
        r = self.compose("logs", "--no-color", *services, check=False)
        return r.stdout + r.stderr

    def remove(self) -> list[str]:
        """Stop and remove everything this project made; returns what was still left afterwards (should be [])."""
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "20", timeout=300, check=False)
        label = f"label=com.docker.compose.project={self.name}"
        left: list[str] = []
        for kind, rm in (("container", ["rm", "-f"]), ("network", ["network", "rm"]), ("volume", ["volume", "rm"])):
            ls = [self.docker, kind if kind != "container" else "ps", "ls" if kind != "container" else "-a"]
            ids = subprocess.run([*ls, "-q", "--filter", label], capture_output=True, text=True,
                                 timeout=60).stdout.split()
            if ids:
                subprocess.run([self.docker, *rm, *ids], capture_output=True, timeout=120)
                left += subprocess.run([*ls, "-q", "--filter", label], capture_output=True, text=True,
                                       timeout=60).stdout.split()
        return left
