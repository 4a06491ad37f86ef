"""The node-control commands as a new user meets them: help, version, stop, restart, reload, check, prepare."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import Servegate, fake_backend
from support import free_port


def cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "servegate", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def plain_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    sg = Servegate(prefix=str(tmp_path / "prefix"), extra_env=extra)
    sg.proxy_port, sg.ssl_port, sg.admin_port = free_port(), free_port(), free_port()
    return sg.env()


@pytest.mark.parametrize("args", [["-h"], ["--help"], ["start", "-h"], ["stop", "--help"], ["check", "-h"],
                                  ["migrations", "bootstrap", "-h"], ["setup", "-h"]])
def test_help_is_plain_and_names_values_readably(tmp_path, args):
    r = cli(*args, env=plain_env(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Usage: servegate"), r.stdout
    for unreadable in ("<str>", "<bool>", "<float>", "<int>", "TEXT", "INTEGER", "FLOAT", "╭"):
        assert unreadable not in r.stdout, (unreadable, r.stdout)
    if args[0] in ("start", "stop", "check"):
        assert "-c, --conf PATH" in r.stdout
        assert "-p, --prefix PATH" in r.stdout


def test_top_level_help_lists_every_command(tmp_path):
    r = cli("-h", env=plain_env(tmp_path))
    for command in ("start", "stop", "restart", "reload", "check", "prepare", "health", "version", "migrations"):
        assert f"  {command} " in r.stdout, (command, r.stdout)


def test_version_flag(tmp_path):
    from servegate import __version__

    r = cli("--version", env=plain_env(tmp_path))
    assert r.returncode == 0
    assert r.stdout == f"servegate {__version__}\n"


def test_stop_without_a_node_is_one_line(tmp_path):
    env = plain_env(tmp_path)
    r = cli("stop", env=env)
    assert r.returncode == 1
    assert r.stderr.strip() == f"Error: servegate is not running at {tmp_path / 'prefix'}"


def test_stop_signals_the_node_and_waits_for_it(tmp_path):
    sg = Servegate(prefix=str(tmp_path / "prefix")).start()
    try:
        r = cli("stop", env=sg.env())
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == f"servegate stopped (pid {sg.proc.pid})"
        # stop returned only once the node was gone
        assert sg.proc.poll() == 0
        assert not (tmp_path / "prefix" / "servegate.pid").exists()
    finally:
        sg.stop()


def test_restart_replaces_the_running_node(tmp_path):
    first = Servegate(prefix=str(tmp_path / "prefix")).start()
    assert first.admin("POST", "/services", {"name": "kept", "url": "http://h:1"})[0] == 201
    second = subprocess.Popen([sys.executable, "-m", "servegate", "restart"], env=first.env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert first.proc.wait(20) == 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if first.admin("GET", "/services/kept")[0] == 200:
                    break
            except OSError:
                pass
            assert second.poll() is None, second.stderr.read() if second.stderr else ""
            time.sleep(0.1)
        else:
            raise AssertionError("restarted node did not come up")
        pid = (tmp_path / "prefix" / "servegate.pid").read_text().strip()
        assert pid == str(second.pid)
        assert cli("stop", env=first.env()).returncode == 0
        assert second.wait(20) == 0
    finally:
        if second.poll() is None:
            second.kill()
            second.wait()
        first.stop()


def test_check_reports_a_valid_conf_file(tmp_path):
    conf = tmp_path / "servegate.conf"
    conf.write_text("log_level = info\nproxy_listen = 127.0.0.1:9000\n")
    r = cli("check", str(conf), env=plain_env(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"configuration at {conf} is valid"
    r = cli("check", "-c", str(conf), env=plain_env(tmp_path))
    assert r.stdout.strip() == f"configuration at {conf} is valid"
    r = cli("check", env=plain_env(tmp_path, SERVEGATE_CONF=str(conf)))
    assert r.stdout.strip() == f"configuration at {conf} is valid"


def test_check_without_a_conf_file_checks_the_environment(tmp_path):
    r = cli("check", env=plain_env(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "configuration at the environment (no conf file) is valid"


def test_check_names_the_bad_setting(tmp_path):
    conf = tmp_path / "servegate.conf"
    conf.write_text("keepalive_timeout = soon\n")
    r = cli("check", str(conf), env=plain_env(tmp_path))
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [f"Error: invalid keepalive_timeout ({conf}='soon'): could not "
                                             "convert string to float: 'soon'"]
    r = cli("check", str(tmp_path / "missing.conf"), env=plain_env(tmp_path))
    assert r.returncode == 1
    assert "cannot read conf file" in r.stderr and "Traceback" not in r.stderr


def test_prepare_creates_the_prefix_without_starting(tmp_path):
    env = plain_env(tmp_path)
    prefix = tmp_path / "prefix"
    r = cli("prepare", env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"prefix prepared at {prefix}"
    assert prefix.is_dir()
    assert (prefix / "ssl").is_dir() and list((prefix / "ssl").glob("*.crt"))  # ssl listener: default cert
    assert not (prefix / "servegate.pid").exists()
    assert cli("health", env=env).returncode == 1


@pytest.fixture(scope="module")
def backend():
    with fake_backend() as url:
        yield url


def read_stream(sock: socket.socket, until: bytes, timeout: float) -> bytes:
    sock.settimeout(timeout)
    got = b""
    while until not in got:
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


@pytest.mark.parametrize("workers", [1, 2])
def test_reload_applies_the_conf_file_and_keeps_an_open_stream(tmp_path, backend, workers):
    conf = tmp_path / "servegate.conf"
    conf.write_text("error_default_type = text/plain\n")
    sg = Servegate(prefix=str(tmp_path / "prefix"), workers=workers, extra_env={"SERVEGATE_CONF": str(conf)})
    with sg:
        assert sg.admin("PUT", "/services/llm", {"url": backend})[0] == 200
        assert sg.admin("PUT", "/routes/llm", {"paths": ["/llm"], "service": {"name": "llm"}})[0] == 200
        time.sleep(0.6)  # workers poll the config version
        body = b'{"model": "m", "stream": true, "max_tokens": 12, "messages": []}'
        stream = socket.create_connection(("127.0.0.1", sg.proxy_port))
        stream.sendall(b"POST /llm/v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"X-Fake-Pace-Ms: 250\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body))
        head = read_stream(stream, b"tok0", 10)
        assert head.startswith(b"HTTP/1.1 200"), head

        conf.write_text("error_default_type = application/json\n")
        r = cli("reload", env=sg.env())
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == f"servegate reloading (pid {sg.proc.pid})"

        rest = read_stream(stream, b"0\r\n\r\n", 15)
        stream.close()
        assert b"tok11" in rest and b"[DONE]" in rest, rest
        # New connections get the new settings (every worker), and the node kept its pid.
        deadline = time.monotonic() + 10
        while True:
            import urllib.error
            import urllib.request

            types = set()
            for _ in range(8):
                try:
                    urllib.request.urlopen(f"{sg.proxy_url}/nowhere", timeout=5)
                except urllib.error.HTTPError as e:
                    types.add(e.headers.get("Content-Type", "").split(";")[0])
            if types == {"application/json"} or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert types == {"application/json"}
        assert sg.proc.poll() is None
        assert (tmp_path / "prefix" / "servegate.pid").read_text().strip() == str(sg.proc.pid)


def test_reload_refuses_a_bad_conf_file_and_the_node_keeps_running(tmp_path):
    conf = tmp_path / "servegate.conf"
    conf.write_text("log_level = info\n")
    with Servegate(prefix=str(tmp_path / "prefix"), extra_env={"SERVEGATE_CONF": str(conf)}) as sg:
        conf.write_text("log_level = chatty\n")
        r = cli("reload", env=sg.env())
        assert r.returncode == 1
        assert r.stderr.strip().startswith("Error: invalid log_level")
        assert sg.admin("GET", "/status")[0] == 200
    conf.write_text("log_level = info\n")
    assert cli("reload", env=sg.env()).stderr.strip().startswith("Error: servegate is not running at")


def test_debug_log_level_shows_servegate_lines_only(tmp_path):
    with Servegate(prefix=str(tmp_path / "prefix"), extra_env={"SERVEGATE_LOG_LEVEL": "debug"}) as sg:
        time.sleep(0.5)
        start = len(sg.log().splitlines())
        time.sleep(2.0)
        idle = sg.log().splitlines()[start:]
    assert len(idle) <= 4, idle
    assert not [line for line in sg.log().splitlines() if "aiosqlite" in line or "] asyncio:" in line]


def test_start_and_restart_paths_do_not_import_typer(tmp_path):
    """`start` keeps its idle memory low: typer (and rich) stay out of the serving process."""
    code = ("import sys; sys.argv = ['servegate', 'start']\n"
            "from servegate.cli import main\n"
            "assert main._plain_start_args(['restart', '-p', 'x']) == {'conf': None, 'prefix': 'x'}\n"
            "import servegate.node, servegate.pidfile, servegate.listeners\n"
            "print(sorted(m for m in ('typer', 'rich', 'click') if m in sys.modules))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
