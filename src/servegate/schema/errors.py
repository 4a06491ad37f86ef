"""DAO errors in Kong's shape: numeric code, name, message, and field/option details.

Messages follow Kong 3.9 byte for byte, including the Penlight-style rendering of
Lua tables (`{id="..."}`) that clients and tests match on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

INVALID_PRIMARY_KEY = 1
SCHEMA_VIOLATION = 2
PRIMARY_KEY_VIOLATION = 3
FOREIGN_KEY_VIOLATION = 4
UNIQUE_VIOLATION = 5
NOT_FOUND = 6
INVALID_OFFSET = 7
DATABASE_ERROR = 8
INVALID_SIZE = 9
INVALID_UNIQUE = 10
INVALID_OPTIONS = 11
OPERATION_UNSUPPORTED = 12
FOREIGN_KEYS_UNRESOLVED = 13
REFERENCED_BY_OTHERS = 19

NAMES: dict[int, str] = {
    INVALID_PRIMARY_KEY: "invalid primary key",
    SCHEMA_VIOLATION: "schema violation",
    PRIMARY_KEY_VIOLATION: "primary key violation",
    FOREIGN_KEY_VIOLATION: "foreign key violation",
    UNIQUE_VIOLATION: "unique constraint violation",
    NOT_FOUND: "not found",
    INVALID_OFFSET: "invalid offset",
    DATABASE_ERROR: "database error",
    INVALID_SIZE: "invalid size",
    INVALID_UNIQUE: "invalid unique %s",
    INVALID_OPTIONS: "invalid options",
    OPERATION_UNSUPPORTED: "operation unsupported",
    FOREIGN_KEYS_UNRESOLVED: "foreign keys unresolved",
    REFERENCED_BY_OTHERS: "referenced by others",
}

# Admin API status per code (Kong's endpoints.lua table).
HTTP_STATUS: dict[int, int] = {
    INVALID_PRIMARY_KEY: 400,
    SCHEMA_VIOLATION: 400,
    PRIMARY_KEY_VIOLATION: 400,
    FOREIGN_KEY_VIOLATION: 400,
    UNIQUE_VIOLATION: 409,
    NOT_FOUND: 404,
    INVALID_OFFSET: 400,
    DATABASE_ERROR: 500,
    INVALID_SIZE: 400,
    INVALID_UNIQUE: 400,
    INVALID_OPTIONS: 400,
    OPERATION_UNSUPPORTED: 405,
    FOREIGN_KEYS_UNRESOLVED: 400,
    REFERENCED_BY_OTHERS: 400,
}


class DaoError(Exception):
    """An error from the data layer, rendered by the Admin API as Kong's JSON body."""

    def __init__(
        self,
        code: int,
        name: str | None = None,
        message: str | None = None,
        fields: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.code = code
        self.name = name or NAMES[code]
        self.message = message
        self.fields = dict(fields) if fields is not None else None
        self.options = dict(options) if options is not None else None
        super().__init__(message or self.name)

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)

    def to_json(self) -> dict[str, Any]:
        """Kong's error body (without `strategy`). Database errors hide their details."""
        if self.code == DATABASE_ERROR:
            return {"message": "An unexpected error occurred"}
        body: dict[str, Any] = {"code": self.code, "name": self.name, "message": self.message}
        if self.options is not None:
            body["options"] = self.options
        elif self.fields is not None:
            body["fields"] = self.fields
        return body

    def __repr__(self) -> str:
        return f"DaoError(code={self.code}, name={self.name!r}, message={self.message!r})"


# ---------------------------------------------------------------------------------------------
# Penlight `pretty.write` rendering of Lua tables, as Kong puts them into messages.

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LUA_KEYWORDS = frozenset(
    "and break do else elseif end false for function goto if in local nil not or repeat return "
    "then true until while".split()
)


def _lua_string(s: str) -> str:
    out = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{out}"'


