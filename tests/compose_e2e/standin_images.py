"""Local stand-ins for the stack's two base images, built from Debian packages (no image registry is reachable).

Each stand-in is a debootstrapped root filesystem (standins/<name>/recipe.env: suite, packages, image config)
finished by standins/<name>/prepare.sh, then `docker import`ed under the official tag. The root filesystem
tarball is cached under CACHE, keyed by a hash of the recipe, so later runs on the same machine skip
debootstrap; a tag that already holds an image we did not build (the real official image) is left alone.
These images are test fixtures: docker-compose.yml and the Dockerfile keep naming the official images.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from docker_engine import CACHE, EngineUnavailable, apt_install

HERE = Path(__file__).resolve().parent / "standins"
MIRROR = "http://deb.debian.org/debian"
LABEL = "org.servegate.e2e.standin"


@dataclass(frozen=True)
class Standin:
    name: str  # folder under standins/
    tag: str  # the official tag the stack uses

    @property
    def folder(self) -> Path:
        return HERE / self.name

    def recipe(self) -> dict[str, str]:
        out = {}
        for line in (self.folder / "recipe.env").read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                key, _, value = line.partition("=")
                out[key] = value
        return out

    def digest(self) -> str:
        """Hash of everything that shapes the image: the stand-in's files and the CAs copied from this machine."""
        h = hashlib.sha256(MIRROR.encode())
        files = sorted(self.folder.iterdir()) + sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
        for f in files:
            h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
        return h.hexdigest()[:16]


STANDINS = [Standin("python", "python:3.11-slim"), Standin("postgres", "postgres:17")]


def _image_label(docker: str, tag: str) -> str | None:
    """Our label on the image under `tag`; "" for an image we did not build; None when the tag is absent."""
    r = subprocess.run([docker, "image", "inspect", "--format", f'{{{{index .Config.Labels "{LABEL}"}}}}', tag],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        return None
    value = r.stdout.strip()
    return "" if value in ("", "<no value>") else value


def _rootfs_tar(s: Standin, digest: str) -> tuple[Path, bool]:
    """The cached root filesystem tarball, built with debootstrap when missing; (path, was_cached)."""
    tar = CACHE / "rootfs" / f"{s.name}-{digest}.tar"
    if tar.exists():
        return tar, True
    if not shutil.which("debootstrap"):
        raise EngineUnavailable("debootstrap is missing (apt-get install debootstrap)")
    recipe = s.recipe()
    tar.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"standin-{s.name}-", dir=tar.parent) as tmp:
        root = Path(tmp) / "root"
        cmd = ["debootstrap", "--variant=minbase", f"--include={recipe['INCLUDE']}", recipe["SUITE"], str(root),
               MIRROR]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
        if r.returncode != 0:
            log = root / "debootstrap" / "debootstrap.log"
            detail = log.read_text(errors="replace")[-1500:] if log.exists() else r.stderr[-1500:]
            raise RuntimeError(f"debootstrap {s.name} failed:\n{r.stdout[-1500:]}\n{detail}")
        subprocess.run(["bash", str(s.folder / "prepare.sh"), str(root)], check=True, timeout=600)
        partial = Path(tmp) / "rootfs.tar"
        subprocess.run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "--exclude=./proc/*",
                        "--exclude=./sys/*", "--exclude=./dev/*", "."], check=True, timeout=600)
        for old in tar.parent.glob(f"{s.name}-*.tar"):
            old.unlink()  # one cached tree per stand-in: the recipe changed
        partial.rename(tar)
    return tar, False


def _build(docker: str, s: Standin) -> str:
    digest = s.digest()
    label = _image_label(docker, s.tag)
    if label == "":
        return f"{s.tag}: an image we did not build is already there (the official one?): used as is"
    if label == digest:
        return f"{s.tag}: stand-in {digest} already loaded"
    tar, cached = _rootfs_tar(s, digest)
    changes = [c for c in s.recipe()["CHANGES"].split("|") if c] + [f"LABEL {LABEL}={digest}"]
    cmd = [docker, "import"]
    for c in changes:
        cmd += ["--change", c]
    subprocess.run([*cmd, str(tar), s.tag], check=True, capture_output=True, timeout=600)
    return f"{s.tag}: stand-in {digest} imported from {'cached' if cached else 'new'} root filesystem {tar}"


def ensure_standins(docker: str) -> list[str]:
    """Build (or reuse) both stand-ins, in parallel; returns one line per image saying what was done."""
    notes: list[str] = []
    todo = [s for s in STANDINS if _image_label(docker, s.tag) not in ("", s.digest())]
    if any(not (CACHE / "rootfs" / f"{s.name}-{s.digest()}.tar").exists() for s in todo):
        if os.geteuid() != 0:
            raise EngineUnavailable("building the stand-in base images needs root (debootstrap)")
        if not shutil.which("debootstrap"):
            apt_install(["debootstrap"], notes)
    with ThreadPoolExecutor(len(STANDINS)) as pool:
        return notes + list(pool.map(lambda s: _build(docker, s), STANDINS))
