"""Deprecated plugin config aliases, Admin output shape, and the endpoint-key validator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from schema_cases import A_UUID, LIMIT_CONFIG, errors_of, row_of

from servegate.schema.coerce import coerce
from servegate.schema.entities import CONSUMERS, PLUGINS, ROUTES, SERVICES
from servegate.schema.fields import Field
from servegate.schema.output import to_output
from servegate.schema.plugins import register_plugin, unregister_plugin
from servegate.schema.validate import validate_field

ALIASED = "test-aliased"


@pytest.fixture
def aliased_plugin() -> Iterator[None]:
    register_plugin(
        ALIASED,
        priority=1,
        version="1.0.0",
        config=LIMIT_CONFIG,
        config_shorthands={
            "redis_host": (Field("string"), lambda v: {"redis": {"host": v}}),
            "redis_port": (Field("integer"), lambda v: {"redis": {"port": v}}),
        },
        config_echo={"redis_host": ("redis", "host"), "redis_port": ("redis", "port")},
    )
    try:
        yield
    finally:
        unregister_plugin(ALIASED)


@pytest.mark.usefixtures("aliased_plugin")
def test_config_aliases() -> None:
    row = row_of(PLUGINS, {"name": ALIASED, "config": {"minute": 1, "redis_host": "r", "redis_port": 7000}})
    assert row["config"]["redis"] == {"host": "r", "port": 7000, "timeout": 2000}
    assert "redis_host" not in row["config"]
    out = to_output(PLUGINS, row)
    assert out["config"]["redis_host"] == "r" and out["config"]["redis_port"] == 7000
    assert out["config"]["redis"] == row["config"]["redis"]
    # the same value in both places is fine; different values are refused
    assert (
        errors_of(
            PLUGINS, {"name": ALIASED, "config": {"minute": 1, "redis_host": "r", "redis": {"host": "r"}}}
        )
        == {}
    )
    assert errors_of(
        PLUGINS, {"name": ALIASED, "config": {"minute": 1, "redis_host": "a", "redis": {"host": "b"}}}
    ) == {
        "config": {
            "redis_host": "both deprecated and new field are used but their values mismatch: "
            "redis_host = a vs redis.host = b"
        }
    }
    assert errors_of(PLUGINS, {"name": ALIASED, "config": {"minute": 1, "redis_port": "x"}}) == {
        "config": {"redis_port": "expected an integer"}
    }
    # PATCH with an alias replaces the stored value
    patched = row_of(PLUGINS, {"config": {"redis_host": "new"}}, op="update", existing=row)
    assert patched["config"]["redis"]["host"] == "new"
    # form input: aliases are coerced with their own field
    assert coerce(PLUGINS, {"name": ALIASED, "config": {"redis_port": "7001", "minute": "2"}})["config"] == {
        "redis_port": 7001,
        "minute": 2,
    }


def test_output_has_every_field() -> None:
    row = row_of(ROUTES, {"paths": ["/"]})
    sparse = {k: v for k, v in row.items() if v is not None}
    out = to_output(ROUTES, sparse)
    assert list(out) == [name for name, _ in ROUTES.fields]
    assert out["service"] is None and out["hosts"] is None
    assert to_output(ROUTES, {**sparse, "methods": {}})["methods"] == []


def test_validate_field_for_endpoint_keys() -> None:
    name = SERVICES.field_map()["name"]
    assert validate_field(name, "good-name") is None
    assert validate_field(name, "bad name") == (
        "invalid value 'bad name': the only accepted ascii characters are alphanumerics or ., -, _, and ~"
    )
    assert validate_field(CONSUMERS.field_map()["username"], "any thing@x") is None
    assert validate_field(SERVICES.field_map()["id"], "nope") == "expected a valid UUID"
    assert validate_field(SERVICES.field_map()["id"], A_UUID) is None


def test_update_of_a_service() -> None:
    existing = row_of(SERVICES, {"name": "s", "url": "http://a.test:8000/v1"})
    row = row_of(SERVICES, {"retries": 2, "tags": ["x"]}, op="update", existing=existing)
    assert (row["retries"], row["tags"], row["path"], row["port"]) == (2, ["x"], "/v1", 8000)
    assert errors_of(SERVICES, {"host": None}, op="update", existing=existing) == {
        "host": "required field missing"
    }
    assert errors_of(SERVICES, {"nope": 1}, op="update", existing=existing) == {"nope": "unknown field"}
