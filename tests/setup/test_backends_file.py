"""BACKENDS_FILE: more backends for the setup job, one per line, against a real `servegate start`."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from setup_support import KEY_A, admin_state, by_name, ok, run_setup, targets

from helpers import Servegate
from servegate.cli.setup import run_setup as run_in_process
from support import free_port


def get(sg: Servegate, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(sg.proxy_url + path, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, None


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "backends.txt"
    path.write_text(text)
    return str(path)


def test_file_backends_are_created_once_and_served(gateway: Servegate, echo: str, tmp_path: Path) -> None:
    backends = write(tmp_path, f"""\
# name   URL[,URL...]   [route-path]

ollama   {echo}
tgi      {echo}/base   /tgi      # a comment after the fields
""")
    first = ok(run_setup(gateway, VLLM_UPSTREAM_URL=echo, BACKENDS_FILE=backends, KONG_ADMIN_API_KEY=KEY_A))
    assert "service ollama-service" in first.stdout and "route tgi-route /tgi (strip_path): created" in first.stdout
    state = admin_state(gateway)
    services, routes = by_name(state["services"]), by_name(state["routes"])
    assert set(services) == {"vllm-service", "ollama-service", "tgi-service", "admin-api-service", "llm-service"}
    assert routes["ollama-route"]["paths"] == ["/v1/ollama"] and routes["tgi-route"]["paths"] == ["/tgi"]
    assert routes["tgi-route"]["service"] == {"id": services["tgi-service"]["id"]}
    assert services["tgi-service"]["path"] == "/base"
    assert services["ollama-service"]["read_timeout"] == 120000

    assert get(gateway, "/v1/ollama/v1/models")[1]["path"] == "/v1/models"
    assert get(gateway, "/tgi/v1/models")[1]["path"] == "/base/v1/models"

    second = ok(run_setup(gateway, VLLM_UPSTREAM_URL=echo, BACKENDS_FILE=backends, KONG_ADMIN_API_KEY=KEY_A))
    assert admin_state(gateway) == state
    assert "created" not in second.stdout and "updated" not in second.stdout
    assert second.stdout.count(": unchanged") == 14


def test_a_backend_removed_from_the_file_is_left_alone(gateway: Servegate, echo: str, tmp_path: Path) -> None:
    ok(run_setup(gateway, BACKENDS_FILE=write(tmp_path, f"ollama {echo}\ntgi {echo}\n")))
    before = admin_state(gateway)
    proc = ok(run_setup(gateway, BACKENDS_FILE=write(tmp_path, f"ollama {echo}\n")))
    assert "tgi" not in proc.stdout
    assert admin_state(gateway) == before
    assert get(gateway, "/v1/tgi/v1/models")[0] == 200
    # Without BACKENDS_FILE the job manages the built-ins only: the file's backends stay too.
    ok(run_setup(gateway))
    assert admin_state(gateway) == before


def test_an_admin_api_error_names_the_line(gateway: Servegate, tmp_path: Path) -> None:
    backends = write(tmp_path, "ok http://127.0.0.1:18601\n\nbad http://127.0.0.1:18602 /v1/a/../b\n")
    proc = run_setup(gateway, BACKENDS_FILE=backends)
    assert proc.returncode == 1
    assert f"setup failed: BACKENDS_FILE {backends} line 3: PUT /routes/bad-route failed with HTTP 400" in proc.stderr


def test_a_file_backend_with_several_urls_gets_an_upstream(gateway: Servegate, tmp_path: Path) -> None:
    sg = gateway
    backends = write(tmp_path, "llama http://127.0.0.1:18701,http://127.0.0.1:18702 /llama\n")
    first = ok(run_setup(sg, BACKENDS_FILE=backends))
    assert "upstream llama-upstream: created" in first.stdout
    assert set(targets(sg, "llama-upstream")) == {"127.0.0.1:18701", "127.0.0.1:18702"}
    status, svc = sg.admin("GET", "/services/llama-service")
    assert status == 200 and (svc["host"], svc["port"]) == ("llama-upstream", 18701)
    state = admin_state(sg, upstreams=True)
    assert "created" not in ok(run_setup(sg, BACKENDS_FILE=backends)).stdout
    assert admin_state(sg, upstreams=True) == state

    ok(run_setup(sg, BACKENDS_FILE=write(tmp_path, "llama http://127.0.0.1:18702 /llama\n")))
    assert sg.admin("GET", "/upstreams/llama-upstream")[0] == 404
    status, svc = sg.admin("GET", "/services/llama-service")
    assert (svc["host"], svc["port"]) == ("127.0.0.1", 18702)


@pytest.mark.parametrize(("text", "message"), [
    ("ollama\n", "line 1: expected 'name URL[,URL...] [route-path]', found no URL after 'ollama'"),
    ("# c\n\nollama http://a:1 /x extra\n", "line 3: expected 'name URL[,URL...] [route-path]', found 4 fields"),
    ("ollama http://a:1, http://b:1\n",
     "line 1: 'http://b:1' is not a route path (no spaces around the commas of a URL list)"),
    ("ollama http://a:1, http://b:1 /x\n", "line 1: expected 'name URL[,URL...] [route-path]', found 4 fields (no spaces around the commas of a URL list)"),
    ("Ollama http://a:1\n", "line 1: invalid backend name 'Ollama': use lowercase letters, digits and '-'"),
    ("my_llm http://a:1\n", "invalid backend name 'my_llm'"),
    ("-x http://a:1\n", "invalid backend name '-x'"),
    (f"{'a' * 51} http://a:1\n", "invalid backend name"),
    ("vllm http://a:1\n", "line 1: the backend name 'vllm' is reserved for the built-in one (set VLLM_UPSTREAM_URL"),
    ("admin-api http://a:1\n", "the backend name 'admin-api' is reserved"),
    ("a http://a:1\nb http://b:1\na http://c:1\n", "line 3: backend 'a' is already defined on line 1"),
    ("a http://a:1 /x\nb http://b:1 /x\n", "line 2: the route path /x is already used on line 1"),
    ("a http://a:1\nb http://b:1 /v1/a\n", "line 2: the route path /v1/a is already used on line 1"),
    ("a http://a:1 /v1/sglang\n", "line 1: the route path /v1/sglang belongs to a built-in route"),
    ("a http://a:1 v1/a\n", "line 1: the route path 'v1/a' must start with '/'"),
    ("a ,\n", "line 1: no URL in ','"),
    ("a ftp://a:21\n", "line 1: 'ftp://a:21' is not an http:// or https:// URL with a host"),
    ("a a:8000\n", "line 1: 'a:8000' is not an http:// or https:// URL with a host"),
    ("a http://u:secret@a:1\n", "line 1: http://***@a:1 carries a user name or password"),
    ("a http://a:1\nb http://a:1,https://b:1\n", "line 2: the URLs of a list must share scheme and path"),
])
def test_a_bad_line_is_named(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    out, err = io.StringIO(), io.StringIO()
    code = run_in_process(
        {"SERVEGATE_ADMIN_URL": f"http://127.0.0.1:{free_port()}", "BACKENDS_FILE": path},
        out=lambda line: print(line, file=out), err=lambda line: print(line, file=err), wait_s=0,
    )
    assert code == 1
    assert err.getvalue().startswith(f"setup failed: BACKENDS_FILE {path} line ")
    assert message in err.getvalue()
    assert "waiting for the Admin API" not in out.getvalue()
    assert "secret" not in out.getvalue() + err.getvalue()


def test_a_missing_file_fails(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.txt")
    proc = run_setup(None, admin_url=f"http://127.0.0.1:{free_port()}", BACKENDS_FILE=missing)
    assert proc.returncode == 1
    assert f"setup failed: BACKENDS_FILE {missing}: cannot read it: No such file or directory" in proc.stderr
