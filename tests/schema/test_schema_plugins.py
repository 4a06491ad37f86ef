"""plugins: subschema by name, config defaults and validation, scope restrictions
(cases from Kong's 07-plugins_spec and 04-plugins_routes_spec)."""

from __future__ import annotations

import uuid

import pytest
from schema_cases import AUTH, LIMIT, NOROUTE, NOSERVICE, NOW, error_of, errors_of, row_of

from servegate.schema.entities import PLUGINS
from servegate.schema.fields import Field
from servegate.schema.plugins import enabled_plugins, get_plugin, register_plugin

pytestmark = pytest.mark.usefixtures("test_plugins")


def sid() -> dict[str, str]:
    return {"id": str(uuid.uuid4())}


def test_registry() -> None:
    assert {AUTH, LIMIT} <= set(enabled_plugins())
    plugin = get_plugin(AUTH)
    assert plugin is not None and plugin.priority == 1250 and plugin.no_consumer
    assert plugin.protocols_allowed == ("grpc", "grpcs", "http", "https")
    assert get_plugin("world domination") is None
    with pytest.raises(ValueError):
        register_plugin("bad", priority=1, version="1", config=Field("string"))


def test_declaration() -> None:
    assert PLUGINS.cache_key == ("name", "route", "service", "consumer")
    assert PLUGINS.endpoint_key == "instance_name"
    for name in ("route", "service", "consumer"):
        assert PLUGINS.field_map()[name].on_delete == "cascade"


def test_unknown_plugin() -> None:
    err = error_of(PLUGINS, {"name": "world domination", "foo": 1})
    assert err.to_json() == {
        "code": 2,
        "name": "schema violation",
        "message": "schema violation (name: plugin 'world domination' not enabled; "
        "add it to the 'plugins' configuration property)",
        "fields": {
            "name": "plugin 'world domination' not enabled; add it to the 'plugins' configuration property"
        },
    }
    assert errors_of(PLUGINS, {}) == {"name": "required field missing"}


def test_config_defaults_when_absent() -> None:
    row = row_of(PLUGINS, {"name": AUTH, "service": {"id": "5abfe322-9fc1-4e0e-bfa3-007f5b9ac4b4"}})
    assert row == {
        "id": row["id"],
        "name": AUTH,
        "instance_name": None,
        "created_at": NOW,
        "updated_at": NOW,
        "route": None,
        "service": {"id": "5abfe322-9fc1-4e0e-bfa3-007f5b9ac4b4"},
        "consumer": None,
        "config": {
            "key_names": ["apikey"],
            "hide_credentials": False,
            "anonymous": None,
            "key_in_header": True,
            "key_in_query": True,
            "key_in_body": False,
            "run_on_preflight": True,
            "realm": None,
        },
        "protocols": ["grpc", "grpcs", "http", "https"],
        "enabled": True,
        "tags": None,
    }


def test_partial_config_gets_nested_defaults() -> None:
    row = row_of(PLUGINS, {"name": LIMIT, "config": {"minute": 5}})
    assert row["config"] == {
        "second": None,
        "minute": 5,
        "hour": None,
        "day": None,
        "month": None,
        "year": None,
        "limit_by": "consumer",
        "policy": "local",
        "fault_tolerant": True,
        "redis": {"host": None, "port": 6379, "timeout": 2000},
        "error_code": 429,
    }


