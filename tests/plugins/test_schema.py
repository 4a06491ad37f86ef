"""Plugin config schemas through the registry and the schema layer (Kong's messages).

Cases from spec/03-plugins/23-rate-limiting/01-schema_spec.lua and key-auth's schema.
"""

from __future__ import annotations

from typing import Any

import pytest

from servegate.plugins import load_all
from servegate.schema.entities import PLUGINS
from servegate.schema.errors import DaoError
from servegate.schema.plugins import get_plugin
from servegate.schema.validate import process_input

load_all()

AT_LEAST_ONE = ("at least one of these fields must be non-empty: 'config.second', 'config.minute', "
                "'config.hour', 'config.day', 'config.month', 'config.year'")


def validate(name: str, config: dict[str, Any], **row: Any) -> dict[str, Any]:
    """The stored config on success; raises DaoError otherwise."""
    return process_input(PLUGINS, {"name": name, "config": config, **row}, op="insert")["config"]


def errors(name: str, config: dict[str, Any], **row: Any) -> dict[str, Any]:
    with pytest.raises(DaoError) as info:
        validate(name, config, **row)
    fields = info.value.to_json()["fields"]
    assert isinstance(fields, dict)
    return fields


def test_registered_with_priorities() -> None:
    ka, rl = get_plugin("key-auth"), get_plugin("rate-limiting")
    assert ka is not None and rl is not None
    assert (ka.priority, ka.no_consumer) == (1250, True)
    assert (rl.priority, rl.no_consumer) == (910, False)


def test_key_auth_defaults() -> None:
    assert validate("key-auth", {}) == {
        "key_names": ["apikey"], "hide_credentials": False, "anonymous": None, "key_in_header": True,
        "key_in_query": True, "key_in_body": False, "run_on_preflight": True, "realm": None,
    }


def test_key_auth_bad_key_name() -> None:
    assert errors("key-auth", {"key_names": ["ok", "bad name"]}) == {"config": {"key_names": [
        None, "bad header name 'bad name', allowed characters are A-Z, a-z, 0-9, '_', and '-'"]}}


def test_key_auth_rejects_consumer_scope() -> None:
    fields = errors("key-auth", {}, consumer={"id": "6c1f2a1e-2f0a-4a8b-9a52-0d5c7c1b2f10"})
    assert fields["consumer"] == "value must be null"


@pytest.mark.parametrize("config", [
    {"second": 10},
    {"second": 10, "minute": 20, "hour": 30, "day": 40, "month": 50, "year": 60},
    {"second": 10, "limit_by": "header", "header_name": "X-App-Version"},
    {"second": 10, "limit_by": "path", "path": "/request"},
    {"second": 10, "policy": "redis", "redis": {"host": "127.0.0.1", "port": 6379, "database": 0,
                                                 "username": "test", "password": "testXXX", "ssl": True,
                                                 "ssl_verify": False, "timeout": 1100,
                                                 "server_name": "test.example"}},
])
def test_rate_limiting_valid(config: dict[str, Any]) -> None:
    validate("rate-limiting", config)


def test_rate_limiting_defaults() -> None:
    out = validate("rate-limiting", {"minute": 5})
    assert out["limit_by"] == "consumer" and out["policy"] == "local"
    assert out["fault_tolerant"] is True and out["hide_client_headers"] is False
    assert out["error_code"] == 429 and out["error_message"] == "API rate limit exceeded"
    assert out["sync_rate"] == -1
    assert out["redis"] == {"host": None, "port": 6379, "timeout": 2000, "username": None, "password": None,
                            "database": 0, "ssl": False, "ssl_verify": False, "server_name": None}


@pytest.mark.parametrize(("config", "message"), [
    ({"second": 20, "hour": 10}, "The limit for hour(10.0) cannot be lower than the limit for second(20.0)"),
    ({"second": 10, "minute": 20, "hour": 30, "day": 40, "month": 60, "year": 50},
     "The limit for year(50.0) cannot be lower than the limit for month(60.0)"),
    ({"second": 10, "sync_rate": 1}, "sync_rate can only be used with the redis policy"),
    ({"second": 10, "policy": "redis", "redis": {"host": "localhost"}, "sync_rate": 0.01},
     "sync_rate must be greater than 0.02, or -1 to disable"),
])
def test_rate_limiting_config_validator(config: dict[str, Any], message: str) -> None:
    assert errors("rate-limiting", config)["config"] == message


