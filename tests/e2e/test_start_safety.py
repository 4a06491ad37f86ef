"""A second `servegate start` must never disturb a running node, and a taken port is one clear line.

Real processes throughout: a first node started by the test harness, then `servegate start` run again the way an
operator would, with the same prefix or the same ports.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import Servegate
from support import free_port


def unstarted(**kw: object) -> Servegate:
    """A node's settings (free ports filled in) without starting it."""
    sg = Servegate(**kw)  # type: ignore[arg-type]
    sg.proxy_port = sg.proxy_port or free_port()
    sg.ssl_port = sg.ssl_port or free_port()
    sg.admin_port = sg.admin_port or free_port()
    return sg


def second_start(sg: Servegate, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "servegate", "start"], env=sg.env(), capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def assert_healthy(first: Servegate) -> None:
    """The first node still runs, answers on both ports, and its pid file still names it."""
    assert first.proc is not None and first.proc.poll() is None
    assert first.admin("GET", "/status")[0] == 200
    assert first._proxy_up()
    assert (Path(first.prefix or "") / "servegate.pid").read_text().strip() == str(first.proc.pid)
    r = subprocess.run([sys.executable, "-m", "servegate", "health"], env=first.env(), capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr


def one_error_line(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_second_start_with_the_same_prefix_and_ports_is_refused(tmp_path):
    with Servegate(prefix=str(tmp_path)) as first:
        again = Servegate(prefix=first.prefix, proxy_port=first.proxy_port, ssl_port=first.ssl_port,
                          admin_port=first.admin_port)
        line = one_error_line(second_start(again))
        assert line == f"Error: servegate is already running (pid {first.proc.pid}) at {tmp_path}"
        assert_healthy(first)


def test_second_start_with_the_same_prefix_and_other_ports_is_refused(tmp_path):
    with Servegate(prefix=str(tmp_path)) as first:
        line = one_error_line(second_start(unstarted(prefix=first.prefix)))
        assert f"already running (pid {first.proc.pid})" in line
        assert_healthy(first)
        # It bound nothing: the proxy port of the first node is the only one answering.
        assert first._proxy_up()


def test_taken_admin_port_is_one_line_and_leaves_the_first_node_alone(tmp_path):
    with Servegate(prefix=str(tmp_path / "a")) as first:
        other = unstarted(prefix=str(tmp_path / "b"), admin_port=first.admin_port)
        line = one_error_line(second_start(other))
        assert line == (f"Error: cannot listen on 127.0.0.1:{first.admin_port} (admin_listen): "
                        "address already in use")
        assert_healthy(first)
        assert not (tmp_path / "b" / "servegate.pid").exists()


@pytest.mark.parametrize("workers", [1, 2])
def test_second_node_on_the_same_proxy_port_fails_instead_of_sharing(tmp_path, workers):
    with Servegate(prefix=str(tmp_path / "a"), workers=workers) as first:
        other = unstarted(prefix=str(tmp_path / "b"), proxy_port=first.proxy_port, workers=workers)
        line = one_error_line(second_start(other))
        assert line == (f"Error: cannot listen on 127.0.0.1:{first.proxy_port} (proxy_listen): "
                        "address already in use")
        assert_healthy(first)


def test_port_taken_by_another_program(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        sg = unstarted(prefix=str(tmp_path), proxy_port=port)
        line = one_error_line(second_start(sg))
        assert line == f"Error: cannot listen on 127.0.0.1:{port} (proxy_listen): address already in use"
    assert not (tmp_path / "servegate.pid").exists()


def test_stale_pid_file_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "servegate.pid").write_text(str(dead.pid))
    with Servegate(prefix=str(tmp_path)) as sg:
        assert (tmp_path / "servegate.pid").read_text().strip() == str(sg.proc.pid)
    assert not (tmp_path / "servegate.pid").exists()


def test_free_ports_start_normally_after_a_refused_start(tmp_path):
    """A refused start leaves no lock behind: the next start on the same prefix works."""
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        one_error_line(second_start(unstarted(prefix=str(tmp_path), admin_port=port)))
    with Servegate(prefix=str(tmp_path), admin_port=port) as sg:
        assert sg.admin("GET", "/status")[0] == 200
        assert os.path.exists(tmp_path / "servegate.pid")


class ConfNode(Servegate):
    """A node whose proxy_listen comes from its conf file (so that a reload can change it)."""

    def env(self) -> dict[str, str]:
        env = super().env()
        del env["SERVEGATE_PROXY_LISTEN"]
        return env


def wait_for_log(sg: Servegate, text: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while text not in sg.log():
        assert time.monotonic() < deadline, sg.log()
        time.sleep(0.1)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.mark.parametrize("workers", [1, 2])
def test_reload_onto_another_nodes_proxy_port_is_refused(tmp_path, workers):
    conf = tmp_path / "b.conf"
    own, moved = free_port(), free_port()
    conf.write_text(f"proxy_listen = 127.0.0.1:{own}\n")
    with Servegate(prefix=str(tmp_path / "a")) as first:
        node = ConfNode(prefix=str(tmp_path / "b"), proxy_port=own, workers=workers,
                        extra_env={"SERVEGATE_CONF": str(conf)})
        with node:
            conf.write_text(f"proxy_listen = 127.0.0.1:{first.proxy_port}\n")
            r = subprocess.run([sys.executable, "-m", "servegate", "reload"], env=node.env(), capture_output=True,
                               text=True, timeout=30)
            assert r.returncode == 0, r.stderr
            wait_for_log(node, f"reload refused: cannot listen on 127.0.0.1:{first.proxy_port} (proxy_listen): "
                               "address already in use")
            assert node._proxy_up()
            assert_healthy(first)
            # A reload onto a free port moves the node there and frees its old port.
            conf.write_text(f"proxy_listen = 127.0.0.1:{moved}\n")
            r = subprocess.run([sys.executable, "-m", "servegate", "reload"], env=node.env(), capture_output=True,
                               text=True, timeout=30)
            assert r.returncode == 0, r.stderr
            deadline = time.monotonic() + 10
            while not port_free(own):
                assert time.monotonic() < deadline, node.log()
                time.sleep(0.1)
            socket.create_connection(("127.0.0.1", moved), timeout=2).close()
            assert node.proc is not None and node.proc.poll() is None
        assert_healthy(first)
