"""One servegate node: Admin API, proxy worker(s), and the loop that keeps each worker's snapshot fresh.

With `workers = 1` everything runs in one process. With N > 1 the master process serves the Admin API and
forks N proxy workers that share the proxy listeners through SO_REUSEPORT; each worker polls the store's
config version and rebuilds its own snapshot, so a change made through any node reaches every worker.
Only this node's own processes share those ports: start-up owns the prefix's pid file and claims every listen
address first (servegate.pidfile, servegate.listeners). SIGHUP reloads the settings (see run_worker).
Plugins' node hooks (init_worker/shutdown_worker, timers, shared values: servegate.plugins.node) run in the
proxy workers; the status listener (status_listen) runs next to the Admin API.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from servegate.settings import Settings, SettingsError

if TYPE_CHECKING:
    from servegate.listeners import Holds

log = logging.getLogger("servegate")


class StartupError(RuntimeError):
    """A condition that stops start-up with one clear line (pending migrations, DB unreachable...)."""


LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "notice": logging.INFO, "warn": logging.WARNING,
          "error": logging.ERROR, "crit": logging.CRITICAL}


def setup_logging(level: str) -> None:
    """Log to stdout at `level` (called again on reload). `debug` is servegate's own debug lines: libraries
    (aiosqlite logs every query, asyncio its loop internals) stay at info, or a debug log is unreadable."""
    py_level = LEVELS[level]
    logging.basicConfig(stream=sys.stdout, format="%(asctime)s [%(levelname)s] %(name)s: %(message)s")
    logging.getLogger().setLevel(max(py_level, logging.INFO))
    logging.getLogger("servegate").setLevel(py_level)


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


async def start_admin(settings: Settings, store: Any, on_change: Any) -> Any:
    """The Admin API's server on settings.admin_listen (None when `admin_listen = off`); stop it with
    `await server.stop(grace_s)`."""
    if not settings.admin_listen:
        return None
    from servegate.admin import serve
    from servegate.listeners import address, describe

    try:
        server = await serve(store, settings, on_change=on_change)
    except OSError as e:  # taken since start-up's probe
        where = ", ".join(address(x) for x in settings.admin_listen)
        raise StartupError(f"cannot listen on {where} (admin_listen): {describe(e)}") from None
    log.info("admin API listening on %s", ", ".join(str(x) for x in settings.admin_listen))
    return server


async def start_status(settings: Settings, store: Any) -> Any:
    """The status listener on settings.status_listen (None when `status_listen = off`, the default)."""
    if not settings.status_listen:
        return None
    from servegate.admin.status import serve_status
    from servegate.listeners import address, describe

    try:
        server = await serve_status(store, settings)
    except OSError as e:  # taken since start-up's probe
        where = ", ".join(address(x) for x in settings.status_listen)
        raise StartupError(f"cannot listen on {where} (status_listen): {describe(e)}") from None
    log.info("status listening on %s", ", ".join(str(x) for x in settings.status_listen))
    return server


def configure_shared(settings: Settings, column: int) -> None:
    """Which cells of the node's shared values this process writes: worker i column i, the master the last."""
    from servegate.plugins.node import shared

    shared.configure(os.path.join(settings.prefix, shared.FILE_NAME), column, settings.workers + 1)
    from servegate.proxy.balancer import health

    health.configure(settings.prefix)


async def start_plugins(settings: Settings, store: Any, worker_id: int) -> Any:
    """The plugins' init_worker hooks for this worker (servegate.plugins.node); StartupError names the plugin."""
    from servegate.plugins import handlers
    from servegate.plugins.node import PluginInitError, Worker, start_worker

    worker = Worker(worker_id, settings.workers, settings, store)
    try:
        await start_worker(worker, handlers().values())
    except PluginInitError as e:
        raise StartupError(str(e)) from None
    return worker


