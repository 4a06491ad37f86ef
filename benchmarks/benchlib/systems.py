"""The systems under test. Each one starts on a free port, forwards /v1/* to the fake backend, and is stopped
after its scenarios. A system that cannot start raises SystemFailed; the runner records the reason."""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .load import BENCH_DIR, Target, wait_proxied_ok
from .procs import Proc

PROXY_CPUS = {1}
ALL_CPUS = {0, 1}
REPO = BENCH_DIR.parent


# The fake backend listens on these three loopback addresses (benchmarks/run.py).
BACKEND_HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
LB_ALGORITHMS = ("round-robin", "least-connections", "consistent-hashing", "latency", "least-outstanding",
                 "prefix-affinity")


class SystemFailed(Exception):
    pass


def free_port() -> int:
    """A port below the ephemeral range: one the kernel picked for bind(0) can be reused at once as an outgoing
    connection's local port, and the server meant to listen on it would fail to start."""
    for _ in range(1000):
        port = random.randint(20000, 32000)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range")


_handed_out: set[int] = set()


@dataclass
class Ctx:
    workdir: Path
    backend_port: int
    # PYTHONPATH entry with servegate's compiled build (None: the editable source tree)
    servegate_path: str | None = None

    @property
    def backend_url(self) -> str:
        return f"http://127.0.0.1:{self.backend_port}"


class System:
    name = "?"
    note = ""
    warmup_s = 2.0  # c64 warm-up; LiteLLM needs longer
    startup_deadline_s = 20.0

    def __init__(self) -> None:
        self.proc: Proc | None = None
        self.startup_s: float | None = None

    def prepare(self, ctx: Ctx) -> None:
        """One-time setup before the first round (installs, config databases)."""

    def launch(self, ctx: Ctx, port: int) -> Proc:
        raise NotImplementedError

    def target(self, port: int) -> Target:
        return Target(port)

    def start(self, ctx: Ctx) -> Target:
        """Start and wait for the first successful proxied request (that interval is the start-up time)."""
        port = free_port()
        self.proc = self.launch(ctx, port)
        target = self.target(port)
        ok = wait_proxied_ok(target, self.startup_deadline_s, alive=self.proc.alive)
        if ok is None:
            why = "exited" if not self.proc.alive() else f"no 200 within {self.startup_deadline_s:.0f}s"
            tail = self.proc.log_tail()
            self.stop()
            raise SystemFailed(f"{why}: {tail}" if tail else why)
        self.startup_s = ok - self.proc.started_at
        return target

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None


class Direct(System):
    name = "direct"
    note = "load generator straight to the backend"

    def start(self, ctx: Ctx) -> Target:
        self.startup_s = None
        return Target(ctx.backend_port)


class Nginx(System):
    name = "nginx"
    note = "1 worker, proxy_buffering off, upstream keepalive 2048, CPU 1"

    CONF = """worker_processes 1;
daemon off;
master_process on;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
worker_rlimit_nofile 20000;
events {{ worker_connections 16384; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  upstream backend {{ server 127.0.0.1:{backend}; keepalive 2048; }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location /v1/ {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
"""

    def launch(self, ctx: Ctx, port: int) -> Proc:
        nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
        if nginx is None:
            raise SystemFailed("nginx binary not found")
        d = ctx.workdir / f"nginx-{port}"
        d.mkdir(parents=True, exist_ok=True)
        conf = d / "nginx.conf"
        conf.write_text(self.CONF.format(dir=d, backend=ctx.backend_port, port=port))
        argv = [nginx, "-e", str(d / "error.log"), "-p", str(d), "-c", str(conf)]
        return Proc(self.name, argv, cpus=PROXY_CPUS, log_path=d / "stdout.log")


class Aiohttp(System):
    name = "aiohttp"
    note = "minimal aiohttp.web + ClientSession proxy on uvloop (yardstick), CPU 1"

    def launch(self, ctx: Ctx, port: int) -> Proc:
        script = REPO / "benchmarks" / "systems" / "aiohttp_proxy.py"
        argv = [sys.executable, str(script), "--port", str(port), "--upstream", ctx.backend_url]
        return Proc(self.name, argv, cpus=PROXY_CPUS, log_path=ctx.workdir / f"aiohttp-{port}.log")