def _lua_number(n: float | int) -> str:
    if isinstance(n, bool):
        return "true" if n else "false"
    if isinstance(n, int):
        return str(n)
    if n == int(n) and abs(n) < 1e15:
        return str(int(n))
    return f"{n:.14g}"


def _lua_key(k: Any) -> str:
    if isinstance(k, str) and _IDENT.match(k) and k not in _LUA_KEYWORDS:
        return k
    if isinstance(k, str):
        return f"[{_lua_string(k)}]"
    return f"[{_lua_number(k)}]"


def _sort_key(k: Any) -> tuple[int, Any]:
    # Lua sorts numbers and strings separately; numbers never mix with names here.
    return (0, k) if isinstance(k, int | float) else (1, str(k))


def lua_pretty(value: Any, indent: str = "") -> str:
    """Render like Penlight's `pretty.write(value, indent)`.

    `indent=""` gives the compact one-line form Kong uses in messages (`{a="x",b=null}`);
    the default two-space indent gives the multi-line form.
    """
    return _pretty(value, indent, "")


def _pretty(value: Any, indent: str, current: str) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _lua_number(value)
    if isinstance(value, str):
        return _lua_string(value)
    items: list[str]
    inner = current + indent
    eq = " = " if indent else "="
    if isinstance(value, list | tuple):
        items = [_pretty(v, indent, inner) for v in value]
    elif isinstance(value, Mapping):
        items = [f"{_lua_key(k)}{eq}{_pretty(value[k], indent, inner)}" for k in sorted(value, key=_sort_key)]
    else:
        return _lua_string(str(value))
    if not items:
        return "{}"
    if not indent:
        return "{" + ",".join(items) + "}"
    body = ",\n".join(inner + it for it in items)
    return "{\n" + body + "\n" + current + "}"


# ---------------------------------------------------------------------------------------------
# Schema violation message


def _sub_items(errs: Any) -> list[tuple[str, Any]]:
    """(sub key, value) pairs of a nested error table in Kong's sorted order."""
    if isinstance(errs, list | tuple):
        return [(str(i + 1), v) for i, v in enumerate(errs) if v is not None]
    return [(str(k), errs[k]) for k in sorted(errs, key=_sort_key)]


def schema_violation_message(errors: Mapping[str, Any]) -> str:
    buf: list[str] = []
    for e in errors.get("@entity") or ():
        buf.append(str(e))
    for field_name in sorted(k for k in errors if k != "@entity"):
        field_errors = errors[field_name]
        if isinstance(field_errors, Mapping | list | tuple):
            for sub, value in _sub_items(field_errors):
                text = lua_pretty(value, "  ") if isinstance(value, Mapping | list | tuple) else value
                buf.append(f"{field_name}.{sub}: {text}")
        else:
            buf.append(f"{field_name}: {field_errors}")
    if len(buf) == 1:
        return f"schema violation ({buf[0]})"
    return f"{len(buf)} schema violations ({'; '.join(buf)})"


# ---------------------------------------------------------------------------------------------
# Constructors


def schema_violation(errors: Mapping[str, Any]) -> DaoError:
    return DaoError(SCHEMA_VIOLATION, message=schema_violation_message(errors), fields=errors)


def invalid_primary_key(pk: Mapping[str, Any]) -> DaoError:
    return DaoError(INVALID_PRIMARY_KEY, message=f"invalid primary key: '{lua_pretty(pk)}'", fields=pk)


def primary_key_violation(pk: Mapping[str, Any]) -> DaoError:
    return DaoError(
        PRIMARY_KEY_VIOLATION, message=f"primary key violation on key '{lua_pretty(pk)}'", fields=pk
    )


def foreign_key_violation(field: str, ref_entity: str, value: Mapping[str, Any]) -> DaoError:
    """Insert/update pointing at a parent that does not exist."""
    message = f"the foreign key '{lua_pretty(value)}' does not reference an existing '{ref_entity}' entity."
    return DaoError(FOREIGN_KEY_VIOLATION, message=message, fields={field: dict(value)})


