"""The Docker stack, checked without a Docker engine: schema validity after interpolation, the structural
promises the README makes, and the image's commands run on this machine."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from compose_file import (
    ENV_EXAMPLE,
    ROOT,
    SPEC,
    InterpolationError,
    env_dict,
    interpolate,
    load_compose,
    port_mappings,
    read_env_file,
)

SEED_DEFAULTS = {
    "KONG_PG_DATABASE": "kong",
    "KONG_PG_USER": "kong",
    "KONG_PROXY_PORT": "8000",
    "KONG_PROXY_SSL_PORT": "8443",
    "POSTGRES_PORT": "5432",
    "VLLM_UPSTREAM_URL": "http://host.docker.internal:8080",
    "SGLANG_UPSTREAM_URL": "http://host.docker.internal:30000",
    "KONG_ADMIN_API_KEY": "changeme-admin-key-secret",
}
SECRET_PATH = "/run/secrets/postgres_password"


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    return load_compose(read_env_file())


@pytest.fixture(scope="module")
def services(stack: dict[str, Any]) -> dict[str, Any]:
    return stack["services"]


def test_interpolation_forms() -> None:
    env = {"SET": "v", "EMPTY": ""}
    assert interpolate("${SET:-d} ${EMPTY:-d} ${UNSET:-d}", env) == "v d d"
    assert interpolate("${EMPTY-d}|${UNSET-d}", env) == "|d"
    assert interpolate("$$SET ${SET} $SET ${UNSET}", env) == "$SET v v "
    assert interpolate("${SET:+alt}${EMPTY:+alt}", env) == "alt"
    with pytest.raises(InterpolationError):
        interpolate("${UNSET:?needed}", env)


@pytest.mark.parametrize("source", ["env-example", "no-env-file"])
def test_valid_against_compose_spec(source: str) -> None:
    env = read_env_file() if source == "env-example" else {}
    validator = jsonschema.Draft7Validator(json.loads(SPEC.read_text()))
    validator.validate(load_compose(env))


def test_schema_check_rejects_a_broken_file() -> None:
    """The validator is not vacuous: misspelled keys and wrong types are reported."""
    validator = jsonschema.Draft7Validator(json.loads(SPEC.read_text()))
    broken = load_compose({})
    broken["services"]["kong"]["healthcheck"]["tset"] = ["CMD", "true"]
    broken["services"]["kong-setup"]["depends_on"] = {"kong": {"condition": 1}}
    assert len(list(validator.iter_errors(broken))) >= 2


def test_env_example_has_seed_variables_and_defaults() -> None:
    env = read_env_file(ENV_EXAMPLE)
    for name, default in SEED_DEFAULTS.items():
        assert env.get(name) == default, name
    # The compose defaults agree with .env.example, so a missing .env gives the same stack.
    assert load_compose(env) == load_compose({})


def test_service_names_match_seed_commands(services: dict[str, Any]) -> None:
    assert set(services) == {"postgres", "kong-migrations", "kong", "kong-setup"}


def test_admin_port_is_not_published(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        for _ip, host_port, target in port_mappings(svc):
            assert target.split("/")[0] != "8001", f"{name} publishes the Admin API"
            assert host_port != "8001"
    kong_env = env_dict(services["kong"])
    assert kong_env["SERVEGATE_ADMIN_LISTEN"] == "0.0.0.0:8001"


def test_proxy_ports_follow_env() -> None:
    published = port_mappings(load_compose({"KONG_PROXY_PORT": "9000", "KONG_PROXY_SSL_PORT": "9443"})["services"]["kong"])
    assert {(h, t) for _ip, h, t in published} == {("9000", "8000"), ("9443", "8443")}
    default = port_mappings(load_compose({})["services"]["kong"])
    assert set(default) == {("0.0.0.0", "8000", "8000"), ("0.0.0.0", "8443", "8443")}
    local = port_mappings(load_compose({"SERVEGATE_PUBLISH_ADDRESS": "127.0.0.1"})["services"]["kong"])
    assert {ip for ip, _h, _t in local} == {"127.0.0.1"}


def test_postgres_password_comes_from_secret_file(stack: dict[str, Any], services: dict[str, Any]) -> None:
    assert stack["secrets"]["postgres_password"] == {"file": "./POSTGRES_PASSWORD"}
    pg = services["postgres"]
    assert pg["image"] == "postgres:17"
    assert env_dict(pg)["POSTGRES_PASSWORD_FILE"] == SECRET_PATH
    for name in ("postgres", "kong-migrations", "kong"):
        assert "postgres_password" in services[name]["secrets"], name
    for name in ("kong-migrations", "kong"):
        env = env_dict(services[name])
        assert env["SERVEGATE_PG_PASSWORD_FILE"] == SECRET_PATH
        assert not any(k.endswith("PG_PASSWORD") for k in env), "no plain-text password in the environment"
    assert "PASSWORD" not in json.dumps(env_dict(services["kong-setup"]))


def test_healthchecks(services: dict[str, Any]) -> None:
    pg_test = services["postgres"]["healthcheck"]["test"]
    assert pg_test[0] == "CMD-SHELL" and "pg_isready" in pg_test[1]
    assert services["kong"]["healthcheck"]["test"] == ["CMD", "servegate", "health"]
    # The one-shot jobs run the same image but serve nothing: its HEALTHCHECK would mark them unhealthy.
    for job in ("kong-migrations", "kong-setup"):
        assert services[job]["healthcheck"] == {"disable": True}, job


def test_depends_on_conditions(services: dict[str, Any]) -> None:
    assert services["kong-migrations"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["kong"]["depends_on"] == {"kong-migrations": {"condition": "service_completed_successfully"}}
    assert services["kong-setup"]["depends_on"] == {"kong": {"condition": "service_healthy"}}


def test_hardening_and_restart(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        assert "no-new-privileges:true" in svc.get("security_opt", []), name
    assert services["kong"]["extra_hosts"] == ["host.docker.internal:host-gateway"]
    assert services["kong"]["init"] is True
    assert services["kong"]["restart"] == "unless-stopped"
    assert services["postgres"]["restart"] == "unless-stopped"
    assert services["kong-setup"]["restart"] == "no"


def test_commands(services: dict[str, Any]) -> None:
    assert services["kong"]["command"] == ["servegate", "start"]
    assert services["kong-setup"]["command"] == ["servegate", "setup"]
    migrate = services["kong-migrations"]["command"]
    assert migrate[-1] == "servegate migrations bootstrap && servegate migrations up"
    setup_env = env_dict(services["kong-setup"])
    assert setup_env["SERVEGATE_ADMIN_URL"] == "http://kong:8001"
    for name in ("VLLM_UPSTREAM_URL", "SGLANG_UPSTREAM_URL", "KONG_ADMIN_API_KEY"):
        assert setup_env[name] == SEED_DEFAULTS[name]
    custom = env_dict(load_compose({"KONG_ADMIN_API_KEY": "k2", "SGLANG_UPSTREAM_URL": ""})["services"]["kong-setup"])
    # An empty value in .env must reach the job as empty (setup then skips that backend), not as the default.
    assert custom["KONG_ADMIN_API_KEY"] == "k2"
    assert custom["SGLANG_UPSTREAM_URL"] == ""
    assert custom["VLLM_UPSTREAM_URL"] == SEED_DEFAULTS["VLLM_UPSTREAM_URL"]


def test_same_image_for_every_servegate_service(services: dict[str, Any]) -> None:
    images = {services[n]["image"] for n in ("kong-migrations", "kong", "kong-setup")}
    assert images == {"servegate:local"}
    # One service builds the shared image: with `build:` on each, Compose builds it once per service.
    assert [n for n, svc in services.items() if "build" in svc] == ["kong"]
    assert services["kong"]["build"] == {"context": ".", "dockerfile": "Dockerfile"}
    # The image is this repository's: Compose must not try a registry first (noisy errors on every first `up`).
    assert {services[n]["pull_policy"] for n in ("kong-migrations", "kong", "kong-setup")} == {"never"}
    assert load_compose({"SERVEGATE_IMAGE": "servegate:0.1.0"})["services"]["kong"]["image"] == "servegate:0.1.0"


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in dockerfile_instructions():
        if word == "ENV":
            for m in re.finditer(r'(\w+)=("([^"]*)"|\S+)', rest):
                env[m.group(1)] = m.group(3) if m.group(3) is not None else m.group(2)
    return env


def test_dockerfile_shape() -> None:
    ins = dockerfile_instructions()
    froms = [r for w, r in ins if w == "FROM"]
    assert froms == ["python:3.11-slim AS build", "python:3.11-slim"]
    # The build stage compiles the hot modules (and must fail rather than fall back to pure Python); the
    # runtime stage installs that wheel without a compiler.
    assert any(w == "RUN" and "SERVEGATE_COMPILE=1 pip wheel" in r for w, r in ins)
    assert ("COPY", "pyproject.toml setup.py README.md ./") in ins
    assert any(w == "RUN" and "pip install /wheels/" in r for w, r in ins)
    users = [r for w, r in ins if w == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert ("CMD", '["servegate", "start"]') in ins
    health = [r for w, r in ins if w == "HEALTHCHECK"]
    assert health and health[0].endswith('CMD ["servegate", "health"]')
    # The build context must not carry local secrets or the virtualenv.
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", "POSTGRES_PASSWORD", ".venv"} <= set(ignored)


def test_gateway_environment_yields_expected_settings(services: dict[str, Any], tmp_path: Path) -> None:
    """Feed the gateway container's environment (image ENV, then compose) to the real settings loader."""
    from servegate.settings import load_settings

    secret = tmp_path / "postgres_password"
    secret.write_text("s3cret-from-file\n")  # `echo ... > POSTGRES_PASSWORD` leaves a newline
    env = {**dockerfile_env(), **env_dict(services["kong"])}
    env["SERVEGATE_PG_PASSWORD_FILE"] = str(secret)
    env["SERVEGATE_PREFIX"] = str(tmp_path)
    s = load_settings(env)
    assert s.database == "postgres"
    assert (s.pg_host, s.pg_port, s.pg_database, s.pg_user) == ("postgres", 5432, "kong", "kong")
    assert s.pg_password == "s3cret-from-file"
    assert [(x.host, x.port, x.ssl) for x in s.admin_listen] == [("0.0.0.0", 8001, False)]
    assert [(x.host, x.port, x.ssl) for x in s.proxy_listen] == [("0.0.0.0", 8000, False), ("0.0.0.0", 8443, True)]
    assert s.proxy_access_log == "stdout"
    # .env values with KONG_ names reach the gateway through the KONG_ fallback.
    custom = load_compose({"KONG_PG_DATABASE": "llmgw", "KONG_PG_USER": "gw"})["services"]["kong"]
    env2 = {**dockerfile_env(), **env_dict(custom), "SERVEGATE_PG_PASSWORD_FILE": str(secret)}
    s2 = load_settings(env2)
    assert (s2.pg_database, s2.pg_user) == ("llmgw", "gw")