def _admin(port: int, method: str, path: str, form: dict[str, str] | None = None, *, json_body: dict | None = None
           ) -> dict:
    if json_body is not None:
        data: bytes | None = json.dumps(json_body).encode()
        ctype = "application/json"
    else:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        ctype = "application/x-www-form-urlencoded"
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
            return json.loads(body) if body else {}
    except urllib.error.HTTPError as e:
        raise SystemFailed(f"admin {method} {path}: {e.code} {e.read()[:200]!r}") from e


class Servegate(System):
    """`servegate start` with env settings; configured once through the Admin API into its own SQLite prefix."""

    startup_deadline_s = 10.0

    def __init__(self, workers: int, plugins: bool, algorithm: str | None = None, llm: bool = False) -> None:
        super().__init__()
        self.workers = workers
        self.plugins = plugins
        self.algorithm = algorithm
        self.llm = llm
        self.name = (f"servegate-{workers}w" + ("+plugins" if plugins else "") + (f"+lb:{algorithm}" if algorithm else "")
                     + ("+llm" if llm else ""))
        pin = "CPU 1" if workers == 1 else "unpinned, CPUs 0-1 shared with backend and load"
        self.note = f"{workers} worker(s), {pin}" + (", key-auth + rate-limiting (local)" if plugins else "")
        if algorithm:
            self.note += f", upstream of 3 targets, {algorithm}"
        if llm:
            self.note += ", model-router + prometheus (ai_metrics) on the route"
        self.apikey = "bench-" + secrets.token_hex(16)
        self.prefix: Path | None = None
        self.pythonpath: str | None = None

    def env(self, port: int, admin_port: int) -> dict[str, str]:
        assert self.prefix is not None
        extra = {"PYTHONPATH": self.pythonpath} if self.pythonpath else {}
        return {
            **extra,
            "SERVEGATE_PROXY_LISTEN": f"127.0.0.1:{port}",
            "SERVEGATE_ADMIN_LISTEN": f"127.0.0.1:{admin_port}",
            "SERVEGATE_PREFIX": str(self.prefix),
            "SERVEGATE_DATABASE": "sqlite",
            "SERVEGATE_WORKERS": str(self.workers),
            "SERVEGATE_PROXY_ACCESS_LOG": "off",
        }

    def _binary(self) -> str:
        exe = Path(sys.executable).with_name("servegate")
        if exe.exists():
            return str(exe)
        found = shutil.which("servegate")
        if found is None:
            raise SystemFailed("servegate command not found")
        return found

    def _spawn(self, port: int, admin_port: int) -> Proc:
        assert self.prefix is not None
        cpus = PROXY_CPUS if self.workers == 1 else ALL_CPUS
        argv = [self._binary(), "start"]
        return Proc(
            self.name, argv, cpus=cpus, env=self.env(port, admin_port), log_path=self.prefix / "run.log"
        )

    def prepare(self, ctx: Ctx) -> None:
        self.pythonpath = ctx.servegate_path
        self.prefix = ctx.workdir / self.name.replace("+", "-")
        self.prefix.mkdir(parents=True, exist_ok=True)
        port, admin_port = free_port(), free_port()
        env = {**os.environ, **self.env(port, admin_port)}
        # harmless when start bootstraps by itself; needed when it expects a bootstrapped database
        subprocess.run(
            [self._binary(), "migrations", "bootstrap"], env=env, capture_output=True, timeout=60, check=False
        )
        proc = self._spawn(port, admin_port)
        try:
            self._wait_admin(proc, admin_port)
            self._configure(ctx, admin_port)
        finally:
            proc.stop()

    def _wait_admin(self, proc: Proc, admin_port: int) -> None:
        end = time.monotonic() + self.startup_deadline_s
        while time.monotonic() < end:
            if not proc.alive():
                raise SystemFailed("exited: " + proc.log_tail())
            try:
                _admin(admin_port, "GET", "/")
                return
            except (OSError, SystemFailed):
                time.sleep(0.05)
        raise SystemFailed("admin API did not answer: " + proc.log_tail())

    def _configure(self, ctx: Ctx, admin_port: int) -> None:
        if self.algorithm:
            form = {"name": "bench-upstream", "algorithm": self.algorithm}
            if self.algorithm == "consistent-hashing":
                form["hash_on"] = "ip"  # every request then lands on one target: the cost is the hashing's
            _admin(admin_port, "POST", "/upstreams", form)
            for host in BACKEND_HOSTS:
                _admin(admin_port, "POST", "/upstreams/bench-upstream/targets", {"target": f"{host}:{ctx.backend_port}"})
            _admin(admin_port, "POST", "/services", {"name": "bench", "url": f"http://bench-upstream:{ctx.backend_port}"})
        else:
            _admin(admin_port, "POST", "/services", {"name": "bench", "url": ctx.backend_url})
        route = _admin(
            admin_port, "POST", "/services/bench/routes", {"paths[]": "/v1", "strip_path": "false"}
        )
        if self.llm:
            # The LLM layer: the body's model picks the backend (an explicit entry: the fake backend has no model
            # list), usage is tracked on every response, and the prometheus plugin records the AI metrics.
            _admin(admin_port, "POST", f"/routes/{route['id']}/plugins", json_body={
                "name": "model-router",
                "config": {"backends": ["bench"], "models": {"fake": ["bench"]}, "discovery": {"enabled": False}}})
            _admin(admin_port, "POST", f"/routes/{route['id']}/plugins",
                   json_body={"name": "prometheus", "config": {"ai_metrics": True}})
        if not self.plugins:
            return
        rid = route["id"]
        _admin(admin_port, "POST", "/consumers", {"username": "bench"})
        _admin(admin_port, "POST", "/consumers/bench/key-auth", {"key": self.apikey})
        _admin(admin_port, "POST", f"/routes/{rid}/plugins", {"name": "key-auth"})
        _admin(
            admin_port,
            "POST",
            f"/routes/{rid}/plugins",
            {"name": "rate-limiting", "config.minute": "1000000000", "config.policy": "local"},
        )

    def launch(self, ctx: Ctx, port: int) -> Proc:
        if self.prefix is None:
            raise SystemFailed("not prepared")
        return self._spawn(port, free_port())

    def target(self, port: int) -> Target:
        return Target(port, headers={"apikey": self.apikey} if self.plugins else {})


