"""DAO error objects and their messages (cases from Kong's 02-db-errors_spec)."""

from __future__ import annotations

import pytest

from servegate.schema import errors

UUID = "0000-00-00-00-00000000"

# (constructor call, expected body)
CASES = [
    (
        lambda: errors.invalid_primary_key({"id": "missing", "id2": "missing2"}),
        {
            "code": 1,
            "name": "invalid primary key",
            "message": """invalid primary key: '{id="missing",id2="missing2"}'""",
            "fields": {"id": "missing", "id2": "missing2"},
        },
    ),
    (
        lambda: errors.primary_key_violation({"id": "already exists"}),
        {
            "code": 3,
            "name": "primary key violation",
            "message": """primary key violation on key '{id="already exists"}'""",
            "fields": {"id": "already exists"},
        },
    ),
    (
        lambda: errors.foreign_key_violation("service", "services", {"foreign_id": "0000-00-00-00000000"}),
        {
            "code": 4,
            "name": "foreign key violation",
            "message": """the foreign key '{foreign_id="0000-00-00-00000000"}' does not """
            """reference an existing 'services' entity.""",
            "fields": {"service": {"foreign_id": "0000-00-00-00000000"}},
        },
    ),
    (
        lambda: errors.foreign_key_restrict("routes", "services"),
        {
            "code": 4,
            "name": "foreign key violation",
            "message": "an existing 'routes' entity references this 'services' entity",
            "fields": {"@referenced_by": "routes"},
        },
    ),
    (
        lambda: errors.not_found({"id": UUID}),
        {
            "code": 6,
            "name": "not found",
            "message": f"""could not find the entity with primary key '{{id="{UUID}"}}'""",
            "fields": {"id": UUID},
        },
    ),
    (
        lambda: errors.not_found_by_field({"name": "x"}),
        {
            "code": 6,
            "name": "not found",
            "message": """could not find the entity with '{name="x"}'""",
            "fields": {"name": "x"},
        },
    ),
    (
        lambda: errors.unique_violation({"id": UUID}),
        {
            "code": 5,
            "name": "unique constraint violation",
            "message": f"""UNIQUE violation detected on '{{id="{UUID}"}}'""",
            "fields": {"id": UUID},
        },
    ),
    (
        lambda: errors.unique_violation({"username": "bob"}),
        {
            "code": 5,
            "name": "unique constraint violation",
            "message": """UNIQUE violation detected on '{username="bob"}'""",
            "fields": {"username": "bob"},
        },
    ),
    (
        # a plugin cache_key conflict: nulls as `null`, nested foreign keys, sorted keys
        lambda: errors.unique_violation(
            {"name": "basic-auth", "route": None, "service": {"id": "a-b"}, "consumer": None}
        ),
        {
            "code": 5,
            "name": "unique constraint violation",
            "message": """UNIQUE violation detected on """
            """'{consumer=null,name="basic-auth",route=null,service={id="a-b"}}'""",
            "fields": {"name": "basic-auth", "route": None, "service": {"id": "a-b"}, "consumer": None},
        },
    ),
    (
        lambda: errors.invalid_offset("bad offset", "decoding error"),
        {
            "code": 7,
            "name": "invalid offset",
            "message": "'bad offset' is not a valid offset: decoding error",
        },
    ),
    (
        lambda: errors.invalid_size("size must be an integer between 1 and 1000"),
        {"code": 9, "name": "invalid size", "message": "size must be an integer between 1 and 1000"},
    ),
    (
        lambda: errors.invalid_unique("name", "name must be a string"),
        {"code": 10, "name": "invalid unique name", "message": "name must be a string"},
    ),
    (
        lambda: errors.invalid_options(
            {
                "ttl": "option can only be used with inserts, updates and upserts, not with 'deletes'",
                "bar": ["must be a string", "must contain 'foo'"],
            }
        ),
        {
            "code": 11,
            "name": "invalid options",
            "message": "3 option violations (bar.1: must be a string; bar.2: must contain 'foo'; "
            "ttl: option can only be used with inserts, updates and upserts, not with 'deletes')",
            "options": {
                "ttl": "option can only be used with inserts, updates and upserts, not with 'deletes'",
                "bar": ["must be a string", "must contain 'foo'"],
            },
        },
    ),
    (
        lambda: errors.invalid_options({"tags": "invalid filter syntax"}),
        {
            "code": 11,
            "name": "invalid options",
            "message": "invalid option (tags: invalid filter syntax)",
            "options": {"tags": "invalid filter syntax"},
        },
    ),
    (
        lambda: errors.foreign_keys_unresolved(
            {"service": {"name": errors.unresolved_message("name", "non-existing", "services")}}
        ),
        {
            "code": 13,
            "name": "foreign keys unresolved",
            "message": """foreign key unresolved (service.name: the foreign key cannot be resolved with """
            """'{name="non-existing"}' for an existing 'services' entity)""",
            "fields": {
                "service": {
                    "name": """the foreign key cannot be resolved with '{name="non-existing"}' """
                    """for an existing 'services' entity"""
                }
            },
        },
    ),
    (
        lambda: errors.operation_unsupported("nope"),
        {"code": 12, "name": "operation unsupported", "message": "nope"},
    ),
]


