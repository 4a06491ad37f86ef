"""Node hooks for plugins: per-worker init and shutdown, timers, values shared by the node's processes.

A worker process (servegate.node.run_worker) builds one `Worker` after its event loop and store are up and
before its proxy listeners open, and calls every loaded plugin's `init_worker(worker)` in PRIORITY order
(highest first, as Kong). When it stops it cancels the worker's timers, then calls `shutdown_worker(worker)`
in the same order. A hook returns None or an awaitable; the worker waits for it.

- A failing `init_worker` stops the worker: the error names the plugin and start-up ends with one line and
  exit 1 (a reload that fails the same way is logged; the worker serves on without node hooks).
- A failing `shutdown_worker` is logged; the other plugins' hooks still run. Each gets `SHUTDOWN_TIMEOUT_S`.
- A reload (SIGHUP) is, for plugins, what a Kong reload's fresh workers are: timers cancelled,
  `shutdown_worker`, then `init_worker` with the new settings; shared values are kept.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
from collections.abc import Iterable
from typing import Any

from servegate.plugins.base import Plugin
from servegate.plugins.node import shared
from servegate.plugins.node.timers import Callback, Timer, Timers, failure_kind

__all__ = ["SHUTDOWN_TIMEOUT_S", "PluginInitError", "Timer", "Worker", "ordered", "shared", "start_worker",
           "stop_worker"]

log = logging.getLogger("servegate.plugins")

SHUTDOWN_TIMEOUT_S = 10.0


class PluginInitError(RuntimeError):
    """A plugin's init_worker failed; the message names the plugin and the error's type and place."""


class Worker:
    """What `init_worker` / `shutdown_worker` receive: this worker's identity, its timers, the node's shared
    values. `id` counts from 0 (Kong's `ngx.worker.id()`), `count` is the node's number of workers."""

    def __init__(self, worker_id: int, count: int, settings: Any, store: Any = None) -> None:
        self.id = worker_id
        self.count = count
        self.settings = settings
        self.store = store
        self.pid = os.getpid()
        self.timers = Timers(worker_id)
        self.started: list[Plugin] = []

    def every(self, interval: float, callback: Callback, *, name: str = "", node_wide: bool = False) -> Timer:
        return self.timers.every(interval, callback, name=name, node_wide=node_wide)

    def after(self, delay: float, callback: Callback, *, name: str = "", node_wide: bool = False) -> Timer:
        return self.timers.after(delay, callback, name=name, node_wide=node_wide)

    @staticmethod
    def counter(name: str) -> shared.Counter:
        return shared.counter(name)

    @staticmethod
    def gauge(name: str) -> shared.Gauge:
        return shared.gauge(name)


def ordered(plugins: Iterable[Plugin]) -> list[Plugin]:
    return sorted(plugins, key=lambda p: (-p.PRIORITY, p.name))


async def _call(hook: Any, worker: Worker) -> None:
    result = hook(worker)
    if inspect.isawaitable(result):
        await result


async def start_worker(worker: Worker, plugins: Iterable[Plugin]) -> None:
    """Run every plugin's init_worker; on a failure, undo (timers, shutdown of the plugins already
    started) and raise PluginInitError."""
    for plugin in ordered(plugins):
        if plugin.init_worker is not None:
            try:
                await _call(plugin.init_worker, worker)
            except Exception as e:
                await stop_worker(worker)
                raise PluginInitError(f"plugin {plugin.name} init_worker failed: {failure_kind(e)}") from None
        worker.started.append(plugin)


async def stop_worker(worker: Worker) -> None:
    """Cancel the worker's timers, then run shutdown_worker of every started plugin."""
    await worker.timers.cancel_all()
    started, worker.started = worker.started, []
    for plugin in started:
        if plugin.shutdown_worker is None:
            continue
        try:
            await asyncio.wait_for(_call(plugin.shutdown_worker, worker), SHUTDOWN_TIMEOUT_S)
        except TimeoutError:
            log.error("plugin %s shutdown_worker took over %ss; abandoned", plugin.name, SHUTDOWN_TIMEOUT_S)
        except Exception as e:
            log.error("plugin %s shutdown_worker failed: %s", plugin.name, failure_kind(e))