CONFIG_ERRORS = [
    ({"name": LIMIT, "config": {"second": "hello"}}, {"config": {"second": "expected a number"}}),
    ({"name": LIMIT, "config": {"minute": 0}}, {"config": {"minute": "value must be greater than 0"}}),
    ({"name": LIMIT, "config": {"minute": 1, "redis": {"port": 70000}}},
     {"config": {"redis": {"port": "value should be between 0 and 65535"}}}),
    ({"name": LIMIT, "config": {"minute": 1, "nope": 1}}, {"config": {"nope": "unknown field"}}),
    ({"name": LIMIT, "config": {}},
     {"@entity": ["at least one of these fields must be non-empty: 'config.second', 'config.minute', "
                  "'config.hour', 'config.day', 'config.month', 'config.year'"]}),
    ({"name": AUTH, "config": "bar"}, {"config": "expected a record"}),
    ({"name": AUTH, "config": None}, {"config": "required field missing"}),
    ({"name": AUTH, "config": {"key_names": ["bad name"]}},
     {"config": {"key_names": ["bad header name 'bad name', allowed characters are A-Z, a-z, 0-9, '_', and '-'"]}}),
    ({"name": AUTH, "foo": "bar"}, {"foo": "unknown field"}),
    ({"name": AUTH, "consumer": {"id": str(uuid.uuid4())}}, {"consumer": "value must be null"}),
    ({"name": AUTH, "protocols": ["tcp"]}, {"protocols": ["expected one of: grpc, grpcs, http, https"]}),
    ({"name": AUTH, "instance_name": "a b"},
     {"instance_name": "invalid value 'a b': the only accepted ascii characters are alphanumerics or ., -, _, and ~"}),
]  # fmt: skip


@pytest.mark.parametrize(("body", "errors"), CONFIG_ERRORS)
def test_config_errors(body, errors) -> None:
    assert errors_of(PLUGINS, body) == errors


def test_nested_config_message() -> None:
    err = error_of(PLUGINS, {"name": LIMIT, "config": {"second": "hello", "minute": "x"}})
    assert (
        err.message
        == "2 schema violations (config.minute: expected a number; config.second: expected a number)"
    )


def test_scope_restrictions() -> None:
    assert errors_of(PLUGINS, {"name": NOROUTE, "route": sid(), "config": {"string": "foo"}}) == {
        "route": "value must be null"
    }
    assert errors_of(PLUGINS, {"name": NOROUTE, "route": None, "config": {"string": "foo"}}) == {}
    assert errors_of(PLUGINS, {"name": NOSERVICE, "service": sid(), "config": {"string": "foo"}}) == {
        "service": "value must be null"
    }
    assert errors_of(PLUGINS, {"name": NOSERVICE, "config": {}}) == {
        "config": {"string": "required field missing"}
    }
    assert errors_of(PLUGINS, {"name": AUTH, "route": sid()}) == {}
    assert errors_of(PLUGINS, {"name": AUTH, "service": sid()}) == {}
    assert errors_of(PLUGINS, {"name": LIMIT, "consumer": sid(), "config": {"second": 1}}) == {}


def test_patch_deep_merges_config() -> None:
    existing = row_of(PLUGINS, {"name": LIMIT, "config": {"minute": 5, "redis": {"host": "r1"}}})
    row = row_of(
        PLUGINS,
        {"config": {"hour": 100, "redis": {"port": 6380}}, "tags": ["x"]},
        op="update",
        existing=existing,
        now=NOW + 1,
    )
    assert row["config"]["minute"] == 5 and row["config"]["hour"] == 100
    assert row["config"]["redis"] == {"host": "r1", "port": 6380, "timeout": 2000}
    assert row["tags"] == ["x"] and row["updated_at"] == NOW + 1 and row["created_at"] == NOW
    # the stored name picks the schema: an invalid value is still caught
    assert errors_of(PLUGINS, {"config": {"hour": "x"}}, op="update", existing=existing) == {
        "config": {"hour": "expected a number"}
    }
    # null clears; arrays are replaced, not merged
    auth = row_of(PLUGINS, {"name": AUTH, "config": {"key_names": ["a", "b"], "realm": "r"}})
    row = row_of(PLUGINS, {"config": {"key_names": ["c"], "realm": None}}, op="update", existing=auth)
    assert row["config"]["key_names"] == ["c"] and row["config"]["realm"] is None


def test_upsert_replaces_and_keeps_created_at() -> None:
    existing = row_of(PLUGINS, {"name": AUTH, "config": {"hide_credentials": True}, "tags": ["a"]})
    row = row_of(PLUGINS, {"name": AUTH, "id": existing["id"]}, op="upsert", existing=existing, now=NOW + 9)
    assert row["config"]["hide_credentials"] is False and row["tags"] is None
    assert row["created_at"] == NOW and row["updated_at"] == NOW + 9
