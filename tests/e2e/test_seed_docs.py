"""Every command of the seed documents (README + usage guide), verbatim, against servegate.

Starts `servegate start` and `servegate setup` as processes, with two fake OpenAI backends on the seed's default
ports (vLLM 8080, SGLang 30000) and servegate on the seed's proxy ports (8000, 8443). The only change made to a
command is the admin key substituted for YOUR_KEY / KEY; a status check is appended where the command prints none.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import Servegate
from support import free_port

KEY = "e2e-admin-key-0123456789"
ROOT = Path(__file__).resolve().parents[2]
FAKE = ROOT / "tests" / "proxy" / "fake_openai.py"


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
            return True
        except OSError:
            return False


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


def start_backend(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, str(FAKE), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if not FAKE.exists():
        pytest.skip("fake backend not available")
    for port in (8000, 8443, 8001, 8080, 30000):
        if not port_free(port):
            pytest.skip(f"seed port {port} is busy on this machine")
    backends = [start_backend(8080), start_backend(30000)]
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
        yield sg
    finally:
        sg.stop()
        for b in backends:
            b.terminate()
            b.wait(10)


def backend_requests(port: int) -> int:
    """Requests a fake backend has seen (each call of this counts one too)."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/__stats", timeout=5) as r:
        return int(json.loads(r.read())["requests"])


def sh(cmd: str, *, status: bool = True) -> tuple[int | None, str]:
    """Run a documented command; with status=True append curl's own status print and return it."""
    cmd = cmd.replace("YOUR_KEY", KEY).replace("changeme-admin-key-secret", KEY).replace("=KEY", "=" + KEY)
    if status:
        cmd = cmd.rstrip() + " -s -w '\\n%{http_code}'"
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=60)
    if not status:
        return r.returncode, r.stdout
    body, _, code = r.stdout.rpartition("\n")
    return int(code), body


def status_line(output: str) -> int:
    return int(output.split("\n", 1)[0].split()[1])


# ---- README -------------------------------------------------------------------------------------------------

def test_readme_chat_completions_vllm_and_sglang(stack):
    for name in ("vllm", "sglang"):
        code, body = sh(f"""curl http://localhost:8000/v1/{name}/v1/chat/completions \\
  -H "Content-Type: application/json" \\
  -d '{{
    "model": "your-model",
    "messages": [{{"role": "user", "content": "Hello!"}}]
  }}'""")
        assert code == 200, body
        assert json.loads(body)["object"] == "chat.completion"


def test_readme_models_and_path_stripping(stack):
    for name in ("vllm", "sglang"):
        code, body = sh(f"curl http://localhost:8000/v1/{name}/v1/models")
        assert code == 200
        assert json.loads(body)["object"] == "list"


def test_readme_admin_api_needs_key(stack):
    code, out = sh("curl -i http://localhost:8000/admin-api/services", status=False)
    assert status_line(out) == 401
    assert "No API key found in request" in out
    assert "WWW-Authenticate: Key" in out or "www-authenticate: Key" in out.lower()
    _, out = sh('curl -i "http://localhost:8000/admin-api/services?apikey=changeme-admin-key-secret"', status=False)
    assert status_line(out) == 200
    _, out = sh('curl -i http://localhost:8000/admin-api/services \\\n  -H "apikey: changeme-admin-key-secret"',
                status=False)
    assert status_line(out) == 200
    names = {s["name"] for s in json.loads(out.split("\n\n", 1)[1])["data"]}
    assert {"vllm-service", "sglang-service", "admin-api-service"} <= names


def test_readme_admin_port_is_loopback_only(stack):
    # The seed publishes no admin port; servegate's default admin_listen is loopback only.
    addrs = {ai[4][0] for ai in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)} - {"127.0.0.1"}
    for addr in addrs:
        with pytest.raises(OSError):
            socket.create_connection((addr, 8001), timeout=0.5).close()


def test_readme_troubleshooting_timeouts(stack):
    code, body = sh('''curl -X PATCH "http://localhost:8000/admin-api/services/vllm-service?apikey=YOUR_KEY" \\
  -d "read_timeout=300000" \\
  -d "write_timeout=300000"''')
    assert code == 200, body
    svc = json.loads(body)
    assert svc["read_timeout"] == 300000 and svc["write_timeout"] == 300000


# ---- Usage guide ---------------------------------------------------------------------------------------------

