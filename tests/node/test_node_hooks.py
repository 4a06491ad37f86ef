"""Node hooks through real processes: init_worker/shutdown_worker once per worker, timers, shared counters,
the status listener. The nodetest plugin (nodetest_plugin.py) records what each worker does into a file."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from node_support import events, get, listening_ports, node, wait_for

from support import free_port


def by_kind(evs: list[list[str]], kind: str) -> list[list[str]]:
    return [e for e in evs if e[0] == kind]


@pytest.mark.parametrize("workers", [1, 2])
def test_init_and_shutdown_run_once_per_worker_and_timers_stop_with_it(tmp_path, workers):
    sg = node(tmp_path, workers)
    with sg:
        # Every worker has ticked a few times (every 0.1 s) and its one-shot timer ran.
        wait_for(lambda: all(len([e for e in by_kind(events(sg), "tick") if e[1] == str(w)]) >= 3
                             for w in range(workers)))
        wait_for(lambda: len(by_kind(events(sg), "once")) == workers)
    assert sg.proc is not None and sg.proc.returncode == 0, sg.log()
    evs = events(sg)
    inits, shutdowns = by_kind(evs, "init"), by_kind(evs, "shutdown")
    assert sorted(e[1] for e in inits) == [str(w) for w in range(workers)]
    assert sorted(e[1:] for e in shutdowns) == sorted(e[1:] for e in inits)  # same worker, same pid
    assert len({e[2] for e in inits}) == workers  # one process each
    assert sorted(e[1] for e in by_kind(evs, "once")) == [str(w) for w in range(workers)]
    # The node-wide timer runs in worker 0 only.
    assert {e[1] for e in by_kind(evs, "nodewide")} == {"0"}
    # Timers are cancelled before shutdown_worker: no tick of a worker after its shutdown line.
    for _, wid, pid in shutdowns:
        after = evs[evs.index(["shutdown", wid, pid]):]
        assert not [e for e in after if e[0] in ("tick", "nodewide") and e[2] == pid]
    size = len(evs)
    time.sleep(0.4)
    assert len(events(sg)) == size  # nothing runs once the node has stopped


def test_reload_restarts_the_hooks_and_timers(tmp_path):
    sg = node(tmp_path)
    with sg:
        wait_for(lambda: by_kind(events(sg), "tick"))
        assert sg.proc is not None
        sg.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: len(by_kind(events(sg), "init")) == 2)
        mark = len(events(sg))
        wait_for(lambda: by_kind(events(sg)[mark:], "tick"))
    evs = events(sg)
    pid = str(sg.proc.pid)
    assert [e for e in evs if e[0] in ("init", "shutdown")] == [
        ["init", "0", pid], ["shutdown", "0", pid], ["init", "0", pid], ["shutdown", "0", pid]]
    first_shutdown = evs.index(["shutdown", "0", pid])
    second_init = evs.index(["init", "0", pid], first_shutdown)
    assert not by_kind(evs[first_shutdown:second_init], "tick")  # the old timers stopped before re-init
    assert len(by_kind(evs, "once")) == 2


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_init_worker_stops_start_up_naming_the_plugin(tmp_path, workers):
    sg = node(tmp_path, workers, NODETEST_FAIL_INIT="1")
    for name in ("proxy_port", "ssl_port", "admin_port"):
        setattr(sg, name, free_port())
    (tmp_path / "prefix").mkdir()
    r = subprocess.run([sys.executable, *sg.argv, "start"], env=sg.env(), capture_output=True, text=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 1, r.stdout + r.stderr
    errors = r.stderr.strip().splitlines()
    assert errors and all(line.startswith("Error: plugin nodetest init_worker failed: RuntimeError at "
                                          "nodetest_plugin.py:") for line in errors), r.stderr
    assert 1 <= len(errors) <= workers  # one line per worker that got that far (the master stops the rest)
    assert "Traceback" not in r.stdout + r.stderr
    assert "was told to fail" not in r.stdout + r.stderr  # the error's text is not logged, its place is


def _proxy_setup(sg) -> None:
    assert sg.admin("POST", "/services", {"name": "s", "url": "http://127.0.0.1:9/"})[0] == 201
    assert sg.admin("POST", "/services/s/routes", {"name": "r", "paths": ["/t"]})[0] == 201
    assert sg.admin("POST", "/plugins", {"name": "nodetest"})[0] == 201


def test_a_counter_bumped_in_two_workers_reads_as_the_sum_from_either(tmp_path):
    status_port = free_port()
    sg = node(tmp_path, 2, SERVEGATE_STATUS_LISTEN=f"127.0.0.1:{status_port}")
    with sg:
        _proxy_setup(sg)
        wait_for(lambda: get(sg.proxy_port, "/t")[0] == 200)  # both workers polled the change in
        time.sleep(0.6)
        base = json.loads(get(status_port, "/nodetest/counters")[2])["requests"]
        seen: dict[str, int] = {}
        sent = 0
        # Sequential requests on fresh connections: the kernel spreads them over both workers, and each
        # answer carries the node-wide total its worker read right after counting that request.
        while len(seen) < 2 or sent < 20:
            assert sent < 400, f"only worker(s) {sorted(seen)} answered"
            status, headers, _ = get(sg.proxy_port, "/t")
            sent += 1
            assert status == 200
            total = int(headers["x-nodetest-total"])
            assert total == base + sent
            seen[headers["x-nodetest-worker"]] = seen.get(headers["x-nodetest-worker"], 0) + 1
        assert set(seen) == {"0", "1"}
        # From the master (the status listener's process) too.
        status, _, body = get(status_port, "/nodetest/counters")
        assert status == 200
        data = json.loads(body)
        assert data["requests"] == base + sent
        assert data["init"] == 10 + 20  # worker 0 added 10, worker 1 added 20 in init_worker
        assert ["nodetest_init", "counter", 30.0] in data["items"]


def test_status_listen_is_off_by_default(tmp_path):
    sg = node(tmp_path)
    with sg:
        assert sg.proc is not None
        assert listening_ports(sg.proc.pid) == {sg.proxy_port, sg.ssl_port, sg.admin_port}
        assert "status listening" not in sg.log()


@pytest.mark.parametrize("workers", [1, 2])
def test_status_listen_serves_status_and_plugin_endpoints(tmp_path, workers):
    port = free_port()
    sg = node(tmp_path, workers, SERVEGATE_STATUS_LISTEN=f"127.0.0.1:{port}")
    with sg:
        assert sg.proc is not None
        assert listening_ports(sg.proc.pid) == {sg.proxy_port, sg.ssl_port, sg.admin_port, port}
        status, headers, body = get(port, "/status")
        assert status == 200
        assert headers["content-type"].startswith("application/json")
        data = json.loads(body)
        assert data["database"] == {"reachable": True}
        assert set(data["server"]) == {"connections_accepted", "connections_active", "connections_handled",
                                       "connections_reading", "connections_writing", "connections_waiting",
                                       "total_requests"}
        status, _, body = get(port, "/nodetest/counters")
        assert status == 200 and json.loads(body)["init"] == sum((w + 1) * 10 for w in range(workers))
        # Only /status and the plugins' status endpoints: the Admin API is not reachable there.
        status, _, body = get(port, "/services")
        assert status == 404 and json.loads(body) == {"message": "Not found"}
        assert get(port, "/status", "POST")[0] == 405
        # The Admin API does not serve status endpoints of plugins.
        assert sg.admin("GET", "/nodetest/counters")[0] == 404
