"""One /v1 for every model: after `servegate setup`, the OpenAI SDK against `<proxy>/v1` reaches whichever backend
serves the model it names (the model-router plugin), on SQLite and PostgreSQL.

Two fake backends serve three models, one of them on both: vllm serves alpha and shared, sglang serves beta and
shared (tests/proxy/fake_openai.py --models; any other model gets vLLM's 404).
"""

from __future__ import annotations

import contextlib
import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from setup_support import KEY_A, admin_state, ok, run_setup

from helpers import Servegate, fake_backend


def hits(url: str) -> dict[str, int]:
    """Requests per model the fake backend at `url` received."""
    with urllib.request.urlopen(url + "/__stats", timeout=5) as r:
        return dict(json.loads(r.read())["models"])


@pytest.fixture
def two_backends() -> Iterator[tuple[str, str]]:
    with contextlib.ExitStack() as stack:
        vllm = stack.enter_context(fake_backend("alpha,shared"))
        sglang = stack.enter_context(fake_backend("beta,shared"))
        yield vllm, sglang


def client(sg: Servegate) -> openai.OpenAI:
    return openai.OpenAI(base_url=sg.proxy_url + "/v1", api_key="not-needed", max_retries=0, timeout=10)


def chat(c: openai.OpenAI, model: str, **kw: Any) -> Any:
    return c.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], **kw)


def test_openai_sdk_on_one_v1_after_setup(gateway: Servegate, two_backends: tuple[str, str]) -> None:
    vllm, sglang = two_backends
    env = dict(VLLM_UPSTREAM_URL=vllm, SGLANG_UPSTREAM_URL=sglang, KONG_ADMIN_API_KEY=KEY_A)
    first = ok(run_setup(gateway, **env))
    assert "route llm-route /v1 (no strip_path): created" in first.stdout
    assert "plugin model-router on llm-route over vllm-service, sglang-service: created" in first.stdout
    c = client(gateway)

    # The merged list: each model once, owned_by the backend serving it (a shared one: the first configured).
    listed = {m.id: m.owned_by for m in c.models.list()}
    assert listed == {"alpha": "vllm-service", "shared": "vllm-service", "beta": "sglang-service"}
    assert c.models.retrieve("beta").owned_by == "sglang-service"

    # Each model reaches a backend serving it (the fakes answer 404 for any other model).
    assert chat(c, "alpha").model == "alpha"
    assert chat(c, "beta").model == "beta"
    assert hits(vllm) == {"alpha": 1} and hits(sglang) == {"beta": 1}

    # The shared one is balanced over both.
    for _ in range(8):
        assert chat(c, "shared").choices[0].message.content
    assert hits(vllm)["shared"] >= 2 and hits(sglang)["shared"] >= 2
    assert hits(vllm)["shared"] + hits(sglang)["shared"] == 8

    # Streaming, completions and embeddings are routed the same way.
    events = list(chat(c, "beta", stream=True, max_tokens=3))
    assert "".join(e.choices[0].delta.content or "" for e in events if e.choices) == "tok0 tok1 tok2 "
    assert c.completions.create(model="alpha", prompt="x", max_tokens=2).choices[0].text == "tok0 tok1"
    assert len(c.embeddings.create(model="beta", input=["a", "b"]).data) == 2
    assert hits(vllm)["alpha"] == 2 and hits(sglang)["beta"] == 3

    # An unknown model: OpenAI's 404; no model at all: a 400 of the same shape. Neither reaches a backend.
    with pytest.raises(openai.NotFoundError) as nf:
        chat(c, "gamma")
    assert nf.value.code == "model_not_found" and nf.value.param == "model"
    assert nf.value.type == "invalid_request_error" and "`gamma` does not exist" in nf.value.message
    with pytest.raises(openai.BadRequestError) as bad:
        c.post("/chat/completions", body={"messages": []}, cast_to=object)
    assert bad.value.code == "missing_model" and bad.value.param == "model"
    with pytest.raises(openai.BadRequestError):
        c.post("/embeddings", body={"model": 7, "input": "x"}, cast_to=object)
    assert "gamma" not in hits(vllm) and "gamma" not in hits(sglang)

    # The longer prefixes keep their own routes (the router prefers the longer path).
    with urllib.request.urlopen(gateway.proxy_url + "/v1/sglang/v1/models", timeout=5) as r:
        assert [m["id"] for m in json.loads(r.read())["data"]] == ["beta", "shared"]

    # Setup stays idempotent.
    state = admin_state(gateway)
    second = ok(run_setup(gateway, **env))
    assert admin_state(gateway) == state
    assert "created" not in second.stdout and "updated" not in second.stdout


def test_a_rerun_adds_new_backends_and_keeps_the_rest(tmp_path: Any) -> None:
    """Backends the operator added to the router survive a re-run; a backend new to the environment is added; the
    rest of the plugin's configuration is left alone."""
    with Servegate(prefix=str(tmp_path)) as sg, fake_backend("alpha") as vllm, fake_backend("beta") as sglang:
        ok(run_setup(sg, VLLM_UPSTREAM_URL=vllm))
        [plugin] = [p for p in admin_state(sg)["plugins"] if p["name"] == "model-router"]
        assert plugin["config"]["backends"] == ["vllm-service"]
        assert sg.admin("PUT", "/services/extra-service", {"url": sglang})[0] == 200
        status, body = sg.admin("PATCH", f"/plugins/{plugin['id']}", {"config": {
            "backends": ["extra-service", "vllm-service"], "aliases": {"gpt-4o": "alpha"}}})
        assert status == 200, body

        proc = ok(run_setup(sg, VLLM_UPSTREAM_URL=vllm, SGLANG_UPSTREAM_URL=sglang))
        assert "plugin model-router on llm-route over vllm-service, sglang-service: updated" in proc.stdout
        config = sg.admin("GET", f"/plugins/{plugin['id']}")[1]["config"]
        assert config["backends"] == ["extra-service", "vllm-service", "sglang-service"]
        assert config["aliases"] == {"gpt-4o": "alpha"}
        c = client(sg)
        assert chat(c, "gpt-4o").model == "alpha"  # the alias, rewritten to the model it names
        assert {m.id for m in c.models.list()} == {"alpha", "beta", "gpt-4o"}


def test_no_backend_no_v1(gateway: Servegate) -> None:
    proc = ok(run_setup(gateway, KONG_ADMIN_API_KEY=KEY_A))
    assert "no backend configured: skipping llm-service, llm-route and its model-router plugin" in proc.stdout
    assert gateway.admin("GET", "/routes/llm-route")[0] == 404


def test_a_gateway_without_the_plugin_keeps_its_routes(tmp_path: Any) -> None:
    with Servegate(prefix=str(tmp_path), extra_env={"SERVEGATE_PLUGINS": "key-auth"}) as sg, \
            fake_backend("alpha") as vllm:
        proc = ok(run_setup(sg, VLLM_UPSTREAM_URL=vllm, KONG_ADMIN_API_KEY=KEY_A))
        assert "the gateway has no model-router plugin: skipping llm-service and llm-route (/v1)" in proc.stdout
        assert sg.admin("GET", "/routes/llm-route")[0] == 404
        assert sg.admin("GET", "/routes/vllm-route")[0] == 200