def test_usage_chat_stream_completions_embeddings(stack):
    code, body = sh('''curl http://localhost:8000/v1/vllm/v1/chat/completions \\
  -H "Content-Type: application/json" \\
  -d '{
    "model": "your-model-name",
    "messages": [
      {"role": "system", "content": "You are a helpful assistant."},
      {"role": "user", "content": "What is Docker?"}
    ]
  }' ''')
    assert code == 200 and json.loads(body)["choices"]
    code, body = sh('''curl http://localhost:8000/v1/vllm/v1/chat/completions \\
  -H "Content-Type: application/json" \\
  -d '{
    "model": "your-model-name",
    "messages": [{"role": "user", "content": "Tell me a story"}],
    "stream": true
  }' ''')
    assert code == 200
    events = [line for line in body.splitlines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]" and len(events) > 2
    code, body = sh('''curl http://localhost:8000/v1/vllm/v1/completions \\
  -H "Content-Type: application/json" \\
  -d '{
    "model": "your-model-name",
    "prompt": "The capital of France is"
  }' ''')
    assert code == 200 and json.loads(body)["object"] == "text_completion"
    code, body = sh('''curl http://localhost:8000/v1/vllm/v1/embeddings \\
  -H "Content-Type: application/json" \\
  -d '{
    "model": "your-model-name",
    "input": "Hello world"
  }' ''')
    assert code == 200 and json.loads(body)["data"][0]["embedding"]


def test_usage_admin_views(stack):
    for path in ("services", "routes", "plugins", "services/vllm-service", "consumers"):
        rc, out = sh(f'curl -s "http://localhost:8000/admin-api/{path}?apikey=YOUR_KEY" | python3 -m json.tool',
                     status=False)
        assert rc == 0
        json.loads(out)
    rc, out = sh('curl -s "http://localhost:8000/admin-api/?apikey=YOUR_KEY" | python3 -m json.tool', status=False)
    assert rc == 0 and "version" in json.loads(out)


def test_usage_change_timeouts_with_header_key(stack):
    for name in ("vllm", "sglang"):
        code, body = sh(f'''curl -X PATCH "http://localhost:8000/admin-api/services/{name}-service" \\
  -H "apikey: YOUR_KEY" \\
  -d "read_timeout=300000" \\
  -d "write_timeout=300000"''')
        assert code == 200 and json.loads(body)["read_timeout"] == 300000


def test_usage_change_backend_url_is_live(stack):
    # Move vLLM's service to another port served by a new backend: the next request goes there, no restart.
    port = free_port()
    moved = start_backend(port)
    try:
        code, body = sh(f'''curl -X PATCH "http://localhost:8000/admin-api/services/vllm-service" \\
  -H "apikey: YOUR_KEY" \\
  -d "url=http://127.0.0.1:{port}"''')
        assert code == 200
        before = backend_requests(port)
        code, body = sh("curl http://localhost:8000/v1/vllm/v1/models")
        assert code == 200
        assert backend_requests(port) == before + 2
        # The guide's own example host does not resolve here: the gateway answers instead of hanging.
        code, _ = sh('''curl -X PATCH "http://localhost:8000/admin-api/services/vllm-service" \\
  -H "apikey: YOUR_KEY" \\
  -d "url=http://new-host:8080"''')
        assert code == 200
        code, _ = sh("curl http://localhost:8000/v1/vllm/v1/models")
        assert code in (502, 503)
    finally:
        sh('curl -X PATCH "http://localhost:8000/admin-api/services/vllm-service" -H "apikey: YOUR_KEY" '
           '-d "url=http://127.0.0.1:8080"')
        moved.terminate()
        moved.wait(10)
    before = backend_requests(8080)
    code, body = sh("curl http://localhost:8000/v1/vllm/v1/models")
    assert code == 200
    assert backend_requests(8080) == before + 2


def test_usage_add_and_remove_ollama_backend(stack):
    code, body = sh('''curl -X POST "http://localhost:8000/admin-api/services" \\
  -H "apikey: YOUR_KEY" \\
  -d "name=ollama-service" \\
  -d "url=http://host.docker.internal:11434" \\
  -d "read_timeout=120000" \\
  -d "write_timeout=120000"''')
    assert code == 201, body
    svc = json.loads(body)
    assert (svc["host"], svc["port"], svc["read_timeout"]) == ("host.docker.internal", 11434, 120000)
    code, body = sh('''curl -X POST "http://localhost:8000/admin-api/services/ollama-service/routes" \\
  -H "apikey: YOUR_KEY" \\
  -d "name=ollama-route" \\
  -d "paths[]=/v1/ollama" \\
  -d "strip_path=true"''')
    assert code == 201, body
    assert json.loads(body)["paths"] == ["/v1/ollama"]
    code, _ = sh("curl http://localhost:8000/v1/ollama/api/tags")
    assert code in (502, 503)  # routed to the (absent) Ollama host, not a 404
    code, _ = sh('''curl -X DELETE "http://localhost:8000/admin-api/routes/ollama-route" \\
  -H "apikey: YOUR_KEY"''')
    assert code == 204
    code, _ = sh('''curl -X DELETE "http://localhost:8000/admin-api/services/ollama-service" \\
  -H "apikey: YOUR_KEY"''')
    assert code == 204
    code, _ = sh("curl http://localhost:8000/v1/ollama/api/tags")
    assert code == 404


