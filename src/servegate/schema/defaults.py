"""Filling defaults, normalizing collections and merging updates (Kong's process_auto_fields).

`MISSING` marks an absent key; `None` is an explicit null and is kept as such.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from servegate.schema.fields import INT64_MAX, INT64_MIN, NO_DEFAULT, Field

MISSING: Any = object()


def dedupe(values: list[Any]) -> list[Any]:
    """Set semantics: first occurrence wins, order kept."""
    out: list[Any] = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def missing_value(field: Field) -> Any:
    """The value an absent field takes on insert/upsert."""
    if field.default is not NO_DEFAULT:
        return copy.deepcopy(field.default)
    if not field.required:
        return None
    if field.type == "record" and field.fields is not None:
        return fill_record(field, {}, "insert")
    return None


def _number(field: Field, value: Any) -> Any:
    """Lua has one number type: an integral double is an integer, an integer beyond 64 bits a double."""
    if isinstance(value, bool):
        return value
    if field.type == "integer" and isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)  # stored and returned as an integer; validation checks its range
    if field.type == "number" and isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        try:
            return float(value)
        except OverflowError:
            return math.copysign(math.inf, value)  # not a number: validation rejects it
    return value


def adjust(field: Field, value: Any, op: str) -> Any:
    """Defaults and collection normalization for one field; `value` may be MISSING."""
    if field.type in ("integer", "number"):
        return missing_value(field) if value is MISSING and op != "update" else _number(field, value)
    if field.type == "record":
        if field.fields is not None:
            if value is MISSING and op != "update" and field.required:
                value = missing_value(field)
            if isinstance(value, Mapping):
                return fill_record(field, value, op)
    elif isinstance(value, list | Mapping) and field.type in ("array", "set", "map"):
        if field.type in ("array", "set"):
            if isinstance(value, Mapping):
                # An empty JSON object is an empty Lua table, which Kong accepts as an empty array.
                if value:
                    return value
                value = []
            if field.type == "set":
                value = dedupe(value)
            sub = field.elements
            if sub is not None:
                value = [adjust(sub, v, op) for v in value]
        elif isinstance(value, Mapping) and field.values is not None:
            value = {k: adjust(field.values, v, op) for k, v in value.items()}
    if value is MISSING and op != "update":
        return missing_value(field)
    return value


def fill_record(field: Field, value: Mapping[str, Any], op: str) -> dict[str, Any]:
    """A record's subfields with defaults (insert/upsert) and normalized collections."""
    out = dict(value)
    for name, sub in field.fields or ():
        v = adjust(sub, out.get(name, MISSING), op)
        if v is not MISSING:
            out[name] = v
    return out


def record_with_defaults(*fields: tuple[str, Field]) -> Field:
    """A record whose default is its fields' defaults (Kong's upstreams.healthchecks and each of its parts):
    absent, it takes them all (fields without a default as null); given in part, the rest are filled in."""
    record = Field("record", fields=fields)
    return dataclasses.replace(record, default=fill_record(record, {}, "insert"))


def merge(
    fields: Mapping[str, Field], top: Mapping[str, Any], bottom: Mapping[str, Any] | None
) -> dict[str, Any]:
    """PATCH semantics: `top` over `bottom`; records merged recursively, everything else replaced."""
    out = dict(bottom or {})
    for key, top_v in top.items():
        field = fields.get(key)
        bottom_v = out.get(key)
        if (
            field is not None
            and field.type == "record"
            and field.fields is not None
            and isinstance(top_v, Mapping)
            and isinstance(bottom_v, Mapping)
        ):
            out[key] = merge(field.record_fields(), top_v, bottom_v)
        else:
            out[key] = top_v
    return out