def foreign_key_restrict(child_entity: str, parent_entity: str) -> DaoError:
    """Delete of a parent still referenced by a restricting child (routes -> services)."""
    message = f"an existing '{child_entity}' entity references this '{parent_entity}' entity"
    return DaoError(FOREIGN_KEY_VIOLATION, message=message, fields={"@referenced_by": child_entity})


def unique_violation(fields: Mapping[str, Any]) -> DaoError:
    return DaoError(
        UNIQUE_VIOLATION, message=f"UNIQUE violation detected on '{lua_pretty(fields)}'", fields=fields
    )


def not_found(pk_or_key: Mapping[str, Any], *, by_primary_key: bool = True) -> DaoError:
    if by_primary_key:
        message = f"could not find the entity with primary key '{lua_pretty(pk_or_key)}'"
    else:
        message = f"could not find the entity with '{lua_pretty(pk_or_key)}'"
    return DaoError(NOT_FOUND, message=message, fields=pk_or_key)


def not_found_by_field(filter_: Mapping[str, Any]) -> DaoError:
    return not_found(filter_, by_primary_key=False)


def invalid_offset(offset: str, why: str) -> DaoError:
    return DaoError(INVALID_OFFSET, message=f"'{offset}' is not a valid offset: {why}")


def invalid_size(msg: str) -> DaoError:
    return DaoError(INVALID_SIZE, message=msg)


def invalid_unique(field: str, msg: str) -> DaoError:
    return DaoError(INVALID_UNIQUE, name=NAMES[INVALID_UNIQUE] % field, message=msg)


def invalid_options(options: Mapping[str, Any]) -> DaoError:
    buf: list[str] = []
    for name in sorted(options):
        value = options[name]
        if isinstance(value, Mapping | list | tuple):
            for sub, v in _sub_items(value):
                buf.append(f"{name}.{sub}: {v}")
        else:
            buf.append(f"{name}: {value}")
    if len(buf) == 1:
        message = f"invalid option ({buf[0]})"
    else:
        message = f"{len(buf)} option violations ({'; '.join(buf)})"
    return DaoError(INVALID_OPTIONS, message=message, options=options)


def operation_unsupported(msg: str) -> DaoError:
    return DaoError(OPERATION_UNSUPPORTED, message=msg)


def unresolved_message(key_field: str, value: Any, parent_entity: str) -> str:
    """The per-field text of a foreign key that names a missing parent by a unique field."""
    return (
        f"the foreign key cannot be resolved with '{lua_pretty({key_field: value})}' "
        f"for an existing '{parent_entity}' entity"
    )


def foreign_keys_unresolved(errors: Mapping[str, Any]) -> DaoError:
    """`errors`: field -> {key_field: message} (use unresolved_message() to build the message).

    Example: {"service": {"name": unresolved_message("name", "svc", "services")}}.
    """
    buf: list[str] = []
    for field_name in sorted(errors):
        value = errors[field_name]
        if isinstance(value, Mapping):
            for sub in sorted(value, key=_sort_key):
                buf.append(f"{field_name}.{sub}: {value[sub]}")
        else:
            buf.append(f"{field_name}: {value}")
    if len(buf) == 1:
        message = f"foreign key unresolved ({buf[0]})"
    else:
        message = f"{len(buf)} foreign keys unresolved ({'; '.join(buf)})"
    return DaoError(FOREIGN_KEYS_UNRESOLVED, message=message, fields=errors)


def database_error(msg: str | None = None) -> DaoError:
    return DaoError(DATABASE_ERROR, message=msg or NAMES[DATABASE_ERROR])


def referenced_by_others(msg: str) -> DaoError:
    return DaoError(REFERENCED_BY_OTHERS, message=msg)
