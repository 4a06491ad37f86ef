"""Form/query decoding and per-schema coercion (cases from Kong's 03-arguments_spec)."""

from __future__ import annotations

import pytest
from schema_cases import AUTH, LIMIT

from servegate.schema.coerce import TooManyArguments, coerce, coerce_value, decode_form, lua_tonumber
from servegate.schema.entities import KEYAUTH_CREDENTIALS, PLUGINS, ROUTES, SERVICES
from servegate.schema.fields import Field

STR = Field("string")
NUM = Field("number")

# (value, field, expected)
INFER = [
    ("2", Field("number"), 2),
    ("2", Field("integer"), 2),
    ("2.5", Field("number"), 2.5),
    ("2.5", Field("integer"), 2.5),  # integers are not rounded
    ("0x10", Field("integer"), 16),
    (" 7 ", Field("integer"), 7),
    ("1e3", Field("number"), 1000),
    ("false", Field("boolean"), False),
    ("true", Field("boolean"), True),
    ("a", Field("array", elements=STR), ["a"]),
    ("2", Field("array", elements=NUM), [2]),
    (["a"], Field("array", elements=STR), ["a"]),
    (["2"], Field("array", elements=NUM), [2]),
    ("a", Field("set", elements=STR), ["a"]),
    ("2", Field("set", elements=NUM), [2]),
    (["2"], Field("set", elements=NUM), [2]),
    ({"x": "1"}, Field("map", keys=STR, values=STR), {"x": "1"}),
    ({"x": "1"}, Field("map", keys=STR, values=NUM), {"x": 1}),
    ({"age": "1"}, Field("record", fields=(("age", STR),)), {"age": "1"}),
    ({"age": "1"}, Field("record", fields=(("age", NUM),)), {"age": 1}),
    # not inferable: left for validation to reject
    ("not number", Field("number"), "not number"),
    ("not integer", Field("integer"), "not integer"),
    ("not boolean", Field("boolean"), "not boolean"),
    ("1_000", Field("integer"), "1_000"),
    ("inf", Field("number"), "inf"),
    ("True", Field("boolean"), "True"),
    # "" is null for every typed field
    *[
        ("", Field(t), None)
        for t in ("string", "array", "set", "number", "integer", "boolean", "foreign", "map", "record")
    ],
    # elements after a hole are not coerced (Lua ipairs)
    (["1", None, "3"], Field("array", elements=NUM), [1, None, "3"]),
]


@pytest.mark.parametrize(("value", "field", "expected"), INFER)
def test_coerce_value(value, field, expected) -> None:
    result = coerce_value(value, field)
    assert result == expected
    assert type(result) is type(expected)


def test_no_field_means_no_coercion() -> None:
    assert coerce_value("", None) == ""


def test_lua_tonumber() -> None:
    assert lua_tonumber("-0x1A") == -26
    assert lua_tonumber(".5") == 0.5
    assert lua_tonumber("5.") == 5
    assert lua_tonumber("") is None
    assert lua_tonumber("nan") is None


def P(**kw: str) -> list[tuple[str, str]]:
    return list(kw.items())


