"""The seed documents' commands (README + usage guide), verbatim, as checks against any running gateway.

Used by tests/e2e/test_seed_docs.py (servegate as local processes) and tests/compose_e2e (the Docker Compose
stack). A check takes a SeedTarget: it says where the proxy is published, the admin key, and how the gateway
reaches the fake backends. The only changes made to a command are the admin key substituted for YOUR_KEY /
KEY, the proxy ports when the target could not get the seed's 8000/8443, and a status print appended where the
command prints none.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

FAKE = Path(__file__).resolve().parent / "proxy" / "fake_openai.py"


def wait_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {host}:{port} did not open")


def start_backend(host: str, port: int) -> subprocess.Popen[bytes]:
    """A fake OpenAI backend (tests/proxy/fake_openai.py) listening on host:port."""
    proc = subprocess.Popen([sys.executable, str(FAKE), "--host", host, "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(host, port)
    return proc


@dataclass
class SeedTarget:
    """A running gateway with the seed's setup done, and the fake backends it proxies to."""

    key: str
    backend_host: str  # where the fake backends listen, as seen from the test
    upstream_host: str  # the same backends as the gateway reaches them (what a service URL names)
    vllm_port: int
    sglang_port: int
    log: Callable[[], str]
    proxy_port: int = 8000
    ssl_port: int = 8443
    extra_backends: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def upstream_url(self, port: int) -> str:
        return f"http://{self.upstream_host}:{port}"

    def proxy_base(self) -> str:
        return f"http://localhost:{self.proxy_port}"

    def command(self, cmd: str) -> str:
        cmd = cmd.replace("YOUR_KEY", self.key).replace("changeme-admin-key-secret", self.key)
        cmd = cmd.replace("=KEY", "=" + self.key)
        cmd = cmd.replace("localhost:8000", f"localhost:{self.proxy_port}")
        return cmd.replace("localhost:8443", f"localhost:{self.ssl_port}")

    def sh(self, cmd: str, *, status: bool = True) -> tuple[int, str]:
        """Run a documented command; with status=True append curl's own status print and return it."""
        cmd = self.command(cmd)
        if status:
            cmd = cmd.rstrip() + " -s -w '\\n%{http_code}'"
        r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=60)
        if not status:
            return r.returncode, r.stdout
        body, _, code = r.stdout.rpartition("\n")
        return int(code), body

    def backend_requests(self, port: int) -> int:
        """Requests a fake backend has seen (each call of this counts one too)."""
        with urllib.request.urlopen(f"http://{self.backend_host}:{port}/__stats", timeout=5) as r:
            return int(json.loads(r.read())["requests"])


def status_line(output: str) -> int:
    return int(output.split("\n", 1)[0].split()[1])


# ---- README -------------------------------------------------------------------------------------------------

def readme_chat_completions_vllm_and_sglang(t: SeedTarget) -> None:
    for name in ("vllm", "sglang"):
        code, body = t.sh(f"""curl http://localhost:8000/v1/{name}/v1/chat/completions \\
  -H "Content-Type: application/json" \\
  -d '{{
    "model": "your-model",
    "messages": [{{"role": "user", "content": "Hello!"}}]
  }}'""")
        assert code == 200, body
        assert json.loads(body)["object"] == "chat.completion"


def readme_models_and_path_stripping(t: SeedTarget) -> None:
    for name in ("vllm", "sglang"):
        code, body = t.sh(f"curl http://localhost:8000/v1/{name}/v1/models")
        assert code == 200
        assert json.loads(body)["object"] == "list"


