"""The shared-values table and the timers on their own (the node tests drive them through real workers)."""

from __future__ import annotations

import asyncio
import logging
import os
import time

import pytest

from servegate.plugins.node import shared
from servegate.plugins.node.shared import SharedState
from servegate.plugins.node.timers import Timers


def test_cells_per_process_and_sums_across_them(tmp_path):
    path = str(tmp_path / "node-shared.shm")
    a, b = SharedState(path, 0, 3), SharedState(path, 2, 3)
    try:
        ca, cb = shared.Counter(a, a.slot("hits", shared.COUNTER)), shared.Counter(b, b.slot("hits", shared.COUNTER))
        ca.add()
        ca.add(2)
        cb.add(10)
        assert ca.value() == cb.value() == 13
        assert ca.values() == [3.0, 0.0, 10.0]
        ga, gb = shared.Gauge(a, a.slot("open", shared.GAUGE)), shared.Gauge(b, b.slot("open", shared.GAUGE))
        ga.set(4)
        gb.set(1)
        gb.set(2)  # a gauge is this process's current value, not a sum of sets
        assert ga.value() == 6 and max(ga.values()) == 4
        assert a.items() == [("hits", "counter", 13.0), ("open", "gauge", 6.0)]
        with pytest.raises(ValueError, match="'hits' is a counter, not a gauge"):
            b.slot("hits", shared.GAUGE)
        with pytest.raises(ValueError, match="1 to 248 UTF-8 bytes"):
            a.slot("x" * 249, shared.COUNTER)
        with pytest.raises(ValueError, match="1 to 248"):
            a.slot("", shared.COUNTER)
    finally:
        a.close()
        b.close()


def test_a_name_added_in_another_process_is_found_not_added_twice(tmp_path):
    path = str(tmp_path / "node-shared.shm")
    pid = os.fork()
    if pid == 0:
        child = SharedState(path, 1, 2)
        shared.Counter(child, child.slot("from-child", shared.COUNTER)).add(5)
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    parent = SharedState(path, 0, 2)
    try:
        c = shared.Counter(parent, parent.slot("from-child", shared.COUNTER))
        c.add()
        assert c.values() == [1.0, 5.0]
        assert [name for name, _, _ in parent.items()] == ["from-child"]
    finally:
        parent.close()


def test_an_increment_costs_well_under_a_microsecond(tmp_path):
    state = SharedState(str(tmp_path / "node-shared.shm"), 0, 2)
    try:
        c = shared.Counter(state, state.slot("hot", shared.COUNTER))
        n = 20000
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(n):
                c.add()
            best = min(best, (time.perf_counter() - started) / n)
        assert best < 1e-6, f"{best * 1e9:.0f} ns per increment"
        assert c.value() == 5 * n
    finally:
        state.close()


async def test_timers_repeat_survive_a_failing_run_and_stop_when_cancelled(caplog):
    timers = Timers(worker_id=1)
    runs: list[str] = []

    async def flaky() -> None:
        runs.append("flaky")
        if runs.count("flaky") == 1:
            raise KeyError("secret-value")

    with caplog.at_level(logging.ERROR, logger="servegate.plugins"):
        every = timers.every(0.02, flaky, name="flaky")
        once = timers.after(0.01, lambda: runs.append("once"))
        skipped = timers.every(0.01, lambda: runs.append("node-wide"), node_wide=True)  # worker 1: inactive
        await asyncio.sleep(0.15)
        assert every.active and not once.active and not skipped.active
        await timers.cancel_all()
    assert not every.active and timers.running == 0
    assert runs.count("once") == 1 and runs.count("flaky") >= 3 and "node-wide" not in runs
    count = len(runs)
    await asyncio.sleep(0.05)
    assert len(runs) == count
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("timer flaky failed: KeyError at test_shared_and_timers.py:")
    assert "secret-value" not in lines[0]
    with pytest.raises(ValueError):
        timers.every(0, flaky)