async def restart_plugins(worker: Any, settings: Settings, store: Any) -> Any:
    """A reload, for plugins: timers cancelled, shutdown_worker, then init_worker with the new settings."""
    from servegate.plugins.node import Worker, stop_worker

    await stop_worker(worker)
    try:
        return await start_plugins(settings, store, worker.id)
    except StartupError as e:  # the node keeps serving; start_worker has already undone the others
        log.error("reload: %s; running without node hooks until the next reload", e)
        return Worker(worker.id, settings.workers, settings, store)


def settle_heap() -> None:
    """Before serving: collect once, then move every object alive now (modules, the start-up snapshot, plugin
    state: they live as long as the worker) out of the garbage collector's sight. A full collection scans every
    tracked object; a configuration change allocates new ones and so brings full collections sooner, and with
    10,000 routes one took 40 ms of the event loop. Objects frozen here are still freed by reference counting."""
    gc.collect()
    gc.freeze()


async def start_proxy(settings: Settings, holder: Any, worker_id: int = 0) -> Any:
    """A started ProxyServer on settings.proxy_listen; StartupError names the address it could not bind."""
    from servegate.listeners import address, describe
    from servegate.proxy.server import ProxyServer

    proxy = ProxyServer(settings, holder, health_checks=worker_id == 0)
    try:
        await proxy.start()
    except OSError as e:  # includes ssl.SSLError (a certificate that does not load)
        failed = settings.proxy_listen[min(len(proxy.listeners), len(settings.proxy_listen) - 1)]
        await proxy.stop(0)
        if e.errno in BIND_ERRORS and e.strerror:
            raise StartupError(f"cannot listen on {address(failed)} (proxy_listen): {describe(e)}") from None
        raise StartupError(f"cannot start the proxy on {address(failed)}: {e}") from None
    return proxy


BIND_ERRORS = (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES, errno.EAFNOSUPPORT)


# Settings a reload cannot apply: the store connection, the Admin API's listeners and the process layout
# are set up once. A reload keeps their running values and says so.
RESTART_ONLY = ("prefix", "database", "sqlite_path", "pg_host", "pg_port", "pg_user", "pg_password",
                "pg_password_file", "pg_database", "pg_timeout", "pg_ssl", "admin_listen", "status_listen",
                "workers")

Reread = Callable[[], Settings]


def reread_settings(reread: Reread | None, current: Settings, *, report: bool) -> Settings | None:
    """The settings a reload applies (restart-only ones kept from `current`), or None when they do not load.
    `report`: log what is refused or ignored (the process serving the Admin API does; its workers need not)."""
    if reread is None:
        return None
    try:
        new = reread()
    except SettingsError as e:
        if report:
            log.error("reload refused: %s; keeping the running configuration", e)
        return None
    changed = [name for name in RESTART_ONLY if getattr(new, name) != getattr(current, name)]
    if changed and report:
        # Names only: values may be secrets (pg_password).
        log.warning("reload: %s changed; that takes effect on restart", ", ".join(changed))
    return dataclasses.replace(new, **{name: getattr(current, name) for name in changed})


