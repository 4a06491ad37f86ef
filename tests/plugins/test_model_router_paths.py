"""model-router's path rules, without a server: where a routed request and a backend's model list go."""

from __future__ import annotations

import pytest

from servegate.plugins.model_router.backends import Backend, models_path, strip_route_prefix


def backend(path: str | None) -> Backend:
    return Backend("b", ("h", 1), None, "http", path, (path or "").rstrip("/").endswith("/v1"), None, None, ())


@pytest.mark.parametrize(("service_path", "rel", "upstream"), [
    (None, "/v1/chat/completions", "/v1/chat/completions"),
    ("/", "/v1/embeddings", "/v1/embeddings"),
    ("/base", "/v1/completions", "/base/v1/completions"),
    ("/base/", "/v1/completions", "/base/v1/completions"),
    # A service path ending in /v1 is an OpenAI base URL: the request's /v1 is not repeated.
    ("/v1", "/v1/chat/completions", "/v1/chat/completions"),
    ("/openai/v1/", "/v1/models", "/openai/v1/models"),
    ("/v1", "/other", "/v1/other"),
])
def test_upstream_path(service_path: str | None, rel: str, upstream: str) -> None:
    assert backend(service_path).path_for(rel) == upstream


@pytest.mark.parametrize(("service_path", "probe"), [
    (None, "/v1/models"), ("/", "/v1/models"), ("/base", "/base/v1/models"), ("/v1", "/v1/models"),
    ("/openai/v1/", "/openai/v1/models"),
])
def test_models_path(service_path: str | None, probe: str) -> None:
    assert models_path(service_path) == probe


def test_route_prefix_is_removed_only_when_the_route_strips_it() -> None:
    assert strip_route_prefix({"strip_path": False, "paths": ["/v1"]}, "/v1/models") == "/v1/models"
    route = {"strip_path": True, "paths": ["/llm", "/llm/openai", "~/regex"]}
    assert strip_route_prefix(route, "/llm/openai/v1/models") == "/v1/models"
    assert strip_route_prefix(route, "/llm/v1/models") == "/v1/models"
    assert strip_route_prefix(route, "/llm") == "/"
    assert strip_route_prefix(None, "/v1/x") == "/v1/x"
