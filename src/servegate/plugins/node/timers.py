"""Timers a plugin starts from `init_worker` (Kong's `ngx.timer.every` / `ngx.timer.at`).

Each timer is one asyncio task of the worker's event loop: nothing runs per request. A callback is a
function of no arguments returning None or an awaitable; a failing run is logged with the timer's name and
the timer goes on. `node_wide=True` runs the timer in worker 0 only (health checks, pushes: jobs one node does
once); elsewhere the call returns an inactive timer. The worker cancels every timer on stop and on reload,
before the plugins' `shutdown_worker` hooks run.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import traceback
from collections.abc import Awaitable, Callable

log = logging.getLogger("servegate.plugins")

Callback = Callable[[], Awaitable[None] | None]


class Timer:
    """A handle on one timer; `cancel()` stops it (a run in progress is cancelled too)."""

    __slots__ = ("name", "_task")

    def __init__(self, name: str, task: asyncio.Task[None] | None) -> None:
        self.name = name
        self._task = task

    @property
    def active(self) -> bool:
        return self._task is not None and not self._task.done()

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()


class Timers:
    """The timers of one worker process."""

    def __init__(self, worker_id: int) -> None:
        self.worker_id = worker_id
        self._tasks: set[asyncio.Task[None]] = set()

    def every(self, interval: float, callback: Callback, *, name: str = "", node_wide: bool = False) -> Timer:
        """Run `callback` every `interval` seconds (first run after one interval). Runs never overlap: a run
        that takes longer than `interval` delays the next one."""
        if not interval > 0:
            raise ValueError("a timer interval must be > 0")
        return self._start(name or _name_of(callback), callback, interval, True, node_wide)

    def after(self, delay: float, callback: Callback, *, name: str = "", node_wide: bool = False) -> Timer:
        """Run `callback` once, `delay` seconds from now."""
        if not delay >= 0:
            raise ValueError("a timer delay must be >= 0")
        return self._start(name or _name_of(callback), callback, delay, False, node_wide)

    def _start(self, name: str, callback: Callback, delay: float, repeat: bool, node_wide: bool) -> Timer:
        if node_wide and self.worker_id != 0:
            return Timer(name, None)
        task = asyncio.get_running_loop().create_task(_run(name, callback, delay, repeat), name=f"timer {name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return Timer(name, task)

    @property
    def running(self) -> int:
        return len(self._tasks)

    async def cancel_all(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _run(name: str, callback: Callback, delay: float, repeat: bool) -> None:
    loop = asyncio.get_running_loop()
    due = loop.time() + delay
    while True:
        await asyncio.sleep(max(due - loop.time(), 0))
        try:
            result = callback()
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.error("timer %s failed: %s", name, failure_kind(e))
        if not repeat:
            return
        due = max(due + delay, loop.time())


def failure_kind(exc: BaseException) -> str:
    """Type and innermost place of a plugin's error, not its text (which may quote configuration values)."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno}" if frames else ""
    return type(exc).__name__ + where


def _name_of(callback: Callback) -> str:
    return getattr(callback, "__qualname__", None) or repr(callback)