def readme_admin_api_needs_key(t: SeedTarget) -> None:
    code, out = t.sh("curl -i http://localhost:8000/admin-api/services", status=False)
    assert status_line(out) == 401
    assert "No API key found in request" in out
    assert "WWW-Authenticate: Key" in out or "www-authenticate: Key" in out.lower()
    _, out = t.sh('curl -i "http://localhost:8000/admin-api/services?apikey=changeme-admin-key-secret"', status=False)
    assert status_line(out) == 200
    _, out = t.sh('curl -i http://localhost:8000/admin-api/services \\\n  -H "apikey: changeme-admin-key-secret"',
                  status=False)
    assert status_line(out) == 200
    names = {s["name"] for s in json.loads(out.split("\n\n", 1)[1])["data"]}
    assert {"vllm-service", "sglang-service", "admin-api-service"} <= names


def readme_troubleshooting_timeouts(t: SeedTarget) -> None:
    code, body = t.sh('''curl -X PATCH "http://localhost:8000/admin-api/services/vllm-service?apikey=YOUR_KEY" \\
  -d "read_timeout=300000" \\
  -d "write_timeout=300000"''')
    assert code == 200, body
    svc = json.loads(body)
    assert svc["read_timeout"] == 300000 and svc["write_timeout"] == 300000


# ---- Usage guide ---------------------------------------------------------------------------------------------

def usage_chat_stream_completions_embeddings(t: SeedTarget) -> None:
    code, body = t.sh('''curl http://localhost:8000/v1/vllm/v1/chat/completions \\
  -H "Content-Type: application/json" \\
  -d '{
    "model": "your-model-name",
    "messages": [
      {"role": "system", "content": "You are a helpful assistant."},
      {"role": "user", "content": "What is Docker?"}
    ]
  }' ''')
    assert code == 200 and json.loads(body)["choices"]
    code, body = t.sh('''curl http://localhost:8000/v1/vllm/v1/chat/completions \\
  -H "Content-Type: application/json" \\
  -d '{
    "model": "your-model-name",
    "messages": [{"role": "user", "content": "Tell me a story"}],
    "stream": true
  }' ''')
    assert code == 200
    events = [line for line in body.splitlines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]" and len(events) > 2
    code, body = t.sh('''curl http://localhost:8000/v1/vllm/v1/completions \\
  -H "Content-Type: application/json" \\
  -d '{
    "model": "your-model-name",
    "prompt": "The capital of France is"
  }' ''')
    assert code == 200 and json.loads(body)["object"] == "text_completion"
    code, body = t.sh('''curl http://localhost:8000/v1/vllm/v1/embeddings \\
  -H "Content-Type: application/json" \\
  -d '{
    "model": "your-model-name",
    "input": "Hello world"
  }' ''')
    assert code == 200 and json.loads(body)["data"][0]["embedding"]


def usage_admin_views(t: SeedTarget) -> None:
    for path in ("services", "routes", "plugins", "services/vllm-service", "consumers"):
        rc, out = t.sh(f'curl -s "http://localhost:8000/admin-api/{path}?apikey=YOUR_KEY" | python3 -m json.tool',
                       status=False)
        assert rc == 0
        json.loads(out)
    rc, out = t.sh('curl -s "http://localhost:8000/admin-api/?apikey=YOUR_KEY" | python3 -m json.tool', status=False)
    assert rc == 0 and "version" in json.loads(out)


def usage_change_timeouts_with_header_key(t: SeedTarget) -> None:
    for name in ("vllm", "sglang"):
        code, body = t.sh(f'''curl -X PATCH "http://localhost:8000/admin-api/services/{name}-service" \\
  -H "apikey: YOUR_KEY" \\
  -d "read_timeout=300000" \\
  -d "write_timeout=300000"''')
        assert code == 200 and json.loads(body)["read_timeout"] == 300000