def _signals() -> asyncio.Queue[str]:
    """"stop" on SIGTERM/SIGINT, "reload" on SIGHUP."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str] = asyncio.Queue()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, queue.put_nowait, "stop")
    loop.add_signal_handler(signal.SIGHUP, queue.put_nowait, "reload")
    return queue


async def run_worker(settings: Settings, *, with_admin: bool, reread: Reread | None = None,
                     holds: Holds | None = None, worker_id: int = 0) -> None:
    """A proxy worker (and, for a single-process node, the Admin API too).

    A reload (SIGHUP) re-reads the settings and opens a fresh set of proxy listeners with them next to the
    old ones (SO_REUSEPORT), then closes the old listeners: requests and streams already open finish on the
    old server (up to graceful_timeout), new connections get the new settings. The store, the snapshot and the
    Admin API stay as they are; plugins restart their node hooks (restart_plugins). `holds`: the node's port
    holds, when this process owns them (workers = 1). `worker_id`: 0..workers-1.
    """
    from servegate.plugins import load_all
    from servegate.snapshot import Caches, SnapshotHolder, load_snapshot
    from servegate.snapshot import stats as cache_stats
    from servegate.snapshot.feed import SnapshotFeed
    from servegate.snapshot.source import StoreSource

    load_all(settings.plugins)  # handlers must be registered before the first snapshot indexes plugin rows
    configure_shared(settings, worker_id)
    signals = _signals()
    store = await open_ready_store(settings)
    caches = Caches(StoreSource(store), settings.lookup_cache_size)
    holder = SnapshotHolder(await load_snapshot(store, caches=caches))
    feed = SnapshotFeed(store, holder, settings.db_update_frequency, on_tick=lambda snap: cache_stats.publish(snap.caches))
    feed.start()
    worker = await start_plugins(settings, store, worker_id)  # before any request reaches this worker
    # A write through this process's Admin API reaches its proxy before the write is answered: its events
    # are applied at once (the other workers and nodes poll them).
    admin = await start_admin(settings, store, feed.refresh) if with_admin else None
    status = await start_status(settings, store) if with_admin else None
    settle_heap()
    proxy = await start_proxy(settings, holder, worker_id)
    log.info("proxy listening on %s (pid %d)", ", ".join(str(x) for x in settings.proxy_listen), os.getpid())
    draining: set[asyncio.Task[None]] = set()
    while await signals.get() == "reload":
        new = reread_settings(reread, settings, report=with_admin)
        if new is None or not _hold_for_reload(holds, new):
            continue
        try:
            fresh = await start_proxy(new, holder, worker_id)
        except Exception as e:  # a bad certificate, an address taken meanwhile: keep serving as before
            log.error("reload: cannot start the proxy with the new settings (%s); keeping the running one", e)
            continue
        setup_logging(new.log_level)
        feed.interval = new.db_update_frequency
        old, proxy, settings = proxy, fresh, new
        worker = await restart_plugins(worker, settings, store)
        task = asyncio.get_running_loop().create_task(old.stop(settings.graceful_timeout))
        draining.add(task)
        task.add_done_callback(draining.discard)
        log.info("reloaded (pid %d): open connections finish on the previous settings", os.getpid())
    log.info("stopping: finishing in-flight requests (up to %ss)", settings.graceful_timeout)
    for server in (admin, status):
        if server is not None:
            await server.stop(settings.graceful_timeout)
    await proxy.stop(settings.graceful_timeout)
    if draining:
        await asyncio.gather(*draining)
    from servegate.plugins.node import stop_worker

    await stop_worker(worker)  # after the last request's log phase
    await feed.stop()
    await store.close()


async def run_master(settings: Settings, children: list[int], reread: Reread | None = None,
                     holds: Holds | None = None) -> int:
    """Admin API only; workers serve the proxy. Forwards a reload to the workers; stops them when stopped.
    Returns the node's exit code: 1 when a worker died."""
    failed = False
    configure_shared(settings, settings.workers)
    signals = _signals()
    store = await open_ready_store(settings)
    admin = await start_admin(settings, store, _noop)
    status = await start_status(settings, store)

    async def watch_children() -> None:
        nonlocal failed
        # Polled rather than a SIGCHLD handler: uvloop keeps SIGCHLD for itself.
        # A worker that dies unexpectedly brings the node down; a supervisor (Docker, systemd) restarts it.
        while True:
            for pid in list(children):
                with contextlib.suppress(ChildProcessError):
                    done, status = os.waitpid(pid, os.WNOHANG)
                    if done:
                        failed = True
                        children.remove(pid)
                        log.error("worker %d exited (status %d); stopping", pid, status)
                        signals.put_nowait("stop")
            await asyncio.sleep(0.5)

    watcher = asyncio.get_running_loop().create_task(watch_children())
    while await signals.get() == "reload":
        # Checked here first so that a bad file is reported once, not by every worker.
        new = reread_settings(reread, settings, report=True)
        if new is None or not _hold_for_reload(holds, new):
            continue
        setup_logging(new.log_level)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGHUP)
        log.info("reload: signalled %d worker(s)", len(children))
    watcher.cancel()
    stop_children(children)
    for server in (admin, status):
        if server is not None:
            await server.stop(settings.graceful_timeout)
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
    return 1 if failed else 0