@pytest.mark.parametrize(("make", "expected"), CASES)
def test_error_bodies(make, expected) -> None:
    assert make().to_json() == expected


SCHEMA_VIOLATIONS = [
    (
        {
            "foo": "expected an integer",
            "bar": "length must be 5",
            "baz": "unknown field",
            "@entity": [
                "at least one of plim or plum is needed",
                "the check function errored out",
                "an extra error",
            ],
            "external_entity": {"id": "missing primary key"},
        },
        "7 schema violations (at least one of plim or plum is needed; the check function errored out; "
        "an extra error; bar: length must be 5; baz: unknown field; "
        "external_entity.id: missing primary key; foo: expected an integer)",
    ),
    ({"@entity": ["the check function errored out"]}, "schema violation (the check function errored out)"),
    ({"name": "required field missing"}, "schema violation (name: required field missing)"),
    # array errors are positional, 1-based, holes skipped
    ({"protocols": [None, "expected one of: http"]}, "schema violation (protocols.2: expected one of: http)"),
    (
        {"config": {"second": "expected a number", "minute": "expected a number"}},
        "2 schema violations (config.minute: expected a number; config.second: expected a number)",
    ),
    # deeper tables are rendered as multi-line Lua tables
    (
        {"config": {"redis": {"host": "expected a string"}}},
        'schema violation (config.redis: {\n  host = "expected a string"\n})',
    ),
]


@pytest.mark.parametrize(("fields", "message"), SCHEMA_VIOLATIONS)
def test_schema_violation_messages(fields, message) -> None:
    err = errors.schema_violation(fields)
    assert err.to_json() == {"code": 2, "name": "schema violation", "message": message, "fields": fields}
    assert err.http_status == 400


HTTP = [(1, 400), (2, 400), (3, 400), (4, 400), (5, 409), (6, 404), (7, 400), (8, 500), (9, 400),
        (10, 400), (11, 400), (12, 405), (13, 400), (19, 400)]  # fmt: skip


@pytest.mark.parametrize(("code", "status"), HTTP)
def test_http_status_per_code(code: int, status: int) -> None:
    assert errors.DaoError(code, message="x").http_status == status


def test_database_error_hides_details() -> None:
    err = errors.database_error("connection refused: secret host")
    assert err.code == 8 and err.message == "connection refused: secret host"
    assert err.to_json() == {"message": "An unexpected error occurred"}
    assert errors.database_error().message == "database error"


PRETTY = [
    ({"id": "x"}, '{id="x"}'),
    ({"b": 1, "a": 2.5, "c": True}, "{a=2.5,b=1,c=true}"),
    ({"x-y": "v"}, '{["x-y"]="v"}'),
    ({"end": "v"}, '{["end"]="v"}'),
    ({"a": ["x", "y"]}, '{a={"x","y"}}'),
    ({"q": 'say "hi"\\'}, '{q="say \\"hi\\"\\\\"}'),
    ({"n": 60.0}, "{n=60}"),
]


@pytest.mark.parametrize(("value", "text"), PRETTY)
def test_lua_pretty_compact(value, text) -> None:
    assert errors.lua_pretty(value) == text