def usage_change_backend_url_is_live(t: SeedTarget) -> None:
    # Move vLLM's service to another port served by a new backend: the next request goes there, no restart.
    with socket.socket() as s:
        s.bind((t.backend_host, 0))
        port = int(s.getsockname()[1])
    moved = start_backend(t.backend_host, port)
    try:
        code, body = t.sh(f'''curl -X PATCH "http://localhost:8000/admin-api/services/vllm-service" \\
  -H "apikey: YOUR_KEY" \\
  -d "url={t.upstream_url(port)}"''')
        assert code == 200
        before = t.backend_requests(port)
        code, body = t.sh("curl http://localhost:8000/v1/vllm/v1/models")
        assert code == 200
        assert t.backend_requests(port) == before + 2
        # The guide's own example host does not resolve here: the gateway answers instead of hanging.
        code, _ = t.sh('''curl -X PATCH "http://localhost:8000/admin-api/services/vllm-service" \\
  -H "apikey: YOUR_KEY" \\
  -d "url=http://new-host:8080"''')
        assert code == 200
        code, _ = t.sh("curl http://localhost:8000/v1/vllm/v1/models")
        assert code in (502, 503)
    finally:
        t.sh('curl -X PATCH "http://localhost:8000/admin-api/services/vllm-service" -H "apikey: YOUR_KEY" '
             f'-d "url={t.upstream_url(t.vllm_port)}"')
        moved.terminate()
        moved.wait(10)
    before = t.backend_requests(t.vllm_port)
    code, body = t.sh("curl http://localhost:8000/v1/vllm/v1/models")
    assert code == 200
    assert t.backend_requests(t.vllm_port) == before + 2


def usage_add_and_remove_ollama_backend(t: SeedTarget) -> None:
    code, body = t.sh('''curl -X POST "http://localhost:8000/admin-api/services" \\
  -H "apikey: YOUR_KEY" \\
  -d "name=ollama-service" \\
  -d "url=http://host.docker.internal:11434" \\
  -d "read_timeout=120000" \\
  -d "write_timeout=120000"''')
    assert code == 201, body
    svc = json.loads(body)
    assert (svc["host"], svc["port"], svc["read_timeout"]) == ("host.docker.internal", 11434, 120000)
    code, body = t.sh('''curl -X POST "http://localhost:8000/admin-api/services/ollama-service/routes" \\
  -H "apikey: YOUR_KEY" \\
  -d "name=ollama-route" \\
  -d "paths[]=/v1/ollama" \\
  -d "strip_path=true"''')
    assert code == 201, body
    assert json.loads(body)["paths"] == ["/v1/ollama"]
    code, _ = t.sh("curl http://localhost:8000/v1/ollama/api/tags")
    assert code in (502, 503)  # routed to the (absent) Ollama host, not a 404
    code, _ = t.sh('''curl -X DELETE "http://localhost:8000/admin-api/routes/ollama-route" \\
  -H "apikey: YOUR_KEY"''')
    assert code == 204
    code, _ = t.sh('''curl -X DELETE "http://localhost:8000/admin-api/services/ollama-service" \\
  -H "apikey: YOUR_KEY"''')
    assert code == 204
    code, _ = t.sh("curl http://localhost:8000/v1/ollama/api/tags")
    assert code == 404


def usage_unknown_path_is_404(t: SeedTarget) -> None:
    code, body = t.sh("curl http://localhost:8000/v2/unknown")
    assert code == 404
    assert "no Route matched with those values" in body


def usage_https_listener(t: SeedTarget) -> None:
    code, body = t.sh("curl -k https://localhost:8443/v1/vllm/v1/models")
    assert code == 200 and json.loads(body)["object"] == "list"