LITELLM_CONF = """model_list:
  - model_name: fake
    litellm_params:
      model: openai/fake
      api_base: {backend}/v1
      api_key: sk-fake-backend
litellm_settings:
  callbacks: []
  num_retries: 0
  request_timeout: 120
general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY
"""


class LiteLLM(System):
    name = "litellm"
    note = "litellm[proxy] 1 uvicorn worker, no DB, own venv, CPU 1"
    warmup_s = 5.0
    startup_deadline_s = 120.0
    venv = BENCH_DIR / "work" / "litellm-venv"

    def __init__(self) -> None:
        super().__init__()
        self.key = "sk-bench-" + secrets.token_hex(16)

    def prepare(self, ctx: Ctx) -> None:
        exe = self.venv / "bin" / "litellm"
        if exe.exists():
            return
        try:
            subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True, capture_output=True)
            subprocess.run(
                [str(self.venv / "bin" / "pip"), "install", "-q", "litellm[proxy]"],
                check=True,
                capture_output=True,
                timeout=900,
            )
        except (subprocess.SubprocessError, OSError) as e:
            raise SystemFailed(f"install of litellm[proxy] failed: {e}") from e
        if not exe.exists():
            raise SystemFailed("install of litellm[proxy] gave no litellm command")

    def launch(self, ctx: Ctx, port: int) -> Proc:
        conf = ctx.workdir / "litellm.yaml"
        conf.write_text(LITELLM_CONF.format(backend=ctx.backend_url))
        env = {
            "LITELLM_MASTER_KEY": self.key,
            "LITELLM_LOG": "ERROR",
            "LITELLM_MODE": "PRODUCTION",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        }
        argv = [str(self.venv / "bin" / "litellm"), "--config", str(conf), "--host", "127.0.0.1"]
        argv += ["--port", str(port), "--num_workers", "1"]
        return Proc(self.name, argv, cpus=PROXY_CPUS, env=env, log_path=ctx.workdir / f"litellm-{port}.log")

    def target(self, port: int) -> Target:
        return Target(port, headers={"Authorization": f"Bearer {self.key}"})


def all_systems() -> dict[str, System]:
    systems: list[System] = [
        Direct(),
        Nginx(),
        Aiohttp(),
        Servegate(1, False),
        Servegate(1, True),
        Servegate(2, False),
        Servegate(2, True),
        LiteLLM(),
        # The balancer variants (not in the default run): the `servegate-1w` setup behind an upstream of three
        # targets, one per algorithm, so that the balancer's cost per request shows against `servegate-1w`.
        *(Servegate(1, False, alg) for alg in LB_ALGORITHMS),
        # The LLM layer's cost against servegate-1w (not in the default run either).
        Servegate(1, False, llm=True),
    ]
    return {s.name: s for s in systems}
