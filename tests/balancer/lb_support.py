"""The balancer tests' tools: fake replicas as processes (replica.py), a small keep-alive HTTP/1.1 client on raw
asyncio streams (cheap enough to drive thousands of requests from the test process), the Admin API calls that
set up an upstream, and a read of the node's shared open-request gauges."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers import Servegate
from support import free_port

REPLICA = Path(__file__).resolve().parent / "replica.py"
ROUTE = "/lb"
CHAT = ROUTE + "/v1/chat/completions"
NO_PEER = "failure to get a peer from the ring-balancer"


# -- replicas ---------------------------------------------------------------------------------------------
@dataclass
class Replica:
    """One fake replica process on a fixed port (a restart reuses it)."""

    name: str
    args: list[str] = field(default_factory=list)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, *extra: str) -> Replica:
        self.port = self.port or free_port()
        self.proc = subprocess.Popen(
            [sys.executable, str(REPLICA), "--port", str(self.port), "--name", self.name, *self.args, *extra],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # "PORT n" once listening (b"" if it died)
        if not line.startswith(b"PORT"):
            self.proc.wait(5)
            raise RuntimeError(f"replica {self.name} did not start on port {self.port}")
        return self

    def kill(self) -> None:
        """SIGKILL: the process dies with its connections (the kernel resets them)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def call(self, method: str, path: str, data: dict[str, Any] | None = None) -> Any:
        """A direct request to the replica (stats, control), on a fresh connection."""
        body = json.dumps(data).encode() if data is not None else b""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(f"{method} {path} HTTP/1.1\r\nHost: r\r\nConnection: close\r\nContent-Length: {len(body)}\r\n"
                      f"\r\n".encode() + body)
            raw = b""
            while chunk := s.recv(65536):
                raw += chunk
        return json.loads(raw.split(b"\r\n\r\n", 1)[1])

    def stats(self) -> dict[str, Any]:
        return dict(self.call("GET", "/__stats"))

    def control(self, **change: Any) -> None:
        self.call("POST", "/__control", change)

    def reset(self) -> None:
        self.call("POST", "/__reset")


class Replicas(list[Replica]):
    def __enter__(self) -> Replicas:
        return self

    def __exit__(self, *exc: object) -> None:
        for r in self:
            r.stop()

    def by_name(self) -> dict[str, Replica]:
        return {r.name: r for r in self}

    def stats(self) -> dict[str, dict[str, Any]]:
        return {r.name: r.stats() for r in self}

    def reset(self) -> None:
        for r in self:
            r.reset()


def start_replicas(n: int, slow: dict[int, float] | None = None, extra: dict[int, list[str]] | None = None) -> Replicas:
    out = Replicas()
    try:
        for i in range(n):
            args = ["--slow-factor", str((slow or {}).get(i, 1.0)), *(extra or {}).get(i, [])]
            out.append(Replica(f"r{i + 1}", args).start())
    except BaseException:
        out.__exit__()
        raise
    return out


# -- gateway configuration --------------------------------------------------------------------------------
def healthchecks(*, passive: bool = False, active_interval: float = 0.0) -> dict[str, Any]:
    """A healthchecks record: passive takes a target out after one TCP failure or one 5xx/429; active probes
    GET /health every `active_interval` s while a target is down and brings it back after one success."""
    hc: dict[str, Any] = {"active": {}, "passive": {}}
    if passive:
        hc["passive"] = {"unhealthy": {"tcp_failures": 1, "http_failures": 1, "timeouts": 0,
                                       "http_statuses": [429, 500, 502, 503]}}
    if active_interval:
        hc["active"] = {"http_path": "/health", "timeout": 1,
                        "healthy": {"interval": 0, "successes": 1},
                        "unhealthy": {"interval": active_interval, "tcp_failures": 1, "http_failures": 1}}
    return hc


