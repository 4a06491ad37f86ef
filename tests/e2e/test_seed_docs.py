"""Every command of the seed documents (README + usage guide), verbatim, against servegate.

Starts `servegate start` and `servegate setup` as processes, with two fake OpenAI backends on the seed's default
ports (vLLM 8080, SGLang 30000) and servegate on the seed's proxy ports (8000, 8443). The commands themselves
live in seed_checks.py, shared with the Docker Compose end-to-end test (tests/compose_e2e).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from helpers import Servegate
from seed_checks import CHECKS, FAKE, SeedTarget, start_backend

KEY = "e2e-admin-key-0123456789"


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
            return True
        except OSError:
            return False


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if not FAKE.exists():
        pytest.skip("fake backend not available")
    for port in (8000, 8443, 8001, 8080, 30000):
        if not port_free(port):
            pytest.skip(f"seed port {port} is busy on this machine")
    backends = [start_backend("127.0.0.1", 8080), start_backend("127.0.0.1", 30000)]
    prefix = str(tmp_path_factory.mktemp("e2e"))
    sg = Servegate(prefix=prefix, proxy_port=8000, ssl_port=8443, admin_port=8001)
    sg.extra_env["SERVEGATE_PROXY_LISTEN"] = "0.0.0.0:8000, 0.0.0.0:8443 ssl"
    sg.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SERVEGATE_", "KONG_"))}
    env.update(VLLM_UPSTREAM_URL="http://127.0.0.1:8080", SGLANG_UPSTREAM_URL="http://127.0.0.1:30000",
               KONG_ADMIN_API_KEY=KEY, SERVEGATE_ADMIN_URL=sg.admin_url)
    setup = subprocess.run([sys.executable, "-m", "servegate", "setup"], env=env, capture_output=True, text=True,
                           timeout=120)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    try:
        yield SeedTarget(key=KEY, backend_host="127.0.0.1", upstream_host="127.0.0.1", vllm_port=8080,
                         sglang_port=30000, log=sg.log)
    finally:
        sg.stop()
        for b in backends:
            b.terminate()
            b.wait(10)


@pytest.mark.parametrize("check", CHECKS, ids=[c.__name__ for c in CHECKS])
def test_seed_command(stack: SeedTarget, check) -> None:
    check(stack)


def test_readme_admin_port_is_loopback_only(stack):
    # The seed publishes no admin port; servegate's default admin_listen is loopback only.
    addrs = {ai[4][0] for ai in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)} - {"127.0.0.1"}
    for addr in addrs:
        with pytest.raises(OSError):
            socket.create_connection((addr, 8001), timeout=0.5).close()