# (pairs, allow_map_keys, expected)
DECODE = [
    # decode_arg does not infer types
    ([("x", "")], True, {"x": ""}),
    ([("x", "true")], True, {"x": "true"}),
    ([("x", "10")], True, {"x": "10"}),
    # arrays
    ([("x[]", "a")], True, {"x": ["a"]}),
    ([("x[1]", "a")], True, {"x": ["a"]}),
    ([("x[2]", "a")], True, {"x": [None, "a"]}),
    ([("x[1][1]", "a")], True, {"x": [["a"]]}),
    ([("x[2][1]", "a")], True, {"x": [None, ["a"]]}),
    ([("x[1][2][3]", "42")], True, {"x": [[None, [None, None, "42"]]]}),
    # maps (only where allowed)
    ([("x[a]", "a")], True, {"x": {"a": "a"}}),
    ([("x[a][b][c]", "42")], True, {"x": {"a": {"b": {"c": "42"}}}}),
    ([("x[a]", "a")], False, {"x[a]": "a"}),
    # mixed map/array
    ([("x[][a]", "a")], True, {"x": [{"a": "a"}]}),
    ([("x[1][a]", "a")], True, {"x": [{"a": "a"}]}),
    ([("x[1][2][a]", "a")], True, {"x": [[None, {"a": "a"}]]}),
    ([("x[a][1][b]", "a")], True, {"x": {"a": [{"b": "a"}]}}),
    ([("x[1][a][2][b]", "a")], True, {"x": [{"a": [None, {"b": "a"}]}]}),
    (
        [("x.r[1].s[a][2].t[b].u", "a")],
        True,
        {"x": {"r": [{"s": {"a": [None, {"t": {"b": {"u": "a"}}}]}}]}},
    ),
    # dotted keys nest; dots inside brackets do not split
    ([("a.b.c", "v")], True, {"a": {"b": {"c": "v"}}}),
    (
        [("a.b.c[test.key]", "d"), ("a.b.c[test.key]", "e")],
        True,
        {"a": {"b": {"c": {"test.key": ["d", "e"]}}}},
    ),
    # %5B / %5D stand for brackets
    ([("a%5Bescaped_k_1%5D", "bar")], True, {"a": {"escaped_k_1": "bar"}}),
    ([("a%5Bescaped.k_5%5D.nested", "ww")], True, {"a": {"escaped.k_5": {"nested": "ww"}}}),
    (
        [("key%5B5%5D%5B4%5D.key", "value")],
        True,
        {"key": [None] * 4 + [[None, None, None, {"key": "value"}]]},
    ),
    # multidimensional
    ([("key[][]", "value")], True, {"key": [["value"]]}),
    ([("key[foo][bar]", "value")], True, {"key": {"foo": {"bar": "value"}}}),
    ([("key[foo][bar].key", "value")], True, {"key": {"foo": {"bar": {"key": "value"}}}}),
    ([("[5][1][4].key", "value")], True, {"[5]": [[None, None, None, {"key": "value"}]]}),
    ([("[5][foo][bar].key", "value")], True, {"[5]": {"foo": {"bar": {"key": "value"}}}}),
    # repeated names merge into arrays
    ([("paths", "/a"), ("paths", "/b")], True, {"paths": ["/a", "/b"]}),
    ([("a[]", "3"), ("a[1]", "4"), ("a[2]", "5"), ("a[2]", "6")], True, {"a": [["3", "4"], ["5", "6"]]}),
    ([("a", "1"), ("a", "2"), ("a[]", "3"), ("a[1]", "4")], True, {"a": [["1", "3", "4"], "2"]}),
    (
        [("config.key_names[1]", "apikey"), ("config.key_names[2]", "key")],
        True,
        {"config": {"key_names": ["apikey", "key"]}},
    ),
    (
        [("a[1]", "a"), ("a[1].cat", "tommy")],
        True,
        {"a": [{"1": "a", "cat": "tommy"}]},
    ),
    # keys starting or ending with a dot land under "name" (a Kong quirk)
    ([(".x", "v")], True, {"name": "v"}),
]


@pytest.mark.parametrize(("pairs", "allow_map_keys", "expected"), DECODE)
def test_decode_form(pairs, allow_map_keys, expected) -> None:
    assert decode_form(pairs, allow_map_keys=allow_map_keys) == expected


def test_too_many_arguments() -> None:
    decode_form([(f"k{i}", "v") for i in range(1000)], allow_map_keys=True)
    with pytest.raises(TooManyArguments):
        decode_form([(f"k{i}", "v") for i in range(1001)], allow_map_keys=True)


def test_coerce_route_form() -> None:
    data = decode_form(
        [
            ("name", ""),
            ("paths", "/a"),
            ("strip_path", "false"),
            ("regex_priority", "2.5"),
            ("https_redirect_status_code", "301"),
            ("service.id", "x"),
            ("headers[x-a]", "y"),
            ("unknown", ""),
        ],
        allow_map_keys=True,
    )
    assert coerce(ROUTES, data) == {
        "name": None,
        "paths": ["/a"],
        "strip_path": False,
        "regex_priority": 2.5,
        "https_redirect_status_code": 301,
        "service": {"id": "x"},
        "headers": {"x-a": ["y"]},
        "unknown": "",  # unknown fields are not touched
    }


def test_coerce_service_form_with_url_shorthand() -> None:
    data = decode_form(
        [("url", ""), ("port", "8080"), ("retries", "x"), ("enabled", "true")], allow_map_keys=True
    )
    assert coerce(SERVICES, data) == {"url": None, "port": 8080, "retries": "x", "enabled": True}


def test_coerce_ttl_on_ttl_entities_only() -> None:
    assert coerce(KEYAUTH_CREDENTIALS, {"ttl": "60", "key": "abc"}) == {"ttl": 60, "key": "abc"}
    assert coerce(SERVICES, {"ttl": "60"}) == {"ttl": "60"}


def test_coerce_plugin_config_via_registry(test_plugins) -> None:
    data = decode_form(
        [("name", LIMIT), ("config.minute", "60"), ("config.redis.port", "6380"), ("enabled", "false")],
        allow_map_keys=True,
    )
    assert coerce(PLUGINS, data) == {
        "name": LIMIT,
        "config": {"minute": 60, "redis": {"port": 6380}},
        "enabled": False,
    }
    # PATCH: the stored plugin name selects the config schema
    assert coerce(PLUGINS, {"config": {"hide_credentials": "true"}}, plugin_name=AUTH) == {
        "config": {"hide_credentials": True}
    }
    # unknown plugin: config left as sent
    assert coerce(PLUGINS, {"name": "nope", "config": {"minute": "1"}}) == {
        "name": "nope",
        "config": {"minute": "1"},
    }
    # protocols is a set: one value becomes a list
    assert coerce(PLUGINS, {"name": AUTH, "protocols": "http"})["protocols"] == ["http"]