def configure(sg: Servegate, replicas: list[Replica], *, weights: list[int] | None = None, retries: int = 5,
              upstream: str = "llm-pool", read_timeout: int = 60000, **fields: Any) -> dict[str, Any]:
    """An upstream named `upstream` with the replicas as targets, the service `llm` balanced over it and the
    route /lb; returns the upstream as the Admin API answered it."""
    status, up = sg.admin("POST", "/upstreams", {"name": upstream, **fields})
    assert status == 201, up
    for i, r in enumerate(replicas):
        target: dict[str, Any] = {"target": r.address}
        if weights is not None:
            target["weight"] = weights[i]
        status, body = sg.admin("POST", f"/upstreams/{upstream}/targets", target)
        assert status == 201, body
    status, body = sg.admin("PUT", "/services/llm", {"host": upstream, "port": 80, "protocol": "http",
                                                     "retries": retries, "read_timeout": read_timeout})
    assert status == 200, body
    status, body = sg.admin("PUT", "/routes/llm", {"paths": [ROUTE], "service": {"name": "llm"}})
    assert status == 200, body
    return dict(up)


def wait_routed(sg: Servegate, timeout: float = 10.0) -> None:
    """Until the proxy routes /lb to the upstream in every worker (a few requests answered 200)."""
    async def probe() -> bool:
        conns = [Client(sg.proxy_port) for _ in range(8)]
        try:
            res = await asyncio.gather(*(c.chat(stream=False) for c in conns), return_exceptions=True)
        finally:
            for c in conns:
                c.close()
        return all(isinstance(r, Response) and r.status == 200 for r in res)

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if asyncio.run(probe()):
            return
        time.sleep(0.1)
    raise AssertionError(f"/lb not routed within {timeout}s:\n{sg.log()[-3000:]}")


def upstream_health(sg: Servegate, upstream: str = "llm-pool") -> dict[str, str]:
    """target -> health from GET /upstreams/{u}/health."""
    status, body = sg.admin("GET", f"/upstreams/{upstream}/health")
    assert status == 200, body
    return {row["target"]: row["health"] for row in body["data"]}


class Gauges:
    """The node's open-request counts per address: the gauges `balancer|<upstream id>|<ip:port>` the workers
    keep in the node's shared values (`<prefix>/node-shared.shm`, one cell per process), summed, read the way
    any process of the node reads them (SharedState.items(), under a millisecond); read-only."""

    def __init__(self, sg: Servegate, upstream_id: str) -> None:
        from servegate.plugins.node.shared import FILE_NAME, SharedState

        assert sg.prefix
        self.state = SharedState(os.path.join(sg.prefix, FILE_NAME), 0, sg.workers + 1)
        self.head = f"balancer|{upstream_id}|"

    def __enter__(self) -> Gauges:
        return self

    def __exit__(self, *exc: object) -> None:
        self.state.close()

    def read(self) -> dict[str, float]:
        """address -> open requests on the node."""
        return {name[len(self.head):]: value for name, _kind, value in self.state.items()
                if name.startswith(self.head)}


# -- a raw keep-alive HTTP/1.1 client ---------------------------------------------------------------------
class Response:
    __slots__ = ("status", "headers", "body", "chunks")

    def __init__(self, status: int, headers: dict[str, str], body: bytes, chunks: int) -> None:
        self.status, self.headers, self.body, self.chunks = status, headers, body, chunks

    @property
    def replica(self) -> str | None:
        return self.headers.get("x-replica")

    def json(self) -> Any:
        return json.loads(self.body)


class Aborted(Exception):  # noqa: N818 - the client hung up on purpose
    """The client closed the connection mid-response (on purpose)."""


