"""Entity input processing and validation with Kong's messages and error layout.

Errors are nested like Kong's: a field maps to a string, to a dict for records and foreign keys
(`{"service": {"protocol": "..."}}`), or to a positional list for arrays and sets
(`{"protocols": [None, "..."]}`); entity-level messages go to the `"@entity"` list.
"""

from __future__ import annotations

import base64
import dataclasses
import math
import re
import secrets
import time
import uuid
from collections.abc import Mapping
from typing import Any

from servegate.schema import errors as dao_errors
from servegate.schema.checks import is_uuid, utf8_string
from servegate.schema.defaults import MISSING, adjust, merge
from servegate.schema.entities import DAO_MAX_TTL, ENTITIES, protocols_field
from servegate.schema.fields import INT64_MAX, INT64_MIN, Entity, Field
from servegate.schema.plugin_config import expand_config_shorthands
from servegate.schema.plugins import PluginSchema, get_plugin

REQUIRED = "required field missing"
UNKNOWN = "unknown field"

Err = Any  # str | list[Err | None] | dict[str, Err]

_TYPE_ERRORS = {
    "array": "expected an array",
    "set": "expected a set",
    "map": "expected a map",
    "record": "expected a record",
    "string": "expected a string",
    "number": "expected a number",
    "boolean": "expected a boolean",
    "integer": "expected an integer",
}


# ---------------------------------------------------------------------------------------------
# single values


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _type_ok(t: str, value: Any) -> bool:
    if t in ("array", "set"):
        return isinstance(value, list) or (isinstance(value, Mapping) and not value)
    if t in ("map", "record"):
        return isinstance(value, Mapping)
    if t == "string":
        return isinstance(value, str)
    if t == "boolean":
        return isinstance(value, bool)
    if t in ("number", "integer"):
        if not _is_number(value):
            return False
        if isinstance(value, int):
            return True  # (never through float(): an int may be beyond a double's range)
        # Infinity and NaN reach us only from form values ("1e999"); neither is a JSON number.
        return math.isfinite(value) and (t == "number" or value.is_integer())
    return True