def usage_rate_limiting(t: SeedTarget) -> None:
    code, body = t.sh('''curl -X POST "http://localhost:8000/admin-api/services/vllm-service/plugins" \\
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
        out = ""
        for _ in range(61):
            _, out = t.sh("curl -i http://localhost:8000/v1/vllm/v1/models", status=False)
            statuses.append(status_line(out))
        assert statuses[:60] == [200] * 60
        assert statuses[60] == 429
        low = out.lower()
        for h in ("x-ratelimit-limit-minute: 60", "x-ratelimit-remaining-minute: 0", "ratelimit-limit: 60",
                  "ratelimit-remaining: 0", "ratelimit-reset:", "retry-after:"):
            assert h in low, h
        assert "API rate limit exceeded" in out
    finally:
        t.sh(f'curl -X DELETE "http://localhost:8000/admin-api/plugins/{plugin["id"]}" -H "apikey: YOUR_KEY"')


def usage_key_auth_on_llm_route_and_openai_sdk(t: SeedTarget) -> None:
    code, _ = t.sh('''curl -X POST "http://localhost:8000/admin-api/services/vllm-service/plugins" \\
  -H "apikey: YOUR_KEY" \\
  -d "name=key-auth"''')
    assert code == 201
    code, _ = t.sh('''curl -X POST "http://localhost:8000/admin-api/consumers" \\
  -H "apikey: YOUR_KEY" \\
  -d "username=my-app"''')
    assert code == 201
    code, _ = t.sh('''curl -X POST "http://localhost:8000/admin-api/consumers/my-app/key-auth" \\
  -H "apikey: YOUR_KEY" \\
  -d "key=my-app-secret-key"''')
    assert code == 201
    code, _ = t.sh("curl http://localhost:8000/v1/vllm/v1/models")
    assert code == 401
    code, body = t.sh('''curl http://localhost:8000/v1/vllm/v1/models \\
  -H "apikey: my-app-secret-key"''')
    assert code == 200, body
    # SGLang has no key-auth: still open.
    assert t.sh("curl http://localhost:8000/v1/sglang/v1/models")[0] == 200

    from openai import AuthenticationError, OpenAI

    client = OpenAI(
        base_url=t.command("http://localhost:8000/v1/vllm/v1"),
        api_key="my-app-secret-key",
        default_headers={"apikey": "my-app-secret-key"},
    )
    response = client.chat.completions.create(model="your-model-name", messages=[{"role": "user", "content": "Hello!"}])
    assert response.choices[0].message.content
    stream = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Hi"}], stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    anonymous = OpenAI(base_url=t.command("http://localhost:8000/v1/vllm/v1"), api_key="not-needed", max_retries=0)
    with pytest.raises(AuthenticationError):
        anonymous.models.list()
    sglang = OpenAI(base_url=t.command("http://localhost:8000/v1/sglang/v1"), api_key="not-needed")
    assert sglang.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}]).choices


def usage_502_for_down_backend(t: SeedTarget) -> None:
    code, _ = t.sh('''curl -X PATCH "http://localhost:8000/admin-api/services/sglang-service" \\
  -H "apikey: YOUR_KEY" -d "url=http://127.0.0.1:1" -d "retries=1"''')
    assert code == 200
    code, body = t.sh("curl http://localhost:8000/v1/sglang/v1/models")
    assert code == 502
    assert "An invalid response was received from the upstream server" in body
    t.sh('curl -X PATCH "http://localhost:8000/admin-api/services/sglang-service" -H "apikey: YOUR_KEY" '
         f'-d "url={t.upstream_url(t.sglang_port)}"')


def apikey_query_value_never_logged(t: SeedTarget) -> None:
    assert t.key not in t.log()


# In document order; the key-auth check leaves key-auth on vllm-service, so it runs late.
CHECKS: list[Callable[[SeedTarget], None]] = [
    readme_chat_completions_vllm_and_sglang,
    readme_models_and_path_stripping,
    readme_admin_api_needs_key,
    readme_troubleshooting_timeouts,
    usage_chat_stream_completions_embeddings,
    usage_admin_views,
    usage_change_timeouts_with_header_key,
    usage_change_backend_url_is_live,
    usage_add_and_remove_ollama_backend,
    usage_unknown_path_is_404,
    usage_https_listener,
    usage_rate_limiting,
    usage_key_auth_on_llm_route_and_openai_sdk,
    usage_502_for_down_backend,
    apikey_query_value_never_logged,
]