class Client:
    """One keep-alive connection to the proxy, reopened after an error or a `Connection: close`."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()
        self.reader = self.writer = None

    async def chat(self, *, stream: bool = True, chunks: int = 3, pace_ms: float = 0, messages: Any = None,
                   headers: dict[str, str] | None = None, abort_after: int | None = None,
                   on_head: Any = None) -> Response:
        body = {"model": "fake-model", "stream": stream, "max_tokens": chunks, "pace_ms": pace_ms,
                "messages": messages or [{"role": "user", "content": "hi"}]}
        return await self.request("POST", CHAT, json.dumps(body).encode(), headers, abort_after=abort_after,
                                  on_head=on_head)

    async def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None, *,
                      abort_after: int | None = None, on_head: Any = None) -> Response:
        """`abort_after`: hang up after that many body chunks of a chunked response (raises Aborted);
        `on_head(status, headers)` runs when the response head arrives."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        reader, writer = self.reader, self.writer
        assert reader is not None
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: lb.test\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\n{extra}\r\n".encode() + body)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            hdrs: dict[str, str] = {}
            for line in lines[1:]:
                if line:
                    k, _, v = line.partition(":")
                    hdrs[k.strip().lower()] = v.strip()
            if on_head is not None:
                on_head(status, hdrs)
            parts: list[bytes] = []
            n = 0
            if hdrs.get("transfer-encoding", "").lower() == "chunked":
                while True:
                    if abort_after is not None and n >= abort_after:
                        self.close()
                        raise Aborted
                    line = await reader.readline()
                    if not line:
                        raise ConnectionError("connection closed mid-response")
                    size = int(line.split(b";")[0], 16)
                    if size == 0:
                        while (await reader.readline()) not in (b"\r\n", b""):
                            pass
                        break
                    parts.append((await reader.readexactly(size + 2))[:-2])
                    n += 1
            elif "content-length" in hdrs:
                parts.append(await reader.readexactly(int(hdrs["content-length"])))
            else:
                parts.append(await reader.read())
                self.close()
        except BaseException:
            self.close()  # an error or a cancellation (timeout) mid-response: this connection is done
            raise
        if hdrs.get("connection", "").lower() == "close":
            self.close()
        return Response(status, hdrs, b"".join(parts), n)


def run(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


# -- closed-loop load ---------------------------------------------------------------------------------------
class Rec:
    """One request of a load loop: when it started, got its head, ended; which replica answered; its outcome."""

    __slots__ = ("t0", "t_head", "t1", "replica", "status", "ok", "error")

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.t_head = self.t1 = 0.0
        self.replica: str | None = None
        self.status = 0
        self.ok: bool | None = None
        self.error = ""

    def head(self, status: int, headers: dict[str, str]) -> None:
        self.status, self.replica, self.t_head = status, headers.get("x-replica"), time.monotonic()


class Load:
    """`loops` clients, each on its own keep-alive connection sending streamed chats back to back until
    `stop()`; every request is recorded (a success is a 200 whose stream ends with `data: [DONE]`)."""

    def __init__(self, port: int, loops: int, *, timeout: float = 10.0, **chat: Any) -> None:
        self.port, self.loops, self.timeout, self.chat = port, loops, timeout, chat
        self.records: list[Rec] = []
        self.stopping = False
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> Load:
        self.tasks = [asyncio.get_running_loop().create_task(self._loop()) for _ in range(self.loops)]
        return self

    async def stop(self) -> None:
        self.stopping = True
        await asyncio.gather(*self.tasks)

    async def _loop(self) -> None:
        client = Client(self.port)
        try:
            while not self.stopping:
                rec = Rec(time.monotonic())
                self.records.append(rec)
                try:
                    async with asyncio.timeout(self.timeout):
                        res = await client.chat(on_head=rec.head, **self.chat)
                    rec.ok = res.status == 200 and res.body.endswith(b"data: [DONE]\n\n")
                    if not rec.ok:
                        rec.error = f"{res.status} {res.body[-200:]!r}"
                except Exception as e:  # noqa: BLE001 - any failure is what the test counts
                    rec.ok, rec.error = False, repr(e)
                rec.t1 = time.monotonic()
        finally:
            client.close()

    def in_flight(self, t: float) -> list[Rec]:
        """The requests sent before `t` and not finished at `t`."""
        return [r for r in self.records if r.t0 <= t and (not r.t1 or r.t1 > t)]

    def failed(self) -> list[Rec]:
        return [r for r in self.records if r.ok is False]


async def burst(port: int, n: int, concurrency: int, **chat: Any) -> list[Response]:
    """`n` chats over `concurrency` keep-alive clients; the responses in completion order."""
    clients = [Client(port) for _ in range(concurrency)]
    out: list[Response] = []
    todo = iter(range(n))

    async def worker(client: Client) -> None:
        for _ in todo:
            out.append(await client.chat(**chat))

    try:
        async with asyncio.timeout(60):
            await asyncio.gather(*(worker(c) for c in clients))
    finally:
        for c in clients:
            c.close()
    return out