def _fmt(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


NUL = "must not contain a null byte"
CONTROL = "must not contain control characters"
_CONTROL = re.compile(r"[\x00-\x1f]")


def _length(value: str | list[Any] | Mapping[str, Any]) -> int:
    return len(value.encode("utf-8", "surrogatepass")) if isinstance(value, str) else len(value)


def _rules(field: Field, value: Any, lookup: bool) -> str | None:
    """Kong's validators, in Kong's order, after the type check passed."""
    if field.one_of is not None and value not in field.one_of:
        return "expected one of: " + ", ".join(_fmt(o) for o in field.one_of)
    if field.gt is not None and not value > field.gt:
        return f"value must be greater than {_fmt(field.gt)}"
    if field.timestamp and not 0 < value <= INT64_MAX:
        return "expected a valid timestamp"
    if field.uuid and not is_uuid(value):
        return "expected a valid UUID"
    between = field.between
    if between is None and field.type == "integer":
        between = (INT64_MIN, INT64_MAX)
    if between is not None:
        lo, hi = between
        if value < lo or value > hi:
            return f"value should be between {_fmt(lo)} and {_fmt(hi)}"
    size = len(value) if isinstance(value, str | list | Mapping) else None
    if size is not None:
        if field.len_eq is not None and size != field.len_eq:
            return f"length must be {field.len_eq}"
        len_min = field.len_min if field.len_min is not None else (1 if field.type == "string" else None)
        if len_min is not None and size < len_min:
            return f"length must be at least {len_min}"
        # A lookup key beyond the bound names no stored row: the store answers "not found".
        if field.len_max is not None and not lookup and _length(value) > field.len_max:
            return f"length must be at most {field.len_max}"
    if field.starts_with is not None and not value.startswith(field.starts_with):
        return f"should start with: {field.starts_with}"
    if field.type != "record":
        for check in field.checks:
            msg = check(value)
            if msg:
                return msg
    if field.type == "string" and not lookup:
        # What neither store can hold: no stored string has it, so a lookup by it finds nothing
        # (Kong's own validators, above, may already have said why the value is wrong).
        msg = _unstorable_string(value)
        if msg is None and not field.control_chars and _CONTROL.search(value):
            msg = CONTROL
        return msg
    return None


def _unstorable_string(value: str) -> str | None:
    if "\x00" in value:
        return NUL  # PostgreSQL text cannot hold NUL
    return utf8_string(value)


def column_error(field: Field, value: Any) -> str | None:
    """Why a scalar column value could not be stored and read back alike on both databases, or None.

    The store's own last check before it writes: input has been through validate_field, which says
    the same (and more), so this only fires for rows that bypassed validation.
    """
    if value is None:
        return None
    if field.type == "integer":
        if not _type_ok("integer", value):
            return _TYPE_ERRORS["integer"]
        if not INT64_MIN <= value <= INT64_MAX:
            return f"value should be between {INT64_MIN} and {INT64_MAX}"
    elif field.type == "string" and isinstance(value, str):
        return _unstorable_string(value)
    return None


def validate_field(field: Field, value: Any, *, lookup: bool = False) -> Err | None:
    """Validate one value against its field: None when fine, else Kong's error (str, list or dict).

    lookup: the value is a key to look a row up by (a URL segment), not one to store: the bounds that
    only keep stored strings storable on both databases alike (len_max, NUL bytes, bytes that are not
    UTF-8, control characters) are left out, as no stored row can have such a key (the answer is 404).
    """
    if value is None or value is MISSING:
        return REQUIRED if field.required else None
    if not _type_ok(field.type, value):
        return _TYPE_ERRORS.get(field.type, f"invalid type: {field.type}")
    if field.type in ("array", "set"):
        if isinstance(value, Mapping):
            value = []
        if field.elements is not None:
            element = dataclasses.replace(field.elements, required=True)
            errs = [validate_field(element, v) for v in value]
            if any(e is not None for e in errs):
                while errs[-1] is None:  # a Lua table has no trailing holes
                    errs.pop()
                return errs
    elif field.type == "map":
        keys = dataclasses.replace(field.keys, required=True) if field.keys else None
        values = dataclasses.replace(field.values, required=True) if field.values else None
        for k, v in value.items():
            err = validate_field(keys, k) if keys else None
            if err is None and values is not None:
                err = validate_field(values, v)
            if err is not None:
                return err
    elif field.type == "record":
        return _validate_record(field, value)
    elif field.type == "foreign":
        return _validate_foreign(field, value)
    return _rules(field, value, lookup)


def _validate_record(field: Field, value: Mapping[str, Any]) -> Err | None:
    from servegate.schema.defaults import fill_record

    if field.fields is None:
        return None
    row = fill_record(field, value, "insert")
    errs = _validate_fields(field.record_fields(), row, full=True)
    entity: list[str] = list(errs.pop("@entity", []))
    for check in field.checks:
        msg = check(row)
        if msg:
            entity.append(msg)
    if entity:
        errs["@entity"] = entity
    return errs or None


def _validate_foreign(field: Field, value: Any) -> Err | None:
    pk = value.get("id", MISSING) if isinstance(value, Mapping) else MISSING
    if pk is MISSING or pk is False:
        err: Err = "missing primary key"
    elif pk is None:
        err = REQUIRED
    else:
        err = validate_field(Field("string", uuid=True), pk)
    if err is None:
        return None
    ref = ENTITIES.get(field.reference or "")
    if ref is not None and isinstance(value, Mapping):
        # Kong reports what is wrong with the other given fields before the missing key.
        partial = _validate_fields(ref.field_map(), value, full=False)
        if partial:
            return partial
    return {"id": err}


def _validate_fields(fields: Mapping[str, Field], row: Mapping[str, Any], *, full: bool) -> dict[str, Err]:
    errors: dict[str, Err] = {}
    for name, value in row.items():
        field = fields.get(name)
        if field is None:
            errors[name] = UNKNOWN
            continue
        err = validate_field(field, value)
        if err is not None:
            errors[name] = err
    for name, field in fields.items():
        if field.required and (row.get(name, MISSING) is None or (full and name not in row)):
            errors[name] = REQUIRED
    return errors


def _add_check_result(errors: dict[str, Err], result: Any) -> None:
    if not result:
        return
    if isinstance(result, str):
        result = [result]
    if isinstance(result, list | tuple):
        errors.setdefault("@entity", []).extend(result)
        return
    for k, v in result.items():
        if k == "@entity":
            errors.setdefault("@entity", []).extend(v if isinstance(v, list | tuple) else [v])
        else:
            errors[k] = v


# ---------------------------------------------------------------------------------------------
# entities


def _subschema_error(entity: Entity, row: Mapping[str, Any]) -> dict[str, Err] | None:
    """Kong checks the subschema key before anything else and reports only that."""
    key = entity.subschema_key
    if key is None:
        return None
    value = row.get(key)
    if value is None:
        return {key: REQUIRED}
    return entity.unknown_subschema(row) if entity.unknown_subschema is not None else None


def entity_fields(entity: Entity, plugin: PluginSchema | None = None) -> dict[str, Field]:
    """The entity's fields, with the plugins' abstract ones specialized for `plugin`."""
    fields = entity.field_map()
    if plugin is not None:
        fields["config"] = dataclasses.replace(plugin.config, required=True)
        fields["protocols"] = protocols_field(plugin.protocols_default, plugin.protocols_allowed)
    return fields


def _plugin_for(entity: Entity, data: Mapping[str, Any]) -> PluginSchema | None:
    if entity.subschema_key != "name":
        return None
    name = data.get("name")
    return get_plugin(name) if isinstance(name, str) else None


def validate_row(entity: Entity, row: Mapping[str, Any]) -> dict[str, Err]:
    """All errors for a complete row (empty dict when valid)."""
    early = _subschema_error(entity, row)
    if early:
        return early
    plugin = _plugin_for(entity, row)
    fields = entity_fields(entity, plugin)
    errors = _validate_fields(fields, row, full=True)
    if plugin is not None:
        for scope, forbidden in (
            ("route", plugin.no_route),
            ("service", plugin.no_service),
            ("consumer", plugin.no_consumer),
        ):
            if forbidden and row.get(scope) is not None:
                errors[scope] = "value must be null"
    for check in entity.entity_checks:
        _add_check_result(errors, check(row))
    if plugin is not None:
        for check in plugin.entity_checks:
            _add_check_result(errors, check(row))
    return errors


def generate_key() -> str:
    """Kong's random_string, the value of an `auto` string field (key-auth's key): 24 random bytes in base64,
    `/` and `+` replaced by random letters."""
    raw = base64.b64encode(secrets.token_bytes(24)).decode("ascii")
    upper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    out = []
    for ch in raw:
        if ch == "/":
            ch = secrets.choice(upper)
        elif ch == "+":
            ch = secrets.choice(upper.lower())
        out.append(ch)
    return "".join(out)


def _apply_shorthands(entity: Entity, data: dict[str, Any]) -> None:
    errs: dict[str, Err] = {}
    for name, expand in entity.shorthands.items():
        if name not in data:
            continue
        value = data.pop(name)
        if value is None:
            if name not in entity.null_shorthands:
                continue
        else:
            err = validate_field(Field("string"), value)
            if err is not None:
                errs[name] = err
                continue
        data.update(expand(value))
    if errs:
        raise dao_errors.schema_violation(errs)


def _normalize(fields: Mapping[str, Field], data: dict[str, Any], op: str) -> None:
    """Fields with a `normalize` rewrite (Kong's DAO does it before validating; see Field.normalize)."""
    errs: dict[str, Err] = {}
    for name, field in fields.items():
        if field.normalize is None or data.get(name) is None:
            continue
        value, err = field.normalize(data[name])
        if err is None:
            data[name] = value
        elif op != "update":
            errs[name] = err
    if errs:
        raise dao_errors.schema_violation(errs)


def _take_ttl(entity: Entity, data: dict[str, Any]) -> Any:
    if not entity.ttl or "ttl" not in data:
        return MISSING
    ttl = data.pop("ttl")
    if ttl is None:
        return MISSING
    if not (_type_ok("integer", ttl) and 0 <= ttl <= DAO_MAX_TTL):
        raise dao_errors.invalid_options({"ttl": f"must be an integer between 0 and {DAO_MAX_TTL}"})
    return int(ttl)


def _auto_fields(entity: Entity, data: dict[str, Any], op: str, now: float) -> None:
    fields = entity.field_map()
    inserting = op in ("insert", "upsert")
    for name, field in fields.items():
        if not field.auto:
            continue
        current = data.get(name)
        # Kong's auto_timestamp_s (integer seconds) or auto_timestamp_ms (seconds with a millisecond fraction)
        stamp: float = round(now, 3) if field.type == "number" else int(now)
        if field.uuid:
            if inserting and name not in data:
                data[name] = str(uuid.uuid4())
        elif field.type == "string":
            if inserting and name not in data:
                data[name] = generate_key()
        elif name == "created_at" and inserting and current is None:
            data[name] = stamp
        elif name == "updated_at" and entity.has_updated_at:
            data[name] = stamp


def process_input(
    entity: Entity,
    body: Mapping[str, Any],
    *,
    op: str,
    existing: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """Turn Admin input into a complete, valid row, or raise DaoError (code 2, or 11 for ttl)."""
    if op not in ("insert", "upsert", "update"):
        raise ValueError(f"unknown op {op!r}")
    if not isinstance(body, Mapping):
        raise dao_errors.schema_violation({"@entity": ["expected a record"]})
    now = time.time() if now is None else float(now)
    data = dict(body)
    ttl = _take_ttl(entity, data)
    if not entity.has_updated_at:
        data.pop("updated_at", None)  # Kong never validates it
    _apply_shorthands(entity, data)

    lookup = dict(data)
    if op == "update" and existing is not None and "name" not in lookup:
        lookup["name"] = existing.get("name")
    plugin = _plugin_for(entity, lookup)
    fields = entity_fields(entity, plugin)
    _normalize(fields, data, op)
    if plugin is not None and "config" in data:
        data["config"], alias_errors = expand_config_shorthands(plugin, data["config"])
        if alias_errors:
            raise dao_errors.schema_violation({"config": alias_errors})

    if op == "update":
        data = {k: (adjust(fields[k], v, op) if k in fields else v) for k, v in data.items()}
        # Stored rows may carry store-side extras (ttl, expiry); only declared fields are merged.
        stored = {k: v for k, v in (existing or {}).items() if k in fields}
        row = merge(fields, data, stored)
        _auto_fields(entity, row, op, now)
    else:
        _auto_fields(entity, data, op, now)
        if op == "upsert" and existing is not None and body.get("created_at") is None:
            if existing.get("created_at") is not None:
                data["created_at"] = existing["created_at"]
        overrides = entity.default_overrides(data) if entity.default_overrides else {}
        row = {}
        for name, field in fields.items():
            value = data.get(name, MISSING)
            if value is MISSING and name in overrides:
                value = overrides[name]
            row[name] = adjust(field, value, op)
        for name, value in data.items():
            if name not in fields:
                row[name] = value  # reported as unknown below

    errs = validate_row(entity, row)
    if errs:
        raise dao_errors.schema_violation(errs)
    out = {name: row.get(name) for name in fields}
    if ttl is not MISSING:
        out["ttl"] = ttl
    return out
