"""ProxyServer: binds the proxy listeners, runs the per-worker timeout sweep, stops gracefully."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import time
from typing import Any, Final

from servegate.proxy.accesslog import AccessLog
from servegate.proxy.balancer import Balancers
from servegate.proxy.client import ClientProtocol
from servegate.proxy.errorlog import loop_exception
from servegate.proxy.headers import TrustedIps
from servegate.proxy.prep import PrepCache
from servegate.proxy.upstream import UpstreamPool

monotonic: Final = time.monotonic  # bound once: compiled, an imported name is a dict lookup per call

# One coarse timer per worker replaces per-request and per-chunk timers (timeouts are checked at this period).
SWEEP_INTERVAL_S = 0.1
POOL_SWEEP_EVERY = 10  # sweeps
# Connections taken from one listener per readiness event. uvloop's server (libuv) accepts one connection per
# loop iteration; under load an iteration serves ~1000 ready streams and takes tens of ms, so a connect burst
# waited seconds in the accept queue. Accepting a batch here drains it the way nginx's workers do.
ACCEPT_BATCH: Final = 256

log = logging.getLogger(__name__)


class ProxyServer:
    def __init__(self, settings: Any, snapshot_holder: Any, *, health_checks: bool = True) -> None:
        self.settings = settings
        self.holder = snapshot_holder
        self.conns: set[ClientProtocol] = set()
        self.listeners: list[socket.socket] = []
        self.stopping = False
        self.header_timeout = float(getattr(settings, "client_header_timeout_s", 60))
        self.keepalive_timeout = float(getattr(settings, "keepalive_timeout_s", 75))
        self.max_header_bytes = int(getattr(settings, "client_max_header_bytes", 32768) or 32768)
        self.trusted_ips = TrustedIps(getattr(settings, "trusted_ips", None))
        self.real_ip_header = (getattr(settings, "real_ip_header", None) or "X-Real-IP").lower().encode()
        self.pool = UpstreamPool(
            int(getattr(settings, "upstream_keepalive_pool_size", 512)),
            float(getattr(settings, "upstream_keepalive_idle_timeout_s", 60)),
        )
        # Upstreams' balancers, kept across snapshots like the pool; worker 0 of a node runs the active checks.
        self.balancers = Balancers(checks=health_checks)
        self.preps = PrepCache(self.balancers)
        # Largest request body a plugin may read (Context.body / json_body); beyond it a 413.
        self.body_cap = int(getattr(settings, "client_body_buffer_size", 16 * 1024 * 1024))
        self.access_log = AccessLog(getattr(settings, "proxy_access_log", "stdout") or "off",
                                    getattr(settings, "proxy_access_log_format", "text"))
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self.upstream_ssl: Any = None
        self._sweep_handle: asyncio.TimerHandle | None = None
        self._sweeps = 0

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        if self.loop.get_exception_handler() is None:
            # asyncio's default handler writes exception texts, which may quote request bytes (API keys).
            self.loop.set_exception_handler(loop_exception)
        ssl_ctx = None
        for listen in self.settings.proxy_listen:
            ctx = None
            if listen.ssl:
                if ssl_ctx is None:
                    from servegate.proxy.tls import server_ssl_context

                    ssl_ctx = server_ssl_context(self.settings)
                ctx = ssl_ctx
            scheme = b"https" if listen.ssl else b"http"
            sock = _bind(listen.host, listen.port, getattr(listen, "reuseport", True))
            port = sock.getsockname()[1]
            self.loop.add_reader(sock.fileno(), self._accept, sock, scheme, port, ctx)
            self.listeners.append(sock)
        self._sweep_handle = self.loop.call_later(SWEEP_INTERVAL_S, self._sweep)
        # Everything loaded so far (modules, settings, the first snapshot) lives as long as the worker: keep it
        # out of the cyclic collector's full passes, which would otherwise rescan it while serving.
        gc.collect()
        gc.freeze()

    def upstream_tls(self) -> Any:
        """Client TLS context for https services, made on first use (loading the CA store costs ~2.5 MB and
        ~20 ms, which a node without https services never needs)."""
        ctx = self.upstream_ssl
        if ctx is None:
            from servegate.proxy.tls import upstream_ssl_context

            ctx = self.upstream_ssl = upstream_ssl_context()
        return ctx

    @property
    def ports(self) -> list[int]:
        return [s.getsockname()[1] for s in self.listeners]

    def _accept(self, sock: socket.socket, scheme: bytes, port: int, ssl_ctx: Any) -> None:
        loop = self.loop
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _addr = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                # EMFILE/ENFILE/ENOBUFS...: leave the rest queued; the next readiness event retries.
                log.error("accept() failed: %s", e)
                return
            conn.setblocking(False)
            task = loop.create_task(loop.connect_accepted_socket(
                lambda: ClientProtocol(self, scheme, port), conn, ssl=ssl_ctx))
            task.add_done_callback(_accepted)

    def _sweep(self) -> None:
        now = monotonic()
        for conn in list(self.conns):
            conn.check(now)
        self._sweeps += 1
        balancers = self.balancers
        if balancers.checks and self.holder.current is not balancers.snapshot and self.holder.current is not None:
            # The active checker follows the configuration without waiting for a request to its upstream.
            balancers.sync(self.holder.current)
        if self._sweeps % POOL_SWEEP_EVERY == 0:
            self.pool.sweep(now)
        self.access_log.flush()
        self._sweep_handle = self.loop.call_later(SWEEP_INTERVAL_S, self._sweep)

    async def stop(self, grace_s: float) -> None:
        """Stop accepting, let in-flight requests finish for up to grace_s, then close everything."""
        self.stopping = True
        for sock in self.listeners:
            self.loop.remove_reader(sock.fileno())
            sock.close()
        self.listeners = []
        for conn in list(self.conns):
            for ex in conn.queue:
                ex.keep_alive = False
            conn.close_if_idle()
        deadline = monotonic() + grace_s
        while self.conns and monotonic() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.conns):
            conn._close(abort=True)
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
        self.pool.close_all()
        self.balancers.stop_all()
        self.access_log.close()
        await asyncio.sleep(0)


def _accepted(task: asyncio.Task[Any]) -> None:
    # A failed TLS handshake or a peer gone before the transport was set up: nothing to answer, like the
    # listener's own accept path.
    if not task.cancelled():
        task.exception()


def _bind(host: str, port: int, reuseport: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuseport and hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind((host.strip("[]"), port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock
