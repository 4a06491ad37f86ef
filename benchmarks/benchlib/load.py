"""Load generators: wrk for small POSTs, the compiled epoll client for SSE streams, and tiny HTTP helpers."""

from __future__ import annotations

import http.client
import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent
BUILD_DIR = BENCH_DIR / "build"
SSECLIENT_SRC = BENCH_DIR / "sseclient" / "sseclient.c"
SSECLIENT = BUILD_DIR / "sseclient"
CHAT_PATH = "/v1/chat/completions"


@dataclass
class Target:
    """Where the load goes, and what each request carries (auth headers, model name)."""

    port: int
    headers: dict[str, str] = field(default_factory=dict)
    model: str = "fake"
    host: str = "127.0.0.1"

    def body(self, stream: bool = False, max_tokens: int = 16, seed: int = 0) -> bytes:
        obj = {
            "model": self.model,
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": max_tokens,
            "seed": seed,
        }
        if stream:
            obj["stream"] = True
        return json.dumps(obj, separators=(",", ":")).encode()


def build_sseclient() -> Path:
    """Compile the SSE client if missing or older than its source."""
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    if SSECLIENT.exists() and SSECLIENT.stat().st_mtime >= SSECLIENT_SRC.stat().st_mtime:
        return SSECLIENT
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise RuntimeError("no C compiler (gcc) to build the SSE client")
    subprocess.run([cc, "-O2", "-Wall", "-o", str(SSECLIENT), str(SSECLIENT_SRC)], check=True)
    return SSECLIENT


def post(target: Target, body: bytes | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json", **target.headers}
        conn.request("POST", CHAT_PATH, body=body if body is not None else target.body(), headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_proxied_ok(
    target: Target, deadline_s: float, alive: Callable[[], bool] | None = None
) -> float | None:
    """Poll a POST until it answers 200; returns the monotonic time of success or None at the deadline.

    `alive` returns False once the process under test died, which ends the wait early.
    """
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if alive is not None and not alive():
            return None
        try:
            status, _ = post(target, timeout=2.0)
            if status == 200:
                return time.monotonic()
        except OSError:
            pass
        time.sleep(0.01)
    return None


WRK_LUA = """wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
{headers}
"""


def _lua_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _to_ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(target: Target, conns: int, duration_s: float, workdir: Path) -> dict[str, float]:
    """wrk -t1 with a POST script; returns rps, p50_ms, p99_ms, errors, requests."""
    script = workdir / f"post-{target.port}.lua"
    headers = "\n".join(f"wrk.headers[{_lua_str(k)}] = {_lua_str(v)}" for k, v in target.headers.items())
    script.write_text(WRK_LUA.format(body=_lua_str(target.body().decode()), headers=headers))
    dur = max(1, round(duration_s))
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{dur}s", "--latency", "-s", str(script)]
    argv.append(f"http://{target.host}:{target.port}{CHAT_PATH}")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=dur + 30).stdout
    return parse_wrk(out)


def parse_wrk(out: str) -> dict[str, float]:
    res: dict[str, float] = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise RuntimeError("wrk gave no result: " + out.strip()[-300:])
    res["rps"] = float(m.group(1))
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
        if m:
            res[f"p{pct}_ms"] = _to_ms(m.group(1), m.group(2))
    m = re.search(r"(\d+) requests in", out)
    res["requests"] = float(m.group(1)) if m else 0.0
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    res["errors"] = float(errors)
    return res


def run_sse(
    target: Target,
    conns: int,
    duration_s: float,
    *,
    tokens: int,
    pace_ms: int,
    ramp_s: float,
    hardstop_s: float,
) -> dict:
    argv = [
        str(build_sseclient()),
        "-a", target.host, "-p", str(target.port), "-u", CHAT_PATH,
        "-c", str(conns), "-d", str(duration_s), "-r", str(ramp_s), "-x", str(hardstop_s),
        "-n", str(tokens), "-s", str(pace_ms), "-m", target.model,
    ]  # fmt: skip
    for k, v in target.headers.items():
        argv += ["-H", f"{k}: {v}"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=hardstop_s + 30)
    if proc.returncode != 0:
        raise RuntimeError(f"sseclient rc={proc.returncode}: {proc.stderr.strip()[-300:]}")
    return json.loads(proc.stdout)
