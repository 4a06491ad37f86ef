"""model-router against a real `servegate start` and fake backends (tests/proxy/fake_openai.py --models): routing
order, discovery (refresh, a backend that adds or drops a model, one down at start, one without /v1/models),
upstreams as backends, OpenAI errors, and the configuration's Kong-style schema errors."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from helpers import Servegate, fake_backend
from support import free_port

FAST = {"refresh_interval": 1, "timeout": 2}


def hits(url: str) -> dict[str, int]:
    with urllib.request.urlopen(url + "/__stats", timeout=5) as r:
        return dict(json.loads(r.read())["models"])


def set_models(url: str, models: list[str]) -> None:
    req = urllib.request.Request(url + "/__models", data=json.dumps(models).encode(), method="POST")
    urllib.request.urlopen(req, timeout=5).close()


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def http(sg: Servegate, method: str, path: str, body: bytes | None = None,
         ctype: str = "application/json") -> tuple[int, Any]:
    req = urllib.request.Request(sg.proxy_url + path, data=body, method=method, headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode(errors="replace")


def route(sg: Servegate, services: dict[str, str], config: dict[str, Any], *, first: str | None = None) -> None:
    """Services by name -> URL, the /v1 route (strip_path off) on a placeholder service, the plugin on it."""
    for name, url in services.items():
        assert sg.admin("PUT", f"/services/{name}", {"url": url})[0] == 200
    placeholder = first or next(iter(services.values()))
    assert sg.admin("PUT", "/services/llm-service", {"url": placeholder})[0] == 200
    assert sg.admin("PUT", "/routes/llm-route", {"paths": ["/v1"], "strip_path": False,
                                                 "service": {"name": "llm-service"}})[0] == 200
    status, body = sg.admin("POST", "/routes/llm-route/plugins", {"name": "model-router", "config": config})
    assert status == 201, body


def client(sg: Servegate) -> openai.OpenAI:
    return openai.OpenAI(base_url=sg.proxy_url + "/v1", api_key="x", max_retries=0, timeout=10)


def chat(sg: Servegate, model: str) -> Any:
    return client(sg).chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])


def ids(sg: Servegate) -> dict[str, str]:
    return {m.id: m.owned_by for m in client(sg).models.list()}


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Servegate]:
    with Servegate(prefix=str(tmp_path)) as sg:
        yield sg


def test_routing_order_explicit_alias_discovered_pattern(node: Servegate) -> None:
    with fake_backend("a1,both") as a, fake_backend("b1,both,pinned") as b, fake_backend("c1") as c:
        route(node, {"a": a, "b": b, "c": c}, {
            "backends": ["a", "b", "c"],
            # An explicit entry wins over what the backends list: "both" only on c, which does not list it.
            "models": {"both": ["c"], "explicit-only": ["a"]},
            "aliases": {"gpt-4o": "b1", "latest": "pinned"},
            "patterns": {"c*": ["c"], "c1-*": ["b"], "*": ["a"]},
            "discovery": FAST,
        })
        with pytest.raises(openai.NotFoundError):  # c answers vLLM's 404 itself: routed there, not by discovery
            chat(node, "both")
        assert hits(c) == {"both": 1} and "both" not in hits(a)
        assert chat(node, "gpt-4o").model == "b1"  # rewritten to the model the alias names
        assert chat(node, "latest").model == "pinned"
        assert hits(b) == {"b1": 1, "pinned": 1}
        assert chat(node, "a1").model == "a1"  # discovered
        with pytest.raises(openai.NotFoundError):
            chat(node, "c1-x")  # the longest prefix decides: "c1-*" on b (which 404s: it does not serve it)
        assert hits(b)["c1-x"] == 1
        with pytest.raises(openai.NotFoundError):
            chat(node, "cx")
        assert hits(c)["cx"] == 1
        with pytest.raises(openai.NotFoundError):
            chat(node, "zzz")  # "*": any other model
        assert hits(a)["zzz"] == 1

        listed = ids(node)
        assert listed == {"both": "c", "explicit-only": "a", "a1": "a", "b1": "b", "pinned": "b", "c1": "c",
                          "gpt-4o": "b", "latest": "b"}
        assert list(listed)[:2] == ["both", "explicit-only"]  # explicit entries first


def test_errors_are_openai_shaped(node: Servegate) -> None:
    with fake_backend("m") as a:
        route(node, {"a": a}, {"backends": ["a"], "discovery": FAST})
        status, body = http(node, "POST", "/v1/chat/completions", b'{"model": "nope", "messages": []}')
        assert (status, body) == (404, {"error": {"message": "The model `nope` does not exist.",
                                                  "type": "invalid_request_error", "param": "model",
                                                  "code": "model_not_found"}})
        for raw, message in ((b"", "The request body must be a JSON object with a `model` field."),
                             (b"not json", "The request body must be a JSON object with a `model` field."),
                             (b"[1]", "The request body must be a JSON object with a `model` field."),
                             (b'{"messages": []}', "you must provide a model parameter"),
                             (b'{"model": ["m"]}', "Invalid value for 'model': expected a non-empty string."),
                             (b'{"model": ""}', "Invalid value for 'model': expected a non-empty string.")):
            status, body = http(node, "POST", "/v1/completions", raw)
            assert (status, body["error"]) == (400, {"message": message, "type": "invalid_request_error",
                                                     "param": "model", "code": "missing_model"}), raw
        status, body = http(node, "GET", "/v1/files")
        assert (status, body["error"]["message"]) == (404, "Invalid URL (GET /v1/files)")
        status, body = http(node, "GET", "/v1/models/nope")
        assert (status, body["error"]["code"]) == (404, "model_not_found")
        assert http(node, "GET", "/v1/models/m")[1] == {"id": "m", "object": "model", "created": 0, "owned_by": "a"}
        assert hits(a) == {}  # none of these reached the backend
        # A multipart form (audio transcriptions) is routed by its model field too.
        form = b"--XX\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nm\r\n--XX--\r\n"
        status, body = http(node, "POST", "/v1/audio/transcriptions", form, "multipart/form-data; boundary=XX")
        assert (status, body) == (400, {"error": "bad json"})  # the fake's own answer: the request reached it


def test_discovery_follows_the_backends(node: Servegate) -> None:
    """A model a backend adds is routed within the refresh interval; one it drops is denied by it once, which makes
    the router ask again at once, and then by the gateway."""
    with fake_backend("m1") as a:
        route(node, {"a": a}, {"backends": ["a"], "discovery": {"refresh_interval": 600, "timeout": 2}})
        assert chat(node, "m1").model == "m1"
        set_models(a, ["m1", "m2"])
        with pytest.raises(openai.NotFoundError) as e:
            chat(node, "m2")  # not asked again yet (600 s)
        assert e.value.code == "model_not_found"
        set_models(a, ["m2"])
        time.sleep(1.1)  # a 404 asks a backend again at most once a second (its first ask was at start)
        with pytest.raises(openai.NotFoundError) as e:
            chat(node, "m1")  # still listed: the backend's own 404 (vLLM's, code 404) ...
        assert str(e.value.code) == "404"
        # ... which asks the backend again at once: m1 is gone, m2 there.
        eventually(lambda: set(ids(node)) == {"m2"}, 5)
        assert chat(node, "m2").model == "m2"
        with pytest.raises(openai.NotFoundError) as e:
            chat(node, "m1")
        assert e.value.code == "model_not_found"


def test_refresh_interval(node: Servegate) -> None:
    with fake_backend("m1") as a:
        route(node, {"a": a}, {"backends": ["a"], "discovery": FAST})
        assert set(ids(node)) == {"m1"}
        set_models(a, ["m1", "m3"])
        eventually(lambda: set(ids(node)) == {"m1", "m3"}, 5)
        assert chat(node, "m3").model == "m3"


def test_a_backend_down_at_start_and_one_without_models(node: Servegate, tmp_path: Path) -> None:
    """Explicit entries of a backend that cannot be asked stay routed; a backend down at start is picked up when it
    comes up; a plain HTTP server without /v1/models (404 page) degrades to its explicit entries."""
    late_port = free_port()
    plain_port = free_port()
    plain = subprocess.Popen([sys.executable, "-m", "http.server", str(plain_port), "--bind", "127.0.0.1",
                              "--directory", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with fake_backend("up") as a:
            eventually(lambda: _listening(plain_port))
            late = f"http://127.0.0.1:{late_port}"
            route(node, {"a": a, "late": late, "plain": f"http://127.0.0.1:{plain_port}"}, {
                "backends": ["a", "late", "plain"],
                "models": {"pinned": ["late"], "static": ["plain"]},
                "discovery": FAST,
            })
            assert set(ids(node)) == {"up", "pinned", "static"}
            assert chat(node, "up").model == "up"
            with pytest.raises(openai.InternalServerError) as e:
                chat(node, "pinned")  # routed to the backend that is down: the gateway's 502
            assert e.value.status_code == 502
            with pytest.raises(openai.APIStatusError) as e2:
                chat(node, "static")  # reaches the plain server, which does not do POST
            assert e2.value.status_code == 501
            with fake_backend("late-model,pinned", port=late_port) as late_url:
                eventually(lambda: "late-model" in ids(node), 15)
                assert chat(node, "late-model").model == "late-model"
                assert chat(node, "pinned").model == "pinned"
                assert hits(late_url) == {"late-model": 1, "pinned": 1}
            log = node.log()
            assert "cannot read the models of backend late" in log and "cannot read the models of backend plain" in log
    finally:
        plain.terminate()
        plain.wait(10)


def _listening(port: int) -> bool:
    import socket

    with contextlib.suppress(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    return False


def test_upstreams_as_backends(node: Servegate) -> None:
    """A service whose host is an upstream is balanced by the balancer; so is an upstream named directly."""
    with fake_backend("m,x") as a, fake_backend("m,y") as b, fake_backend("z") as c:
        port_a, port_b = a.rsplit(":", 1)[1], b.rsplit(":", 1)[1]
        assert node.admin("PUT", "/upstreams/pool", {"algorithm": "round-robin"})[0] == 200
        for port in (port_a, port_b):
            assert node.admin("POST", "/upstreams/pool/targets", {"target": f"127.0.0.1:{port}"})[0] == 201
        assert node.admin("PUT", "/upstreams/solo", {})[0] == 200
        assert node.admin("POST", "/upstreams/solo/targets", {"target": c.split("//")[1]})[0] == 201
        route(node, {"pooled": "http://pool:8000/v1"}, {"backends": ["pooled", "solo"], "discovery": FAST},
              first=a)
        # One replica answers for its upstream: the newest target that answers.
        assert set(ids(node)) in ({"m", "x", "z"}, {"m", "y", "z"})
        for _ in range(4):
            assert chat(node, "m").model == "m"
        assert hits(a)["m"] == 2 and hits(b)["m"] == 2  # round-robin over the targets
        assert chat(node, "z").model == "z"
        assert hits(c) == {"z": 1}


def test_schema_errors_are_kongs(node: Servegate) -> None:
    status, body = node.admin("POST", "/plugins", {"name": "model-router", "config": {
        "backends": ["a"], "models": {"m": ["b"]}}})
    assert status == 400
    assert body["fields"] == {"config": {"@entity": ["model 'm' names backend 'b', which is not in config.backends"]}}
    assert body["message"].startswith("schema violation (config.@entity:")
    status, body = node.admin("POST", "/plugins", {"name": "model-router", "config": {
        "backends": ["a"], "patterns": {"llama": ["a"]}, "discovery": {"refresh_interval": 0}}})
    assert status == 400
    assert body["fields"]["config"]["patterns"].startswith("invalid pattern 'llama'")
    assert body["fields"]["config"]["discovery"] == {"refresh_interval": "value should be between 1 and 86400"}
    status, body = node.admin("POST", "/plugins", {"name": "model-router", "config": {}})
    assert (status, body["fields"]) == (400, {"config": {"backends": "required field missing"}})
    status, schema = node.admin("GET", "/schemas/plugins/model-router")
    assert status == 200
    [config] = [f["config"] for f in schema["fields"] if "config" in f]
    fields = {next(iter(f)): f[next(iter(f))] for f in config["fields"]}
    assert list(fields) == ["backends", "models", "aliases", "patterns", "discovery", "balancing", "models_endpoint"]
    assert fields["balancing"]["one_of"] == ["least-outstanding", "round-robin"]
    assert "description" in fields["backends"]


def test_a_backend_that_goes_down_leaves_the_models_it_shares(node: Servegate) -> None:
    """A 502 from a backend asks it again at once; unreachable, it gets no more requests for a model another
    backend serves, until it answers again."""
    with fake_backend("shared") as a:
        with fake_backend("shared,b-only") as b:
            route(node, {"a": a, "b": b}, {"backends": ["a", "b"],
                                           "discovery": {"refresh_interval": 600, "timeout": 2}})
            for _ in range(4):
                chat(node, "shared")
            assert hits(a)["shared"] == 2 and hits(b)["shared"] == 2
        # Requests to b fail (502) until its ask, at once or within two seconds of the last one, finds it down.
        failures, streak, before = 0, 0, hits(a)["shared"]
        deadline = time.monotonic() + 5
        while streak < 10:
            assert time.monotonic() < deadline, "b still gets requests"
            try:
                chat(node, "shared")
                streak += 1
            except openai.InternalServerError as e:
                assert e.status_code == 502
                failures += 1
                streak = 0
        assert hits(a)["shared"] >= before + 10
        with pytest.raises(openai.InternalServerError):
            chat(node, "b-only")  # its only backend: still tried (its last list is kept)
        assert "cannot read the models of backend b" in node.log()
