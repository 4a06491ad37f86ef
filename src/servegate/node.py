"""One servegate node: Admin API, proxy worker(s), and the loop that keeps each worker's snapshot fresh.

With `workers = 1` everything runs in one process. With N > 1 the master process serves the Admin API and
forks N proxy workers that share the proxy listeners through SO_REUSEPORT; each worker polls the store's
config version and rebuilds its own snapshot, so a change made through any node reaches every worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from servegate.settings import Settings

log = logging.getLogger("servegate")


class StartupError(RuntimeError):
    """A condition that stops start-up with one clear line (pending migrations, DB unreachable...)."""


def setup_logging(level: str) -> None:
    py_level = {"debug": logging.DEBUG, "info": logging.INFO, "notice": logging.INFO, "warn": logging.WARNING,
                "error": logging.ERROR, "crit": logging.CRITICAL}[level]
    logging.basicConfig(stream=sys.stdout, level=py_level, format="%(asctime)s [%(levelname)s] %(name)s: %(message)s")


def install_event_loop_policy() -> None:
    try:
        import uvloop
    except ImportError:  # uvloop is optional on platforms without it
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def open_ready_store(settings: Settings) -> Any:
    """Connect, bootstrap an empty database, refuse to run on pending migrations."""
    from servegate.store import open_store

    store = open_store(settings)
    try:
        await store.connect()
    except Exception as e:  # connection errors vary by driver; report them as one line
        raise StartupError(f"cannot connect to the {settings.database} database: {e}") from None
    state = await store.state()
    if not state.bootstrapped:
        log.info("database is empty: bootstrapping")
        await store.bootstrap()
    elif state.new:
        await store.close()
        raise StartupError(
            f"the database needs new migrations ({', '.join(state.new)}): run 'servegate migrations up'"
        )
    elif state.pending:
        log.warning("migrations %s wait for 'servegate migrations finish'", ", ".join(state.pending))
    return store


class SnapshotFeed:
    """Keeps a worker's snapshot in step with the store's config version."""

    def __init__(self, store: Any, holder: Any, interval: float) -> None:
        self.store, self.holder, self.interval = store, holder, interval
        self._task: asyncio.Task[None] | None = None

    async def refresh(self, force: bool = False) -> None:
        started = time.perf_counter()
        if await self.holder.refresh(self.store, force=force):
            log.debug("snapshot v%s built in %.1f ms", self.holder.current.version,
                      (time.perf_counter() - started) * 1000)

    async def _poll(self) -> None:
        # Every failure keeps the last snapshot serving. A failure is logged once when it starts and once when
        # polling works again, not every `interval` (4 lines a second): one warning line, no traceback, and
        # only the driver's short reason or the error's type and place, never values that could carry secrets.
        from servegate.store.outage import StoreUnavailable

        failing: str | None = None
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.refresh()
            except StoreUnavailable as e:
                if failing != "database":
                    log.warning("%s: serving the last configuration (v%s) until it is back", e.message,
                                self.holder.current.version)
                failing = "database"
                continue
            except Exception as e:
                kind = self._failure_kind(e)
                if failing != kind:
                    log.error("cannot refresh configuration (%s); serving the last configuration (v%s)", kind,
                              self.holder.current.version)
                failing = kind
                continue
            if failing is not None:
                log.info("configuration polling works again%s", ": database reachable" if failing == "database" else "")
                failing = None

    @staticmethod
    def _failure_kind(exc: BaseException) -> str:
        """Type and innermost place of an unexpected error (its text may quote configuration values)."""
        import traceback

        frames = traceback.extract_tb(exc.__traceback__)
        where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
        return type(exc).__name__ + where

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._poll())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def start_admin(settings: Settings, store: Any, on_change: Any) -> Any:
    """The Admin API's server on settings.admin_listen (None when `admin_listen = off`); stop it with
    `await server.stop(grace_s)`."""
    if not settings.admin_listen:
        return None
    from servegate.admin import serve

    server = await serve(store, settings, on_change=on_change)
    log.info("admin API listening on %s", ", ".join(str(x) for x in settings.admin_listen))
    return server


def _stop_event() -> asyncio.Event:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def run_worker(settings: Settings, *, with_admin: bool) -> None:
    """A proxy worker (and, for a single-process node, the Admin API too)."""
    from servegate.plugins import load_all
    from servegate.proxy.server import ProxyServer
    from servegate.snapshot import SnapshotHolder, load_snapshot

    load_all()  # plugin handlers must be registered before the first snapshot indexes plugin rows
    stop = _stop_event()
    store = await open_ready_store(settings)
    holder = SnapshotHolder(await load_snapshot(store))
    feed = SnapshotFeed(store, holder, settings.db_update_frequency)
    feed.start()
    admin = await start_admin(settings, store, lambda: feed.refresh(force=True)) if with_admin else None
    proxy = ProxyServer(settings, holder)
    await proxy.start()
    log.info("proxy listening on %s (pid %d)", ", ".join(str(x) for x in settings.proxy_listen), os.getpid())
    await stop.wait()
    log.info("stopping: finishing in-flight requests (up to %ss)", settings.graceful_timeout)
    if admin is not None:
        await admin.stop(settings.graceful_timeout)
    await proxy.stop(settings.graceful_timeout)
    await feed.stop()
    await store.close()


async def run_master(settings: Settings, children: list[int]) -> None:
    """Admin API only; workers serve the proxy. Stops the workers when stopped."""
    stop = _stop_event()
    store = await open_ready_store(settings)
    admin = await start_admin(settings, store, _noop)

    async def watch_children() -> None:
        # Polled rather than a SIGCHLD handler: uvloop keeps SIGCHLD for itself.
        # A worker that dies unexpectedly brings the node down; a supervisor (Docker, systemd) restarts it.
        while not stop.is_set():
            for pid in list(children):
                with contextlib.suppress(ChildProcessError):
                    done, status = os.waitpid(pid, os.WNOHANG)
                    if done:
                        children.remove(pid)
                        log.error("worker %d exited (status %d); stopping", pid, status)
                        stop.set()
            await asyncio.sleep(0.5)

    watcher = asyncio.get_running_loop().create_task(watch_children())
    await stop.wait()
    watcher.cancel()
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    if admin is not None:
        await admin.stop(settings.graceful_timeout)
    await store.close()
    deadline = time.monotonic() + settings.graceful_timeout + 5
    for pid in children:
        while time.monotonic() < deadline:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                break
            if done:
                break
            await asyncio.sleep(0.05)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


async def _noop() -> None:
    return None


def _prepare(settings: Settings) -> None:
    """Work that must happen once per node, before any fork (shared files under prefix)."""
    Path(settings.prefix).mkdir(parents=True, exist_ok=True)
    if any(listen.ssl for listen in settings.proxy_listen + settings.admin_listen):
        from servegate.proxy.tls import ensure_certificate

        ensure_certificate(settings)
    with contextlib.suppress(ImportError):
        from servegate.plugins import prepare_node

        prepare_node(settings)


def pid_file(settings: Settings) -> Path:
    return Path(settings.prefix) / "servegate.pid"


def start(settings: Settings) -> int:
    """`servegate start`: runs in the foreground until SIGTERM/SIGINT. Returns the exit code."""
    setup_logging(settings.log_level)
    _prepare(settings)
    # Bootstrap or refuse before forking, so a pending migration is reported once and nothing starts.
    try:
        asyncio.run(_check_database(settings))
    except StartupError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    pid_file(settings).write_text(str(os.getpid()))
    try:
        if settings.workers == 1:
            install_event_loop_policy()
            asyncio.run(run_worker(settings, with_admin=True))
            return 0
        children: list[int] = []
        for _ in range(settings.workers):
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    install_event_loop_policy()
                    asyncio.run(run_worker(settings, with_admin=False))
                except BaseException:
                    log.exception("worker failed")
                    code = 1
                finally:
                    os._exit(code)
            children.append(pid)
        # The master (Admin API, worker supervision) stays on asyncio's own loop: uvloop is only imported by
        # the workers, which keeps it out of the master's memory (the Admin API is not on the hot path).
        asyncio.run(run_master(settings, children))
        return 0
    except StartupError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    finally:
        with contextlib.suppress(OSError):
            if pid_file(settings).read_text() == str(os.getpid()):
                pid_file(settings).unlink()


async def _check_database(settings: Settings) -> None:
    store = await open_ready_store(settings)
    await store.close()