def test_usage_unknown_path_is_404(stack):
    code, body = sh("curl http://localhost:8000/v2/unknown")
    assert code == 404
    assert "no Route matched with those values" in body


def test_usage_https_listener(stack):
    code, body = sh("curl -k https://localhost:8443/v1/vllm/v1/models")
    assert code == 200 and json.loads(body)["object"] == "list"


def test_usage_rate_limiting(stack):
    code, body = sh('''curl -X POST "http://localhost:8000/admin-api/services/vllm-service/plugins" \\
  -H "apikey: YOUR_KEY" \\
  -d "name=rate-limiting" \\
  -d "config.minute=60" \\
  -d "config.policy=local"''')
    assert code == 201, body
    plugin = json.loads(body)
    assert plugin["config"]["minute"] == 60
    try:
        statuses = []
        # Stay inside one minute window: start right after a minute boundary if too close to the next one.
        if time.time() % 60 > 50:
            time.sleep(61 - time.time() % 60)
        for _ in range(61):
            rc, out = sh("curl -i http://localhost:8000/v1/vllm/v1/models", status=False)
            statuses.append(status_line(out))
        assert statuses[:60] == [200] * 60
        assert statuses[60] == 429
        low = out.lower()
        for h in ("x-ratelimit-limit-minute: 60", "x-ratelimit-remaining-minute: 0", "ratelimit-limit: 60",
                  "ratelimit-remaining: 0", "ratelimit-reset:", "retry-after:"):
            assert h in low, h
        assert "API rate limit exceeded" in out
    finally:
        sh(f'curl -X DELETE "http://localhost:8000/admin-api/plugins/{plugin["id"]}" -H "apikey: YOUR_KEY"')


def test_usage_key_auth_on_llm_route_and_openai_sdk(stack):
    code, _ = sh('''curl -X POST "http://localhost:8000/admin-api/services/vllm-service/plugins" \\
  -H "apikey: YOUR_KEY" \\
  -d "name=key-auth"''')
    assert code == 201
    code, _ = sh('''curl -X POST "http://localhost:8000/admin-api/consumers" \\
  -H "apikey: YOUR_KEY" \\
  -d "username=my-app"''')
    assert code == 201
    code, _ = sh('''curl -X POST "http://localhost:8000/admin-api/consumers/my-app/key-auth" \\
  -H "apikey: YOUR_KEY" \\
  -d "key=my-app-secret-key"''')
    assert code == 201
    code, _ = sh("curl http://localhost:8000/v1/vllm/v1/models")
    assert code == 401
    code, body = sh('''curl http://localhost:8000/v1/vllm/v1/models \\
  -H "apikey: my-app-secret-key"''')
    assert code == 200, body
    # SGLang has no key-auth: still open.
    assert sh("curl http://localhost:8000/v1/sglang/v1/models")[0] == 200

    from openai import AuthenticationError, OpenAI

    client = OpenAI(
        base_url="http://localhost:8000/v1/vllm/v1",
        api_key="my-app-secret-key",
        default_headers={"apikey": "my-app-secret-key"},
    )
    response = client.chat.completions.create(model="your-model-name", messages=[{"role": "user", "content": "Hello!"}])
    assert response.choices[0].message.content
    stream = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Hi"}], stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    anonymous = OpenAI(base_url="http://localhost:8000/v1/vllm/v1", api_key="not-needed", max_retries=0)
    with pytest.raises(AuthenticationError):
        anonymous.models.list()
    sglang = OpenAI(base_url="http://localhost:8000/v1/sglang/v1", api_key="not-needed")
    assert sglang.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}]).choices


def test_usage_502_for_down_backend(stack):
    code, _ = sh('''curl -X PATCH "http://localhost:8000/admin-api/services/sglang-service" \\
  -H "apikey: YOUR_KEY" -d "url=http://127.0.0.1:1" -d "retries=1"''')
    assert code == 200
    code, body = sh("curl http://localhost:8000/v1/sglang/v1/models")
    assert code == 502
    assert "An invalid response was received from the upstream server" in body
    sh('curl -X PATCH "http://localhost:8000/admin-api/services/sglang-service" -H "apikey: YOUR_KEY" '
       '-d "url=http://127.0.0.1:30000"')


def test_apikey_query_value_never_logged(stack):
    assert KEY not in stack.log()