def test_rate_limiting_needs_a_limit() -> None:
    assert errors("rate-limiting", {})["@entity"] == [AT_LEAST_ONE]


@pytest.mark.parametrize(("config", "field"), [
    ({"second": 10, "limit_by": "header"}, "header_name"),
    ({"second": 10, "limit_by": "path"}, "path"),
])
def test_rate_limiting_limit_by_requires_field(config: dict[str, Any], field: str) -> None:
    assert errors("rate-limiting", config)["config"] == {field: "required field missing"}


def test_rate_limiting_redis_host_required() -> None:
    fields = errors("rate-limiting", {"second": 10, "policy": "redis", "redis": {"port": 6379, "timeout": 1100}})
    assert fields["config"] == {"redis": {"host": "required field missing"}}


@pytest.mark.parametrize(("config", "path", "message"), [
    ({"second": 0}, ("second",), "value must be greater than 0"),
    ({"second": 1, "policy": "nope"}, ("policy",), 'expected one of: local, cluster, redis'),
    ({"second": 1, "limit_by": "x"}, ("limit_by",),
     "expected one of: consumer, credential, ip, service, header, path"),
    ({"second": 1, "redis": {"port": 70000}}, ("redis", "port"), "value should be between 0 and 65535"),
    ({"second": 1, "header_name": "a b"}, ("header_name",),
     "bad header name 'a b', allowed characters are A-Z, a-z, 0-9, '_', and '-'"),
    ({"second": 1, "redis": {"host": "h:80"}}, ("redis", "host"), "must not have a port"),
    ({"second": 1, "redis": {"server_name": "1.2.3.4"}}, ("redis", "server_name"), "must not be an IP"),
])
def test_rate_limiting_field_messages(config: dict[str, Any], path: tuple[str, ...], message: str) -> None:
    err: Any = errors("rate-limiting", config)["config"]
    for p in path:
        err = err[p]
    assert err == message


LEGACY = {
    "minute": 100, "policy": "redis", "redis_host": "custom-host.example.test", "redis_port": 55000,
    "redis_username": "test1", "redis_password": "testX", "redis_database": 1, "redis_timeout": 1100,
    "redis_ssl": True, "redis_ssl_verify": True, "redis_server_name": "example.test",
}


def assert_redis_config_same(expected: dict[str, Any], got: dict[str, Any]) -> None:
    for name in ("host", "port", "username", "password", "database", "timeout", "ssl", "ssl_verify",
                 "server_name"):
        assert got["redis"][name] == expected[f"redis_{name}"], name
        assert got[f"redis_{name}"] == expected[f"redis_{name}"], name


def test_rate_limiting_deprecated_redis_fields_round_trip() -> None:
    """06-shorthand_fields_spec: legacy fields land in `redis`, and are echoed on output (POST, PATCH)."""
    from servegate.schema.output import to_output

    row = process_input(PLUGINS, {"name": "rate-limiting", "config": dict(LEGACY)}, op="insert")
    assert_redis_config_same(LEGACY, to_output(PLUGINS, row)["config"])
    patched = process_input(PLUGINS, {"config": {"redis_host": "testhost"}}, op="update", existing=row)
    assert_redis_config_same({**LEGACY, "redis_host": "testhost"}, to_output(PLUGINS, patched)["config"])


def test_rate_limiting_legacy_fields_reach_the_policy() -> None:
    from servegate.plugins.rate_limiting import RateLimitConf
    from servegate.plugins.ratelimit.redis_policy import RedisPolicy

    row = process_input(PLUGINS, {"name": "rate-limiting", "config": dict(LEGACY)}, op="insert")
    policy = RateLimitConf(row).policy
    assert isinstance(policy, RedisPolicy)
    assert policy._conf["host"] == "custom-host.example.test" and policy._conf["port"] == 55000