def _hold_for_reload(holds: Holds | None, new: Settings) -> bool:
    """Claim the proxy addresses a reload adds (as start-up does); False (logged) when one is taken."""
    if holds is None:
        return True
    from servegate.listeners import ListenError

    try:
        holds.update(new)
    except ListenError as e:
        log.error("reload refused: %s; keeping the running configuration", e)
        return False
    return True


def stop_children(children: list[int]) -> None:
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


async def _noop() -> None:
    return None


def prepare_prefix(settings: Settings) -> None:
    """Work that must happen once per node, before any fork (shared files under prefix); `servegate prepare`
    runs it alone."""
    Path(settings.prefix).mkdir(parents=True, exist_ok=True)
    if any(listen.ssl for listen in settings.proxy_listen + settings.admin_listen):
        from servegate.proxy.tls import ensure_certificate

        ensure_certificate(settings)
    with contextlib.suppress(ImportError):
        from servegate.plugins import prepare_node

        prepare_node(settings)


def _error(message: str) -> int:
    print(f"Error: {message}", file=sys.stderr)
    return 1


def start(settings: Settings, reread: Reread | None = None) -> int:
    """`servegate start`: runs in the foreground until SIGTERM/SIGINT; SIGHUP reloads (`reread` gives the new
    settings). Returns the exit code.

    Order matters: nothing under the prefix and no port is touched before this node owns the prefix's pid
    file, and no listener is opened before every listen address is known to be free.
    """
    from servegate.listeners import Holds, ListenError
    from servegate.pidfile import AlreadyRunning, PidFile
    from servegate.plugins import PluginLoadError, load_all

    setup_logging(settings.log_level)
    lock = PidFile(settings.prefix)
    try:
        Path(settings.prefix).mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except AlreadyRunning as e:
        return _error(f"{e} at {settings.prefix}")
    except OSError as e:
        return _error(f"cannot use the prefix {settings.prefix}: {e.strerror}")
    holds = Holds()
    try:
        # Until the event loop handles it, a reload request must not kill a starting node or worker.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        load_all(settings.plugins)  # before the fork: a plugin that cannot load stops start-up once
        # Bootstrap or refuse before forking, so a pending migration is reported once and nothing starts.
        asyncio.run(_check_database(settings))
        holds.claim(settings)
        prepare_prefix(settings)
        from servegate.plugins.node import shared

        shared.reset(settings.prefix)  # this node's shared values count from its start
        from servegate.proxy.balancer import health

        health.reset(settings.prefix)  # and its targets' health starts unknown
        if settings.workers == 1:
            install_event_loop_policy()
            asyncio.run(run_worker(settings, with_admin=True, reread=reread, holds=holds))
            return 0
        children: list[int] = []
        for worker_id in range(settings.workers):
            pid = os.fork()
            if pid == 0:
                _worker_main(settings, reread, holds, worker_id)
            children.append(pid)
        # The master (Admin API, worker supervision) stays on asyncio's own loop: uvloop is only imported by
        # the workers, which keeps it out of the master's memory (the Admin API is not on the hot path).
        try:
            return asyncio.run(run_master(settings, children, reread, holds))
        except BaseException:
            stop_children(children)
            raise
    except (StartupError, ListenError, PluginLoadError) as e:
        return _error(str(e))
    finally:
        holds.close()
        lock.release()


def _worker_main(settings: Settings, reread: Reread | None, holds: Holds, worker_id: int) -> None:
    """A forked worker's whole life; never returns."""
    code = 0
    # The master keeps the holds (and releases one when a reload drops its address): a copy kept here would
    # keep that port bound for as long as this worker lives.
    holds.close()
    try:
        install_event_loop_policy()
        asyncio.run(run_worker(settings, with_admin=False, reread=reread, worker_id=worker_id))
    except StartupError as e:
        code = _error(str(e))
    except BaseException:
        log.exception("worker failed")
        code = 1
    finally:
        os._exit(code)


async def _check_database(settings: Settings) -> None:
    store = await open_ready_store(settings)
    await store.close()
