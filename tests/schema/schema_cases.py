"""Helpers shared by the schema tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from servegate.schema.errors import DaoError
from servegate.schema.fields import Entity, Field
from servegate.schema.validate import process_input

A_UUID = "cbb297c0-a956-486d-ad1d-f9b42df9465a"
ANOTHER_UUID = "64a8670b-900f-44e7-a900-6ec7ef5aa4d3"
NOW = 1_700_000_000


def errors_of(
    entity: Entity, body: Mapping[str, Any], *, op: str = "insert", existing: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The schema-violation `fields` for this input, or {} when it is valid."""
    try:
        process_input(entity, body, op=op, existing=existing, now=NOW)
    except DaoError as exc:
        assert exc.code == 2, exc.to_json()
        return dict(exc.fields or {})
    return {}


def error_of(entity: Entity, body: Mapping[str, Any], **kw: Any) -> DaoError:
    try:
        process_input(entity, body, op=kw.pop("op", "insert"), now=NOW, **kw)
    except DaoError as exc:
        return exc
    raise AssertionError(f"expected a DaoError for {body!r}")


def row_of(entity: Entity, body: Mapping[str, Any], **kw: Any) -> dict[str, Any]:
    return process_input(entity, body, op=kw.pop("op", "insert"), now=kw.pop("now", NOW), **kw)


# ------------------------------------------------------------------------------------------
# throw-away plugin schemas (registered by the `test_plugins` fixture)

WINDOWS = ("second", "minute", "hour", "day", "month", "year")


def one_window(row: Mapping[str, Any]) -> list[str] | None:
    config = row.get("config")
    if isinstance(config, Mapping) and any(config.get(w) is not None for w in WINDOWS):
        return None
    names = ", ".join(f"'config.{w}'" for w in WINDOWS)
    return [f"at least one of these fields must be non-empty: {names}"]


def _header_name(value: str) -> str | None:
    if value and all(c.isalnum() or c in "_-" for c in value):
        return None
    return f"bad header name '{value}', allowed characters are A-Z, a-z, 0-9, '_', and '-'"


AUTH_CONFIG = Field(
    "record",
    fields=(
        (
            "key_names",
            Field(
                "array",
                required=True,
                default=["apikey"],
                elements=Field("string", checks=(_header_name,)),
            ),
        ),
        ("hide_credentials", Field("boolean", required=True, default=False)),
        ("anonymous", Field("string")),
        ("key_in_header", Field("boolean", required=True, default=True)),
        ("key_in_query", Field("boolean", required=True, default=True)),
        ("key_in_body", Field("boolean", required=True, default=False)),
        ("run_on_preflight", Field("boolean", required=True, default=True)),
        ("realm", Field("string")),
    ),
)

LIMIT_CONFIG = Field(
    "record",
    fields=(
        *((w, Field("number", gt=0)) for w in WINDOWS),
        ("limit_by", Field("string", default="consumer", one_of=("consumer", "credential", "ip"))),
        ("policy", Field("string", default="local", one_of=("local", "cluster", "redis"))),
        ("fault_tolerant", Field("boolean", required=True, default=True)),
        (
            "redis",
            Field(
                "record",
                required=True,
                fields=(
                    ("host", Field("string")),
                    ("port", Field("integer", default=6379, between=(0, 65535))),
                    ("timeout", Field("integer", default=2000)),
                ),
            ),
        ),
        ("error_code", Field("number", default=429, gt=0)),
    ),
)

NOROUTE_CONFIG = Field("record", fields=(("string", Field("string", required=True)),))

AUTH = "test-auth"
LIMIT = "test-limit"
NOROUTE = "test-noroute"
NOSERVICE = "test-noservice"
